"""The ``wdm-replay replay`` command as a user runs it (subprocess): exit codes, stderr, interrupts.

Commands run as ``sys.executable -m wdmreplay`` (no PATH needed, so ``python -m pytest`` and
``.ci/run`` run them); one test runs the installed console script beside ``sys.executable``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from replay_support import closed_port, populate_and_order_trace, write_trace
from wdmreplay.traces import load_results, step

WDM = [sys.executable, "-m", "wdmreplay"]
# The console script pip installed beside this interpreter (a venv's bin/, or Scripts\ on Windows).
SCRIPT = Path(sys.executable).with_name("wdm-replay.exe" if os.name == "nt" else "wdm-replay")


def _run(args, cwd, timeout=60, exe=None):
    return subprocess.run([*(exe or WDM), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_installed_console_script_replays_and_prints_summary(shop, tmp_path):
    assert SCRIPT.exists(), f"no console script at {SCRIPT}: install with pip install -e '.[test]'"
    populate_and_order_trace(tmp_path / "t.wdmt", 5)
    (tmp_path / "urls.json").write_text(json.dumps(shop.target.as_dict()))
    p = _run(["replay", "t.wdmt", "--label", "build-a", "--speed", "max"], tmp_path,  # ./urls.json by default
             exe=[str(SCRIPT)])
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "replayed: 35 requests" in p.stdout and "35 accepted (2xx)" in p.stdout and "p99" in p.stdout
    r = load_results(tmp_path / "t.wdmr")
    assert r.complete and r.label == "build-a" and r.n == 35 and r.header["speed"] is None


def test_quiet_prints_nothing(shop, tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = _run(["replay", "t.wdmt", "--url", shop.url, "-q", "-o", "x.wdmr", "--no-final-read"], tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    r = load_results(tmp_path / "x.wdmr")
    assert r.final is None and r.n == 1


def test_unreachable_target_is_one_line_error(tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = _run(["replay", "t.wdmt", "--url", f"http://127.0.0.1:{closed_port()}"], tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("wdm-replay: error: cannot reach target http://127.0.0.1:")
    assert p.stderr.count("\n") == 1 and p.stdout == ""
    assert not (tmp_path / "t.wdmr").exists()


@pytest.mark.parametrize("args, message", [
    (["--dialect", "2023", "--url", "{url}"], "lacks: batch_init_stock"),
    (["--speed", "fast", "--url", "{url}"], "speed must be a positive number"),
    (["--shard", "3/2", "--url", "{url}"], "shard '3/2'"),
    (["--urls", "nope.json"], "nope.json: urls file not found"),
    (["--urls", "nope.json", "--url", "{url}"], "either --urls or --url"),
    (["--url", "localhost:8000"], "bad base URL 'localhost:8000': it must start with http:// or https://"),
    (["--url", "http://127.0.0.1:99999"], "bad base URL 'http://127.0.0.1:99999': its port must be a number in 1-65535"),
    (["--url", "http://:8000"], "bad base URL 'http://:8000': it has no host"),
    (["--urls", "bad.json"], "bad.json: urls file is not valid JSON"),
    (["--urls", "port.json"], "port.json: STOCK_URL: bad base URL 'http://127.0.0.1:0': its port must be"),
    (["--urls", "adir"], "Invalid value for '--urls': File 'adir' is a directory"),
    (["--routes", "bad.json", "--url", "{url}"], "bad.json: routes file is not valid JSON"),
    (["--routes", "list.json", "--url", "{url}"], "list.json: routes file must be a JSON object"),
    (["--routes", "adir", "--url", "{url}"], "Invalid value for '--routes': File 'adir' is a directory"),
    (["--settle", "nan", "--url", "{url}"], "Invalid value for '--settle': 'nan' is not a finite number"),
    (["--speed", "nan", "--url", "{url}"], "speed must be a positive number"),
    (["--speed", "-1", "--url", "{url}"], "speed must be a positive number"),
])
def test_bad_input_is_one_line_error(shop, tmp_path, args, message):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("batch_init_stock", [2, 1, 1])])]])
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "port.json").write_text(json.dumps({**shop.target.as_dict(), "STOCK_URL": "http://127.0.0.1:0"}))
    (tmp_path / "adir").mkdir()
    p = _run(["replay", "t.wdmt", *[a.format(url=shop.url) for a in args]], tmp_path)
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("wdm-replay: error: ") and "Traceback" not in p.stderr
    assert not (tmp_path / "t.wdmr").exists() and shop.stats()["by_op"].get("batch_init_stock", 0) == 0


_NOT_A_MAP = "step 1 is not a step map (op, args, bind, expect, think, scenario)"
_WRONG_TYPES = ("step 1 has values not of the format's types (op, expect and scenario strings, args an array, "
                "bind a string or nil, think a number)")


def _trace_with_a_broken_step(path: Path, broken: Any, stored_index: bool) -> None:
    """A hand-made trace whose one session's second step is ``broken``; with ``stored_index`` its
    trailer carries the index, so the replay's coordinator decodes no session (the worker finds it)."""
    _trace_of_one_session(path, {"sid": 0, "phase": 0, "at": 0, "steps": [step("find_item", ["1"]), broken]},
                          stored_index)


