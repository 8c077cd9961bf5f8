"""The live page of ``replay --ui`` as a person sees it: headless Chromium during and after a real replay.

A replay against a reference shop that answers 5xx to a share of requests, with a fault window,
its live view on port 0: the page is opened mid-run (progress and figures filled in, below 100 %)
and again after the run (final figures equal to ``/stats.json``, the results path shown, the
charts drawn with the fault window shaded), at 1280 px with nothing scrolling sideways and no
resource from outside. ``WDM_SCREENSHOTS=1`` also keeps the final screenshot as docs/img/live.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from browser_support import external_urls, horizontal_overflow, open_page
from replay_support import write_trace
from wdmreplay.traces import step

WDM = [sys.executable, "-m", "wdmreplay"]
DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "img" / "live.png"


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "stats.json", timeout=5) as r:
        return json.load(r)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def test_live_page_shows_progress_figures_and_the_end(browser, shop_factory, tmp_path):
    shop = shop_factory(error_rate=0.03, seed=3)
    sessions = 600  # 6 s of schedule: two requests per session, 10 ms apart
    write_trace(tmp_path / "t.wdmt", [[(i * 0.01, [step("create_user", [], bind=f"$u{i}"),
                                                   step("add_funds", [f"$u{i}", 5], expect="any"),
                                                   step("find_user", [f"$u{i}"], expect="any")])
                                       for i in range(sessions)]])
    (tmp_path / "faults.json").write_text(json.dumps(
        {"faults": [{"name": "pause-stock", "at": 2.0, "for": 1.5, "do": "true", "undo": "true"}]}))
    proc = subprocess.Popen([*WDM, "replay", "t.wdmt", "--url", shop.url, "-o", "r.wdmr", "--faults", "faults.json",
                             "--ui", "127.0.0.1:0", "--ui-linger", "60"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = re.match(r"live view: (http://\S+/) ", proc.stderr.readline())
        assert m
        url = m.group(1)
        deadline = time.monotonic() + 30
        while _stats(url)["requests_done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)

        # Mid-run: the page fills itself in from /stats.json.
        page = open_page(browser, url, wait_for="#ops tbody tr td:not(.empty)")
        page.wait_for_function("document.getElementById('done').textContent !== '0'", timeout=10_000)
        page.wait_for_selector("#rps rect[class^=bar-]", timeout=10_000)  # a complete second of the run drawn
        assert page.locator("#stage").inner_text() in ("replaying", "final read")
        pct = float(page.locator("#pct").inner_text())
        assert 0 < pct < 100, pct
        assert _int(page.locator("#total").inner_text()) == 3 * sessions
        assert page.locator("#result").is_hidden()
        assert horizontal_overflow(page) == 0

        deadline = time.monotonic() + 60
        while _stats(url)["result"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        final = _stats(url)
        assert final["result"] is not None and final["unanswered"] > 0

        # After the run: the final figures, the results path, the charts with the fault window.
        shot = tmp_path / "live.png"
        page = open_page(browser, url, wait_for="#result:not([hidden])", screenshot=shot)
        assert page.locator("#stage").inner_text() == "done"
        assert "results file: r.wdmr" in page.locator("#result").inner_text()
        assert page.locator("#pct").inner_text() == "100"
        for key in ("ok", "refused", "unanswered", "skipped"):
            assert _int(page.locator(f"#{key}").inner_text()) == final[key], key
        assert _int(page.locator("#done").inner_text()) == final["requests_done"] == 3 * sessions
        assert page.locator("#p99").inner_text() != "-"
        rows = page.locator("#ops tbody tr")
        assert rows.count() == len(final["by_op"]) == 3
        assert page.locator("#ops td.bad").count() > 0  # the 5xx answers are marked by operation
        assert page.locator("#faults tbody tr").inner_text().split("\t")[0] == "pause-stock"
        assert page.locator("#rps rect.fault").count() == 1 and page.locator("#lat rect.fault").count() == 1
        assert page.locator("#rps rect.bar-unanswered").count() > 0
        assert page.locator("#lat path.line-p50_ms").count() == 1 and page.locator("#lat path.line-p99_ms").count() == 1
        assert horizontal_overflow(page) == 0
        assert external_urls(page) == []
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("WDM_SCREENSHOTS"):
            DOCS_PNG.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_PNG)
    finally:
        proc.kill()
        proc.wait()
