"""The final read the replayer cannot tear (quiesce, spaced settle snapshots), the summary's rate and hints.

Pure planning functions table-driven; the rest over real loopback HTTP against purpose-built
targets and the reference shop.
"""

from __future__ import annotations

import math
import threading
import time

import pytest

from replay_support import TinyTarget, write_trace
from wdmreplay.replayer import format_summary, replay_trace
from wdmreplay.replayer.final import (DEFAULT_SETTLE, QUIESCE_GRACE, SETTLE_FIRST_GAP, next_snapshot_at,
                                      quiesce_until, settle_plan, settle_record)
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import OK, TIMEOUT, run_rate, send_window


@pytest.mark.parametrize("last, timeout, grace, until", [
    (None, 10.0, 1.0, None),
    (float("nan"), 10.0, 1.0, None),
    (5.0, 10.0, 1.0, 16.0),
    (5.0, 0.3, 0.0, 5.3),
])
def test_quiesce_until(last, timeout, grace, until):
    assert quiesce_until(last, timeout, grace) == until


@pytest.mark.parametrize("requested, indeterminate, plan", [
    (None, 0, (0.0, None)),
    (None, 3, (DEFAULT_SETTLE, "indeterminate requests")),
    (0.0, 0, (0.0, None)),
    (0.0, 3, (0.0, "--settle")),
    (5.0, 0, (5.0, "--settle")),
    (5.0, 3, (5.0, "--settle")),
])
def test_settle_plan(requested, indeterminate, plan):
    assert settle_plan(requested, indeterminate) == plan


@pytest.mark.parametrize("window, settle, last_end, taken, at", [
    (10.0, 0.0, 10.0, 0, 10.0),  # the first snapshot starts at once
    (10.5, 0.0, 10.5, 1, 10.5),  # a second one always, to compare with (no settle time: back to back)
    (10.5, 5.0, 10.5, 1, 10.6),  # gaps 0.1, 0.2, 0.4, …
    (10.5, 5.0, 11.0, 2, 11.2),
    (10.5, 5.0, 11.0, 3, 11.4),
    (10.5, 1.0, 11.45, 2, None),  # would start after the window (first end + settle) closed
    (10.5, 1.0, 11.25, 2, 11.45),
    (24.0, 2.0, 24.0, 1, 24.1),  # a first read of 14 s under --settle 2: still a second snapshot
    (24.0, 2.0, 24.1 + 13.9, 2, None),  # …and when that one also took 14 s, the two are compared, no third
])
def test_next_snapshot_at(window, settle, last_end, taken, at):
    got = next_snapshot_at(window, settle, last_end, taken)
    assert got == at if at is None else math.isclose(got, at)


def test_settle_record_keys():
    assert settle_record(0.0, None, False, [(1.0, 1.1)]) is None
    assert settle_record(2.0, "indeterminate requests", True, [(1.0, 1.1), (1.2, 1.3)]) == {
        "requested": 2.0, "settled": True, "snapshots": [{"at": 1.0, "end": 1.1}, {"at": 1.2, "end": 1.3}],
        "why": "indeterminate requests"}


def _late_effect_shop(lands_after: float):
    """add_stock answers after ``lands_after`` s and only then takes effect (the client gave up long before)."""
    added: list[float] = []
    lock = threading.Lock()

    def behave(method: str, path: str):
        if path.startswith("/stock/add/"):
            with lock:
                added.append(time.monotonic())
            return 200, b"ok", lands_after
        if path.startswith("/stock/find/"):
            with lock:
                stock = sum(1 for t in added if time.monotonic() - t >= lands_after)
            return 200, f'{{"stock": {stock}, "price": 1}}'.encode(), 0
        return 200, b"{}", 0

    return behave


def test_final_read_waits_for_abandoned_requests_then_settles_by_default(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])])]])
    timeout = 0.3
    with TinyTarget(_late_effect_shop(lands_after=1.0)) as t:
        s = replay_trace(trace, out, target=t.url, timeout=timeout)
    r = load_results(out)
    assert s.complete and r.cols["outcome"].tolist() == [TIMEOUT]
    abandoned = float(r.cols["done"][0])
    final = r.final
    # The read waited for the abandoned add_stock to land: it sees its effect.
    assert final["items"]["1"]["stock"] == 1
    assert math.isclose(final["quiesce"]["until"], abandoned + timeout + QUIESCE_GRACE)
    assert final["quiesce"]["waited"] > 0
    settle = final["settle"]
    assert settle["why"] == "indeterminate requests" and settle["requested"] == DEFAULT_SETTLE
    assert settle["settled"] is True and len(settle["snapshots"]) == 2
    assert settle["snapshots"][0]["at"] >= final["quiesce"]["until"]
    assert final["read_at"] == settle["snapshots"][-1]["at"]
    kinds = [e["kind"] for e in r.events]
    assert kinds[-2:] == ["final_read", "final_read_done"]
    assert r.events[-1]["settled"] is True and r.events[-1]["snapshots"] == 2


