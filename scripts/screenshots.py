"""Screenshots of a running portal for the README: python scripts/screenshots.py URL USER PASSWORD OUTDIR."""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main(base: str, username: str, password: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(base + "/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.screenshot(path=str(out / "marketplace.png"))
        page.click(".svc-card >> nth=0")
        page.wait_for_selector(".plans")
        page.screenshot(path=str(out / "service.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], Path(sys.argv[4]))
