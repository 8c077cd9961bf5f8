"""The headless-Chromium harness itself: it renders a page, measures sideways overflow both ways, and
takes a screenshot (so a page test that passes means the page was really drawn)."""

from __future__ import annotations

from browser_support import external_urls, horizontal_overflow, open_page


def test_renders_and_measures_overflow(browser, tmp_path):
    fits = tmp_path / "fits.html"
    fits.write_text("<!doctype html><html><body><h1 class='banner'>CLEAN</h1></body></html>")
    wide = tmp_path / "wide.html"
    wide.write_text("<!doctype html><html><body style='margin:0'><div style='width:1500px'>x</div></body></html>")
    png = tmp_path / "fits.png"
    page = open_page(browser, fits, screenshot=png)
    assert page.locator(".banner").inner_text() == "CLEAN"
    assert horizontal_overflow(page) == 0
    assert external_urls(page) == []
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert horizontal_overflow(open_page(browser, wide)) == 1500 - 1280
