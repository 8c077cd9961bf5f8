"""The trace file format: writer → reader round trips, and one-line errors for bad files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from format_support import accepted_bit_flips
from wdmreplay.traces import FormatError, TraceReader, TraceWriter, read_header, step, trace_digest
from wdmreplay.traces.stream import FRAME_HEAD, frame_head, prologue
from wdmreplay.traces.trace import TRACE_VERSION

# --- round trip --------------------------------------------------------------------------------

_arg = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=12),
                 st.text(max_size=8).map(lambda s: "$" + s))
_step = st.builds(
    step,
    op=st.sampled_from(["create_item", "add_stock", "checkout", "find_user", "batch_init_stock"]),
    args=st.lists(_arg, max_size=4),
    bind=st.one_of(st.none(), st.text(max_size=10).map(lambda s: "$" + s)),
    expect=st.sampled_from(["ok", "fail", "any"]),
    think=st.floats(0, 1e6, allow_nan=False),
    scenario=st.text(max_size=16),
)
_sessions = st.lists(
    st.tuples(st.integers(0, 2), st.floats(0, 1e6, allow_nan=False), st.lists(_step, max_size=6)),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=_sessions, seed=st.integers(0, 2**32), params=st.dictionaries(
    st.text(max_size=8), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8)),
    max_size=5))
def test_writer_reader_round_trip(tmp_path: Path, sessions, seed: int, params: dict) -> None:
    sessions = sorted(sessions, key=lambda s: (s[0], s[1]))
    path = tmp_path / "rt.wdmt"
    with TraceWriter(path, workload="w", seed=seed, params=params, phases=["a", "b", "c"],
                     scenarios=["x"], expect={"checkout_ok": 3}) as w:
        for sid, (phase, at, steps) in enumerate(sessions):
            w.write_session(sid, phase, at, steps)
    with TraceReader(path) as r:
        got = [(s["sid"], s["phase"], s["at"], s["steps"]) for s in r]
        h = r.header
    assert got == [(i, p, a, s) for i, (p, a, s) in enumerate(sessions)]
    assert h["seed"] == seed and h["params"] == params and h["expect"] == {"checkout_ok": 3}
    assert h["sessions"] == len(sessions)
    assert h["requests"] == sum(len(s[2]) for s in sessions)
    assert [p["sessions"] for p in h["phases"]] == [sum(1 for s in sessions if s[0] == k) for k in range(3)]
    assert not [p for p in os.listdir(tmp_path) if p != "rt.wdmt"], "temporary files left behind"


def test_writer_refuses_out_of_order_and_abort_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.wdmt"
    with pytest.raises(ValueError):
        with TraceWriter(path, workload="w", seed=0, params={}, phases=["a"]) as w:
            w.write_session(0, 0, 5.0, [])
            w.write_session(1, 0, 1.0, [])
    assert os.listdir(tmp_path) == []


def test_duration_sums_phase_spans(tmp_path: Path) -> None:
    path = tmp_path / "t.wdmt"
    with TraceWriter(path, workload="w", seed=0, params={}, phases=["a", "b"]) as w:
        w.write_session(0, 0, 2.0, [step("create_user", think=1.5)])
        w.write_session(1, 1, 0.5, [step("create_user"), step("create_user", think=0.25)])
    assert read_header(path)["duration"] == pytest.approx(3.5 + 0.75)


# --- bad files ---------------------------------------------------------------------------------

def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.wdmt"
    with TraceWriter(path, workload="w", seed=0, params={}, phases=["a"]) as w:
        for sid in range(20):
            w.write_session(sid, 0, float(sid), [step("create_user", bind=f"$u{sid}"), step("find_user", [f"$u{sid}"])])
    return path


def _read_all(path: Path) -> None:
    with TraceReader(path) as r:
        for _ in r:
            pass


def _error(path: Path) -> str:
    with pytest.raises(FormatError) as e:
        _read_all(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of every frame of a version-2 file, walked by the documented layout."""
    pos = len(prologue("wdm-trace", TRACE_VERSION))
    out = []
    while pos < len(data):
        n = int.from_bytes(data[pos + 2:pos + 6], "big")
        out.append((pos, FRAME_HEAD + n))
        pos += FRAME_HEAD + n
    assert pos == len(data)
    return out


