"""The fault machinery's record when things go wrong: a replay killed mid-fault, a failing action.

A replay SIGKILLed while a fault is active keeps the window's start (``fault_start``), so the
partial file shows an open window; a failed ``do`` or ``undo`` makes ``check`` INCONCLUSIVE (the
fault did not happen as planned, or the shop may not have been restored). Real HTTP against the
in-process reference shop; the replay runs as a subprocess where it must be killed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from fault_support import _env, wait_for, write_schedule
from wdmreplay.analysis import build_report, render_text
from wdmreplay.analysis.check import check_results
from wdmreplay.analysis.recovery import analyze_faults
from wdmreplay.workloads.generate import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "stress.wdmt"
    generate("stress", path, seed=5, rate=30, duration=3)
    return path


def _loaded(path):
    try:
        return load_results(path)
    except Exception:  # not yet written far enough to load: keep waiting
        return None


def _window_and_rows_written(path) -> bool:
    """Whether the partial file holds the window's start and a request sent after it (a flush may hold only
    earlier ones: killed then, nothing would count with the fault)."""
    run = _loaded(path)
    if run is None or run.n == 0:
        return False
    starts = [e["at"] for e in run.events if e["kind"] == "fault_start"]
    return bool(starts) and bool((run.cols["intended"] >= min(starts)).any())


def test_replay_killed_mid_fault_keeps_the_open_window(tmp_path, shop, trace):
    did = tmp_path / "did"
    sched = write_schedule(tmp_path / "faults.json", [
        # as long as the 3 s run allows (a fault ends within twice the run): killed long before the undo
        {"name": "long", "at": 0.3, "for": 5.6, "do": f"touch {did}", "undo": f"touch {tmp_path / 'undone'}"}])
    out = tmp_path / "r.wdmr"
    part = tmp_path / "r.wdmr.part"  # a killed writer leaves its file under this name
    p = subprocess.Popen([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url,
                          "--faults", str(sched), "-q", "-o", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert wait_for(did.exists, timeout=120)
        # the window's start reaches the file while the fault is on, long before any undo
        assert wait_for(lambda: _window_and_rows_written(part), timeout=60)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    assert not (tmp_path / "undone").exists()  # killed: no undo ran, nothing closed the window
    run = load_results(part, with_args=True)
    assert not run.complete
    kinds = [e["kind"] for e in run.events]
    assert "fault_start" in kinds and "fault" not in kinds and "fault_undo" not in kinds
    (w,) = analyze_faults(run).windows
    assert w.name == "long" and w.end == float("inf") and 0.3 <= w.start < 30
    text = render_text(build_report(run))
    assert "long: window" in text and "open to the run's end (no undo recorded)" in text
    # as a user reads it: `report` on the partial file
    rep = subprocess.run([sys.executable, "-m", "wdmreplay", "report", str(part)], capture_output=True, text=True,
                         timeout=120, env=_env())
    assert rep.returncode == 0 and "open to the run's end (no undo recorded)" in rep.stdout, rep.stderr
    rep = check_results(run)
    assert rep.verdict.verdict != "CLEAN"
    assert any("fault long: no undo recorded" in r for r in rep.verdict.sections[3].reasons)
    # the requests after the window's start are counted with the fault, not against availability
    assert rep.availability.overall.in_fault > 0


@pytest.mark.parametrize("which, action, expect", [
    ("undo", "echo cannot start it >&2; exit 3", "fault f's undo failed (exit 3): the shop may not have been restored"),
    ("do", "exit 7", "fault f's do failed (exit 7): the fault did not happen as planned"),
    ("undo", "sleep 30", "fault f's undo failed (timed out): the shop may not have been restored"),
])
def test_a_failed_action_makes_check_inconclusive(tmp_path, shop, trace, which, action, expect):
    fault = {"name": "f", "at": 0.2, "for": 0.3, "do": "true", "undo": "true", "timeout": 1}
    fault[which] = action
    sched = write_schedule(tmp_path / "faults.json", [fault])
    out = tmp_path / "r.wdmr"
    summary = replay_trace(str(trace), str(out), target=shop.target, speed=4.0, faults=str(sched))
    assert summary.complete and summary.faults.failures
    run = load_results(out, with_args=True)
    rep = check_results(run)
    # nothing else is wrong (the shop was never touched): the failed action alone decides
    assert rep.verdict.verdict == "INCONCLUSIVE" and rep.verdict.decided_by == ("coverage",), rep.verdict
    assert expect in rep.verdict.sections[3].reasons
    # the same with the action fixed is CLEAN: the finding is the action's, not the run's
    fault[which] = "true"
    write_schedule(tmp_path / "faults.json", [fault])
    ok = tmp_path / "ok.wdmr"
    replay_trace(str(trace), str(ok), target=shop.target, speed=4.0, faults=str(sched))
    assert check_results(load_results(ok, with_args=True)).verdict.verdict == "CLEAN"


def test_cli_check_exits_3_naming_the_failed_undo(tmp_path, shop, trace):
    sched = write_schedule(tmp_path / "faults.json", [
        {"name": "kill-stock", "at": 0.2, "for": 0.2, "do": "true", "undo": "exit 5"}])
    out = tmp_path / "r.wdmr"
    cmd = [sys.executable, "-m", "wdmreplay"]
    r = subprocess.run(cmd + ["replay", str(trace), "--url", shop.url, "--speed", "4", "--faults", str(sched),
                              "-q", "-o", str(out)], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr  # the run itself is complete: replay's exit code is the run's
    assert "wdm-replay: fault kill-stock: undo failed (exit 5)" in r.stderr
    c = subprocess.run(cmd + ["check", str(out)], capture_output=True, text=True, timeout=120, env=_env())
    assert c.returncode == 3 and c.stderr == "", c.stdout + c.stderr
    assert "fault kill-stock's undo failed (exit 5): the shop may not have been restored" in c.stdout
    j = json.loads(subprocess.run(cmd + ["check", str(out), "--json"], capture_output=True, text=True,
                                  timeout=120, env=_env()).stdout)
    assert j["verdict"] == "INCONCLUSIVE"
