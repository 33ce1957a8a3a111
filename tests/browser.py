"""What every browser test does at each page state: fit the screen, pass axe-core, leave a screenshot.

`Checker(page)` looks at the page as it is now at 1280×800 and at 390×844 (the viewport is resized, so a state
reached by clicking is checked as it is, without reloading): the page must be exactly as wide as the screen,
axe-core (npm, pinned in .ci/axe) must find no serious or critical violation, and a full-page screenshot of
each width is saved to test-artifacts/browser/. Chromium is Debian's; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
AXE = ROOT / ".ci" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
WIDE, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BLOCKING_IMPACTS = ("serious", "critical")
# Answers the tests ask for (a refused action, a form sent back with its errors, a page that does not exist), and
# service icons on hosts this machine cannot reach (the generated catalog's; the letter tile stands in).
EXPECTED_CONSOLE = re.compile(r"status of (403|404|422) |net::ERR_NAME_NOT_RESOLVED")


def _missing(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def require_browser() -> Any:
    """Playwright's sync API, or skip (fail with REQUIRE_BROWSER=1) when it, Chromium or axe-core is missing."""
    sync_api: Any = None
    try:
        from playwright import sync_api
    except ImportError:
        _missing("the playwright Python package is not installed")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if not AXE.is_file():
        _missing(f"axe-core is not installed at {AXE} (npm ci --prefix .ci/axe --ignore-scripts)")
    return sync_api


def watch_problems(page: Any) -> list[str]:
    """What a person would not see but should not happen: script errors, console errors (CSP violations among
    them), server errors. The test asserts the list is empty at its end."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not EXPECTED_CONSOLE.search(message.text):
            problems.append(f"console error: {message.text}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)
    page.on("response", lambda r: problems.append(f"{r.status} from {r.url}") if r.status >= 500 else None)
    return problems


class Checker:
    """Checks and screenshots of page states, numbered in the order visited (one folder per test module)."""

    count = 0
    axe_notes: list[dict[str, Any]] = []

    def __init__(self, page: Any, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        self.axe_source = AXE.read_text()

    @classmethod
    def reset_artifacts(cls) -> None:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        cls.count = 0
        cls.axe_notes = []

    def __call__(self, name: str, *, widths: tuple[dict[str, int], ...] = (WIDE, PHONE), axe: bool = True) -> None:
        Checker.count += 1
        page = self.page
        if os.environ.get("BROWSER_TRACE"):
            import time
            print(f"{time.strftime('%H:%M:%S')} {self.prefix}-{name}", flush=True)
        for viewport in widths:
            page.set_viewport_size(viewport)
            width = viewport["width"]
            self._fits(name, width)
            if axe:
                self._axe(name, width)
            page.evaluate("window.scrollTo(0, 0)")  # the sticky header is drawn where the page was scrolled to
            page.screenshot(path=str(ARTIFACTS / f"{Checker.count:02d}-{self.prefix}-{name}-{width}.png"),
                            full_page=True)
        page.set_viewport_size(WIDE)

    def _fits(self, name: str, width: int) -> None:
        measured = self.page.evaluate("""(w) => {
            const doc = document.documentElement;
            const wide = [...document.querySelectorAll('body *')].filter(e => {
                const r = e.getBoundingClientRect(); return r.width && r.right > w + 0.5;
            }).slice(0, 6).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                                    (e.className && e.className.baseVal === undefined ? '.' + e.className : ''));
            return {scroll: Math.max(doc.scrollWidth, document.body.scrollWidth), wide};
        }""", width)
        assert measured["scroll"] == width, (
            f"{name}: the page is {measured['scroll']} px wide at {width} px; reaching past the edge: "
            f"{measured['wide']}")

    def _axe(self, name: str, width: int) -> None:
        page = self.page
        if not page.evaluate("typeof window.axe !== 'undefined'"):
            page.evaluate(self.axe_source + "\n;0")  # evaluated by the DevTools protocol: not an inline script
        result = page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }""")
        Checker.axe_notes.append({"state": f"{self.prefix}-{name}", "width": width, "violations": result})
        (ARTIFACTS / "axe.json").write_text(json.dumps(Checker.axe_notes, indent=1))
        blocking = [v for v in result if v["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"{name} at {width} px: axe-core found {json.dumps(blocking, indent=1)}"

    def page_height(self) -> int:
        return int(self.page.evaluate("document.documentElement.scrollHeight"))
