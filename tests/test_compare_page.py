"""What compare tells a person: the gates that cannot fire, a build without answered requests, the page.

Real HTTP against reference shops (a healthy one, one answering every request 500, one slowed), the
text / JSON / HTML of ``compare``, and the page in headless Chromium (tests/browser_support.py):
banner, no horizontal overflow at 1280 px, ratio ticks readable and not overlapping. ``WDM_SCREENSHOTS=1``
also keeps the page's screenshot as docs/img/compare.png.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from analysis_support import latency_run
from browser_support import horizontal_overflow, open_page
from replay_support import run_cli

from wdmreplay.analysis import check_results, compare_runs
from wdmreplay.analysis.compare import WEAK_GATE_RATIO
from wdmreplay.analysis.compare_text import render_compare
from wdmreplay.analysis.compare_html import ratio_ticks
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def replay(trace: Path, out: Path, url: str, label: str) -> Path:
    # In a thread of its own: while Playwright's sync API is active the main thread has a running loop.
    with ThreadPoolExecutor(1) as pool:
        s = pool.submit(replay_trace, str(trace), str(out), target=url, speed=None, concurrency=16, timeout=10.0,
                        label=label).result()
    assert s.complete
    return out



@pytest.fixture(scope="module")
def dead_vs_healthy(tmp_path_factory) -> tuple[Path, Path]:
    """One run on the healthy reference shop, one on a shop answering every request 500 (module-scoped)."""
    from wdmreplay.shop import ShopThread

    tmp = tmp_path_factory.mktemp("dead")
    trace = tmp / "stress.wdmt"
    generate("stress", trace, seed=3, rate=5000.0, requests=400)
    with ShopThread() as healthy, ShopThread(error_rate=1.0) as dead:
        a = replay(trace, tmp / "a.wdmr", healthy.url, "healthy")
        b = replay(trace, tmp / "b.wdmr", dead.url, "dead")
    return a, b


def test_a_build_without_answered_requests_is_named_in_text_and_json(dead_vs_healthy, capsys):
    a, b = dead_vs_healthy
    code, text, err = run_cli(capsys, "compare", str(a), str(b))
    assert code == 1 and err == "", text
    assert text.splitlines()[0] == "verdict: REGRESSION — dead vs healthy (exit 1)"
    assert "no answered requests in dead (every one failed, got no answer or was skipped)" in text
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--format", "json")
    d = json.loads(out)["builds"][0]
    assert "base" not in d["no_answered_requests"] and "all" in d["no_answered_requests"]["new"]
    gates = {g["gate"]: g for g in d["cannot_fire"]}
    assert "all" in gates["latency"]["ops"]


def test_healthy_builds_have_no_unanswered_operation(dead_vs_healthy, tmp_path, shop, capsys):
    # The right shop for the same check: two healthy builds, every operation answered on both sides.
    a, _ = dead_vs_healthy
    trace_copy = Path(load_results(a).header["trace"]["path"])
    b = replay(trace_copy, tmp_path / "b.wdmr", shop.url, "healthy-too")
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--format", "json", "--threshold", "1000")
    d = json.loads(out)["builds"][0]
    assert d["no_answered_requests"] == {} and "latency" not in {g["gate"] for g in d["cannot_fire"]}


def _gates(res) -> dict[str, list]:
    out: dict[str, list] = {}
    for g in res.builds[0].limits:
        out.setdefault(g.gate, []).append(g)
    return out


def test_p99_gate_cannot_fire_with_one_run_a_side(tmp_path):
    # One run a side: the p99 interval is widened by the calibrated noise floor (±324 %), so only a
    # slow-down beyond 4x could count: the text and JSON must say the p99 gate cannot fire.
    runs = [load_results(latency_run(tmp_path / f"{lbl}.wdmr", seed=s, label=lbl), with_args=True)
            for lbl, s in (("a", 1), ("b", 2))]
    res = compare_runs(runs, checks=[check_results(r) for r in runs])
    wide = [g for g in _gates(res)["p99"] if "too few runs to gate p99" in g.why]
    assert wide and "checkout" in wide[0].ops
    c = next(c for o in res.builds[0].ops if o.op == "checkout" for c in o.latency if c.name == "p99")
    assert c.fires_at > WEAK_GATE_RATIO
    text = render_compare(res, "text")
    assert "gates that cannot fire with these runs:" in text and "too few runs to gate p99" in text
    d = json.loads(render_compare(res, "json"))["builds"][0]
    assert any(g["gate"] == "p99" and "too few runs" in g["why"] for g in d["cannot_fire"])


def test_p50_gate_can_fire_with_three_runs_a_side(tmp_path):
    # Three runs of a few hundred answers a side: the checkout p50 interval is narrow, its gate can fire.
    paths = [latency_run(tmp_path / f"a{k}.wdmr", seed=1 + k, label="a") for k in range(3)]
    paths += [latency_run(tmp_path / f"b{k}.wdmr", seed=4 + k, label="b") for k in range(3)]
    runs = [load_results(p, with_args=True) for p in paths]
    res = compare_runs(runs, checks=[check_results(r) for r in runs])
    c = next(c for o in res.builds[0].ops if o.op == "checkout" for c in o.latency if c.name == "p50")
    assert c.fires_at <= WEAK_GATE_RATIO
    assert all("checkout" not in g.ops for g in _gates(res).get("p50", []))


@pytest.mark.parametrize("lo, hi, want", [
    (0.7, 1.43, [0.7, 0.8, 0.9, 1.0, 1.1, 1.2]),  # the narrowest axis: 1/(1+threshold) to 1+threshold, margins
    (0.4, 2.5, [0.5, 1.0, 2.0]),
    (0.015, 78.0, [0.1, 1.0, 10.0]),  # the p99 interval: decades only, no crowding
    (0.0011, 900.0, [0.01, 0.1, 1.0, 10.0, 100.0]),
    (1.1e-6, 1e6, [1e-4, 0.01, 1.0, 100.0, 1e4, 1e6]),  # more than nine decades: every other one, 1x kept
])
def test_ratio_ticks_are_readable(lo, hi, want):
    assert ratio_ticks(lo, hi) == want


def _tick_boxes(page, figure: str) -> list[dict]:
    return page.evaluate(f"""() => [...document.querySelectorAll('#{figure} g[id^="xtick"] text')]
        .map(t => {{ const r = t.getBoundingClientRect(); return {{text: t.textContent.trim(), x0: r.left, x1: r.right}}; }})""")


def test_compare_page_in_chromium(dead_vs_healthy, tmp_path, shop_factory, browser):
    a, b = dead_vs_healthy
    trace = Path(load_results(a).header["trace"]["path"])
    slow = shop_factory(latency_ms=20.0)
    paths = [a, b, replay(trace, tmp_path / "c.wdmr", slow.url, "slowed")]
    res = compare_runs([load_results(p, with_args=True) for p in paths])
    page_file = tmp_path / "compare.html"
    page_file.write_text(render_compare(res, "html"), encoding="utf-8")
    shot = tmp_path / "compare.png"
    page = open_page(browser, page_file, screenshot=shot)
    banner = page.locator(".verdict-banner")
    assert banner.count() == 1 and banner.inner_text().startswith("REGRESSION")
    assert "regression" in banner.get_attribute("class")
    assert horizontal_overflow(page) == 0
    assert "no answered requests" in page.locator("#build-1 .no-answers").inner_text()
    assert page.locator("#build-1 td.none").count() >= 2  # the dead build's latency cells say so
    assert page.locator(".cannot-fire li").count() >= 1
    ticks = _tick_boxes(page, "intervals")
    assert ticks and all(t["text"].endswith("x") for t in ticks), ticks
    ticks.sort(key=lambda t: t["x0"])
    assert all(p["x1"] <= q["x0"] for p, q in zip(ticks, ticks[1:])), ticks  # no two labels overlap
    assert page.locator("#distributions svg").count() == 1
    if os.environ.get("WDM_SCREENSHOTS"):  # refreshes the README's picture; otherwise the work tree stays as it was
        shutil.copyfile(shot, DOCS_IMG / "compare.png")
