"""``explain`` and the HTML report page, on runs of the reference shop (real HTTP on 127.0.0.1).

Each verdict path against a right shop and a wrong one: a lost update and an oversell are explained
by their overlapping checkouts and the arithmetic; the same entities of a correct shop add up. The
page as a person sees it (headless Chromium) is tested in tests/test_report_page_browser.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wdmreplay.analysis import build_report, check_results, render_html
from wdmreplay.analysis.story import explain_run, render_explain_text
from wdmreplay.analysis.report import Report
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results

# Twenty orders per item of stock 1, all checked out at once: a racy shop lets several through.
CONTENDED = {"items": 2, "stock": 1, "price": 1, "users": 40, "credit": 1, "orders": 40}


def _run(tmp_path: Path, shop, name: str, params: dict = CONTENDED, **replay: object) -> Path:
    trace = tmp_path / f"{name}.wdmt"
    generate("consistency", trace, seed=3, **params)
    out = tmp_path / f"{name}.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=None, label=name, **replay)
    return out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdmreplay", *args], capture_output=True, text=True, timeout=120)


def _stories(path: Path, *ids: str) -> list:
    r = load_results(path, with_args=True)
    return explain_run(r, ids, check_results(r).anomalies)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One consistency run each of a correct, a lost-update and an oversell reference shop."""
    from wdmreplay.shop import ShopThread

    import wdmreplay.shop.app as shop_app

    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    # The lost-update bug's read-then-write window is 2 ms: on a busy machine a replay's checkouts can
    # arrive further apart than that and no update is lost. 50 ms makes the race this test explains sure.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shop_app, "RACE_WINDOW_S", 0.05)
        for name, inject in (("correct", None), ("lost-update", "lost-update"), ("oversell", "oversell")):
            with ShopThread(inject=inject) as shop:
                out[name] = _run(tmp, shop, name)
    return out


def _checkouts_taken(story) -> list:
    return [r for r in story.requests if r.op == "checkout" and r.outcome == "ok"]


def test_explain_lost_update_shows_the_overlapping_checkouts_and_the_arithmetic(runs):
    stories = _stories(runs["lost-update"])
    by_kind = {s.anomaly.kind: s for s in stories}
    s = by_kind["lost_update"]
    assert s.entity in ("item", "user")
    won = _checkouts_taken(s)
    # More checkouts answered 2xx than there was stock/credit, and they ran at the same time.
    assert len(won) >= 2 and any(set(r.concurrent) & {w.n for w in won} for r in won)
    assert re.fullmatch(rf"{len(won)} checkouts answered 2xx (took|cost) {len(won)} (units|credit); "
                        r"(stock|credit) was 1; final 0", s.headline), s.headline
    assert f"leaves 1 - {len(won)} = {1 - len(won)}: below zero" in "\n".join(s.arithmetic)
    assert s.final == 0 and s.anomaly.actual == 0
    # Send order, ms on the run's clock, every request answered.
    sent = [r.sent_ms for r in s.requests]
    assert sent == sorted(sent) and all(r.done_ms >= r.sent_ms for r in s.requests)
    text = render_explain_text(stories)
    assert text.startswith(f"{s.entity} {s.id} — lost_update: {s.headline}") or f"— lost_update: {s.headline}" in text


def test_explain_oversell_shows_the_checkouts_and_the_negative_stock(runs):
    s = {x.anomaly.kind: x for x in _stories(runs["oversell"])}["oversell"]
    won = _checkouts_taken(s)
    assert s.entity == "item" and len(won) >= 2 and s.final == 1 - len(won) < 0
    assert s.headline == f"{len(won)} checkouts answered 2xx took {len(won)} units; stock was 1; final {s.final}"
    assert f"final read: {s.final}" in s.arithmetic


def test_explain_on_a_correct_shop_adds_up(runs):
    """The same entity on a correct shop: one checkout took the one unit, the others were refused."""
    assert _stories(runs["correct"]) == []
    r = load_results(runs["correct"], with_args=True)
    item = sorted(r.final["items"])[0]
    (s,) = _stories(runs["correct"], item)
    assert s.anomaly is None and len(_checkouts_taken(s)) == 1
    refused = [x for x in s.requests if x.op == "checkout" and x.outcome == "fail"]
    assert refused and all(x.status == 400 and x.answer for x in refused)
    assert "a serial order of the 2xx answers leaves 1 - 1 = 0" in s.arithmetic and s.final == 0


