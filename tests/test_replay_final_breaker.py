"""The final read's circuit breaker: a shop that dies before the final read ends it in seconds.

The breaker's counting is table-driven; the rest is real replays over loopback HTTP against
purpose-built shops (``verdict_shops.TinyShop``, ``replay_support.TinyTarget``) and the reference
shop, then ``check``: a dead or hung shop stops the read early and is INCONCLUSIVE with the reason;
a flaky or slow shop that answers is read whole, with the healthy shop's verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from replay_support import TinyTarget, write_trace
from verdict_shops import TinyShop

from wdmreplay.analysis import check_results
from wdmreplay.cli import main
from wdmreplay.replayer import format_summary, replay_trace
from wdmreplay.replayer.merge import merge_results
from wdmreplay.replayer.final import BREAKER_FAILURES, READ_ATTEMPTS, STOPPED_PREFIX, Breaker, stop_reason, stopped_of
from wdmreplay.replayer.summary import ReplaySummary
from wdmreplay.traces import load_results, step
from wdmreplay.traces.records import FinalRecord

N = 30  # orders (and items, users): 90 entities to read back, far more than the breaker's count
ENTITIES = 3 * N


def order_trace(path: Path, n: int = N) -> Path:
    """Phase 0: n items (price 3, stock 10), n users (credit 100); phase 1: n orders of 2 units, checked out."""
    p0 = [(0.0, [step("create_item", [3], bind=f"$s{i}.item"), step("add_stock", [f"$s{i}.item", 10]),
                 step("create_user", [], bind=f"$s{i}.user"), step("add_funds", [f"$s{i}.user", 100])])
          for i in range(n)]
    p1 = [(0.0, [step("create_order", [f"$s{i}.user"], bind=f"$s{n + i}.order"),
                 step("add_item", [f"$s{n + i}.order", f"$s{i}.item", 2]),
                 step("checkout", [f"$s{n + i}.order"])]) for i in range(n)]
    write_trace(path, [p0, p1])
    return path


def replay(tmp_path: Path, url: str, name: str, *, timeout: float = 5.0, settle: float | None = None) -> tuple[dict, Path]:
    out = tmp_path / f"{name}.wdmr"
    s = replay_trace(str(order_trace(tmp_path / "orders.wdmt")), str(out), target=url, speed=None,
                     timeout=timeout, concurrency=8, settle=settle)
    return s, out


def cli_check(path: Path, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["check", str(path)])
    out = capsys.readouterr()
    assert out.err == ""
    return e.value.code, out.out


# --- the count: pure ---------------------------------------------------------------------------

K = 4


@pytest.mark.parametrize("events, tripped", [
    (["refused"] * K, "refused"),
    (["refused"] * (K - 1), None),
    (["refused"] * (K - 1) + ["answer"] + ["refused"] * (K - 1), None),  # an answer in between: no run of K
    (["refused"] * (K - 1) + ["timeout"] * (K - 1), None),  # a different kind starts a new run
    (["timeout"] * (K - 1) + [None] + ["timeout"], "timeout"),  # a failure of no kind neither counts nor breaks
    (["answer", "reset", "reset", "answer"] * 5, None),  # a flaky shop that answers
    (["timeout"] * K + ["answer"], "timeout"),  # once tripped, it stays tripped (the reads have stopped)
])
def test_breaker_trips_after_k_failures_of_one_kind_in_a_row(events, tripped):
    b = Breaker(K)
    for e in events:
        b.answered() if e == "answer" else b.failed(e)
    assert b.tripped == (None if tripped is None else stop_reason(K, tripped))


def test_stopped_of_counts_the_reads_the_breaker_left_unread():
    why = stop_reason(8, "connection refused")
    assert why.startswith("final read stopped after 8 connection failures in a row (connection refused")
    assert why.endswith("the shop is not answering")
    missing = {"item": {"1": "timeout", "2": STOPPED_PREFIX + why}, "user": {"3": STOPPED_PREFIX + why},
               "order": {"4": "HTTP 404: no such order"}}
    assert stopped_of(missing) == {"why": [why], "not_read": {"item": 1, "user": 1}}
    assert stopped_of({"item": {"1": "timeout"}}) is None and stopped_of({}) is None


def test_final_record_keeps_stopped_and_older_files_read_without_it():
    why = stop_reason(8, "timeout")
    rec = FinalRecord.from_record({"items": {}, "users": {}, "orders": {}, "missing": {"item": {"1": STOPPED_PREFIX + why}},
                                   "settle": None, "stopped": {"why": [why], "not_read": {"item": 1}}})
    assert rec.stopped_why == (why,)
    again = FinalRecord.from_record(json.loads(json.dumps(rec.to_record())))
    assert again.stopped == {"why": [why], "not_read": {"item": 1}} and again.stopped_why == (why,)
    old = FinalRecord.from_record({"items": {}, "users": {}, "orders": {}, "missing": {}, "settle": None})
    assert old.stopped is None and old.stopped_why == () and "stopped" not in old.to_record()


# --- over real HTTP ----------------------------------------------------------------------------


def _assert_stopped_inconclusive(s: ReplaySummary, out: Path, capsys, kind: str, bound: float) -> None:
    fr = s.final_read
    assert fr.seconds < bound, fr
    why = stop_reason(BREAKER_FAILURES, kind)
    assert fr.stopped.why == (why,)
    # What the breaker left unread plus what it tried (BREAKER_FAILURES or more) is every entity.
    not_read = sum(fr.stopped.not_read.values())
    assert 0 < not_read <= ENTITIES - BREAKER_FAILURES
    assert why in format_summary(s)
    run = load_results(out, with_args=True)
    final = FinalRecord.from_record(run.final)
    assert final.stopped_why == (why,)
    assert sum(len(v) for v in final.missing.values()) == ENTITIES  # nothing was read, nothing is lost
    rep = check_results(run)
    assert rep.verdict.verdict == "INCONCLUSIVE", rep.verdict.reasons()
    assert not rep.anomalies  # unread is never lost data
    assert any(r.endswith(why) for r in rep.verdict.reasons()), rep.verdict.reasons()
    assert any("not read back" in r for r in rep.verdict.reasons())
    code, text = cli_check(out, capsys)
    assert code == 3 and why in text


def test_shop_killed_before_the_final_read_stops_it_in_seconds(tmp_path, capsys):
    with TinyShop("dies-at-final") as shop:
        s, out = replay(tmp_path, shop.url, "killed", timeout=5.0)
    assert s.complete and s.outcomes["ok"] == s.requests  # the run itself was answered in full
    _assert_stopped_inconclusive(s, out, capsys, "connection refused", bound=10.0)
    assert s.final_read.snapshots == 1


def test_shop_that_accepts_and_never_answers_stops_the_final_read_after_a_few_timeouts(tmp_path, capsys):
    # Without the breaker: 90 reads x 3 attempts x 1 s over 8 connections, about 34 s.
    with TinyShop("hangs-at-final") as shop:
        s, out = replay(tmp_path, shop.url, "hung", timeout=1.0, settle=5.0)
    assert s.complete and s.outcomes["ok"] == s.requests
    _assert_stopped_inconclusive(s, out, capsys, "timeout", bound=10.0)
    # One snapshot although --settle asked for more: a second could only repeat the timeouts (answered_any).
    assert len(load_results(out).final["settle"]["snapshots"]) == 1 and s.final_read.snapshots == 1


def _healthy_verdict(tmp_path: Path) -> tuple[str, dict]:
    (tmp_path / "healthy").mkdir()
    with TinyShop("correct") as shop:
        _, out = replay(tmp_path / "healthy", shop.url, "healthy")
    rep = check_results(load_results(out, with_args=True))
    return rep.verdict.verdict, rep.consistency.checked


class FlakyFinal:
    """A TinyShop's answers, but its final read misbehaves: each entity's first ``drops`` finds are dropped
    unanswered (connection closed), and every ``slow_every``-th find answers after ``delay`` seconds."""

    def __init__(self, shop: TinyShop, drops: int, slow_every: int = 0, delay: float = 0.0):
        self.shop, self.drops, self.slow_every, self.delay = shop, drops, slow_every, delay
        self.finds: dict[str, int] = {}
        self.n = 0

    def __call__(self, method: str, path: str) -> tuple[int, bytes, float]:
        delay = 0.0
        if "wdm-replay-probe" in path:
            return 404, b"probe", 0.0
        if "/find" in path:
            self.n += 1
            self.finds[path] = self.finds.get(path, 0) + 1
            if self.finds[path] <= self.drops:
                return -1, b"", 0.0
            if self.slow_every and self.n % self.slow_every == 0:
                delay = self.delay
        status, body = self.shop._answer(method, [p for p in path.split("/") if p])
        return status, (json.dumps(body) if isinstance(body, dict) else str(body)).encode(), delay


@pytest.mark.parametrize("drops, slow_every, delay", [
    (READ_ATTEMPTS - 1, 0, 0.0),  # every read fails twice, then answers: 16 failed attempts in a row at 8 connections
    (0, 3, 0.4),  # every 3rd read answers late (still within --timeout)
    (1, 3, 0.4),
])
def test_flaky_or_slow_shop_that_answers_is_read_whole_with_the_healthy_verdict(tmp_path, drops, slow_every, delay):
    healthy, checked = _healthy_verdict(tmp_path)
    assert healthy == "CLEAN" and checked == {"items": N, "users": N, "orders": N}
    behaviour = FlakyFinal(TinyShop("correct"), drops, slow_every, delay)
    with TinyTarget(behaviour) as t:
        s, out = replay(tmp_path, t.url, "flaky", timeout=2.0)
    assert s.final_read.stopped is None
    assert "final read stopped" not in format_summary(s)
    assert behaviour.n >= ENTITIES * (drops + 1)  # the drops really happened
    run = load_results(out, with_args=True)
    assert FinalRecord.from_record(run.final).stopped is None and not run.final.get("missing")
    rep = check_results(run)
    assert rep.verdict.verdict == healthy, rep.verdict.reasons()
    assert rep.consistency.checked == checked


def test_reference_shop_final_read_is_unchanged(shop, tmp_path):
    t0 = time.monotonic()
    s, out = replay(tmp_path, shop.url, "reference")
    run = load_results(out, with_args=True)
    assert s.final_read.stopped is None and "stopped" not in run.final
    assert not run.final.get("missing")
    rep = check_results(run)
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    assert rep.consistency.checked == {"items": N, "users": N, "orders": N}
    assert time.monotonic() - t0 < 60


def _merged_shards(tmp_path: Path, behaviour, name: str) -> tuple[list[Path], Path]:
    trace = order_trace(tmp_path / "orders.wdmt")
    outs = [tmp_path / f"{name}-{i}.wdmr" for i in range(2)]
    with TinyTarget(behaviour) as t:
        for i, out in enumerate(outs):
            replay_trace(str(trace), str(out), target=t.url, speed=None, timeout=2.0, concurrency=8, shard=(i, 2))
    merged = tmp_path / f"{name}.wdmr"
    merge_results(outs, merged)
    return outs, merged


@pytest.mark.parametrize("drops", [0, 10**6])
def test_merged_shards_keep_why_the_final_read_stopped(tmp_path, capsys, drops):
    # drops=10**6: every find is dropped, so each shard's breaker stops its read; 0: a shop that answers.
    outs, merged = _merged_shards(tmp_path, FlakyFinal(TinyShop("correct"), drops), "shards")
    shard_why = {w for o in outs for w in FinalRecord.from_record(load_results(o).final).stopped_why}
    run = load_results(merged, with_args=True)
    final = FinalRecord.from_record(run.final)
    if not drops:
        assert not shard_why and final.stopped is None and "stopped" not in run.final
        return
    assert shard_why and final.stopped_why == tuple(sorted(shard_why))
    unread = sum(1 for v in final.missing.values() for why in v.values() if STOPPED_PREFIX in why)
    assert sum(final.stopped.not_read.values()) == unread > 0
    rep = check_results(run)
    assert rep.verdict.verdict == "INCONCLUSIVE" and not rep.anomalies
    assert any(r.endswith(w) for w in shard_why for r in rep.verdict.reasons()), rep.verdict.reasons()
    code, text = cli_check(merged, capsys)
    assert code == 3 and all(w in text for w in shard_why)
