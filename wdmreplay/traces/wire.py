"""Sessions as the replay engine reads them: msgspec Structs, decoded straight from a trace's records.

Imported only by a replay worker (:meth:`.trace.TraceReader.replay_sessions`, called in
``Engine.open``): msgspec's import (milliseconds) stays out of every other command's start-up and
out of a replay's timed phases. Every session reaches the engine as a :class:`ReplaySession` —
decoded by msgspec when it has the usual shape, else made by :func:`replay_session` from the map
msgpack decoded (a record msgspec refuses, a version-1 trace) — so the engine reads one shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

import msgspec

from ..operations import OP_NAMES, OPERATIONS
from .stream import FormatError
from .keys import EXPECT_VALUES, steps_problem

# An op name or an expect value decodes to the very string object named here (msgspec returns a
# Literal's own value): its hash is cached and the engine's route lookup finds its key by identity,
# where a fresh string per step was allocated, hashed and freed. Any other value is refused, and
# msgpack reads that record as before.
_OpName = Literal[OP_NAMES]  # type: ignore[valid-type]
_Expect = Literal[EXPECT_VALUES]  # type: ignore[valid-type]
# The largest session id the replay can record: the results file's sid column is unsigned 32-bit
# (results.COLUMNS). msgspec checks the bounds as it decodes; a record outside them is read by
# msgpack and refused by replay_session in words.
SID_MAX = 2**32 - 1
_Sid = Annotated[int, msgspec.Meta(ge=0, le=SID_MAX)]


class ReplayStep(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """A step as the replay engine reads it: the format's keys as attributes (see :class:`.trace.Step`).

    msgspec decodes a step of the usual types straight into one (no dict, no key strings); a step
    it refuses is made from msgpack's map by :func:`replay_session` with its values as they are.
    Frozen and untracked by the garbage collector (``gc=False``: it never holds a container that
    could hold it).
    """

    op: _OpName
    args: tuple[str | int | float | bool | None, ...]
    bind: str | None
    expect: _Expect
    think: int | float
    scenario: str


class ReplaySession(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """A session as the replay engine reads it (see :class:`.trace.Session`); steps are :class:`ReplayStep`.

    The decoder takes exactly the format's keys: a record with any other key (a ``trailer``, a key
    a later version adds) is refused and read by msgpack, whose map :func:`replay_session` turns
    into the same Struct — so every value the decoder takes is one msgpack would have read too
    (msgspec skips an unknown key's value without checking it, msgpack decodes it).
    """

    sid: _Sid
    phase: int
    at: int | float
    steps: tuple[ReplayStep, ...]


class _SkimSession(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """What a worker reading its share needs of any session: its ``sid`` and the number of its steps."""

    sid: _Sid
    phase: int
    at: int | float
    steps: msgspec.Raw  # left undecoded: only its array header is read


# Each decoder is made once per process, when a replay worker opens the trace.
_session_decoder: Callable[[Any], ReplaySession] | None = None
_skim_decoder: Callable[[Any], tuple[int, int]] | None = None
_frame_decoder: Callable[[bytes, Callable[[int], bool] | None], Any] | None = None


def session_decoder() -> Callable[[Any], ReplaySession]:
    """A decoder of one packed session record into a :class:`ReplaySession` (made once).

    msgspec decodes a session of the usual shape — exactly the keys of :class:`.trace.Session` and
    :class:`.trace.Step` with values of their usual types, args of strings, numbers, booleans and
    nil — into Structs; it builds no dict and no key string. Anything else (another type, a missing
    or an extra key, a trailer) it refuses with a ValueError, and msgpack decodes that record as
    before (:class:`.stream.RecordReader`), :func:`replay_session` making the same Struct of it.
    """
    global _session_decoder
    if _session_decoder is None:
        _session_decoder = msgspec.msgpack.Decoder(ReplaySession).decode
    return _session_decoder


def _array_length(raw: memoryview) -> int:
    """The length of the msgpack array ``raw`` starts with; ValueError when it is not an array."""
    b = raw[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC:
        return int.from_bytes(raw[1:3], "big")
    if b == 0xDD:
        return int.from_bytes(raw[1:5], "big")
    raise ValueError("steps is not an array")


def skim_decoder() -> Callable[[Any], tuple[int, int]]:
    """A decoder of one packed session record into ``(sid, number of steps)``, the steps undecoded (made once).

    What a worker of a ``--workers N`` or ``--shard`` replay reads of every session to tell its own
    from the others' (:meth:`.stream.RecordReader.iter_skipping`); like :func:`session_decoder` it
    refuses (ValueError) a trailer and any record but one of exactly the session's keys with an int
    ``sid`` and ``phase``, a number ``at`` and an array of ``steps`` (the steps themselves unread).
    """
    global _skim_decoder
    if _skim_decoder is None:
        decode = msgspec.msgpack.Decoder(_SkimSession).decode

        def skim(b: Any) -> tuple[int, int]:
            rec = decode(b)
            return rec.sid, _array_length(memoryview(rec.steps))

        _skim_decoder = skim
    return _skim_decoder


def replay_session(rec: dict, where: str) -> ReplaySession:
    """The :class:`ReplaySession` of a session map msgpack decoded (a version-1 trace, a record msgspec refused).

    Values are taken as they are (an arg of another type reaches the engine as before). A
    :class:`FormatError` starting with ``where`` refuses what the engine could not replay: a sid that
    is not an integer from 0 to :data:`SID_MAX` (the results file's sid column), a step the engine
    could not send (:func:`.keys.steps_problem`) or one of an operation no version knows (a trace
    edited by hand: a written trace's index names its operations, and the coordinator refuses
    unknown ones before the replay starts).
    """
    sid = rec["sid"]
    if sid.__class__ is not int or not 0 <= sid <= SID_MAX:
        raise FormatError(f"{where}: session id {sid!r} is not an integer from 0 to {SID_MAX}")
    problem = steps_problem(rec["steps"])
    if problem is None:
        problem = next((f"step {k} uses unknown operation {st['op']!r}" for k, st in enumerate(rec["steps"])
                        if st["op"] not in OPERATIONS), None)
    if problem is not None:
        raise FormatError(f"{where}: {problem}")
    return ReplaySession(rec["sid"], rec["phase"], rec["at"],
                         tuple(ReplayStep(st["op"], st["args"], st["bind"], st["expect"], st["think"], st["scenario"])
                               for st in rec["steps"]))


# Every session record a TraceWriter packs starts with these bytes: a map of four keys, the first "sid".
SESSION_START = b"\x84\xa3sid"


def frame_decoder() -> Callable[[bytes, Callable[[int], bool] | None], list]:
    """A decoder of a whole frame of session records at once: what the reader yields for them (made once).

    ``decode(payload, keep)`` gives, for each record of ``payload``, a :class:`ReplaySession` — or,
    with ``keep``, the number of steps of a session whose sid fails ``keep`` (its steps left
    undecoded). It counts the records by :data:`SESSION_START` and decodes the frame as an array of
    that many (msgspec decodes one object per call and cannot find a record's end itself;
    msgpack's ``skip`` per record cost 0.6k instructions per request). For a frame of sessions as a
    writer packs them the count can only be too high (those bytes inside a value); msgspec takes the
    frame only if it is exactly that many records, each of the shape :func:`session_decoder` (or
    :func:`skim_decoder`) takes — so a frame it takes is split into the same records, and gives the
    same values, as record by record. Any other frame (a miscount either way, a record of another
    shape or key order, a trailer, anything corrupt) raises ValueError, and the reader reads it
    record by record as before.
    """
    global _frame_decoder
    if _frame_decoder is None:
        whole = msgspec.msgpack.Decoder(tuple[ReplaySession, ...]).decode
        skims = msgspec.msgpack.Decoder(tuple[_SkimSession, ...]).decode
        steps_of = msgspec.msgpack.Decoder(tuple[ReplayStep, ...]).decode
        start = SESSION_START

        def decode(payload: bytes, keep: Callable[[int], bool] | None) -> Any:
            array = b"\xdd" + payload.count(start).to_bytes(4, "big") + payload
            if keep is None:
                return whole(array)
            return [ReplaySession(s.sid, s.phase, s.at, steps_of(s.steps)) if keep(s.sid)
                    else _array_length(memoryview(s.steps)) for s in skims(array)]

        _frame_decoder = decode
    return _frame_decoder
