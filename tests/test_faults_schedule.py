"""Fault schedules: parsing and validation (table-driven), and the action runner on real processes."""

from __future__ import annotations

import json
import shlex
import time

import numpy as np
import pytest

from wdmreplay.analysis.recovery import action_findings, analyze_faults, recovery_findings
from wdmreplay.replayer.fault_schedule import (OUTPUT_TAIL, FaultRunner, FaultScheduleError, load_schedule, parse_schedule,
                                       run_action)
from wdmreplay.traces.results import COLUMNS, CONN_ERROR, EXPECT_CODES, OK, ResultsWriter, load_results, results_header

GOOD = {"name": "kill-stock", "at": 20, "for": 10, "do": "docker compose kill stock", "undo": ["docker", "compose", "start", "stock"]}


def test_a_valid_schedule_parses_to_faults_in_start_order():
    faults = parse_schedule({"faults": [dict(GOOD, name="b", at=5), dict(GOOD, name="a", at=1, timeout=3)]})
    assert [f.name for f in faults] == ["a", "b"]
    a = faults[0]
    assert (a.at, a.duration, a.timeout) == (1.0, 10.0, 3.0)
    assert a.do == "docker compose kill stock" and a.undo == ("docker", "compose", "start", "stock")


def test_an_argv_action_is_recorded_as_the_shell_command_that_runs_it():
    fault = parse_schedule({"faults": [dict(GOOD, do=["sh", "-c", "kill $(cat pid); sleep 1"], undo=["true"])]})[0]
    rec = fault.to_record()
    assert rec["do"] == "sh -c 'kill $(cat pid); sleep 1'" and rec["undo"] == "true"
    assert shlex.split(rec["do"]) == list(fault.do)  # not "sh -c kill $(cat pid); sleep 1": two commands


@pytest.mark.parametrize("doc, message", [
    ([], "expected {\"faults\""),
    ({"faults": []}, "has no faults"),
    ({"faults": [{k: v for k, v in GOOD.items() if k != "undo"}]}, "missing 'undo'"),
    ({"faults": [{k: v for k, v in GOOD.items() if k not in ("at", "for")}]}, "missing 'at', 'for'"),
    ({"faults": [dict(GOOD, at=-1)]}, "'at' must be at least 0"),
    ({"faults": [dict(GOOD, **{"for": float("inf")})]}, "'for' must be a finite number"),
    ({"faults": [dict(GOOD, at="soon")]}, "'at' must be a finite number"),
    ({"faults": [dict(GOOD, at=True)]}, "'at' must be a finite number"),
    ({"faults": [dict(GOOD, timeout=0)]}, "'timeout' must be positive"),
    ({"faults": [dict(GOOD, do="  ")]}, "'do' is an empty command"),
    ({"faults": [dict(GOOD, undo=[])]}, "'undo' must be a shell command line or a non-empty list"),
    ({"faults": [dict(GOOD, undo=["kill", 9])]}, "'undo' must be a shell command line"),
    ({"faults": [dict(GOOD, name="")]}, "name must be a non-empty string"),
    ({"faults": [GOOD, dict(GOOD, at=50)]}, "fault 'kill-stock': name used twice"),
    ({"faults": [dict(GOOD, every=3)]}, "unknown key(s) 'every'"),
    ({"faults": ["kill"]}, "faults[0]: must be an object"),
])
def test_invalid_schedules_are_one_line_errors(doc, message):
    with pytest.raises(FaultScheduleError) as e:
        parse_schedule(doc, "f.json")
    assert message in str(e.value) and str(e.value).startswith("f.json") and "\n" not in str(e.value)


def test_load_schedule_reads_json_and_reports_bad_files(tmp_path):
    p = tmp_path / "f.json"
    p.write_text(json.dumps({"faults": [GOOD]}))
    assert load_schedule(str(p))[0].name == "kill-stock"
    p.write_text("{not json")
    with pytest.raises(FaultScheduleError, match="not valid JSON"):
        load_schedule(str(p))
    p.write_bytes(b'{"faults": [{"name": "\xff"}]}')  # not UTF-8: said so, not read as UTF-16
    with pytest.raises(FaultScheduleError, match="not valid JSON: 'utf-8' codec can't decode"):
        load_schedule(str(p))
    with pytest.raises(FaultScheduleError, match="cannot read"):
        load_schedule(str(tmp_path / "missing.json"))


