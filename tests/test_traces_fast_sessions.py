"""The replay worker's session decoding (msgspec Structs, :mod:`wdmreplay.traces.wire`) reads what msgpack reads.

A version-2 trace read by ``replay_sessions`` has its session records decoded by msgspec into
``ReplaySession`` Structs (with a session filter, every record first skimmed for its sid and number
of steps); any record msgspec refuses — and everything after it in its frame — is decoded by msgpack
as before, and made into the same Struct. These tests write frames of generated records (usual
sessions, and records of every other shape: extra or missing keys, other types, nested args, binary,
duplicate keys, corrupt or cut-short bytes) and compare the records, or the error, with and without
the fast decoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wdmreplay.traces import TraceReader, TraceWriter, step
from wdmreplay.traces.stream import FormatError, RecordReader, packer, prologue, write_frame
from wdmreplay.traces.trace import STEP_KEYS, TRACE_FORMAT, TraceHeader, TracePhase
from wdmreplay.traces.wire import (SESSION_START, ReplaySession, ReplayStep, frame_decoder, replay_session,
                                   session_decoder, skim_decoder)

SESSION_KEYS = ("sid", "phase", "at", "steps")


def _write(path: Path, frames: list[bytes], trailer: dict | None = None) -> None:
    """A version-2 trace file of raw frames (each the bytes of whole packed records, or not)."""
    pk = packer()
    with open(path, "wb") as f:
        f.write(prologue(TRACE_FORMAT, 2))
        write_frame(f, pk.pack(TraceHeader(workload="w", phases=(TracePhase("a", 0),), sessions=0, requests=0).to_record()))
        for payload in frames:
            write_frame(f, payload)
        write_frame(f, pk.pack(trailer or {"trailer": TRACE_FORMAT, "sessions": 0, "requests": 0}))


def _keep(sid: Any) -> bool:
    """A session filter that takes any value (the general skipping path calls it on whatever ``sid`` holds)."""
    return len(repr(sid)) % 2 == 0


def _read(path: Path, fast: bool | str, keep: Any = None) -> tuple[list, str | None]:
    """Every record as the worker's reader yields it (canonical form), and the error.

    ``fast``: False, msgpack only; ``"record"``, msgspec record by record; True, whole frames first.
    """
    out: list = []
    try:
        with RecordReader(path, TRACE_FORMAT, 2) as r:
            r.use_list = False
            r.frame_fast = frame_decoder() if fast is True else None
            r.decode_fast = session_decoder() if fast else None
            r.skim_fast = skim_decoder() if fast and keep is not None else None
            for rec in (r if keep is None else r.iter_skipping("sid", keep, "steps")):
                out.append(_canon(rec))
    except FormatError as e:
        return out, str(e)
    return out, None


def _canon(x: Any) -> Any:
    """``x`` with Structs as the maps msgpack makes and every map's keys sorted; leaves by repr
    (NaN, and 1 against 1.0 or True, must match too)."""
    if isinstance(x, ReplaySession):
        x = {"sid": x.sid, "phase": x.phase, "at": x.at, "steps": x.steps}
    elif isinstance(x, ReplayStep):
        x = {k: getattr(x, k) for k in STEP_KEYS}
    if isinstance(x, dict):
        return ("map", tuple(sorted((repr(k), _canon(v)) for k, v in x.items())))
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_canon(v) for v in x))
    return repr(x)


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
       dup=st.sampled_from([None, (1, 3), (10, 12)]), skipping=st.booleans())
def test_records_read_with_the_fast_decoder_are_what_msgpack_reads(tmp_path_factory, data, frames, per, tail, dup,
                                                                   skipping):
    path = tmp_path_factory.mktemp("fast") / "t.wdmt"
    pk = packer()
    payloads = []
    for _ in range(frames):
        recs = [pk.pack(data.draw(_RECORD)) for _ in range(per)]
        if dup:  # a duplicate key: the last value wins in both decoders
            # (with a filter, both sids pass it or both fail: the general skipping path judges a
            # record by the first sid that fails, msgspec by the last; no writer repeats a key)
            recs.append(b"\x85" + pk.pack("sid") + pk.pack(dup[0]) + pk.pack("phase") + pk.pack(0) + pk.pack("at")
                        + pk.pack(0.5) + pk.pack("steps") + pk.pack([]) + pk.pack("sid") + pk.pack(dup[1]))
        payloads.append(b"".join(recs))
    payloads[-1] += tail  # a corrupt byte, or a record cut short, at the end of the last frame
    _write(path, payloads)
    keep = _keep if skipping else None
    slow, by_record, by_frame = _read(path, False, keep), _read(path, "record", keep), _read(path, True, keep)
    assert by_record == slow and by_frame == slow


@pytest.mark.parametrize("keep", [None, lambda sid: sid % 2 == 1, lambda sid: sid % 2 == 0])
def test_a_corrupt_record_between_sessions_is_the_same_error_with_the_fast_decoder(tmp_path, keep):
    pk = packer()
    s = pk.pack({"sid": 1, "phase": 0, "at": 0.0, "steps": [step("find_item", ["1"])]})
    path = tmp_path / "t.wdmt"
    for bad in (b"\xc1", b"\xa5ab", b"\x81\xa1x\xa3\xed\xa0\x80", pk.pack([1, 2])):  # reserved byte, cut str, bad UTF-8, not a map
        _write(path, [s + bad + s])
        slow, fast = _read(path, False, keep), _read(path, True, keep)
        assert fast == slow == _read(path, "record", keep) and slow[1] is not None and "corrupt at byte" in slow[1]
        assert len(fast[0]) == 1  # the session before the bad record was read (or counted) by both


def _trace(path: Path, n: int = 50) -> None:
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        for i in range(n):
            w.write_session(i, 0, i / 10, [step("create_item", [i], bind=f"$s{i}.i", scenario="s"),
                                           step("add_stock", [f"$s{i}.i", 7], think=1, scenario="s")])


def test_replay_sessions_are_structs_decoded_by_msgspec_equal_to_the_maps(tmp_path, monkeypatch):
    path = tmp_path / "t.wdmt"
    _trace(path)
    import wdmreplay.traces.wire as wire

    calls = {"full": 0, "skim": 0}
    full, skim = session_decoder(), skim_decoder()

    def counting_full(b: memoryview) -> ReplaySession:
        rec = full(b)  # a refused record (the trailer) raises before it is counted
        calls["full"] += 1
        return rec

    def counting_skim(b: memoryview) -> tuple[int, int]:
        rec = skim(b)
        calls["skim"] += 1
        return rec

    def no_frames(payload: bytes, keep: Any) -> Any:
        raise ValueError("record by record")  # whole frames: see the test below

    monkeypatch.setattr(wire, "_session_decoder", counting_full)
    monkeypatch.setattr(wire, "_skim_decoder", counting_skim)
    monkeypatch.setattr(wire, "_frame_decoder", no_frames)
    for keep, kept in ((None, 50), (lambda sid: sid % 3 == 1, 17)):
        calls.update(full=0, skim=0)
        with TraceReader(path) as r:
            fast = list(r.replay_sessions(keep))
            assert (r.trailer.sessions, r.trailer.requests) == (50, 100)  # the counts were checked
        with TraceReader(path) as r:
            maps = list(r.sessions(keep, tuples=True))
        assert calls == {"full": kept, "skim": 0 if keep is None else 50}  # every session went through msgspec
        assert all(type(s) is ReplaySession and all(type(x) is ReplayStep for x in s.steps) for s in fast)
        assert fast == [replay_session(m, "t") for m in maps] and len(fast) == kept
        assert [_canon(s) for s in fast] == [_canon(m) for m in maps]  # value for value, type for type
        assert all(type(s.steps[1].think) is int for s in fast)  # an int stays an int


def test_sessions_msgspec_refuses_reach_the_engine_as_the_same_structs(tmp_path):
    # Another key, a nested arg, a bool think time, another key in a step: msgpack reads them, as
    # before, and each becomes a ReplaySession holding the values as they were. (A sid that is not
    # an integer from 0 to 2**32 - 1 is refused instead: tests/test_replay_cli.py.)
    pk = packer()
    recs = [{"sid": 0, "phase": 0, "at": 0, "steps": [step("find_item", ["1"])], "note": "x"},
            {"sid": 1, "phase": 0, "at": 0.5, "steps": [step("find_item", [["1", 2]])]},
            {"sid": 2, "phase": 0, "at": 1, "steps": [{**step("find_item", ["1"]), "think": True}]},
            {"sid": 3, "phase": 0, "at": 1, "steps": [{**step("find_item", ["1"]), "extra": 1}]}]
    path = tmp_path / "t.wdmt"
    _write(path, [b"".join(pk.pack(r) for r in recs)],
           {"trailer": TRACE_FORMAT, "sessions": 4, "requests": 4})
    with TraceReader(path) as r:
        got = list(r.replay_sessions())
    assert [type(s) for s in got] == [ReplaySession] * 4
    assert [s.sid for s in got] == [0, 1, 2, 3]
    assert got[1].steps[0].args == (("1", 2),) and got[2].steps[0].think is True
    assert [_canon(s)[1][:3] for s in got] == [_canon({k: r[k] for k in ("at", "phase", "sid")})[1] for r in recs]


@pytest.mark.parametrize("bad", [["find_item"], {"op": "find_item", "args": []}, None])
def test_a_step_that_is_not_a_step_map_is_a_one_line_format_error(tmp_path, bad):
    pk = packer()
    path = tmp_path / "t.wdmt"
    _write(path, [pk.pack({"sid": 0, "phase": 0, "at": 0, "steps": [step("find_item", ["1"]), bad]})],
           {"trailer": TRACE_FORMAT, "sessions": 1, "requests": 2})
    with TraceReader(path) as r, pytest.raises(FormatError) as e:
        list(r.replay_sessions())
    assert str(e.value) == (f"{path}: corrupt session record #0: step 1 is not a step map "
                            "(op, args, bind, expect, think, scenario)")


@pytest.mark.parametrize("keep", [None, lambda sid: True, lambda sid: False])
@pytest.mark.parametrize("rec", [{"sid": 1, "phase": 0, "at": 0.0, "steps": [], "trailer": TRACE_FORMAT},
                                 {"trailer": TRACE_FORMAT, "sessions": 0, "requests": 0}])
def test_a_trailer_is_never_taken_for_a_session(tmp_path, rec, keep):
    path = tmp_path / "t.wdmt"
    pk = packer()
    with open(path, "wb") as f:
        f.write(prologue(TRACE_FORMAT, 2))
        write_frame(f, pk.pack({"format": TRACE_FORMAT, "version": 2}))
        write_frame(f, pk.pack(rec))
    slow, fast = _read(path, False, keep), _read(path, True, keep)
    assert fast == slow == _read(path, "record", keep)
    if "sid" not in rec or keep is None or keep(1):
        assert slow == ([], None)
    # else the general skipping path passes over a record with a failing sid before it sees its
    # trailer key (so the file has no trailer); the skim refuses it and leaves it to that path


def test_the_decoders_are_ready_when_replay_sessions_is_called_not_at_the_first_read(tmp_path):
    # Making them imports msgspec (milliseconds): in a replay that must happen in Engine.open(), not
    # inside the first timed phase (it showed as a 10 ms start lag at 2,000 sessions/s).
    path = tmp_path / "t.wdmt"
    _trace(path, 1)
    with TraceReader(path) as r:
        it = r.replay_sessions(lambda sid: True)
        assert r._r.decode_fast is session_decoder() and r._r.skim_fast is skim_decoder()
        assert r._r.use_list is False
        assert [s.sid for s in it] == [0]
    with TraceReader(path) as r:
        r.sessions(tuples=True)
        assert r._r.decode_fast is None and r._r.skim_fast is None and r._r.use_list is False


def test_msgspec_structs_are_untracked_by_the_garbage_collector():
    import gc

    s = session_decoder()(packer().pack({"sid": 0, "phase": 0, "at": 0, "steps": [step("find_item", ["1"])]}))
    assert not gc.is_tracked(s) and not gc.is_tracked(s.steps[0])
    assert msgspec.structs.force_setattr is not None  # msgspec's structs module (frozen Structs are read-only)
    with pytest.raises(AttributeError):
        s.sid = 1  # type: ignore[misc]


@pytest.mark.parametrize("keep", [None, lambda sid: sid % 3 == 1])
def test_whole_frames_of_sessions_are_decoded_at_once_and_a_miscount_falls_back(tmp_path, monkeypatch, keep):
    import wdmreplay.traces.wire as wire

    path = tmp_path / "t.wdmt"
    odd = "\u1123sid"  # UTF-8 e1 84 a3 73 69 64: the bytes a record starts with, inside an arg (counted too)
    assert SESSION_START in odd.encode()
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        for i in range(3000):  # several frames; one holds an arg that makes its count too high
            w.write_session(i, 0, i / 10, [step("create_item", [i], bind=f"$s{i}.i", scenario="s"),
                                           step("add_stock", [f"$s{i}.i", odd if i == 2000 else 7], scenario="s")])
    taken, refused = [], []
    real = frame_decoder()

    def counting(payload: bytes, k: Any) -> Any:
        try:
            recs = real(payload, k)
        except ValueError:
            refused.append(payload)
            raise
        taken.append(len(recs))
        return recs

    monkeypatch.setattr(wire, "_frame_decoder", counting)
    with TraceReader(path) as r:
        fast = list(r.replay_sessions(keep))
    with TraceReader(path) as r:
        maps = list(r.sessions(keep, tuples=True))
    assert fast == [replay_session(m, "t") for m in maps] and len(fast) == (3000 if keep is None else 1000)
    assert [_canon(s) for s in fast] == [_canon(m) for m in maps]
    # every frame of sessions was taken whole but the one with the miscount (the trailer's is refused too)
    assert len(taken) >= 3 and sum(taken) < 3000 and len(refused) == 2
    (arg_frame,) = [p for p in refused if p.startswith(SESSION_START)]  # the other one is the trailer's
    assert odd.encode() in arg_frame and sum(taken) + arg_frame.count(SESSION_START) - 1 == 3000


def test_op_names_and_expect_values_decode_to_one_string_each_and_others_are_read_as_they_are(tmp_path):
    # A known op name and expect value decode to the Literal's own string (the op names the engine's
    # route table is keyed by): no string is made per step. An expect value of no code is refused by
    # msgspec, read by msgpack, and reaches the engine as before; an op no version knows is refused
    # in words (the engine has no route to look up for it).
    from wdmreplay.operations import OP_NAMES

    path = tmp_path / "t.wdmt"
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        for i in range(20):
            w.write_session(i, 0, i / 10, [step("find_item", [str(i)], scenario="s"),
                                           step("add_stock", [str(i), 1], expect="any")])
        w.write_session(20, 0, 2.1, [step("find_item", ["1"], expect="maybe", scenario="s")])
    with TraceReader(path) as r:
        got = list(r.replay_sessions())
    with TraceReader(path) as r:
        maps = list(r.sessions(tuples=True))
    assert [_canon(s) for s in got] == [_canon(m) for m in maps]
    known = [x for s in got[:20] for x in s.steps]
    assert all(x.op is OP_NAMES[OP_NAMES.index(x.op)] for x in known)
    assert len({id(x.expect) for x in known if x.expect == "ok"}) == 1
    assert [(x.op, x.expect) for s in got[20:] for x in s.steps] == [("find_item", "maybe")]
    with TraceWriter(path, workload="w", seed=1, params={}, phases=["a"], scenarios=["s"]) as w:
        w.write_session(0, 0, 0.0, [step("find_item", ["1"], scenario="s")])
        w.write_session(1, 0, 0.1, [step("find_item", ["1"], scenario="s"), step("teleport_user", ["1"], scenario="s")])
    with TraceReader(path) as r, pytest.raises(FormatError, match="record #1: step 1 uses unknown operation 'teleport_user'"):
        list(r.replay_sessions())


_ARG = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(), st.sampled_from(["", "$s1.item", "\u1123sid"]),
                 st.text(max_size=6))
_WRITER_SESSION = st.fixed_dictionaries({
    "sid": st.integers(0, 2**40), "phase": st.just(0), "at": st.one_of(st.floats(0, 10), st.integers(0, 10)),
    "steps": st.lists(st.builds(step, st.sampled_from(["add_stock", "create_item", "checkout"]), st.lists(_ARG, max_size=3),
                                bind=st.one_of(st.none(), st.just("$s1.item")), expect=st.sampled_from(["ok", "fail", "any"]),
                                think=st.one_of(st.floats(0, 5), st.integers(0, 5)), scenario=st.text(max_size=3)),
                      max_size=4)})


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.lists(_WRITER_SESSION, min_size=1, max_size=6), min_size=1, max_size=3), skipping=st.booleans())
def test_frames_of_sessions_as_a_writer_makes_them_read_alike_whole_by_record_and_by_msgpack(tmp_path_factory, frames,
                                                                                         skipping):
    # Frames msgspec mostly takes whole (every record a session of the usual shape), with values at
    # the edges: 64-bit integers, NaN, an arg holding the bytes a record starts with (a miscount).
    path = tmp_path_factory.mktemp("frames") / "t.wdmt"
    pk = packer()
    _write(path, [b"".join(pk.pack(rec) for rec in recs) for recs in frames])
    keep = (lambda sid: sid % 2 == 0) if skipping else None
    slow = _read(path, False, keep)
    assert _read(path, "record", keep) == slow and _read(path, True, keep) == slow and slow[1] is None


def test_the_largest_session_id_is_what_the_results_file_records():
    # The replay's reader refuses a sid its results could not hold: the bound is the sid column's.
    import numpy as np

    from wdmreplay.traces.results import COLUMNS
    from wdmreplay.traces.wire import SID_MAX

    (dtype,) = [d for name, d, _ in COLUMNS if name == "sid"]
    assert SID_MAX == np.iinfo(np.dtype(dtype)).max