def test_explain_cli_text_json_and_bad_input(runs, tmp_path):
    path = str(runs["lost-update"])
    r = _cli("explain", path, "lost_update")
    assert r.returncode == 0 and r.stderr == "" and "concurrent" in r.stdout and "arithmetic:" in r.stdout
    r = _cli("explain", path, "--format", "json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["schema"] == "wdm-explain/1" and d["verdict"] == "NOT CLEAN"
    first = d["stories"][0]
    assert {"session", "op", "amount", "intended_ms", "sent_ms", "done_ms", "status", "answer",
            "concurrent_with"} <= set(first["requests"][0])
    r = _cli("explain", str(runs["correct"]))
    assert (r.returncode, r.stdout) == (0, "no anomalies to explain (verdict: CLEAN)\n")
    r = _cli("explain", path, "no-such-item")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "no-such-item" in r.stderr
    trace = next(Path(path).parent.glob("*.wdmt"))
    r = _cli("explain", str(trace))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    other = tmp_path / "other.wdmt"
    generate("consistency", other, seed=4, **CONTENDED)
    r = _cli("explain", path, "lost_update", "--trace", str(other))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not the trace this run replayed" in r.stderr
    r = _cli("explain", path, "lost_update", "--trace", str(trace))
    assert r.returncode == 0 and " create_" in r.stdout  # the create, matched through the trace's symbols
    # a trace the user names is checked even when there is no story to tell (it was read only for one)
    garbage = tmp_path / "garbage.wdmt"
    garbage.write_bytes(bytes(range(256)) * 8)
    correct = str(runs["correct"])
    for named in (garbage, other):  # not a trace; a trace of another seed
        r = _cli("explain", correct, "--trace", str(named))
        assert (r.returncode, r.stdout) == (2, "") and r.stderr.count("\n") == 1, (named, r.stderr)
        assert str(named) in r.stderr and "Traceback" not in r.stderr
    r = _cli("explain", correct, "--trace", str(Path(correct).with_suffix(".wdmt")))
    assert (r.returncode, r.stdout) == (0, "no anomalies to explain (verdict: CLEAN)\n")
    r = _cli("explain", "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and "wdm-replay explain a.wdmr" in r.stdout



def test_explain_kind_and_id_refuses_an_entity_the_run_does_not_know(runs, shop, tmp_path):
    """`explain RUN user:ID` exits 2 with one line for an id the run never saw, as a bare unknown id does."""
    path = str(runs["correct"])
    r = load_results(path, with_args=True)
    item, user = sorted(r.final["items"])[0], sorted(r.final["users"])[0]
    for known in (f"item:{item}", f"user:{user}"):
        out = _cli("explain", path, known)
        assert out.returncode == 0 and out.stderr == "" and "arithmetic:" in out.stdout, known
    for unknown in ("user:0", "item:item-999999", "order:no-such-order", f"order:{item}"):
        out = _cli("explain", path, unknown)
        assert out.returncode == 2 and out.stdout == "" and out.stderr.count("\n") == 1, unknown
        assert unknown.partition(":")[2] in out.stderr and "Traceback" not in out.stderr
    # batch_init ids "0".."n-1" are the run's even when no request named them and the final read left them out
    trace = tmp_path / "batch.wdmt"
    generate("checkout", trace, items=20, users=20, orders=20, sessions=3)
    run = tmp_path / "batch.wdmr"
    replay_trace(str(trace), str(run), target=shop.target, speed=None, final_sample=0)
    for known in ("user:19", "item:0", "order:7"):
        out = _cli("explain", str(run), known)
        assert out.returncode == 0 and out.stderr == "", (known, out.stderr)
    out = _cli("explain", str(run), "user:20")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'20'" in out.stderr

class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.pre: list[int] = []
        self._in_pre = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]
        if tag == "pre":
            self.pre.append(1)

    def handle_data(self, data):
        if self.pre and self.tags[-1] == "pre":
            self.pre[-1] += data.count("\n")


def _page(report: Report) -> tuple[str, _Page]:
    page = render_html(report)
    p = _Page()
    p.feed(page)
    p.close()
    return page, p


def test_html_page_of_a_lost_update(runs):
    page, p = _page(build_report(load_results(runs["lost-update"], with_args=True), bucket=0.1))
    assert 'class="banner not-clean"' in page and "NOT CLEAN" in page and "consistency fail" in page
    assert p.urls == [] and "script" not in p.tags and all(n <= 10 for n in p.pre)
    assert page.count('<svg class="timeline"') >= 1 and page.count('class="bar ok concurrent"') >= 2
    assert page.count("<figure") == 3  # requests/s, latency over unanswered share, CDF
    assert 'id="sections"' in page and "lost_update" in page


def test_html_page_of_a_correct_run_and_without_matplotlib(runs, monkeypatch):
    rep = build_report(load_results(runs["correct"], with_args=True))
    page, _ = _page(rep)
    assert 'class="banner clean"' in page and "No consistency anomaly was found." in page
    stats_only, _ = _page(build_report(load_results(runs["correct"])))  # no args: no check
    assert 'class="banner unchecked"' in stats_only and "NOT CHECKED" in stats_only and "CLEAN<" not in stats_only
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page, p = _page(rep)
    assert "Charts need matplotlib" in page and "<figure" not in page and 'id="operations"' in page


def test_html_banner_of_a_shop_killed_mid_run(tmp_path, shop_factory):
    """Half the run is unanswered: the headline is the verdict and the availability that decided it,
    never "No anomalies"."""
    import threading

    shop = shop_factory()
    trace = tmp_path / "s.wdmt"
    generate("stress", trace, seed=1, rate=40, duration=3)
    stopper = threading.Timer(1.2, shop.stop)
    stopper.start()
    out = tmp_path / "killed.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=2.0, label="killed")
    stopper.join()
    rep = build_report(load_results(out, with_args=True))
    assert rep.check.verdict.verdict != "CLEAN"
    page, _ = _page(rep)
    banner = page[page.index('<header id="verdict"'):page.index("</header>")]
    assert rep.check.verdict.verdict in banner and "No consistency anomaly" not in banner
    assert any(name in banner for name in ("availability", "coverage", "correctness"))
    # The seconds with no answers are shaded as an outage in the latency chart, not drawn as fast.
    latency = page[page.index('id="chart-latency"'):page.index('id="chart-cdf"')]
    assert "mostly unanswered" in latency and "unanswered %" in latency



def _wipe_run(tmp_path: Path, wipe: bool) -> Path:
    """Items and users created, stocked and checked out; at 0.8 s a fault action resets the shop's store
    (``wipe``) or only reads its stats; a phase at 1.5 s, then the final read."""
    from fault_support import write_schedule
    from replay_support import write_trace

    from wdmreplay.shop import ShopThread
    from wdmreplay.traces import step

    p0 = [(0.0, [step("create_item", [4], bind=f"$s{i}.item"), step("add_stock", [f"$s{i}.item", 10]),
                 step("create_user", [], bind=f"$s{i}.user"), step("add_funds", [f"$s{i}.user", 50]),
                 step("create_order", [f"$s{i}.user"], bind=f"$s{i}.order"),
                 step("add_item", [f"$s{i}.order", f"$s{i}.item", 2]), step("checkout", [f"$s{i}.order"])])
          for i in range(2)]
    p1 = [(1.5, [step("find_item", ["no-such-item"], expect="fail")])]
    trace = tmp_path / "w.wdmt"
    write_trace(trace, [p0, p1])
    out = tmp_path / "w.wdmr"
    with ShopThread() as shop:
        path = "/_shop/reset" if wipe else "/_shop/stats"
        code = (f"import urllib.request as u; u.urlopen(u.Request({shop.url + path!r}, data={b'' if wipe else None!r}, "
                f"method={'POST' if wipe else 'GET'!r}), timeout=5).read()")
        sched = write_schedule(tmp_path / "f.json", [{"name": "wipe", "at": 0.8, "for": 0.2,
                                                      "do": [sys.executable, "-c", code],
                                                      "undo": [sys.executable, "-c", "pass"]}])
        replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=5.0, faults=str(sched))
    return out