def test_load_schedule_reads_toml(tmp_path):  # tomllib, or tomli on Python 3.10
    p = tmp_path / "f.toml"
    p.write_text('[[faults]]\nname = "k"\nat = 1\nfor = 2\ndo = "true"\nundo = ["true"]\n')
    (f,) = load_schedule(str(p))
    assert (f.name, f.at, f.duration, f.undo) == ("k", 1.0, 2.0, ("true",))
    for bad in (b"[[faults]\n", b'[[faults]]\nname = "k\xff"\n'):  # not TOML; not UTF-8
        p.write_bytes(bad)
        with pytest.raises(FaultScheduleError, match="not valid TOML"):
            load_schedule(str(p))


def test_run_action_records_exit_code_and_a_bounded_output_tail():
    r = run_action(f"printf '%0{OUTPUT_TAIL * 2}d' 0; echo END; exit 7", 30, time.monotonic)
    assert r.exit_code == 7 and not r.ok and not r.timed_out
    assert len(r.output.encode()) <= OUTPUT_TAIL and r.output.rstrip().endswith("END")
    assert r.end >= r.start
    assert run_action(["true"], 30, time.monotonic).ok
    missing = run_action(["/nonexistent/program"], 30, time.monotonic)
    assert missing.exit_code is None and not missing.ok and "cannot start" in missing.error


def test_run_action_kills_an_action_past_its_timeout():
    t0 = time.monotonic()
    r = run_action("sleep 30", 0.3, time.monotonic)
    assert r.timed_out and not r.ok and time.monotonic() - t0 < 20


def test_an_action_leaving_a_process_behind_does_not_block():
    # A restarted server keeps running after its undo returns: the runner must not wait for it.
    t0 = time.monotonic()
    r = run_action("sleep 30 & echo started", 10, time.monotonic)
    assert r.ok and "started" in r.output and time.monotonic() - t0 < 10


def test_runner_stop_runs_the_pending_undo_at_once(tmp_path):
    mark = tmp_path / "undone"
    runner = FaultRunner(parse_schedule({"faults": [
        {"name": "long", "at": 0, "for": 3600, "do": "true", "undo": f"touch {mark}"},
        {"name": "later", "at": 3600, "for": 1, "do": "true", "undo": "true"}]}))
    t0 = time.monotonic()
    runner.start(lambda: time.monotonic() - t0)
    deadline = time.monotonic() + 30
    while "do" not in runner.results.get("long", {}) and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    assert mark.exists() and not runner.busy()
    events: list[tuple] = []
    runner.drain(lambda at, kind, **info: events.append((kind, info)))
    kinds = [k for k, _ in events]
    assert kinds.count("fault_do") == 1 and kinds.count("fault_undo") == 1 and "fault_skipped" in kinds
    window = next(info for k, info in events if k == "fault")
    undo = next(info for k, info in events if k == "fault_undo")
    assert undo["early"] is True and window["end"] < 3600 and set(window) == {"name", "end"}


def _run_file(path, rows: list[tuple[float, float, int]], events: list[tuple[float, str, dict]]):
    """A results file of ``rows`` (sent time, done time, outcome) and ``events`` (analysis tests only)."""
    w = ResultsWriter(path, results_header(trace={"header": {}}))
    n = len(rows)
    cols = {name: np.zeros(n, dtype=dt) for name, dt, _ in COLUMNS}
    cols["sid"] = np.arange(n, dtype="<u4")
    cols["expect"][:] = EXPECT_CODES["ok"]
    cols["intended"] = np.array([r[0] for r in rows])
    cols["sent"] = np.array([r[0] for r in rows])
    cols["done"] = np.array([r[1] for r in rows])
    cols["outcome"] = np.array([r[2] for r in rows], dtype="<u1")
    w.write_requests(cols)
    for at, kind, info in events:
        w.write_event(at, kind, **info)
    w.close(complete=True, wall=1.0)
    return load_results(path)


