"""The typed trace header (issue 23): built once by the reader, defaults for older traces, unknown keys kept.

``TraceHeader.from_record`` is the one place a trace header's defaults are applied and its types
checked; ``to_record`` gives back the map the writer stores, byte for byte. Older traces (version 1,
header keys missing) load, inspect and replay; a header value of the wrong type is a one-line error
and exit 2 for ``inspect`` and ``replay``, with nothing written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from wdmreplay.analysis import check_results
from wdmreplay.cli import main
from wdmreplay.replayer import replay_trace
from wdmreplay.shrink import cut
from wdmreplay.traces import FormatError, TraceReader, load_results, step
from wdmreplay.traces.trace import ShrinkNote, TraceHeader, TracePhase, read_header, read_trace_header
from wdmreplay.workloads import generate, inspect_trace
from wdmreplay.workloads.consistency import ConsistencyParams, benchmark_of, resolve


def _run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process (an uncaught exception fails the test with its traceback)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _write_v1(path: Path, header: dict, sessions: list[dict], **trailer_keys) -> None:
    """A version-1 trace laid out as the version-1 writer did: header, sessions, trailer (no frames)."""
    trailer = {"trailer": "wdm-trace", "sessions": len(sessions), "requests": sum(len(s["steps"]) for s in sessions),
               **trailer_keys}
    path.write_bytes(b"".join(msgpack.packb(x, use_bin_type=True) for x in [header, *sessions, trailer]))


# One item with one unit, one user with credit for ten; two orders of it, checked out one after the
# other: the first must succeed and the second must fail (stock 0). A shop that oversells lets both pass.
_SESSIONS = [
    {"sid": 0, "phase": 0, "at": 0.0, "steps": [
        step("create_item", [1], "$item"), step("add_stock", ["$item", 1]),
        step("create_user", [], "$user"), step("add_funds", ["$user", 10])]},
    {"sid": 1, "phase": 1, "at": 0.0, "steps": [
        step("create_order", ["$user"], "$o0"), step("add_item", ["$o0", "$item", 1]),
        step("create_order", ["$user"], "$o1"), step("add_item", ["$o1", "$item", 1])]},
    {"sid": 2, "phase": 2, "at": 0.0, "steps": [step("checkout", ["$o0"]), step("checkout", ["$o1"], expect="fail")]},
]
# What a trace header held before the header grew dialect, scenarios, duration, expect, generator and exercises.
_OLDEST_HEADER = {"format": "wdm-trace", "version": 1, "workload": "hand-made",
                  "phases": [{}, {}, {}], "sessions": 3, "requests": 10}


# --- round trip ----------------------------------------------------------------------------------

@pytest.mark.parametrize("workload, options", [
    ("stress", {"sessions": 200}), ("stress", {"users": 3, "duration": 2.0}),
    ("consistency", {"preset": "course"}), ("consistency", {"orders": 40, "repeat_orders": 2, "recheckout_orders": 1}),
    ("checkout", {}), ("contention", {}),
])
def test_header_round_trips_to_the_same_bytes(tmp_path: Path, workload: str, options: dict) -> None:
    path = tmp_path / "t.wdmt"
    written = generate(workload, path, seed=11, **options)
    with TraceReader(path) as r:
        stored, typed = r.header, r.trace_header
    assert stored == written
    assert msgpack.packb(typed.to_record()) == msgpack.packb(stored)  # same keys, same order, same values
    assert TraceHeader.from_record(typed.to_record()) == typed
    assert typed.workload == workload and typed.seed == 11 and typed.exercises is not None
    assert typed.phase_names == [p["name"] for p in stored["phases"]]
    assert sum(p.sessions for p in typed.phases) == typed.sessions == stored["sessions"]


def test_writer_header_is_the_records_map(tmp_path: Path) -> None:
    """The writer starts from ``TraceHeader(...).to_record()``: the base keys in the documented order."""
    header = cut.write_trace(str(tmp_path / "s.wdmt"), read_trace_header(_generated(tmp_path)),
                             cut.load_sessions(str(_generated(tmp_path)))[1], {"finding": {"kind": "oversell"}})
    assert list(header)[:13] == ["format", "version", "workload", "seed", "params", "dialect", "phases", "scenarios",
                                 "sessions", "requests", "duration", "expect", "generator"]
    assert read_header(tmp_path / "s.wdmt") == header
    typed = read_trace_header(tmp_path / "s.wdmt")
    assert typed.workload == "shrunk" and typed.shrink is not None and typed.shrink.kind == "oversell"
    assert typed.shrink.hits is None and typed.to_record() == header


def _generated(tmp_path: Path) -> Path:
    path = tmp_path / "g.wdmt"
    if not path.exists():
        generate("consistency", path, seed=3, orders=20, items=5, users=10)
    return path


# --- older traces get their defaults ---------------------------------------------------------------

def test_oldest_header_gets_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "old.wdmt"
    _write_v1(path, _OLDEST_HEADER, _SESSIONS)
    h = read_trace_header(path)
    assert (h.seed, dict(h.params), h.dialect, h.scenarios, h.duration, dict(h.expect), h.generator) == \
        (0, {}, "2024", (), 0.0, {}, None)
    assert (h.exercises, h.expect_range, h.shrink, dict(h.extra)) == (None, None, None, {})
    assert h.phases == (TracePhase("0", 0), TracePhase("1", 0), TracePhase("2", 0))
    info = inspect_trace(path).to_json()
    assert info["dialect"] == "2024" and info["seed"] == 0 and info["exercises"]["source"] == "computed"
    assert [p["name"] for p in info["phases"]] == ["0", "1", "2"] and info["symbols"]["problems"] == 0
    assert info["exercises"]["exercised"] >= 1  # an item with two orders over its stock: oversell


@pytest.mark.parametrize("inject, verdict", [(None, "CLEAN"), ("oversell", "NOT CLEAN")])
def test_oldest_trace_replays_and_checks_like_a_new_one(shop_factory, tmp_path: Path, inject, verdict) -> None:
    """The same sessions under the oldest header and under today's: the same outcomes and verdict, on a
    shop that is right and on one that oversells."""
    old, new = tmp_path / "old.wdmt", tmp_path / "new.wdmt"
    _write_v1(old, _OLDEST_HEADER, _SESSIONS)
    from wdmreplay.traces import TraceWriter

    with TraceWriter(new, workload="hand-made", seed=0, params={}, phases=["0", "1", "2"]) as w:
        for s in _SESSIONS:
            w.write_session(s["sid"], s["phase"], s["at"], s["steps"])
    got = []
    for trace in (old, new):
        shop = shop_factory(inject=inject)
        out = tmp_path / f"{trace.stem}.wdmr"
        summary = replay_trace(trace, out, target=shop.target, concurrency=4)
        assert summary.complete
        report = check_results(load_results(out, with_args=True))
        got.append((summary.outcomes, report.verdict.verdict, sorted(a.kind for a in report.anomalies)))
    assert got[0] == got[1]
    assert got[0][1] == verdict
    assert got[0][0]["ok"] == (10 if inject else 9)  # the second checkout passes only on the overselling shop


# --- unknown keys are kept ---------------------------------------------------------------------------

def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "newer.wdmt"
    header = {**_OLDEST_HEADER, "phases": [{"name": "a", "sessions": 1, "weight": 0.5}, {"name": "b"}, {"name": "c"}],
              "future": {"x": [1, 2]}, "dialect": "2023"}
    _write_v1(path, header, _SESSIONS, index={"ops": ["checkout"]})
    h = read_trace_header(path)
    assert dict(h.extra) == {"future": {"x": [1, 2]}} and dict(h.phases[0].extra) == {"weight": 0.5}
    with TraceReader(path) as r:
        assert len(list(r)) == 3
        assert (r.trailer.sessions, r.trailer.requests, dict(r.trailer.extra)) == (3, 10, {"index": {"ops": ["checkout"]}})
    rec = h.to_record()
    assert rec["future"] == {"x": [1, 2]} and rec["phases"][0] == {"name": "a", "sessions": 1, "weight": 0.5}
    assert TraceHeader.from_record(rec, "again") == h
    assert inspect_trace(path).to_json()["dialect"] == "2023"


# --- a wrong type is a one-line error, exit 2 --------------------------------------------------------

WRONG = [
    ("seed", "x", "'seed' is str 'x', expected int"),
    ("seed", True, "'seed' is bool True, expected int"),
    ("phases", {"a": 1}, "'phases' is dict"),
    ("phases", [3], "phase 0 is int, not a map"),
    ("phases", [{"name": 7}], "phase 0: 'name' is int 7, expected str"),
    ("sessions", "3", "'sessions' is str '3', expected int"),
    ("scenarios", ["a", 1], "'scenarios' holds a name that is not a string"),
    ("expect", [], "'expect' is list [], expected map"),
    ("exercises", 5, "'exercises' is int 5, expected map or null"),
    ("duration", "1.5", "'duration' is str '1.5', expected int or float"),
    ("dialect", None, "'dialect' is NoneType None, expected str"),
    ("shrink", {"finding": {"kind": 3}}, "shrink finding: 'kind' is int 3, expected str or null"),
]


@pytest.mark.parametrize("key, value, message", WRONG, ids=[f"{k}={v!r}" for k, v, _ in WRONG])
def test_wrong_type_is_a_one_line_format_error(tmp_path: Path, key: str, value, message: str) -> None:
    path = tmp_path / "bad.wdmt"
    _write_v1(path, {**_OLDEST_HEADER, key: value}, _SESSIONS)
    with pytest.raises(FormatError) as exc:
        TraceReader(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: trace header") and message in text and "\n" not in text, text


def test_missing_required_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.wdmt"
    _write_v1(path, {k: v for k, v in _OLDEST_HEADER.items() if k != "requests"}, _SESSIONS)
    with pytest.raises(FormatError, match="trace header lacks 'requests'"):
        read_trace_header(path)


@pytest.mark.parametrize("key, value", [("seed", "x"), ("phases", [{"name": 7}]), ("scenarios", ["a", 1])])
@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_cli_on_a_wrong_type_is_one_line_and_exit_2(tmp_path: Path, capsys, monkeypatch, command, key, value) -> None:
    monkeypatch.chdir(tmp_path)
    _write_v1(tmp_path / "bad.wdmt", {**_OLDEST_HEADER, key: value}, _SESSIONS)
    argv = ["inspect", "bad.wdmt"] if command == "inspect" else \
        ["replay", "bad.wdmt", "--url", "http://127.0.0.1:9", "-o", "run.wdmr"]
    code, out, err = _run_main(argv, capsys)
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("wdm-replay: error: bad.wdmt: trace header") and err.count("\n") == 1, err
    assert f"'{key}'" in err or "'name'" in err or "scenarios" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wdmt"]  # nothing written, nothing lost


# --- steps: a malformed one is reported, never a traceback ------------------------------------------

def test_a_step_without_every_key_is_a_problem_for_inspect_and_an_error_for_shrink(tmp_path: Path, capsys) -> None:
    sessions = [dict(s) for s in _SESSIONS]
    broken = {k: v for k, v in step("find_item", ["$item"]).items() if k != "think"}
    sessions[2] = {**sessions[2], "steps": [*sessions[2]["steps"], broken]}
    path = tmp_path / "step.wdmt"
    _write_v1(path, {**_OLDEST_HEADER, "requests": 11}, sessions)
    info = inspect_trace(path).to_json()
    assert info["symbols"]["problems"] == 1 and "step 2 is not a step map" in info["symbols"]["examples"][0]
    assert info["requests"] == 11 and sum(info["ops"].values()) == 10  # the broken step is not counted
    code, out, err = _run_main(["inspect", str(path)], capsys)
    assert code == 0 and "1 PROBLEMS" in out and err == ""
    with pytest.raises(FormatError, match=r"session 2 step 2 is not a step map"):
        cut.load_sessions(str(path))


@pytest.mark.parametrize("key, value", [("op", None), ("op", 7), ("args", 3), ("args", None), ("think", "x"),
                                        ("scenario", None), ("expect", ["ok"]), ("bind", 1.5)])
def test_inspect_reports_a_step_of_the_wrong_types_as_a_problem(tmp_path: Path, key, value) -> None:
    # Before: inspect only checked that a step had every key; a value of another type ended in a
    # TypeError traceback, exit 1 (op None or 7, args a number or nil, think a string, scenario nil,
    # expect an array) or went unreported (bind 1.5). Now such a step is one of the trace's symbol
    # problems, in the words replay refuses it with (keys.step_problem).
    sessions = [dict(s) for s in _SESSIONS]
    sessions[2] = {**sessions[2], "steps": [sessions[2]["steps"][0], {**sessions[2]["steps"][1], key: value}]}
    path = tmp_path / "step.wdmt"
    _write_v1(path, _OLDEST_HEADER, sessions)
    for json_flag in ([], ["--json"]):
        p = subprocess.run([sys.executable, "-m", "wdmreplay", "inspect", str(path), *json_flag],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert "session 2 step 1 has values not of the format's types" in p.stdout, p.stdout


@pytest.mark.parametrize("key, value", [("at", None), ("at", "x"), ("at", float("inf")), ("phase", 1.5),
                                        ("phase", True)])
def test_a_session_of_the_wrong_types_is_one_line_and_exit_2(tmp_path: Path, key, value) -> None:
    # Before: a session whose start time was not a finite number or whose phase was not an integer
    # passed the reader's check; inspect then failed with a TypeError traceback (at nil or a string,
    # phase 1.5) or summed it as it was (at inf, phase true).
    sessions = [dict(s) for s in _SESSIONS]
    sessions[1] = {**sessions[1], key: value}
    path = tmp_path / "session.wdmt"
    _write_v1(path, _OLDEST_HEADER, sessions)
    p = subprocess.run([sys.executable, "-m", "wdmreplay", "inspect", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    assert p.stderr == f"wdm-replay: error: {path}: corrupt session record #1\n", p.stderr


# --- the shrink section ----------------------------------------------------------------------------

def test_inspect_shows_the_shrink_section_from_its_record(tmp_path: Path, capsys) -> None:
    src = _generated(tmp_path)
    header, sessions = cut.load_sessions(str(src))
    note = {"finding": {"kind": "oversell", "entity": "item", "role": "$item0", "source_id": "i-1", "detail": ""},
            "source": {"run": "/runs/a.wdmr", "trace": str(src), "requests": 120},
            "reproduction": {"hits": 3, "runs": 5, "rate": 0.6}, "replays": 9, "future": True}
    cut.write_trace(str(tmp_path / "m.wdmt"), header, sessions[:3], note)
    h = read_trace_header(tmp_path / "m.wdmt")
    assert h.shrink == ShrinkNote("oversell", "item", "$item0", 3, 5, "/runs/a.wdmr", 120, note)
    assert h.shrink.to_record() == note  # the whole section, unknown keys too
    code, out, _ = _run_main(["inspect", str(tmp_path / "m.wdmt")], capsys)
    assert code == 0
    assert "shrunk   reproduces oversell on item $item0 in 3/5 fresh replays; from /runs/a.wdmr (120 requests)" in out
    code, out, _ = _run_main(["inspect", str(tmp_path / "m.wdmt"), "--json"], capsys)
    assert json.loads(out)["shrink"] == note


# --- the consistency workload's params record --------------------------------------------------------

def test_consistency_params_record_keeps_the_header_map() -> None:
    params, _ = resolve({"preset": "course"}, "2024")
    assert list(params) == ["dialect", "preset", "items", "stock", "price", "users", "credit", "orders"]
    p = ConsistencyParams.from_record(params)
    assert p.to_record() == params and (p.repeat_orders, p.recheckout_orders) == (0, 0)
    assert benchmark_of(p) == "course"
    more, _ = resolve({"preset": "course", "repeat_orders": 2, "recheckout_orders": 0}, "2023")
    assert more["repeat_orders"] == 2 and "recheckout_orders" not in more  # zero extras stay out (older bytes)
    assert benchmark_of(ConsistencyParams.from_record(more)) is None
    older = {"dialect": "2024", "items": 100, "stock": 1, "price": 1, "users": 1000, "credit": 1, "orders": 1000}
    q = ConsistencyParams.from_record(older)
    assert q.preset is None and benchmark_of(q) is None and q.to_record() == older