def test_v2_layout_prologue_header_blocks_trailer(tmp_path: Path) -> None:
    path = tmp_path / "big.wdmt"
    with TraceWriter(path, workload="w", seed=0, params={}, phases=["a"]) as w:
        for sid in range(3000):  # ~40 bytes a session: a couple of 64 KiB blocks
            w.write_session(sid, 0, float(sid), [step("create_user", bind=f"$u{sid}")])
    data = path.read_bytes()
    assert data.startswith(prologue("wdm-trace", 2)) and TRACE_VERSION == 2
    frames = _frames(data)
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    objs = list(u)  # the whole file is a valid msgpack stream: prologue, then [n, crc, head_crc, payload]
    assert objs[0] == {"format": "wdm-trace", "version": 2} and len(objs) == 1 + len(frames)
    header = msgpack.unpackb(objs[1][3], raw=False)
    assert header["format"] == "wdm-trace" and header["sessions"] == 3000
    trailer = msgpack.unpackb(objs[-1][3], raw=False)
    index = trailer.pop("index")  # what a replay needs of the whole trace (wdmreplay.traces.index)
    assert trailer == {"trailer": "wdm-trace", "sessions": 3000, "requests": 3000}
    assert index["ops"] == ["create_user"] and index["shared"] == [] and index["unknown"] == []
    blocks = frames[1:-1]
    assert len(blocks) >= 2 and all(length - FRAME_HEAD >= 64 * 1024 for _, length in blocks[:-1])
    with TraceReader(path) as r:
        assert [s["sid"] for s in r] == list(range(3000))