def _changing_shop(changes: int | None):
    """find_item's stock grows with every read (for the first ``changes`` reads; None = forever)."""
    reads = {"n": 0}

    def behave(method: str, path: str):
        if path.startswith("/stock/find/") and "probe" not in path:
            reads["n"] += 1
            stock = reads["n"] if changes is None else min(reads["n"], changes)
            return 200, f'{{"stock": {stock}, "price": 1}}'.encode(), 0
        return 200, b"ok", 0

    return behave


def _gaps(settle: dict) -> list[float]:
    snaps = settle["snapshots"]
    return [b["at"] - a["end"] for a, b in zip(snaps, snaps[1:])]


def test_settle_snapshots_are_spaced_by_a_growing_gap_until_two_agree(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])])]])
    with TinyTarget(_changing_shop(changes=3)) as t:
        replay_trace(trace, out, target=t.url, settle=10.0)
    settle = load_results(out).final["settle"]
    assert settle["settled"] is True and settle["why"] == "--settle"
    gaps = _gaps(settle)
    assert len(gaps) == 3  # reads 1, 2, 3, 3: the last two agree
    for k, gap in enumerate(gaps):
        assert gap >= SETTLE_FIRST_GAP * 2 ** k
    assert load_results(out).final["items"]["1"]["stock"] == 3


def test_settle_that_runs_out_is_recorded_unsettled(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])])]])
    with TinyTarget(_changing_shop(changes=None)) as t:
        s = replay_trace(trace, out, target=t.url, settle=1.0)
    r = load_results(out)
    settle = r.final["settle"]
    assert s.complete and settle["settled"] is False and settle["requested"] == 1.0
    first, last = settle["snapshots"][0], settle["snapshots"][-1]
    assert len(settle["snapshots"]) >= 3 and last["at"] - first["end"] <= 1.0  # the window opens as the first ends
    assert r.events[-1]["kind"] == "final_read_done" and r.events[-1]["settled"] is False


def test_final_read_has_its_own_progress_bar(shop, tmp_path, capsys):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("batch_init_stock", [50, 10, 2])])]])
    replay_trace(trace, out, target=shop.target, progress=True)
    err = capsys.readouterr().err
    assert "final read" in err and "50/50" in err


def test_summary_rate_is_the_send_window_rate_and_max_is_shown(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(i * 0.01, [step("create_item", [1], bind=f"$i{i}"), step("find_item", ["$missing"])])
                         for i in range(30)]])
    s = replay_trace(trace, out, target=shop.target, speed=None, concurrency=4)
    r = load_results(out)
    c = r.cols
    sent = int((c["outcome"] != 5).sum())
    assert s.outcomes["skipped"] == 30 and s.sent == sent == 30  # skipped ones are not in the rate
    assert s.rate == pytest.approx(run_rate(sent, send_window(c["sent"], c["done"], c["outcome"])))
    text = format_summary(s)
    assert "scheduled max" in text and f"{s.rate:.1f} req/s achieved" in text


def _order_trace(path, n: int = 6) -> None:
    write_trace(path, [[(0.0, [step("create_user", [], bind=f"$u{i}"), step("create_item", [2], bind=f"$i{i}"),
                               step("create_order", [f"$u{i}"], bind=f"$o{i}"),
                               step("add_item", [f"$o{i}", f"$i{i}", 1])]) for i in range(n)]])


def test_summary_hints_at_the_other_dialect_when_an_operation_gets_404(shop_factory, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    _order_trace(trace)
    only_2023 = shop_factory(dialects="2023")
    s = replay_trace(trace, out, target=only_2023.target, dialect="2024", final_read=False)
    hint = s.dialect_hint
    assert hint is not None and hint.other == "2023" and hint.ops["add_item"] == (6, 6)
    assert "create_user" not in hint.ops  # answered alike in both dialects
    assert "may speak the other dialect: try --dialect 2023 (this run used 2024)" in format_summary(s)
    both = shop_factory()
    s = replay_trace(trace, out, target=both.target, dialect="2024", final_read=False)
    assert s.dialect_hint is None and s.outcomes["ok"] == 24
    assert "dialect" not in format_summary(s)


def test_summary_hint_names_2024_for_a_2023_replay_of_a_2024_shop(shop_factory, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    _order_trace(trace)
    only_2024 = shop_factory(dialects="2024")
    s = replay_trace(trace, out, target=only_2024.target, dialect="2023", final_read=False)
    assert s.dialect_hint.other == "2024" and "--dialect 2024" in format_summary(s)
    assert set(load_results(out).cols["outcome"].tolist()) >= {OK}
