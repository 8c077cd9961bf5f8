"""The typed replay summary and fault schedule records (issue 23): built once, read by attribute.

Over real HTTP on 127.0.0.1 against the reference shop: ``replay_trace`` returns a frozen
:class:`ReplaySummary` whose ``as_dict()`` is the JSON-ready map the summary always was (read by
attribute: ``summary["key"]`` is a TypeError); a fault schedule's faults round-trip through
``to_record``/``from_record``; a schedule file with an unknown key or a value of the wrong type is a
one-line error with exit 2 through ``replay --faults``, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from wdmreplay.replayer import ReplaySummary, format_summary, replay_trace
from wdmreplay.replayer.fault_schedule import (Fault, FaultRunSummary, FaultScheduleError, format_fault_summary,
                                               parse_schedule, schedule_record)
from wdmreplay.traces import load_results
from wdmreplay.workloads import generate

FAULT = {"name": "noop", "at": 0.3, "for": 0.3, "do": "true", "undo": "true", "timeout": 5.0}


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "t.wdmt"
    generate("stress", path, seed=3, rate=20, duration=2)
    return path


def _schedule(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_summary_is_a_frozen_record_whose_map_is_the_old_dict(tmp_path, shop, trace):
    out = tmp_path / "r.wdmr"
    s = replay_trace(str(trace), str(out), target=shop.target, speed=4.0)
    assert isinstance(s, ReplaySummary) and s.complete and s.reason is None and s.faults is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.complete = False  # type: ignore[misc]
    run = load_results(out, with_args=True)
    assert s.requests == run.n > 0 and s.path == str(out)
    assert s.sent == s.requests - s.outcomes["skipped"] and sum(s.outcomes.values()) == s.requests
    assert s.final_read is not None and s.final_read.entities > 0 and s.final_read.snapshots >= 1
    assert s.final_read.stopped is None  # the reference shop answered every read
    d = s.as_dict()
    # the keys and order the summary dict always had; no "faults" key without a schedule
    assert list(d) == ["path", "requests", "sent", "outcomes", "wall", "send_wall", "rate", "scheduled_rate", "p50",
                       "p99", "service_p50", "service_p99", "lag_p99", "lagging", "late", "conn_waits", "late_cause",
                       "final_read", "speed", "complete", "reason", "bindings", "probes", "final_reads",
                       "dialect_hint"]
    assert list(d["final_read"]) == ["seconds", "quiesce", "snapshots", "entities", "sample", "stopped"]
    assert json.loads(json.dumps(d)) == d  # JSON-ready, and nothing lost on the way
    assert d["final_read"]["entities"] == s.final_read.entities and d["rate"] == s.rate
    assert d["complete"] is True and d["outcomes"] == dict(s.outcomes)
    with pytest.raises(TypeError):  # the record is read by attribute: the old summary["key"] shim is gone
        s["complete"]  # type: ignore[index]
    # the text is rendered from the record (a changed field changes the text)
    text = format_summary(s)
    assert text.startswith(f"replayed: {s.requests} requests ({s.sent} sent)")
    assert format_summary(dataclasses.replace(s, complete=False, reason="interrupted")).startswith(
        "PARTIAL (interrupted)")


def test_a_fault_run_summary_is_typed_and_its_map_is_the_old_dict(tmp_path, shop, trace):
    sched = _schedule(tmp_path / "f.json", {"faults": [FAULT]})
    s = replay_trace(str(trace), str(tmp_path / "r.wdmr"), target=shop.target, speed=1.0, faults=sched)
    assert s.complete and isinstance(s.faults, FaultRunSummary)
    do, undo = s.faults.results["noop"].do, s.faults.results["noop"].undo
    assert do.ok and undo.ok and do.start < undo.end
    d = s.as_dict()["faults"]
    assert d["faults"]["noop"]["do"] == {"start": do.start, "end": do.end, "exit": 0, "ok": True}
    assert isinstance(d["skipped"], list) and isinstance(d["failures"], list)
    assert d["skipped"] == list(s.faults.skipped) and d["failures"] == list(s.faults.failures)
    lines = format_fault_summary(s.faults)
    assert f"fault noop: {do.start:.2f} s -> {undo.end:.2f} s (ok)" in lines
    assert format_fault_summary(None) == ""


def test_a_failed_undo_is_in_the_typed_failures_and_marked_failed(tmp_path, shop, trace):
    sched = _schedule(tmp_path / "f.json", {"faults": [dict(FAULT, undo="exit 4")]})
    s = replay_trace(str(trace), str(tmp_path / "r.wdmr"), target=shop.target, speed=1.0, faults=sched)
    assert s.faults is not None and s.faults.results["noop"].undo.exit_code == 4
    assert s.faults.failures == ("fault noop: undo failed (exit 4)",)
    assert "(FAILED)" in format_fault_summary(s.faults)


def test_a_fault_round_trips_through_its_record():
    fault = Fault.from_record(FAULT)
    assert fault == Fault("noop", 0.3, 0.3, "true", "true", 5.0)
    assert fault.to_record() == {"name": "noop", "at": 0.3, "for": 0.3, "do": "true", "undo": "true", "timeout": 5.0}
    assert Fault.from_record(fault.to_record()) == fault
    argv = Fault.from_record(dict(FAULT, do=["kill", "-9", "1"]))
    assert argv.do == ("kill", "-9", "1") and argv.to_record()["do"] == "kill -9 1"  # the header keeps one line
    assert Fault.from_record({k: v for k, v in FAULT.items() if k != "timeout"}).timeout == 60.0  # the default
    assert schedule_record(parse_schedule({"faults": [FAULT]})) == [fault.to_record()]


@pytest.mark.parametrize("doc, message", [
    ({"faults": [dict(FAULT, every=3)]}, "f.json: faults[0]: unknown key(s) 'every'"),
    ({"faults": [FAULT], "defaults": {}}, "f.json: unknown key(s) 'defaults'"),
    ({"faults": [dict(FAULT, at="soon")]}, "f.json: fault 'noop': 'at' must be a finite number of seconds"),
    ({"faults": [dict(FAULT, undo=7)]}, "f.json: fault 'noop': 'undo' must be a shell command line"),
    ({"faults": [dict(FAULT, name=5)]}, "f.json: faults[0]: name must be a non-empty string"),
    ({"faults": {"noop": FAULT}}, 'f.json: expected {"faults": [{"name"'),
])
def test_a_bad_schedule_file_is_one_line_and_exit_2_through_replay(tmp_path, shop, trace, doc, message):
    sched = _schedule(tmp_path / "f.json", doc)
    with pytest.raises(FaultScheduleError) as e:
        parse_schedule(doc, "f.json")
    assert str(e.value).startswith(message), str(e.value)
    out = tmp_path / "r.wdmr"
    p = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url, "--faults", sched,
                        "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and message.replace("f.json", sched) in p.stderr, p.stderr
    assert not out.exists() and not (tmp_path / "r.wdmr.part").exists()
    # the same file without the fault is accepted (the refusal is the schedule's, not the run's)
    _schedule(tmp_path / "f.json", {"faults": [FAULT]})
    ok = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url, "--faults",
                         sched, "--speed", "max", "-q", "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0 and out.exists(), ok.stderr
