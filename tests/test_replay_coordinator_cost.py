"""The replay coordinator's share of the work (issue 24): the trace's index read from its trailer,
the workers' chunks written as the bytes they packed.

Both cuts must change nothing a user sees: the same scan (operations, shared symbols, literal ids,
batch ranges), the same results file byte for byte, older traces (no index, version 1) scanned as
before, a corrupt trace still refused before anything is sent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from replay_support import write_trace
from wdmreplay.replayer.engine import RowBuffer
from wdmreplay.replayer.final import scan_trace
from wdmreplay.replayer.schedule import shard_keep
from wdmreplay.traces import FormatError, load_results, step
from wdmreplay.traces.index import read_index
from wdmreplay.traces.results import ResultsWriter, requests_record, results_header
from wdmreplay.traces.stream import FRAME_HEAD, packer, prologue, write_frame
from wdmreplay.traces.trace import TRACE_FORMAT, TRACE_VERSION, TraceReader


def _mixed_trace(path: Path) -> dict:
    """Two phases: batch_init ranges, literal ids, symbols shared across sessions and phases, one kept in-session."""
    p0 = [(0.0, [step("batch_init_stock", [40, 5, 7]), step("batch_init_users", [30, 100])])]
    for i in range(12):
        p0.append((0.01 * i, [step("create_item", [5], bind=f"$s{i}.item"),
                              step("add_stock", [f"$s{i}.item", 3]),
                              step("create_user", [], bind=f"$s{i}.user"),
                              step("find_item", [str(7 + i)]),  # a literal id (a batch_init one)
                              step("add_funds", [f"$s{i}.user", 50])]))
    p1 = []
    for i in range(12):
        p1.append((0.01 * i, [step("create_order", [f"$s{i}.user"], bind=f"$o{i}"),  # shared: bound in phase 0
                              step("add_item", [f"$o{i}", f"$s{(i + 1) % 12}.item", 1]),
                              step("find_user", ["user-literal-x"]),
                              step("checkout", [f"$o{i}"])]))
    return write_trace(path, [p0, p1])


def _fields(scan) -> tuple:
    return (scan.ops, scan.shared, scan.literals, scan.ranges, scan.sessions, scan.requests, scan.kept_requests)


def _rewrite_trailer(src: Path, dst: Path, trailer: dict) -> None:
    """``src`` with its last frame (the trailer) replaced by ``trailer``: a trace as an older writer left it."""
    data = src.read_bytes()
    pos, last = len(prologue(TRACE_FORMAT, TRACE_VERSION)), 0
    while pos < len(data):
        last = pos
        pos += FRAME_HEAD + int.from_bytes(data[pos + 2:pos + 6], "big")
    with open(dst, "wb") as f:
        f.write(data[:last])
        write_frame(f, packer().pack(trailer))


def test_stored_index_is_what_a_scan_of_every_session_finds(tmp_path):
    trace = tmp_path / "t.wdmt"
    _mixed_trace(trace)
    assert read_index(trace, TRACE_FORMAT, TRACE_VERSION) is not None
    for final_read in (True, False):
        stored = scan_trace(str(trace), final_read=final_read)
        scanned = scan_trace(str(trace), final_read=final_read, stored=False)
        assert _fields(stored) == _fields(scanned)
    scan = scan_trace(str(trace))
    # The shared symbols are exactly those used outside the session that bound them.
    assert scan.shared == {f"$s{i}.user" for i in range(12)} | {f"$s{i}.item" for i in range(12)}
    assert scan.literals["item"] == {str(7 + i) for i in range(12)} and scan.literals["user"] == {"user-literal-x"}
    assert scan.ranges == {"item": 40, "user": 30, "order": 0} and scan.requests == 1 * 2 + 12 * 5 + 12 * 4
    # A shard keeps its own sessions' entities: the whole trace's index cannot say which, so it scans.
    keep = shard_keep((1, 2), None)
    sharded = scan_trace(str(trace), keep=keep)
    assert _fields(sharded) == _fields(scan_trace(str(trace), keep=keep, stored=False))
    assert sharded.kept_requests < scan.kept_requests


def test_traces_without_an_index_are_scanned_as_before(tmp_path):
    trace, old, bad = tmp_path / "t.wdmt", tmp_path / "old.wdmt", tmp_path / "bad-index.wdmt"
    h = _mixed_trace(trace)
    counts = {"trailer": TRACE_FORMAT, "sessions": h["sessions"], "requests": h["requests"]}
    _rewrite_trailer(trace, old, counts)  # what every writer before the index wrote
    _rewrite_trailer(trace, bad, {**counts, "index": {"ops": 5}})  # an index this reader cannot use
    expected = _fields(scan_trace(str(trace), stored=False))
    for path in (old, bad):
        assert read_index(path, TRACE_FORMAT, TRACE_VERSION) is None
        assert _fields(scan_trace(str(path))) == expected
        with TraceReader(path) as r:
            assert sum(len(s["steps"]) for s in r) == h["requests"]


def test_version_1_trace_has_no_index_and_is_scanned(tmp_path):
    trace = tmp_path / "v1.wdmt"
    header = {"format": "wdm-trace", "version": 1, "workload": "w", "seed": 0, "params": {}, "dialect": "2024",
              "phases": [{"name": "a", "sessions": 2}], "scenarios": [], "sessions": 2, "requests": 3,
              "duration": 0.0, "expect": {}}
    body = [{"sid": 0, "phase": 0, "at": 0.0, "steps": [step("create_user", bind="$u"), step("find_user", ["$u"])]},
            {"sid": 1, "phase": 0, "at": 0.0, "steps": [step("find_item", ["3"])]}]
    trace.write_bytes(b"".join(msgpack.packb(x) for x in [header, *body, {"trailer": "wdm-trace", "sessions": 2,
                                                                            "requests": 3}]))
    assert read_index(trace, TRACE_FORMAT, TRACE_VERSION) is None
    scan = scan_trace(str(trace))
    assert scan.ops == {"create_user", "find_user", "find_item"} and scan.literals["item"] == {"3"}
    assert scan.shared == set() and scan.requests == 3


def test_a_corrupt_trace_with_an_index_is_still_refused_naming_the_frame(tmp_path):
    trace, bad = tmp_path / "t.wdmt", tmp_path / "bad.wdmt"
    _mixed_trace(trace)
    data = bytearray(trace.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside the sessions: the index in the trailer is intact
    bad.write_bytes(bytes(data))
    assert read_index(bad, TRACE_FORMAT, TRACE_VERSION) is None
    with pytest.raises(FormatError, match=r"corrupt at byte \d+"):
        scan_trace(str(bad))
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(bad), "--url", "http://127.0.0.1:9",
                        "-o", str(tmp_path / "r.wdmr")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "corrupt at byte" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r.wdmr").exists()


def test_unknown_operation_is_still_named_with_its_session(tmp_path):
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", bind="$u")]), (0.1, [step("teleport_user", ["$u"])])]])
    from wdmreplay.errors import ApiError

    with pytest.raises(ApiError, match="session 1 uses unknown operation 'teleport_user'"):
        scan_trace(str(trace))


def _rows(n: int) -> tuple[dict, list, list]:
    """n rows as a replay worker's RowBuffer hands them over: columns, args (tuples, as decoded), errors."""
    out: list = []
    buf = RowBuffer(lambda cols, args, errors: out.append((cols, args, errors)), limit=n + 1)
    ops = [1, 8, 9, 10, 13, 3]  # a mix of operations with and without id arguments
    for i in range(n):
        op = ops[i % len(ops)]
        args = (str(i), str(i + 1), 2) if i % 3 else (str(i),)
        buf.add(i, i % 4, i % 2, op, 0, 0, 0 if i % 7 else 1, 200 if i % 7 else 400, i * 0.01, i * 0.01 + 0.001,
                i * 0.01 + 0.002, args, None if i % 7 else f"out of stock {i}")
    buf.flush()
    assert len(out) == 1
    return out[0]