def test_recovery_is_measured_from_the_window_end_to_the_baseline_rate(tmp_path):
    # 10 requests/s: answered before the fault, refused inside it and for 2 s after its end, then answered.
    rows = []
    for k in range(100):
        t = k / 10
        ok = t < 3.0 or t >= 7.0
        rows.append((t, t + 0.01, OK if ok else CONN_ERROR))
    run = _run_file(tmp_path / "r.wdmr", rows, [(3.0, "fault", {"name": "kill", "end": 5.0})])
    (w,) = analyze_faults(run).windows
    assert w.baseline == 1.0 and w.baseline_requests == 30
    assert w.requests == 21 and w.unanswered == 21 and w.error_share == 1.0
    assert w.first_success_s == pytest.approx(2.01, abs=1e-6)
    assert w.recovery_s == pytest.approx(2.0, abs=0.11)
    assert recovery_findings(analyze_faults(run), 1.0)[0].startswith("fault kill: recovery took 2.")
    assert recovery_findings(analyze_faults(run), 5.0) == []


def test_recovery_tolerates_the_baseline_minus_the_tolerance(tmp_path):
    # Before the fault one in ten requests failed (baseline 90%); after it, 90% again at once.
    rows = [(k / 10, k / 10 + 0.01, CONN_ERROR if k % 10 == 0 or 30 <= k < 50 else OK) for k in range(100)]
    run = _run_file(tmp_path / "r.wdmr", rows, [(3.0, "fault", {"name": "f", "end": 5.0})])
    (w,) = analyze_faults(run).windows
    assert w.baseline == pytest.approx(0.9)
    # back at once: the first 1 s window after the end is at 90%; recovery is the first success (5.11 s)
    assert w.recovery_s == pytest.approx(w.first_success_s) == pytest.approx(0.11)


def test_no_recovery_and_an_unended_fault_are_findings(tmp_path):
    rows = [(k / 10, k / 10 + 0.01, OK if k < 30 else CONN_ERROR) for k in range(100)]
    run = _run_file(tmp_path / "r.wdmr", rows, [(3.0, "fault", {"name": "f", "end": 5.0}),
                                                 (8.0, "fault", {"name": "g", "end": None})])
    fa = analyze_faults(run)
    assert [w.recovery_s for w in fa.windows] == [None, None]
    why = recovery_findings(fa, 100.0)
    # an unended window is not slow but unmeasured: coverage names it (the verdict is never CLEAN)
    assert len(why) == 1 and why[0].startswith("fault f: did not recover")
    assert action_findings(fa) == ["fault g: no undo recorded (window open to the run's end): "
                                   "the shop may not have been restored"]
    d = fa.as_dict()
    assert d["windows"][1]["end"] is None
    assert sum(d["timeline"]["requests"]) == 100 and d["timeline"]["answered"][0] == 10


def test_report_text_json_and_html_show_the_fault_windows(tmp_path):
    pytest.importorskip("matplotlib")
    from wdmreplay.analysis import build_report, render_html, render_text

    rows = [(k / 10, k / 10 + 0.01, OK if k < 30 or k >= 60 else CONN_ERROR) for k in range(100)]
    run = _run_file(tmp_path / "r.wdmr", rows, [(3.0, "fault", {"name": "kill", "end": 5.0}),
                                                 (3.0, "fault_do", {"name": "kill", "end": 3.1, "exit": 0, "ok": True,
                                                                    "command": "kill -9 1", "output": ""})])
    data = build_report(run)
    assert data.faults.windows[0].name == "kill" and data.faults.actions[0].which == "do"
    text = render_text(data)
    assert "kill: window 3.00 s -> 5.00 s" in text
    marked = [ln for ln in text.splitlines() if ln.startswith("  *")]
    assert len(marked) == 4  # buckets 2..5 s touch the window [3, 5]
    page = render_html(data)
    assert "fault windows hatched red" in page and "<td>kill</td><td>3.00 → 5.00</td>" in page
    plain = _run_file(tmp_path / "p.wdmr", rows, [])
    assert "faults" not in build_report(plain).to_json()
