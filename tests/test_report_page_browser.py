"""The report page as a person sees it: headless Chromium (tests/browser_support.py) at 1280 px.

The HTML report of a lost-update run of the reference shop: the verdict banner, the section table,
an anomaly timeline with at least two concurrent bars, nothing wider than the window, nothing
fetched from outside, and it prints. A module of its own: the ``browser`` fixture keeps Playwright's
event loop running for the module, and the replays of the other explain tests need the main thread's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_explain_pages import _run

from wdmreplay.analysis import build_report, render_html
from wdmreplay.traces import load_results


@pytest.fixture(scope="module")
def lost_update_run(tmp_path_factory) -> Path:
    """A consistency run of the lost-update reference shop (its race window widened, as in test_explain_pages)."""
    import wdmreplay.shop.app as shop_app
    from wdmreplay.shop import ShopThread

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shop_app, "RACE_WINDOW_S", 0.05)
        with ShopThread(inject="lost-update") as shop:
            return _run(tmp_path_factory.mktemp("page"), shop, "lost-update")


def test_report_page_in_chromium(lost_update_run, browser, tmp_path):
    """The page as a person sees it at 1280 px: banner, sections, a timeline with concurrent bars."""
    from browser_support import external_urls, horizontal_overflow, open_page

    html = tmp_path / "report.html"
    html.write_text(render_html(build_report(load_results(lost_update_run, with_args=True), bucket=0.1)))
    shot = tmp_path / "report.png"
    page = open_page(browser, html, screenshot=shot)
    assert page.locator("header#verdict").inner_text().startswith("NOT CLEAN")
    assert page.locator("table.sections tbody tr").count() == 4
    timeline = page.locator("svg.timeline").first
    assert timeline.is_visible() and timeline.locator("rect.bar.concurrent").count() >= 2
    box = timeline.bounding_box()
    assert box is not None and 800 <= box["width"] <= 1280
    assert horizontal_overflow(page) == 0 and external_urls(page) == []
    assert shot.stat().st_size > 50_000
    # Printable: in print media nothing runs off the side, and it prints as a PDF of several pages.
    page.emulate_media(media="print")
    assert horizontal_overflow(page) == 0
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3
