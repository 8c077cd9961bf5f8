"""Headless Chromium for tests of what a person looks at (HTML report, compare page, live view).

Debian's ``chromium`` (installed by ``.ci/run``; ``$WDM_CHROMIUM`` overrides the path) driven by Playwright
(``playwright`` is a test extra; no browser download: Playwright only drives the system binary). Use the
``browser`` fixture from tests/conftest.py, then :func:`open_page` for a file or URL:

    def test_report_page(browser, tmp_path):
        page = open_page(browser, tmp_path / "report.html", screenshot=tmp_path / "report.png")
        assert page.locator(".verdict-banner").count() == 1
        assert horizontal_overflow(page) == 0

Keep the screenshot of each page under docs/img/ so the README can show it, and look at it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1280, 900
# The flags Chromium needs on a machine with no network and no display, started as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """The Chromium binary to drive: ``$WDM_CHROMIUM``, else ``chromium`` on PATH or /usr/bin/chromium."""
    path = os.environ.get("WDM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError(f"no Chromium at {path}: install Debian's chromium (apt-get install chromium), "
                           "as .ci/run does, or set WDM_CHROMIUM")
    return path


def open_page(browser: Any, target: str | Path, *, screenshot: str | Path | None = None,
              width: int = WIDTH, height: int = HEIGHT, wait_for: str | None = None) -> Any:
    """A Playwright page showing ``target`` (a file path or an http URL) at ``width`` px, loaded.

    ``wait_for`` is a CSS selector to wait for (pages that fill themselves in by script); ``screenshot``
    saves a full-page PNG there. The page is closed with its context when the test's browser closes.
    """
    url = str(target)
    if not url.startswith(("http://", "https://", "file://")):
        url = Path(target).resolve().as_uri()
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(url, wait_until="load")
    if wait_for:
        page.wait_for_selector(wait_for, timeout=15_000)
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    return page


def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than its viewport (0: nothing scrolls sideways)."""
    return int(page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                             " - window.innerWidth"))


def external_urls(page: Any) -> list[str]:
    """Every resource the page asked for from outside the page's own origin or file (should be none)."""
    return page.evaluate("""() => performance.getEntriesByType('resource')
        .map(e => e.name).filter(n => !n.startsWith('data:') && !n.startsWith('file:')
            && !n.startsWith(location.origin))""")
