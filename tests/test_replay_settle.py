"""Settle that compares (issue 25 item 6): a first read longer than ``--settle`` still gets a second
snapshot to compare with; INCONCLUSIVE only when two snapshots differed (or a read failed).

Over real HTTP: the reference shop slowed by ``latency_ms`` (right: it settles, CLEAN), and a
purpose-built aiohttp target just as slow whose stock changes with every read (wrong: never
settles, INCONCLUSIVE). In both the first read takes several times ``--settle``.
"""

from __future__ import annotations

from replay_support import TinyTarget, write_trace
from wdmreplay.analysis import check_results
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results, step

ITEMS = 24
LATENCY = 0.05  # seconds per answer
SETTLE = 0.2  # seconds: the first read (ITEMS * LATENCY / 2 connections = 0.6 s) outlasts it


def _first_read_seconds(settle: dict) -> float:
    first = settle["snapshots"][0]
    return first["end"] - first["at"]


def test_a_slow_correct_shop_settles_although_its_first_read_outlasts_settle(shop_factory, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [2], bind=f"$i{i}"), step("add_stock", [f"$i{i}", 5])])
                         for i in range(ITEMS)]])
    slow = shop_factory(latency_ms=LATENCY * 1000)
    s = replay_trace(trace, out, target=slow.target, speed=None, concurrency=2, settle=SETTLE)
    run = load_results(out, with_args=True)
    settle = run.final["settle"]
    assert s.complete and _first_read_seconds(settle) > SETTLE  # the case of the issue
    assert len(settle["snapshots"]) == 2 and settle["settled"] is True
    report = check_results(run)
    assert report.verdict.verdict == "CLEAN", report.verdict.reasons()


def _slow_changing_shop():
    """Answers creates with fresh ids; find_item after LATENCY s with a stock that grows with every read."""
    state = {"ids": 0, "reads": 0}

    def behave(method: str, path: str):
        if path.startswith("/stock/item/create"):
            state["ids"] += 1
            return 200, f'{{"item_id": "i{state["ids"]}"}}'.encode(), 0
        if path.startswith("/stock/find/") and "probe" not in path:
            state["reads"] += 1
            return 200, f'{{"stock": {state["reads"]}, "price": 2}}'.encode(), LATENCY
        return 200, b"ok", 0

    return behave


def test_a_shop_whose_state_keeps_changing_is_inconclusive_after_two_snapshots(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [2], bind=f"$i{i}")]) for i in range(ITEMS)]])
    with TinyTarget(_slow_changing_shop()) as t:
        s = replay_trace(trace, out, target=t.url, speed=None, concurrency=2, settle=SETTLE)
    run = load_results(out, with_args=True)
    settle = run.final["settle"]
    assert s.complete and _first_read_seconds(settle) > SETTLE
    # Two snapshots were compared (once only one was taken, and the run was INCONCLUSIVE unread).
    assert len(settle["snapshots"]) == 2 and settle["settled"] is False
    report = check_results(run)
    assert report.verdict.verdict == "INCONCLUSIVE" and "coverage" in report.verdict.decided_by
    assert any("did not settle" in r and "(2 snapshots" in r for r in report.verdict.reasons()), report.verdict.reasons()


def test_answered_any_counts_reads_and_not_found_but_not_failures():
    from wdmreplay.replayer.final import answered_any

    nothing = {"items": {}, "users": {}, "orders": {}}
    assert not answered_any(nothing, {"item": {"1": "timeout", "2": "connection error: refused"},
                                      "user": {"3": "HTTP 503: busy"}})
    assert answered_any(nothing, {"item": {"1": "HTTP 404: no such item"}})
    assert answered_any({**nothing, "items": {"1": {"stock": 3, "price": 1}}}, {})