def test_truncated_file_reports_offset(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    last = _frames(data)[-1][0]  # the trailer frame
    for cut in (len(data) - 1, len(data) - 20, last, len(data) // 2):
        bad = tmp_path / f"cut{cut}.wdmt"
        bad.write_bytes(data[:cut])
        msg = _error(bad)
        assert "truncated at byte" in msg, msg
        assert any(ch.isdigit() for ch in msg.split("byte", 1)[1])


def test_truncated_header(tmp_path: Path) -> None:
    data = _good(tmp_path).read_bytes()
    for cut in (10, len(prologue("wdm-trace", 2)) + 5, _frames(data)[1][0] - 1):
        bad = tmp_path / "h.wdmt"
        bad.write_bytes(data[:cut])
        msg = _error(bad)
        assert "truncated" in msg or "not a wdm-trace" in msg


def test_corrupt_byte_reports_frame_offset(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    header_frame, body = _frames(data)[:2]
    for where, (off, length) in (("header", header_frame), ("sessions", body)):
        bad = tmp_path / f"corrupt-{where}.wdmt"
        flipped = bytearray(data)
        flipped[off + FRAME_HEAD + length // 3] ^= 0x10
        bad.write_bytes(bytes(flipped))
        msg = _error(bad)
        assert f"corrupt at byte {off}: checksum mismatch (frame of {length - FRAME_HEAD} bytes)" in msg
        flipped = bytearray(data)
        flipped[off + 3] ^= 0x01  # the frame's length
        bad.write_bytes(bytes(flipped))
        assert f"corrupt at byte {off}: checksum mismatch in the frame header" in _error(bad)


def test_trailing_garbage_and_record_after_trailer(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "garbage.wdmt"
    bad.write_bytes(data + msgpack.packb({"x": 1}))
    assert "data after the trailer" in _error(bad)
    # A well-framed record after the trailer inside the trailer's frame.
    off, _ = _frames(data)[-1]
    bad.write_bytes(data[:off] + _frame(msgpack.packb({"trailer": "wdm-trace", "sessions": 20, "requests": 40})
                                        + msgpack.packb({"x": 1})))
    assert "data after the trailer" in _error(bad)


def _frame(payload: bytes) -> bytes:
    return frame_head(payload) + payload


def _v2_file(header: dict, records: list, trailer: dict) -> bytes:
    """A version-2 file built by hand from the documented layout (one frame per record)."""
    return prologue("wdm-trace", 2) + b"".join(_frame(msgpack.packb(x, use_bin_type=True))
                                               for x in [header, *records, trailer])


def test_count_mismatch_with_trailer(tmp_path: Path) -> None:
    good = _good(tmp_path)
    with TraceReader(good) as r:
        recs = list(r)
        hdr = r.header
    bad = tmp_path / "short.wdmt"
    bad.write_bytes(_v2_file(hdr, recs[:-1], {"trailer": "wdm-trace", "sessions": 20, "requests": 40}))
    assert "trailer says 20 / 40" in _error(bad)
    bad.write_bytes(_v2_file(hdr, [*recs[:3], [1, 2], *recs[3:]], {"trailer": "wdm-trace", "sessions": 20, "requests": 40}))
    assert "expected a map, got list" in _error(bad)


def test_prologue_must_be_exact(tmp_path: Path) -> None:
    data = _good(tmp_path).read_bytes()
    n = len(prologue("wdm-trace", 2))
    bad = tmp_path / "p.wdmt"
    bad.write_bytes(msgpack.packb({"format": "wdm-trace", "version": 2, "x": 1}) + data[n:])
    assert "corrupt at byte 0: not the wdm-trace 2 prologue" in _error(bad)


def test_wrong_format_and_newer_version_and_empty(tmp_path: Path) -> None:
    other = tmp_path / "other.wdmt"
    other.write_bytes(msgpack.packb({"format": "wdm-results", "version": 1}))
    assert "not a wdm-trace file (a 'wdm-results' file)" in _error(other)
    text = tmp_path / "text.wdmt"
    text.write_text("hello, this is not msgpack\n")
    assert "not a wdm-trace file" in _error(text)
    newer = tmp_path / "newer.wdmt"
    newer.write_bytes(msgpack.packb({"format": "wdm-trace", "version": TRACE_VERSION + 1}))
    msg = _error(newer)
    assert f"version {TRACE_VERSION + 1} is newer" in msg
    empty = tmp_path / "empty.wdmt"
    empty.write_bytes(b"")
    assert "empty file" in _error(empty)
    assert "no such file" in _error(tmp_path / "missing.wdmt")


def test_digest_identifies_bytes(tmp_path: Path) -> None:
    a = _good(tmp_path)
    b = tmp_path / "copy.wdmt"
    shutil.copy(a, b)
    assert trace_digest(a) == trace_digest(b) and trace_digest(a).startswith("sha256:")


def test_writer_refuses_an_input_as_output_before_touching_it(tmp_path: Path) -> None:
    good = _good(tmp_path)
    before = good.read_bytes()
    for out in (good, tmp_path / "." / "good.wdmt", Path(f"{good}.part").with_name("good.wdmt")):
        with pytest.raises(FormatError, match="is the input"):
            TraceWriter(out, workload="w", seed=0, params={}, phases=["a"], inputs=[good])
    link = tmp_path / "link.wdmt"
    link.symlink_to(good)
    with pytest.raises(FormatError, match="is the input"):
        TraceWriter(link, workload="w", seed=0, params={}, phases=["a"], inputs=[good])
    part_in = tmp_path / "x.wdmt.part"  # e.g. a leftover temporary file given as the input
    part_in.write_bytes(before)
    with pytest.raises(FormatError, match="its temporary file"):
        TraceWriter(tmp_path / "x.wdmt", workload="w", seed=0, params={}, phases=["a"], inputs=[part_in])
    assert good.read_bytes() == before and part_in.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["good.wdmt", "link.wdmt", "x.wdmt.part"]


# --- version 1 (no checksums) still reads --------------------------------------------------------

def _v1_file(path: Path, sessions: int = 20) -> tuple[bytes, dict]:
    """A version-1 trace built by hand as the version-1 writer laid it out: header, sessions, trailer."""
    header = {"format": "wdm-trace", "version": 1, "workload": "w", "seed": 0, "params": {}, "dialect": "2024",
              "phases": [{"name": "a", "sessions": sessions}], "scenarios": [], "sessions": sessions,
              "requests": 2 * sessions, "duration": float(sessions - 1), "expect": {}, "generator": "wdm-replay 0.1"}
    recs = [{"sid": i, "phase": 0, "at": float(i),
             "steps": [step("create_user", bind=f"$u{i}"), step("find_user", [f"$u{i}"])]} for i in range(sessions)]
    data = b"".join(msgpack.packb(x, use_bin_type=True) for x in
                    [header, *recs, {"trailer": "wdm-trace", "sessions": sessions, "requests": 2 * sessions}])
    path.write_bytes(data)
    return data, header


def test_v1_file_reads_whole_and_skipping(tmp_path: Path) -> None:
    path = tmp_path / "v1.wdmt"
    _, header = _v1_file(path)
    assert read_header(path) == header
    with TraceReader(path) as r:
        assert [s["sid"] for s in r] == list(range(20))
    with TraceReader(path) as r:
        assert [s["sid"] for s in r.sessions(lambda sid: sid % 3 == 1)] == list(range(1, 20, 3))


def test_v1_bad_files_still_one_line_errors(tmp_path: Path) -> None:
    data, header = _v1_file(tmp_path / "v1.wdmt")
    hdr_len = len(msgpack.packb(header, use_bin_type=True))
    bad = tmp_path / "bad.wdmt"
    for cut in (len(data) - 1, len(data) // 2):
        bad.write_bytes(data[:cut])
        assert "truncated at byte" in _error(bad)
    corrupt = bytearray(data)
    corrupt[hdr_len] = 0xC1  # 0xc1 is "never used" in msgpack
    bad.write_bytes(bytes(corrupt))
    assert f"corrupt at byte {hdr_len}: invalid msgpack" in _error(bad)
    bad.write_bytes(data[:hdr_len] + msgpack.packb([1, 2]) + data[hdr_len:])
    assert f"corrupt at byte {hdr_len}: expected a map" in _error(bad)
    bad.write_bytes(data + msgpack.packb({"x": 1}))
    assert "data after the trailer" in _error(bad)


# --- any flipped byte is an error ----------------------------------------------------------------

def _small_trace(tmp_path: Path) -> bytes:
    path = tmp_path / "small.wdmt"
    if not path.exists():
        with TraceWriter(path, workload="w", seed=3, params={"rate": 2}, phases=["a", "b"], scenarios=["s"]) as w:
            w.write_session(0, 0, 0.0, [step("create_item", [5], bind="$i", scenario="s"),
                                        step("add_stock", ["$i", 300], scenario="s")])
            w.write_session(1, 1, 0.5, [step("find_item", ["$i"], scenario="s", think=0.25)])
    return path.read_bytes()


def _read_fully(path: Path, keep) -> None:
    with TraceReader(path) as r:
        for _ in r.sessions(keep):
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), skipping=st.booleans())
def test_any_flipped_byte_is_a_format_error(tmp_path: Path, data, skipping: bool) -> None:
    good = _small_trace(tmp_path)
    pos = data.draw(st.integers(0, len(good) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    bad = tmp_path / "flipped.wdmt"
    flipped = bytearray(good)
    flipped[pos] ^= mask
    bad.write_bytes(bytes(flipped))
    with pytest.raises(FormatError) as e:
        _read_fully(bad, (lambda sid: sid == 1) if skipping else None)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_every_single_bit_flip_is_a_format_error(tmp_path: Path) -> None:
    good = _small_trace(tmp_path)
    assert accepted_bit_flips(good, tmp_path / "flipped.wdmt", lambda p: _read_fully(p, None)) == []


def test_a_flipped_add_stock_amount_is_refused(tmp_path: Path) -> None:
    # The finding: one flipped bit changed an add_stock amount, and the run blamed the shop.
    from wdmreplay.workloads import generate

    path = tmp_path / "s.wdmt"
    generate("stress", path, seed=4, sessions=30)
    with TraceReader(path) as r:
        item, amount = next(s["args"] for sess in r for s in sess["steps"] if s["op"] == "add_stock")
    data = path.read_bytes()
    needle = msgpack.packb([item, amount], use_bin_type=True)
    at = data.index(needle) + len(needle) - 1  # the amount's low byte
    frame_off = max(off for off, _ in _frames(data) if off < at)
    flipped = bytearray(data)
    flipped[at] ^= 0x04  # one bit: e.g. 300 → 296
    path.write_bytes(bytes(flipped))
    assert f"corrupt at byte {frame_off}: checksum mismatch" in _error(path)


# --- the installed console script on bad files -------------------------------------------------

def _console_script() -> str:
    exe = shutil.which("wdm-replay", path=os.path.dirname(sys.executable)) or str(Path(sys.executable).with_name("wdm-replay"))
    assert Path(exe).exists(), "wdm-replay console script not installed"
    return exe


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "newer", "wrong_format", "missing"])
def test_cli_bad_trace_is_one_line_exit_2(tmp_path: Path, kind: str) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / f"{kind}.wdmt"
    if kind == "truncated":
        bad.write_bytes(data[: len(data) - 7])
    elif kind == "corrupt":
        bad.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x20]) + data[len(data) // 2 + 1:])
    elif kind == "newer":
        bad.write_bytes(msgpack.packb(read_header(good) | {"version": 99}))
    elif kind == "wrong_format":
        bad.write_bytes(b"PK\x03\x04 a zip file, say")
    proc = subprocess.run([_console_script(), "inspect", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wdm-replay: error: ") and str(bad) in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- tuples for the replay engine (issue 24) -------------------------------------------------------

def _as_lists(s: dict) -> dict:
    return {**s, "steps": [{**st, "args": list(st["args"])} for st in s["steps"]]}


def test_sessions_as_tuples_hold_the_same_steps_and_counts(tmp_path: Path) -> None:
    """tuples=True: steps and args decode as tuples, equal to the list form, skipped sessions still counted.

    (A skipped session counted as 0 requests would make the trailer check raise at the end.)
    """
    path = tmp_path / "t.wdmt"
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        for i in range(300):
            w.write_session(i, 0, i / 10, [step("create_item", [i], bind=f"$s{i}.i", scenario="s"),
                                           step("add_stock", [f"$s{i}.i", 7 + i], scenario="s"),
                                           step("create_user", [], bind=f"$s{i}.u", scenario="s")])
    keep = lambda sid: sid % 3 == 1  # noqa: E731
    for k in (None, keep):
        with TraceReader(path) as r:
            as_lists = list(r.sessions(k))
        with TraceReader(path) as r:
            as_tuples = list(r.sessions(k, tuples=True))
        assert len(as_tuples) == (300 if k is None else 100)
        assert all(type(s["steps"]) is tuple and all(type(st["args"]) is tuple for st in s["steps"]) for s in as_tuples)
        assert [_as_lists(s) for s in as_tuples] == as_lists
        assert all(type(s["steps"]) is list for s in as_lists)
    # Reading to the end checked the trailer's counts: skipped sessions were counted by their steps.


def test_v1_sessions_with_tuples_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.wdmt"
    _v1_file(path)
    with TraceReader(path) as r:
        assert [s["sid"] for s in r.sessions(lambda sid: sid % 3 == 1, tuples=True)] == list(range(1, 20, 3))
