"""The one replay driver as a user runs it (real subprocesses, real loopback HTTP): signals, flushing.

Every test runs ``sys.executable -m wdmreplay replay …`` against the reference shop (``ShopThread``)
or a purpose-built target, sends real signals and measures the time from signal to exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay_support import TinyTarget, counting_shop, write_trace
from wdmreplay.traces import load_results, step

# The promise is 1 s from signal to exit; a loaded 2-core test machine gets this much on top.
SIGNAL_BUDGET = 1.0
LOAD_SLACK = 0.5


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wdmreplay", "replay", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _signal_and_time(proc: subprocess.Popen, sig: int) -> tuple[float, str]:
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return time.monotonic() - started, err


def _raw_records(path: Path) -> list[dict]:
    """Every whole record of a results file still being written (under its ``.part`` name, no trailer)."""
    from wdmreplay.traces.results import RESULTS_FORMAT, RESULTS_VERSION
    from wdmreplay.traces.stream import RecordReader, part_path

    with RecordReader(part_path(path), RESULTS_FORMAT, RESULTS_VERSION, partial_ok=True) as r:
        return list(r)


def _sleepy_trace(path: Path, phases: int = 1) -> None:
    # Per phase: one session now, one a second later — at --speed 0.0001 that is 10,000 s away.
    write_trace(path, [[(0.0, [step("create_user", [], bind=f"$p{p}a")]),
                        (1.0, [step("create_user", [], bind=f"$p{p}b")])] for p in range(phases)])


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)])
def test_signal_stops_a_very_slow_schedule_within_a_second(shop, tmp_path, sig, workers):
    _sleepy_trace(tmp_path / "t.wdmt")
    proc = _start(["t.wdmt", "--url", shop.url, "--speed", "0.0001", "--workers", str(workers)], tmp_path)
    _wait_for(lambda: shop.stats()["by_op"].get("create_user", 0) >= 1)
    time.sleep(0.3)  # the replayer is now asleep until the next session, 10,000 s away
    elapsed, err = _signal_and_time(proc, sig)
    assert proc.returncode == 130, err
    assert elapsed < SIGNAL_BUDGET + LOAD_SLACK, f"{elapsed:.2f} s from signal to exit"
    assert "PARTIAL (interrupted)" in err
    r = load_results(tmp_path / "t.wdmr")
    assert not r.complete and r.n == 1 and r.final is None
    assert [e["kind"] for e in r.events][-1] == "interrupt"


def test_signal_in_a_later_phase_stops_within_a_second(shop, tmp_path):
    _sleepy_trace(tmp_path / "t.wdmt", phases=2)
    # Phase 0's second session is due at 1 s / 0.5 = 2 s; the signal comes while phase 1 sleeps.
    proc = _start(["t.wdmt", "--url", shop.url, "--speed", "0.5"], tmp_path)
    _wait_for(lambda: shop.stats()["by_op"].get("create_user", 0) >= 3)
    time.sleep(0.3)
    elapsed, err = _signal_and_time(proc, signal.SIGTERM)
    assert proc.returncode == 130 and elapsed < SIGNAL_BUDGET + LOAD_SLACK, (elapsed, err)
    r = load_results(tmp_path / "t.wdmr")
    assert r.n == 3 and [e["kind"] for e in r.events] == ["phase_start", "phase_end", "phase_start", "phase_end",
                                                          "interrupt"]
    assert r.bindings.keys() == {"$p0a", "$p0b", "$p1a"}


def test_signal_during_the_final_read_stops_within_a_second(tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("add_stock", ["1", 1])])]])
    hang_find = lambda m, p: (200, b"{}", 30.0 if "/find/" in p and "probe" not in p else 0)  # noqa: E731
    with TinyTarget(hang_find) as t:
        proc = _start(["t.wdmt", "--url", t.url, "--timeout", "60"], tmp_path)
        _wait_for(lambda: t.sent("/stock/find/1") >= 1)
        elapsed, err = _signal_and_time(proc, signal.SIGINT)
    assert proc.returncode == 130 and elapsed < SIGNAL_BUDGET + LOAD_SLACK, (elapsed, err)
    r = load_results(tmp_path / "t.wdmr")
    assert r.n == 1 and r.final is None
    assert r.events[-1]["kind"] == "interrupt" and "final read" in r.events[-1]["reason"]


def test_second_signal_stops_at_once_and_the_file_stays_readable(tmp_path):
    # Requests that hang: after the first Ctrl-C they would get the stop grace; the second ends it now.
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("add_stock", ["1", 1])]) for _ in range(4)]])
    hang = lambda m, p: (200, b"{}", 30.0 if "/add/" in p else 0)  # noqa: E731
    with TinyTarget(hang) as t:
        proc = _start(["t.wdmt", "--url", t.url, "--timeout", "60", "--speed", "max"], tmp_path)
        _wait_for(lambda: t.sent("/stock/add/") >= 4)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
    assert proc.returncode == 130 and elapsed < SIGNAL_BUDGET + LOAD_SLACK, (elapsed, err)
    r = load_results(tmp_path / "t.wdmr")
    assert not r.complete and r.trailer["reason"] == "interrupted"
    assert r.events[-1] == {**r.events[-1], "kind": "interrupt", "reason": "second signal: stopped at once"}


def test_rows_and_bindings_reach_the_file_within_a_second_at_a_slow_rate(shop, tmp_path):
    # Five sessions per second: far from the 65,536 rows of a full chunk.
    write_trace(tmp_path / "t.wdmt", [[(i * 0.2, [step("create_user", [], bind=f"$u{i}")]) for i in range(200)]])
    proc = _start(["t.wdmt", "--url", shop.url], tmp_path)
    try:
        _wait_for(lambda: shop.stats()["by_op"].get("create_user", 0) >= 5)
        answered = shop.stats()["by_op"]["create_user"]
        time.sleep(1.0)  # every request answered a second ago must be in the file by now
        records = _raw_records(tmp_path / "t.wdmr")
    finally:
        proc.kill()  # no orderly stop: what is in the file is what a crash would leave
        proc.communicate(timeout=30)
    rows = sum(rec["n"] for rec in records if rec.get("t") == "requests")
    bound = {k for rec in records if rec.get("t") == "bindings" for k in rec["map"]}
    assert rows >= answered and len(bound) >= answered
    assert [rec["kind"] for rec in records if rec.get("t") == "event"] == ["phase_start"]


def test_killed_replay_leaves_its_rows_in_the_file(tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(i * 0.01, [step("add_stock", ["1", 1])]) for i in range(2000)]])
    with TinyTarget(counting_shop()) as t:
        proc = _start(["t.wdmt", "--url", t.url, "--workers", "2"], tmp_path)
        _wait_for(lambda: t.sent("/stock/add/") >= 100)
        time.sleep(1.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        sent_before = t.sent("/stock/add/")
    rows = sum(rec["n"] for rec in _raw_records(tmp_path / "t.wdmr") if rec.get("t") == "requests")
    assert 100 <= rows <= sent_before


def test_one_worker_is_a_worker_process_like_n(tmp_path):
    # The one driver: with --workers 1 the requests come from a child of the replaying process too.
    from wdmreplay.replayer import replay_trace

    def children() -> set[int]:
        found: set[int] = set()
        for task in Path("/proc/self/task").iterdir():
            try:
                found.update(int(p) for p in (task / "children").read_text().split())
            except OSError:
                pass
        return found

    seen: list[set[int]] = []
    shop = counting_shop()

    def behave(method: str, path: str):
        if path.startswith("/stock/add/"):
            seen.append(children())
        return shop(method, path)

    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("add_stock", ["1", 1])]) for _ in range(3)]])
    with TinyTarget(behave) as t:
        s = replay_trace(tmp_path / "t.wdmt", tmp_path / "t.wdmr", target=t.url, workers=1, final_read=False)
    assert s.complete and len(seen) == 3
    assert all(len(c) == 1 for c in seen) and len(set.union(*seen)) == 1  # one worker, the same for all
    assert not children()  # and it is gone
