"""replay --faults over real processes on loopback: a shop subprocess killed -9 and restarted mid-run.

The in-memory reference shop loses its state when killed, so consistency is not judged here (the
durable shop of issue 13 item 2 makes that possible): these tests cover the fault machinery, the
events in the results, availability with the window counted apart, and the measured recovery.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from fault_support import ProcessShop, _env, wait_for, write_schedule
from wdmreplay.analysis import build_report, render_text
from wdmreplay.analysis.check import check_results
from wdmreplay.analysis.recovery import analyze_faults
from wdmreplay.workloads.generate import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results


@pytest.fixture
def process_shop(tmp_path):
    shop = ProcessShop(tmp_path)
    shop.start()
    yield shop
    shop.stop()


@pytest.fixture(scope="module")
def stress_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "stress.wdmt"
    generate("stress", path, seed=7, rate=40, duration=6)
    return path


def _kill_restart(shop: ProcessShop, at: float = 1.5, duration: float = 1.0) -> dict:
    return {"name": "kill-shop", "at": at, "for": duration, "do": shop.kill_command(), "undo": shop.start_command(wait=False)}


def test_kill_and_restart_is_recorded_and_recovery_measured(tmp_path, process_shop, stress_trace, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    sched = write_schedule(tmp_path / "faults.json", [_kill_restart(process_shop)])
    out = tmp_path / "r.wdmr"
    summary = replay_trace(str(stress_trace), str(out), target=process_shop.url, speed=1.0, timeout=5.0,
                           faults=str(sched), settle=1.0)
    assert summary.complete, summary
    assert summary.faults.failures == () and set(summary.faults.results["kill-shop"].ran()) == {"do", "undo"}
    run = load_results(out, with_args=True)
    kinds = [e["kind"] for e in run.events]
    assert kinds.count("fault_do") == 1 and kinds.count("fault_undo") == 1 and kinds.count("fault") == 1
    do = next(e for e in run.events if e["kind"] == "fault_do")
    undo = next(e for e in run.events if e["kind"] == "fault_undo")
    window = next(e for e in run.events if e["kind"] == "fault")
    assert do["exit"] == 0 and undo["exit"] == 0 and do["ok"] and undo["ok"]
    assert window["at"] == do["at"] and window["end"] == undo["end"] and window["name"] == "kill-shop"
    assert 1.5 <= do["at"] < 3.0  # on the run's clock, not before its time
    assert undo["at"] >= do["at"] + 1.0  # `for` seconds after do began
    # The shop really was down: requests in the window failed to connect; after it, they succeed.
    fa = analyze_faults(run)
    (w,) = fa.windows
    assert w.requests > 0 and w.unanswered > 0 and w.error_share is not None and w.error_share > 0
    assert w.first_success_s is not None and w.first_success_s >= 0
    assert w.recovery_s is not None and 0 <= w.recovery_s < 4.5
    # availability counts the window's requests apart
    rep = check_results(run)
    assert rep.availability.overall.in_fault > 0
    assert rep.availability.windows[0].name == "kill-shop"
    # report: text, JSON and the window's numbers
    data = build_report(run)
    assert data.faults.windows[0].name == "kill-shop"
    text = render_text(data)
    assert "kill-shop: window" in text and "recovery" in text and "*" in text
    # the undo returns before the restarted shop listens: recovery takes the shop's start-up time
    assert w.first_success_s > 0 and w.recovery_s >= w.first_success_s
    # check --max-recovery: a tiny bound is NOT CLEAN by availability, a generous one adds no finding
    tiny = check_results(run, max_recovery=0.001)
    generous = check_results(run, max_recovery=60.0)
    assert tiny.verdict.verdict == "NOT CLEAN" and "availability" in tiny.verdict.decided_by
    assert any("recovery took" in r for r in tiny.verdict.sections[2].reasons)
    assert not any("recovery" in r for r in generous.verdict.sections[2].reasons)
    assert generous.verdict.sections[2].status == rep.verdict.sections[2].status


def test_cli_check_max_recovery_and_report_json(tmp_path, process_shop, stress_trace):
    sched = write_schedule(tmp_path / "faults.json", [_kill_restart(process_shop, at=1.0, duration=1.5)])
    out = tmp_path / "r.wdmr"
    cmd = [sys.executable, "-m", "wdmreplay"]
    r = subprocess.run(cmd + ["replay", str(stress_trace), "--url", process_shop.url, "--faults", str(sched),
                              "--timeout", "5", "--settle", "1", "-o", str(out)],
                       capture_output=True, text=True, timeout=180, env=_env())
    assert r.returncode == 0, r.stderr
    assert "fault kill-shop:" in r.stdout and "(ok)" in r.stdout
    rep = subprocess.run(cmd + ["report", str(out), "--format", "json"], capture_output=True, text=True,
                         timeout=120, env=_env())
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    (w,) = data["faults"]["windows"]
    assert w["recovery_s"] is not None and w["recovery_s"] > 0
    assert data["check"]["availability"]["overall"]["in_fault"] > 0
    slow = subprocess.run(cmd + ["check", str(out), "--max-recovery", "0.001"], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert slow.returncode == 1 and "recovery took" in slow.stdout and slow.stderr == ""
    generous = subprocess.run(cmd + ["check", str(out), "--max-recovery", "60", "--json"], capture_output=True,
                              text=True, timeout=120, env=_env())
    verdict = json.loads(generous.stdout)
    assert not any("recovery" in x for x in verdict["sections"]["availability"]["reasons"])
    bad = subprocess.run(cmd + ["check", str(out), "--max-recovery", "nan"], capture_output=True, text=True,
                         timeout=60, env=_env())
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_failing_do_is_reported(tmp_path, process_shop, stress_trace):
    sched = write_schedule(tmp_path / "faults.json", [
        {"name": "broken", "at": 0.5, "for": 0.5, "do": "echo no such container >&2; exit 3", "undo": ["true"]}])
    out = tmp_path / "r.wdmr"
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(stress_trace), "--url", process_shop.url,
                        "--faults", str(sched), "--speed", "4", "-o", str(out)],
                       capture_output=True, text=True, timeout=180, env=_env())
    assert r.returncode == 0, r.stderr
    assert "wdm-replay: fault broken: do failed (exit 3): no such container" in r.stderr
    assert "fault broken:" in r.stdout and "FAILED" in r.stdout
    run = load_results(out)
    do = next(e for e in run.events if e["kind"] == "fault_do")
    assert do["exit"] == 3 and not do["ok"] and "no such container" in do["output"]
    text = render_text(build_report(run))
    assert "FAILED do of broken (exit 3)" in text


def test_fault_not_due_before_the_end_is_skipped(tmp_path, process_shop, stress_trace):
    sched = write_schedule(tmp_path / "faults.json", [
        # Within the trace's 6 s schedule, but after the last phase of a run at max speed (~1 s).
        {"name": "late", "at": 5.9, "for": 0.1, "do": f"touch {tmp_path / 'did-run'}", "undo": "true"}])
    out = tmp_path / "r.wdmr"
    summary = replay_trace(str(stress_trace), str(out), target=process_shop.url, speed=None, faults=str(sched))
    assert summary.faults.skipped == ("late",)
    run = load_results(out)
    assert [e["name"] for e in run.events if e["kind"] == "fault_skipped"] == ["late"]
    assert not any(e["kind"] == "fault" for e in run.events)
    assert not (tmp_path / "did-run").exists()


def test_ctrl_c_during_a_fault_runs_the_undo(tmp_path, process_shop, stress_trace):
    marker = tmp_path / "undone"
    sched = write_schedule(tmp_path / "faults.json", [
        {"name": "long", "at": 0.2, "for": 11, "do": f"echo down > {tmp_path / 'done'}",
         "undo": f"echo up > {marker}"}])
    out = tmp_path / "r.wdmr"
    p = subprocess.Popen([sys.executable, "-m", "wdmreplay", "replay", str(stress_trace), "--url", process_shop.url,
                          "--faults", str(sched), "-q", "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert wait_for(lambda: (tmp_path / "done").exists(), timeout=120)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert marker.read_text().strip() == "up"
    run = load_results(out)
    assert not run.complete
    kinds = [e["kind"] for e in run.events]
    assert "fault_undo" in kinds
    window = next(e for e in run.events if e["kind"] == "fault")
    undo = next(e for e in run.events if e["kind"] == "fault_undo")
    assert undo["early"] is True and window["end"] < 11


def test_bad_schedule_is_one_line_before_anything_is_sent(tmp_path, process_shop, stress_trace):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"faults": [{"name": "x", "at": -1, "for": 1, "do": "true", "undo": "true"}]}))
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(stress_trace), "--url", process_shop.url,
                        "--faults", str(bad), "-o", str(tmp_path / "r.wdmr")],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "'at' must be at least 0" in r.stderr
    assert not (tmp_path / "r.wdmr").exists()
