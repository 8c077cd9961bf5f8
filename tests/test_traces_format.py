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

from wdmreplay.traces import FormatError, TraceReader, TraceWriter, read_header, step, trace_digest
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


def test_truncated_file_reports_offset(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    for cut in (len(data) - 1, len(data) - 20, len(data) // 2):
        bad = tmp_path / f"cut{cut}.wdmt"
        bad.write_bytes(data[:cut])
        msg = _error(bad)
        assert "truncated" in msg and "byte" in msg
        assert any(ch.isdigit() for ch in msg.split("byte", 1)[1])


def test_truncated_header(tmp_path: Path) -> None:
    data = _good(tmp_path).read_bytes()
    bad = tmp_path / "h.wdmt"
    bad.write_bytes(data[:10])
    assert "truncated" in _error(bad) or "not a wdm-trace" in _error(bad)


def test_corrupt_record_reports_offset(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = bytearray(good.read_bytes())
    hdr_len = len(msgpack.packb(read_header(good), use_bin_type=True))
    data[hdr_len] = 0xC1  # 0xc1 is "never used" in msgpack
    bad = tmp_path / "corrupt.wdmt"
    bad.write_bytes(bytes(data))
    msg = _error(bad)
    assert f"corrupt at byte {hdr_len}: invalid msgpack" in msg


def test_non_map_record_and_trailing_garbage(tmp_path: Path) -> None:
    good = _good(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "garbage.wdmt"
    bad.write_bytes(data + msgpack.packb({"x": 1}))
    assert "data after the trailer" in _error(bad)
    hdr = msgpack.packb(read_header(good), use_bin_type=True)
    bad2 = tmp_path / "list.wdmt"
    bad2.write_bytes(hdr + msgpack.packb([1, 2]) + data[len(hdr):])
    assert f"corrupt at byte {len(hdr)}" in _error(bad2)


def test_wrong_format_and_newer_version_and_empty(tmp_path: Path) -> None:
    other = tmp_path / "other.wdmt"
    other.write_bytes(msgpack.packb({"format": "wdm-results", "version": 1}))
    assert "not a wdm-trace file (a 'wdm-results' file)" in _error(other)
    text = tmp_path / "text.wdmt"
    text.write_text("hello, this is not msgpack\n")
    assert "not a wdm-trace file" in _error(text)
    newer = tmp_path / "newer.wdmt"
    h = read_header(_good(tmp_path)) | {"version": TRACE_VERSION + 1}
    newer.write_bytes(msgpack.packb(h))
    msg = _error(newer)
    assert f"version {TRACE_VERSION + 1} is newer" in msg
    empty = tmp_path / "empty.wdmt"
    empty.write_bytes(b"")
    assert "empty file" in _error(empty)
    assert "no such file" in _error(tmp_path / "missing.wdmt")


def test_count_mismatch_with_trailer(tmp_path: Path) -> None:
    good = _good(tmp_path)
    with TraceReader(good) as r:
        recs = list(r)
        hdr = r.header
    bad = tmp_path / "short.wdmt"
    bad.write_bytes(b"".join(msgpack.packb(x, use_bin_type=True) for x in
                             [hdr, *recs[:-1], {"trailer": "wdm-trace", "sessions": 20, "requests": 40}]))
    assert "trailer says 20 / 40" in _error(bad)


def test_digest_identifies_bytes(tmp_path: Path) -> None:
    a = _good(tmp_path)
    b = tmp_path / "copy.wdmt"
    shutil.copy(a, b)
    assert trace_digest(a) == trace_digest(b) and trace_digest(a).startswith("sha256:")


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
        hdr_len = len(msgpack.packb(read_header(good), use_bin_type=True))
        bad.write_bytes(data[:hdr_len] + b"\xc1" + data[hdr_len + 1:])
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
