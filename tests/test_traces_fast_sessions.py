"""The replay worker's session decoding (msgspec, :func:`session_decoder`) reads what msgpack reads.

A version-2 trace read with ``tuples=True`` has its session records decoded by msgspec; any record
msgspec refuses — and everything after it in its frame — is decoded by msgpack as before. These
tests write frames of generated records (usual sessions, and records of every other shape: extra
or missing keys, other types, nested args, binary, duplicate keys, corrupt or cut-short bytes) and
compare the records, or the error, with and without the fast decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wdmreplay.traces import TraceReader, TraceWriter, step
from wdmreplay.traces.stream import FormatError, RecordReader, packer, prologue, write_frame
from wdmreplay.traces.trace import STEP_KEYS, TRACE_FORMAT, session_decoder

SESSION_KEYS = ("sid", "phase", "at", "steps")


def _write(path: Path, frames: list[bytes], trailer: dict | None = None) -> None:
    """A version-2 trace file of raw frames (each the bytes of whole packed records, or not)."""
    pk = packer()
    with open(path, "wb") as f:
        f.write(prologue(TRACE_FORMAT, 2))
        write_frame(f, pk.pack({"format": TRACE_FORMAT, "version": 2}))
        for payload in frames:
            write_frame(f, payload)
        write_frame(f, pk.pack(trailer or {"trailer": TRACE_FORMAT, "sessions": 0, "requests": 0}))


def _read(path: Path, fast: bool) -> tuple[list, str | None]:
    """Every record as the worker's reader yields it (the format's keys, in their order), and the error."""
    out: list = []
    try:
        with RecordReader(path, TRACE_FORMAT, 2) as r:
            r.use_list = False
            r.decode_fast = session_decoder() if fast else None
            for rec in r:
                out.append(_format_keys(rec))
    except FormatError as e:
        return out, str(e)
    return out, None


def _format_keys(rec: Any) -> str:
    # The fast decoder keeps only the format's keys (all the replay engine reads): compare those,
    # by repr (NaN, and 1 against 1.0 or True, must match too).
    if isinstance(rec, dict) and isinstance(rec.get("steps"), tuple):
        rec = {k: rec[k] for k in SESSION_KEYS if k in rec} | {
            "steps": tuple({k: s[k] for k in STEP_KEYS if k in s} if isinstance(s, dict) else s for s in rec["steps"])}
    return repr(rec)


_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=5),
                   st.binary(max_size=3))
_ARGS = st.lists(st.one_of(_VALUE, st.lists(st.integers(), max_size=2)), max_size=3)
_STEP = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["add_stock", "create_item"]), _VALUE), "args": st.one_of(_ARGS, _VALUE),
     "bind": st.one_of(st.none(), st.just("$s1.item"), _VALUE), "expect": st.sampled_from(["ok", "fail", "any"]),
     "think": st.one_of(st.floats(0, 5), st.integers(0, 5), _VALUE), "scenario": st.one_of(st.just("s1"), _VALUE)},
    optional={"extra": _VALUE})
_SESSION = st.fixed_dictionaries(
    {"sid": st.one_of(st.integers(0, 2**32), _VALUE), "phase": st.one_of(st.integers(0, 3), _VALUE),
     "at": st.one_of(st.floats(0, 10), st.integers(0, 10), _VALUE),
     "steps": st.one_of(st.lists(st.one_of(_STEP, _VALUE), max_size=3), _VALUE)},
    optional={"extra": _VALUE, "trailer": st.just(TRACE_FORMAT), 7: _VALUE})

_USUAL = st.fixed_dictionaries({"sid": st.integers(0, 1000), "phase": st.just(0), "at": st.floats(0, 1),
                                "steps": st.lists(st.builds(step, st.sampled_from(["add_stock", "find_item"]),
                                                            st.lists(st.one_of(st.integers(-2**63, 2**63), st.text(max_size=4)),
                                                                     max_size=3),
                                                            think=st.one_of(st.integers(0, 3), st.floats(0, 3))),
                                                  max_size=4)})
_RECORD = st.one_of(_USUAL, _USUAL, _SESSION, _VALUE)  # half of them sessions as a writer makes them


@settings(max_examples=250, deadline=None)
@given(data=st.data(), frames=st.integers(1, 3), per=st.integers(1, 5), tail=st.sampled_from([b"", b"\xc1", b"\x92\x01"]),
       dup=st.booleans())
def test_records_read_with_the_fast_decoder_are_what_msgpack_reads(tmp_path_factory, data, frames, per, tail, dup):
    path = tmp_path_factory.mktemp("fast") / "t.wdmt"
    pk = packer()
    payloads = []
    for _ in range(frames):
        recs = [pk.pack(data.draw(_RECORD)) for _ in range(per)]
        if dup:  # a duplicate key: the last value wins in both decoders
            recs.append(b"\x85" + pk.pack("sid") + pk.pack(1) + pk.pack("phase") + pk.pack(0) + pk.pack("at")
                        + pk.pack(0.5) + pk.pack("steps") + pk.pack([]) + pk.pack("sid") + pk.pack(2))
        payloads.append(b"".join(recs))
    payloads[-1] += tail  # a corrupt byte, or a record cut short, at the end of the last frame
    _write(path, payloads)
    slow, fast = _read(path, False), _read(path, True)
    assert fast == slow


def test_a_corrupt_record_between_sessions_is_the_same_error_with_the_fast_decoder(tmp_path):
    pk = packer()
    s = pk.pack({"sid": 1, "phase": 0, "at": 0.0, "steps": [step("find_item", ["1"])]})
    path = tmp_path / "t.wdmt"
    for bad in (b"\xc1", b"\xa5ab", b"\x81\xa1x\xa3\xed\xa0\x80", pk.pack([1, 2])):  # reserved byte, cut str, bad UTF-8, not a map
        _write(path, [s + bad + s])
        slow, fast = _read(path, False), _read(path, True)
        assert fast == slow and slow[1] is not None and "corrupt at byte" in slow[1]
        assert len(fast[0]) == 1  # the session before the bad record was read by both


def test_a_trace_read_with_tuples_decodes_its_sessions_with_msgspec(tmp_path, monkeypatch):
    path = tmp_path / "t.wdmt"
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        for i in range(50):
            w.write_session(i, 0, i / 10, [step("create_item", [i], bind=f"$s{i}.i", scenario="s"),
                                           step("add_stock", [f"$s{i}.i", 7], think=1, scenario="s")])
    taken: list = []
    real = session_decoder()

    def counting(b: memoryview) -> dict:
        rec = real(b)  # a refused record (the trailer) raises before it is counted
        taken.append(rec)
        return rec

    monkeypatch.setattr("wdmreplay.traces.trace._session_decoder", counting)
    with TraceReader(path) as r:
        fast = list(r.sessions(tuples=True))
    with TraceReader(path) as r:
        lists = list(r.sessions())
    assert len(taken) == 50  # every session was decoded by msgspec
    assert [_format_keys(s) for s in fast] == [_format_keys({**s, "steps": tuple(
        {**x, "args": tuple(x["args"])} for x in s["steps"])}) for s in lists]
    assert all(type(s["steps"][1]["think"]) is int for s in fast)  # an int stays an int


@pytest.mark.parametrize("rec", [{"sid": 1, "phase": 0, "at": 0.0, "steps": [], "trailer": TRACE_FORMAT},
                                 {"trailer": TRACE_FORMAT, "sessions": 0, "requests": 0}])
def test_a_trailer_is_never_taken_for_a_session(tmp_path, rec):
    path = tmp_path / "t.wdmt"
    pk = packer()
    with open(path, "wb") as f:
        f.write(prologue(TRACE_FORMAT, 2))
        write_frame(f, pk.pack({"format": TRACE_FORMAT, "version": 2}))
        write_frame(f, pk.pack(rec))
    slow, fast = _read(path, False), _read(path, True)
    assert fast == slow == ([], None)


def test_the_decoder_is_ready_when_sessions_is_called_not_at_the_first_read(tmp_path):
    # Making it imports msgspec (milliseconds): in a replay that must happen in Engine.open(), not
    # inside the first timed phase (it showed as a 10 ms start lag at 2,000 sessions/s).
    path = tmp_path / "t.wdmt"
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        w.write_session(0, 0, 0.0, [step("find_item", ["1"])])
    with TraceReader(path) as r:
        it = r.sessions(tuples=True)
        assert r._r.decode_fast is session_decoder() and r._r.use_list is False
        assert [s["sid"] for s in it] == [0]
    with TraceReader(path) as r:
        r.sessions()
        assert r._r.decode_fast is None and r._r.use_list is True
