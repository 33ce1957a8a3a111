"""The README's images, cut from the browser tests' screenshots (run the browser tests first):

    .venv/bin/python -m pytest tests/test_browser.py && .venv/bin/python scripts/readme_images.py

Each image is the top of one page state's full-page screenshot in test-artifacts/browser/ (what a person sees
first), cut with the same Debian Chromium the tests use: nothing else to install.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
OUT = ROOT / "docs" / "img"
# README image: (page state's screenshot, height of the top part kept, in CSS pixels)
IMAGES = {
    "marketplace.png": ("dev-marketplace-landing-1280", 860),
    "service.png": ("dev-service-plans-1280", 1100),
    "instance.png": ("dev-credentials-use-in-your-app-1280", 1200),
    "marketplace-phone.png": ("dev-marketplace-landing-390", 844),
    "instance-phone.png": ("dev-instance-failed-390", 844),
}


def main() -> int:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        for name, (state, height) in IMAGES.items():
            found = sorted(ARTIFACTS.glob(f"*-{state}.png"))
            if not found:
                print(f"no screenshot of {state} in {ARTIFACTS}: run the browser tests first", file=sys.stderr)
                return 1
            data = base64.b64encode(found[-1].read_bytes()).decode()
            page.set_content(f'<body style="margin:0"><img id="shot" src="data:image/png;base64,{data}"></body>')
            box = page.locator("#shot").bounding_box()
            page.screenshot(path=str(OUT / name), full_page=True,
                            clip={"x": 0, "y": 0, "width": box["width"], "height": min(height, box["height"])})
            print(f"{OUT / name} from {found[-1].name}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