def test_worker_packed_record_is_byte_for_byte_what_the_writer_wrote(tmp_path):
    cols, args, errors = _rows(500)
    header = results_header(trace={"path": "t", "digest": "d", "header": {}}, target={}, dialect="2024", speed=None,
                            concurrency=8, timeout=1.0, label="", started=0.0, tool="t", host="h")
    # The path before: the worker packed the args, the coordinator decoded them, built the arg
    # columns and packed the record. Now the worker packs the record; the coordinator copies it.
    before, after = tmp_path / "before.wdmr", tmp_path / "after.wdmr"
    w = ResultsWriter(before, header)
    w.write_requests(cols, packer().pack(args), errors)
    w.close(complete=True, wall=1.0)
    w = ResultsWriter(after, header)
    w.write_packed_requests(cols, requests_record(cols, args, errors))
    assert w.requests == 500
    w.close(complete=True, wall=1.0)
    assert after.read_bytes() == before.read_bytes()
    r = load_results(after, with_args=True)
    assert r.n == 500 and r.argcols is not None and [tuple(a) for a in r.args] == [tuple(a) for a in args]
    assert np.array_equal(r.cols["outcome"], np.frombuffer(cols["outcome"], "<u1"))
    assert r.errors[0] == "out of stock 0" and len(r.errors) == len([i for i in range(500) if i % 7 == 0])


def test_replay_with_an_indexed_and_an_old_trace_reads_back_the_same_entities(shop, tmp_path):
    """End to end against the reference shop: one and two workers, the trace with and without its index."""
    trace, old = tmp_path / "t.wdmt", tmp_path / "old.wdmt"
    h = _mixed_trace(trace)
    _rewrite_trailer(trace, old, {"trailer": TRACE_FORMAT, "sessions": h["sessions"], "requests": h["requests"]})
    seen = {}
    for name, path in (("indexed", trace), ("old", old)):
        for workers in (1, 2):
            out = tmp_path / f"{name}-{workers}.wdmr"
            r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(path), "--url", shop.url,
                                "--workers", str(workers), "--speed", "max", "--final-sample", "1000", "--quiet",
                                "-o", str(out)], capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            res = load_results(out)
            assert res.n == h["requests"] and res.complete
            final = res.final
            # Created ids differ from run to run (the shop makes them): the counts are what the scan decides.
            seen[(name, workers)] = (len(final["items"]), len(final["users"]), len(final["orders"]),
                                     tuple(sorted(final["missing"].get("user", {}))))
            assert "user-literal-x" in final["missing"].get("user", {})  # a literal id is read back (404 here)
            assert {str(7 + i) for i in range(12)} <= set(final["items"])
    assert len(set(seen.values())) == 1, seen
    assert seen[("indexed", 1)][:3] == (40 + 12, 30 + 12, 12)  # every batch_init entity, every created one
