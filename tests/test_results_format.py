"""The results file format: checksummed frames, crash-safe partial reading, atomic output, no clobbering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from format_support import accepted_bit_flips
from replay_support import write_trace
from wdmreplay.traces import FormatError, ResultsWriter, load_results, results_header, step
from wdmreplay.traces.results import COLUMNS, RESULTS_VERSION
from wdmreplay.traces.stream import FRAME_HEAD, prologue

CLI = [sys.executable, "-m", "wdmreplay"]


def _header(**extra) -> dict:
    return results_header(
        trace={"path": "t.wdmt", "digest": "sha256:test", "header": {"workload": "test", "requests": 4}},
        target={"ORDER_URL": "http://127.0.0.1:1"}, dialect="2024", speed=1.0, concurrency=4, timeout=1.0,
        label="L", started=0.0, tool="wdm-replay test", host="test", shard=None, workers=1, scenarios=["s"], **extra)


def _cols(n: int, start: int = 0) -> dict:
    rows = np.arange(start, start + n)
    values = {"sid": rows, "step": rows % 3, "phase": np.zeros(n), "op": np.ones(n), "scenario": np.zeros(n),
              "expect": np.zeros(n), "outcome": rows % 2, "status": 200 + 200 * (rows % 2),
              "intended": rows * 0.5, "sent": rows * 0.5 + 0.001, "done": rows * 0.5 + 0.011}
    return {name: np.asarray(values[name]).astype(dt) for name, dt, _ in COLUMNS}


def _write(path: Path, *, close: bool = True, chunks: int = 2) -> ResultsWriter:
    """A small results file: ``chunks`` chunks of 2 rows, bindings, events, a final state."""
    w = ResultsWriter(path, _header())
    w.write_event(0.0, "phase_start", phase=0)
    for c in range(chunks):
        w.write_requests(_cols(2, 2 * c), [["$i", 300 + 2 * c], ["$i", 301 + 2 * c]], [(1, "out of stock")])
        w.write_bindings({f"$i{c}": f"id{c}"})
    w.write_event(2.0, "phase_end", phase=0)
    w.write_final({"items": {"id0": {"stock": 3, "price": 2}}, "users": {}, "orders": {}, "missing": {},
                   "settle": None})
    if close:
        w.close(complete=True, wall=2.5)
    return w


def _frame_ends(data: bytes) -> list[int]:
    """Byte offset just past each frame of a version-2 file (the documented layout)."""
    pos = len(prologue("wdm-results", RESULTS_VERSION))
    ends = []
    while pos < len(data):
        pos += FRAME_HEAD + int.from_bytes(data[pos + 2:pos + 6], "big")
        ends.append(pos)
    assert pos == len(data)
    return ends


# --- writing -------------------------------------------------------------------------------------

def test_round_trip_and_part_file_renamed_on_close(tmp_path: Path) -> None:
    out = tmp_path / "r.wdmr"
    w = _write(out, close=False)
    assert not out.exists() and Path(f"{out}.part").exists()  # written under the temporary name
    w.close(complete=True, wall=2.5)
    assert os.listdir(tmp_path) == ["r.wdmr"]
    r = load_results(out, with_args=True)
    assert r.complete and r.truncated_at is None and r.trailer["wall"] == 2.5
    assert r.n == 4 and list(r.cols["sid"]) == [0, 1, 2, 3] and list(r.cols["status"]) == [200, 400, 200, 400]
    assert r.args == [["$i", 300], ["$i", 301], ["$i", 302], ["$i", 303]]
    assert r.errors == {1: "out of stock", 3: "out of stock"}
    assert r.bindings == {"$i0": "id0", "$i1": "id1"}
    assert [e["kind"] for e in r.events] == ["phase_start", "phase_end"]
    assert r.final is not None and r.final["items"] == {"id0": {"stock": 3, "price": 2}}
    assert r.header["version"] == 2 and r.header["label"] == "L"


def test_packed_rows_become_the_columns_the_file_holds(tmp_path: Path) -> None:
    """Rows packed one record each (what a replay worker appends) come out as the same columns as
    one array per column, limits and NaN included, and load back from a written file."""
    import array
    import math

    from wdmreplay.traces.results import pack_row, row_columns

    rows = [(0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0),
            (2**32 - 1, 65535, 65535, 255, 65535, 255, 255, 65535, 1e9, math.nan, math.nan),
            (7, 3, 1, 4, 2, 1, 5, 503, 1.25, 1.5, 1.75)]
    buf = bytearray()
    for r in rows:
        buf += pack_row(*r)
    cols = row_columns(buf)
    by_array = {name: array.array(code, [r[i] for r in rows]).tobytes() for i, (name, _, code) in enumerate(COLUMNS)}
    assert cols == by_array
    out = tmp_path / "r.wdmr"
    w = ResultsWriter(out, _header())
    w.write_requests(cols, [["a"], ["b"], ["c"]])
    w.close(complete=True, wall=1.0)
    r = load_results(out, with_args=True)
    assert r.n == 3 and r.cols["sid"].tolist() == [0, 2**32 - 1, 7] and r.cols["status"].tolist() == [0, 65535, 503]
    assert math.isnan(r.cols["sent"][1]) and r.cols["done"][2] == 1.75 and r.args == [["a"], ["b"], ["c"]]
    with pytest.raises(Exception):
        pack_row(2**32, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0)  # out of its column's range: refused, not wrapped


def test_every_record_reaches_the_os_when_written(tmp_path: Path) -> None:
    out = tmp_path / "r.wdmr"
    w = ResultsWriter(out, _header())
    part = Path(f"{out}.part")
    sizes = [part.stat().st_size]
    w.write_requests(_cols(3), [[1], [2], [3]])
    sizes.append(part.stat().st_size)
    w.write_bindings({"$a": "1"})
    sizes.append(part.stat().st_size)
    w.write_event(1.0, "phase_end", phase=0)
    sizes.append(part.stat().st_size)
    assert sizes == sorted(set(sizes))  # each write grew the file on disk, nothing waits in a buffer
    r = load_results(part)  # what a reader sees now: every record so far, as a partial run
    assert r.n == 3 and r.bindings == {"$a": "1"} and not r.complete and r.truncated_at == sizes[-1]
    w.close(complete=False, wall=1.0, reason="interrupted")
    r = load_results(out)
    assert (r.complete, r.trailer["reason"], r.truncated_at) == (False, "interrupted", None)


def test_writer_refuses_an_input_as_output(tmp_path: Path) -> None:
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind="$u")])]])
    before = trace.read_bytes()
    for out in (trace, tmp_path / "sub" / ".." / "t.wdmt"):
        with pytest.raises(FormatError, match="is the input"):
            ResultsWriter(out, _header(), inputs=[trace])
    leftover = tmp_path / "old.wdmr.part"  # a killed run's file, given as an input (e.g. to a merge)
    _write(tmp_path / "old.wdmr")
    os.rename(tmp_path / "old.wdmr", leftover)
    with pytest.raises(FormatError, match="its temporary file"):
        ResultsWriter(tmp_path / "old.wdmr", _header(), inputs=[leftover])
    assert trace.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["old.wdmr.part", "t.wdmt"]


# --- crash-safe reading --------------------------------------------------------------------------

def test_a_file_cut_anywhere_after_its_header_loads_as_partial(tmp_path: Path) -> None:
    out = tmp_path / "r.wdmr"
    _write(out)
    data = out.read_bytes()
    ends = _frame_ends(data)
    header_end = ends[0]
    cut_file = tmp_path / "cut.wdmr"
    for cut in range(header_end, len(data)):  # every prefix that holds the header and lacks the trailer
        cut_file.write_bytes(data[:cut])
        r = load_results(cut_file, with_args=True)
        last_whole = max(e for e in ends if e <= cut)
        assert not r.complete and r.truncated_at == last_whole
        assert r.trailer["reason"] == f"ended without a trailer at byte {last_whole}"
        assert r.trailer["requests"] == r.n == len(r.args) and r.n in (0, 2, 4)
        assert list(r.cols["sid"]) == list(range(r.n))
    for cut in (1, 10, header_end - 1):
        cut_file.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="header incomplete|not a wdm-results"):
            load_results(cut_file)


def test_v1_file_still_loads_whole_and_cut(tmp_path: Path) -> None:
    # Laid out as the version-1 writer did: plain msgpack maps, no frames, no checksums.
    header = _header() | {"version": 1}
    cols = {name: arr.tobytes() for name, arr in _cols(2).items()}
    recs = [header, {"t": "requests", "n": 2, "cols": cols, "args": msgpack.packb([[1], [2]]), "errors": [[0, "x"]]},
            {"t": "bindings", "map": {"$a": "1"}}, {"t": "event", "at": 1.0, "kind": "phase_end"},
            {"t": "final", "items": {}, "users": {}, "orders": {}, "missing": {}, "settle": None}]
    body = b"".join(msgpack.packb(x, use_bin_type=True) for x in recs)
    v1 = tmp_path / "v1.wdmr"
    v1.write_bytes(body + msgpack.packb({"trailer": "wdm-results", "requests": 2, "complete": True, "reason": None,
                                         "wall": 1.5}))
    r = load_results(v1, with_args=True)
    assert r.complete and r.n == 2 and r.args == [[1], [2]] and r.errors == {0: "x"} and r.bindings == {"$a": "1"}
    assert r.header["version"] == 1 and r.final is not None
    v1.write_bytes(body[:-3])  # cut inside the final record: everything before it is there
    r = load_results(v1)
    assert not r.complete and r.n == 2 and r.final is None and r.truncated_at == len(body) - len(
        msgpack.packb(recs[-1], use_bin_type=True))


# --- any flipped byte is an error ----------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_is_a_format_error(tmp_path: Path, data) -> None:
    good_path = tmp_path / "good.wdmr"
    if not good_path.exists():
        _write(good_path)
    good = good_path.read_bytes()
    pos = data.draw(st.integers(0, len(good) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    flipped = bytearray(good)
    flipped[pos] ^= mask
    bad = tmp_path / "flipped.wdmr"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(FormatError) as e:
        load_results(bad, with_args=True)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_every_single_bit_flip_is_a_format_error_never_a_partial_run(tmp_path: Path) -> None:
    good_path = tmp_path / "good.wdmr"
    _write(good_path, chunks=1)
    good = good_path.read_bytes()
    assert accepted_bit_flips(good, tmp_path / "flipped.wdmr", lambda p: load_results(p, with_args=True)) == []


def test_a_flipped_latency_byte_names_the_frame(tmp_path: Path) -> None:
    # The finding: one flipped bit in a results file doubled the max latency silently.
    out = tmp_path / "r.wdmr"
    _write(out)
    data = out.read_bytes()
    done = _cols(2)["done"].tobytes()
    at = data.index(done) + 7  # the exponent byte of the first row's `done`
    frame = max(e for e in [len(prologue("wdm-results", 2)), *_frame_ends(data)] if e <= at)
    flipped = bytearray(data)
    flipped[at] ^= 0x01
    out.write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match=f"corrupt at byte {frame}: checksum mismatch"):
        load_results(out)


# --- the console script: no clobbering, a killed replay ------------------------------------------

def test_replay_onto_its_own_trace_leaves_it_intact(shop, tmp_path: Path) -> None:
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind="$u")])]])
    before = trace.read_bytes()
    p = subprocess.run([*CLI, "replay", "t.wdmt", "--url", shop.url, "-o", "t.wdmt"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("wdm-replay: error: t.wdmt: the output is the input")
    assert trace.read_bytes() == before and os.listdir(tmp_path) == ["t.wdmt"]
    assert shop.stats()["by_op"].get("create_user", 0) == 0  # refused before anything was sent


def test_replay_killed_with_sigkill_leaves_a_partial_run(shop, tmp_path: Path) -> None:
    # Phase 0 ends quickly (its rows reach the file at the phase's end); phase 1 is 600 sessions over 12 s.
    write_trace(tmp_path / "t.wdmt", [
        [(0.0, [step("create_user", [], bind=f"$p{i}")]) for i in range(30)],
        [(i * 0.02, [step("create_user", [], bind=f"$s{i}")]) for i in range(600)],
    ])
    proc = subprocess.Popen([*CLI, "replay", "t.wdmt", "--url", shop.url, "-q"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while shop.stats()["by_op"].get("create_user", 0) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)
        assert proc.poll() is None, "the replay ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    part = tmp_path / "t.wdmr.part"
    assert not (tmp_path / "t.wdmr").exists() and part.exists()
    r = load_results(part, with_args=True)
    assert not r.complete and r.truncated_at is not None and r.truncated_at <= part.stat().st_size
    assert r.trailer["reason"] == f"ended without a trailer at byte {r.truncated_at}"
    assert 30 <= r.n < 630 and r.final is None
    assert r.n <= shop.stats()["by_op"]["create_user"]
    # check, report and compare take it as a partial run: an answer, never a traceback.
    for args in (["check", "t.wdmr.part"], ["check", "t.wdmr.part", "--json"], ["report", "t.wdmr.part"],
                 ["report", "t.wdmr.part", "--format", "json"], ["compare", "t.wdmr.part", "t.wdmr.part"]):
        p = subprocess.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in p.stderr and p.returncode != 2, (args, p.stderr)
        if args[0] == "check":
            assert p.returncode != 0 and "ended without a trailer" in p.stdout + p.stderr, (args, p.stdout)
        if args[-1] == "json" and args[0] == "report":
            assert json.loads(p.stdout)["run"]["complete"] is False


# --- round trip of arbitrary content -------------------------------------------------------------

_text = st.text(max_size=12)
_arg = st.one_of(st.integers(-(2**63), 2**64 - 1), _text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.integers(0, 40), max_size=4), bindings=st.dictionaries(_text, _text, max_size=5),
       events=st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), _text), max_size=4),
       complete=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_round_trip_arbitrary_content(tmp_path: Path, chunks, bindings, events, complete, seed) -> None:
    rng = np.random.default_rng(seed)
    out = tmp_path / "rt.wdmr"
    w = ResultsWriter(out, _header())
    rows, all_args, all_errors = 0, [], {}
    for n in chunks:
        cols = _cols(n, rows)
        cols["done"] = rng.random(n)
        args = [[int(a)] for a in rng.integers(0, 2**62, n)]
        errors = [(i, f"e{rows + i}") for i in range(0, n, 3)]
        w.write_requests(cols, args, errors)
        all_args += args
        all_errors.update({rows + i: t for i, t in errors})
        rows += n
    w.write_bindings(bindings)
    for at, kind in events:
        w.write_event(at, kind)
    w.close(complete=complete, wall=1.0, reason=None if complete else "interrupted")
    r = load_results(out, with_args=True)
    assert r.n == rows and r.complete == complete and r.args == all_args and r.errors == all_errors
    assert r.bindings == bindings and [(e["at"], e["kind"]) for e in r.events] == events
    assert list(r.cols["sid"]) == list(range(rows))


def test_large_chunks_decode_in_place_and_stay_checked(tmp_path: Path) -> None:
    from wdmreplay.traces.stream import frame_head

    out = tmp_path / "big.wdmr"
    w = ResultsWriter(out, _header())
    w.write_requests(_cols(40_000), [[i] for i in range(40_000)])  # a frame of > 1 MiB
    w.close(complete=True, wall=1.0)
    r = load_results(out, with_args=True)
    assert r.n == 40_000 and list(r.cols["sid"][-3:]) == [39_997, 39_998, 39_999] and r.args[-1] == [39_999]
    data = out.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x08
    out.write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="checksum mismatch"):
        load_results(out)
    # A large frame holding two records (not what the writer makes, but what the format allows).
    chunk = {"t": "requests", "n": 40_000, "cols": {k: v.tobytes() for k, v in _cols(40_000).items()},
             "args": b"", "errors": []}
    two = msgpack.packb(chunk, use_bin_type=True) + msgpack.packb({"t": "bindings", "map": {"$a": "1"}})
    trailer = msgpack.packb({"trailer": "wdm-results", "requests": 40_000, "complete": True, "reason": None,
                             "wall": 1.0})
    head = msgpack.packb(_header(), use_bin_type=True)
    out.write_bytes(prologue("wdm-results", 2) + b"".join(frame_head(p) + p for p in (head, two, trailer)))
    r = load_results(out)
    assert r.n == 40_000 and r.bindings == {"$a": "1"} and r.complete