def _trace_of_one_session(path: Path, session: dict, stored_index: bool) -> None:
    """A hand-made trace of the one session record ``session``; with ``stored_index``, a trailer whose
    index says it uses find_item alone (what it said before the file was edited by hand)."""
    from wdmreplay.operations import ENTITY_KINDS
    from wdmreplay.traces.index import INDEX_KEY
    from wdmreplay.traces.stream import packer, prologue, write_frame
    from wdmreplay.traces.trace import TRACE_FORMAT, TraceHeader, TracePhase

    pk = packer()
    n = len(session["steps"])
    trailer: dict = {"trailer": TRACE_FORMAT, "sessions": 1, "requests": n}
    if stored_index:
        trailer[INDEX_KEY] = {"ops": ["find_item"], "shared": [], "literals": {k: [] for k in ENTITY_KINDS},
                              "ranges": {k: 0 for k in ENTITY_KINDS}, "unknown": []}
    with open(path, "wb") as f:
        f.write(prologue(TRACE_FORMAT, 2))
        write_frame(f, pk.pack(TraceHeader(workload="w", phases=(TracePhase("a", 0),), sessions=1,
                                           requests=n).to_record()))
        write_frame(f, pk.pack(session))
        write_frame(f, pk.pack(trailer))


@pytest.mark.parametrize("broken, words", [
    (["find_item"], _NOT_A_MAP),
    ({**step("find_item", ["1"]), "args": 5}, _WRONG_TYPES),  # args not an array
    ({**step("find_item", ["1"]), "bind": ["$x"]}, _WRONG_TYPES),
], ids=["a-list", "args-a-number", "bind-a-list"])
@pytest.mark.parametrize("stored_index", [False, True], ids=["scanned-by-the-coordinator", "read-by-the-worker"])
def test_a_broken_step_is_a_one_line_error(shop, tmp_path, broken, words, stored_index):
    # Found by the coordinator's scan of the trace, or (an index in the trailer: no scan) by the worker,
    # in the same words.
    _trace_with_a_broken_step(tmp_path / "t.wdmt", broken, stored_index)
    p = _run(["replay", "t.wdmt", "--url", shop.url], tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("wdm-replay: error: ")
    assert p.stderr.endswith(f"t.wdmt: corrupt session record #0: {words}\n"), p.stderr


_SID_WORDS = "is not an integer from 0 to 4294967295"


@pytest.mark.parametrize("sid, step1, words", [
    (-1, None, f"corrupt session record #0: session id -1 {_SID_WORDS}"),
    (None, None, f"corrupt session record #0: session id None {_SID_WORDS}"),
    (2**32, None, f"corrupt session record #0: session id 4294967296 {_SID_WORDS}"),
    (1.5, None, f"corrupt session record #0: session id 1.5 {_SID_WORDS}"),
    (0, step("teleport", ["1"]), "corrupt session record #0: step 1 uses unknown operation 'teleport'"),
    (0, step("find_item", []), "session 0 step 1: find_item takes more arguments than the 0 it has"),
    (0, step("remove_item", ["1", "2"]), "session 0 step 1: the 2024 dialect has no route for remove_item"),
], ids=["sid-negative", "sid-nil", "sid-past-32-bits", "sid-a-float", "unknown-op", "too-few-args", "op-not-in-dialect"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_session_edited_by_hand_is_a_one_line_error(shop, tmp_path, sid, step1, words, workers):
    # Checksums right, and a trailer whose index no longer says what the session holds: what the
    # replay's worker reads is refused in one line (it was a worker's traceback: struct.error,
    # KeyError, IndexError, AttributeError), and nothing is sent for the step it cannot replay.
    steps = [step("find_item", ["1"])] + ([step1] if step1 is not None else [])
    _trace_of_one_session(tmp_path / "t.wdmt", {"sid": sid, "phase": 0, "at": 0, "steps": steps}, True)
    p = _run(["replay", "t.wdmt", "--url", shop.url, "--workers", str(workers)], tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("wdm-replay: error: replay worker ") and "Error:" not in p.stderr, p.stderr
    assert p.stderr.endswith(f"t.wdmt: {words}\n"), p.stderr  # with two workers, a sid not an int too
    assert shop.stats()["by_op"].get("remove_item", 0) == 0


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_interrupt_writes_partial_results_and_exits_130(shop, tmp_path, sig, workers):
    # 400 one-step sessions spread over 8 s: interrupted after about 1.5 s.
    write_trace(tmp_path / "t.wdmt", [[(i * 0.02, [step("create_user", [], bind=f"$s{i}")]) for i in range(400)]])
    proc = subprocess.Popen([*WDM, "replay", "t.wdmt", "--url", shop.url, "--workers", str(workers)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while shop.stats()["by_op"].get("create_user", 0) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert "PARTIAL (interrupted)" in err
    r = load_results(tmp_path / "t.wdmr")
    assert not r.complete and r.trailer["reason"] == "interrupted"
    assert 0 < r.n < 400
    assert r.n == shop.stats()["by_op"]["create_user"]  # every request sent was recorded
    assert any(e["kind"] == "interrupt" for e in r.events)
    assert r.final is None


def test_help_shows_an_example():
    p = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "100"})
    assert p.returncode == 0 and "wdm-replay replay stress.wdmt --urls urls.json" in p.stdout
    for option in ("--speed", "--concurrency", "--workers", "--settle", "--no-final-read", "--shard", "--routes"):
        assert option in p.stdout