@pytest.mark.parametrize("wipe", [True, False], ids=["wiped", "kept"])
def test_explain_an_item_the_final_read_did_not_find(tmp_path, wipe):
    """Lost data (``lost_entity``): the story is the create answered 2xx, then a final read that did not find it."""
    out = _wipe_run(tmp_path, wipe)
    r = load_results(out, with_args=True)
    item = r.bindings["$s0.item"]
    (s,) = _stories(out, f"item:{item}")
    create = s.requests[0]
    assert (create.op, create.outcome, create.sid) == ("create_item", "ok", 0)
    assert [x.op for x in s.requests[:4]] == ["create_item", "add_stock", "add_item", "checkout"]
    if wipe:
        assert s.final is None and s.headline.startswith(f"created with a 2xx at {create.done_ms:.1f} ms")
        assert s.headline.endswith(f"the final read did not find {item}") and item.startswith("item-")
        assert f"final read: HTTP 400: {item} not found" in s.arithmetic, s.arithmetic
    else:
        assert s.final == 8 and s.headline == "1 checkout answered 2xx took 2 units; stock was 10; final 8"


@pytest.mark.parametrize("sent, done, expected", [
    ([0.0, 5.0], [4.0, 9.0], [(), ()]),  # one after the other
    ([0.0, 4.0], [4.0, 9.0], [(), ()]),  # touching ends are not concurrent
    ([0.0, 1.0, 2.0], [10.0, 3.0, 4.0], [(2, 3), (1, 3), (1, 2)]),
    ([0.0, None, 1.0], [5.0, None, 2.0], [(3,), (), (1,)]),  # never sent: never concurrent
])
def test_mark_concurrent(sent, done, expected):
    from wdmreplay.analysis.story import mark_concurrent

    assert mark_concurrent(sent, done) == expected


@pytest.mark.parametrize("bars, expected", [
    ([(0, 4), (5, 9)], []),
    ([(0, 4), (2, 9)], [(2, 4)]),
    ([(0, 10), (1, 3), (2, 5), (8, 9)], [(1, 5), (8, 9)]),
])
def test_timeline_shades_where_two_or_more_are_in_flight(bars, expected):
    from wdmreplay.analysis.html import _overlaps

    assert _overlaps(bars) == expected
