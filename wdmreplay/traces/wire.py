"""Sessions as the replay engine reads them: msgspec Structs, decoded straight from a trace's records.

Imported only by a replay worker (:meth:`.trace.TraceReader.replay_sessions`, called in
``Engine.open``): msgspec's import (milliseconds) stays out of every other command's start-up and
out of a replay's timed phases. Every session reaches the engine as a :class:`ReplaySession` —
decoded by msgspec when it has the usual shape, else made by :meth:`ReplayDecoders.session` from the
map msgpack decoded (a record msgspec refuses, a version-1 trace) — so the engine reads one shape.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Sequence

import msgspec

from ..operations import OP_NAMES
from .stream import FormatError
from .trace import EXPECT_VALUES, STEP_KEYS

# An op name, an expect value and a scenario name decode to the very string object named in these
# Literals (msgspec returns a Literal's own value): no string is made per step, its hash is cached,
# and the engine's route lookup finds its key by identity. Any other value is refused, and msgpack
# reads that record as before.
_OpName = Literal[OP_NAMES]  # type: ignore[valid-type]
_Expect = Literal[EXPECT_VALUES]  # type: ignore[valid-type]


class ReplayStep(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """A step as the replay engine reads it: the format's keys as attributes (see :class:`.trace.Step`).

    msgspec decodes a step of the usual types straight into one (no dict, no key strings); a step
    it refuses is made from msgpack's map with its values as they are. Frozen and untracked by the
    garbage collector (``gc=False``: it never holds a container that could hold it). A trace's
    steps are of a subclass whose ``scenario`` is one of its header's scenario names
    (:func:`replay_decoders`).
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
    a later version adds) is refused and read by msgpack, whose map becomes the same Struct — so
    every value the decoder takes is one msgpack would have read too (msgspec skips an unknown
    key's value without checking it, msgpack decodes it).
    """

    sid: int
    phase: int
    at: int | float
    steps: tuple[ReplayStep, ...]


class _SkimSession(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """What a worker reading its share needs of any session: its ``sid`` and the number of its steps."""

    sid: int
    phase: int
    at: int | float
    steps: msgspec.Raw  # left undecoded: only its array header is read


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


# Every session record a TraceWriter packs starts with these bytes: a map of four keys, the first "sid".
SESSION_START = b"\x84\xa3sid"


class ReplayDecoders(NamedTuple):
    """The decoders of one trace's sessions (:func:`replay_decoders`); each raises ValueError for what it does not take.

    - ``record(b)``: one packed session record → a ``session_type`` instance.
    - ``skim(b)``: one packed session record → ``(sid, number of steps)``, the steps unread: what a
      worker of a ``--workers N`` or ``--shard`` replay reads of every session to tell its own from
      the others' (:meth:`.stream.RecordReader.iter_skipping`).
    - ``frame(payload, keep)``: a whole frame of session records → for each, a session, or (with
      ``keep``) the number of steps of one whose sid fails ``keep``, its steps undecoded. It counts
      the records by :data:`SESSION_START` and decodes the frame as an array of that many (msgspec
      needs the count; msgpack's ``skip`` per record cost as much as a second decoding). The count
      can only be too high (those bytes inside a value), never too low for a frame of sessions, and
      msgspec takes the frame only if it is exactly that many records, each of the shape ``record``
      (or ``skim``) takes — so a frame it takes is split into the same records, and gives the same
      values, as record by record.
    - ``session(rec, where)``: the session of a map msgpack decoded (a version-1 trace, a record
      msgspec refused), its values as they are; a step that is not a map of the format's keys is
      a :class:`FormatError` starting with ``where``.
    """

    session_type: type
    step_type: type
    record: Callable[[Any], Any]
    skim: Callable[[Any], tuple[int, int]]
    frame: Callable[[bytes, Callable[[int], bool] | None], Any]
    session: Callable[[dict, str], Any]


_DECODERS: dict[tuple[str, ...], ReplayDecoders] = {}


def replay_decoders(scenarios: Sequence[str] = ()) -> ReplayDecoders:
    """The decoders of the sessions of a trace whose header names ``scenarios`` (made once per list).

    msgspec decodes a session of the usual shape — exactly the keys of :class:`.trace.Session` and
    :class:`.trace.Step` with values of their usual types: a known op name and expect value, a
    scenario the header names (or ``""``), args of strings, numbers, booleans and nil — into
    Structs; it builds no dict and no key string. Anything else (another type or value, a missing
    or an extra key, a trailer) it refuses with a ValueError, and msgpack decodes that record as
    before (:class:`.stream.RecordReader`), ``session`` making a Struct of the same type of it.
    """
    key = tuple(scenarios)
    made = _DECODERS.get(key)
    if made is None:
        made = _DECODERS[key] = _make_decoders(key)
    return made


def _make_decoders(scenarios: tuple[str, ...]) -> ReplayDecoders:
    names = Literal[tuple(dict.fromkeys(("",) + scenarios))]  # type: ignore[valid-type]
    step_type = msgspec.defstruct("ReplayStep", [("scenario", names)], bases=(ReplayStep,),
                                  module=__name__, frozen=True, gc=False, forbid_unknown_fields=True)
    session_type = msgspec.defstruct("ReplaySession", [("steps", tuple[step_type, ...])], bases=(ReplaySession,),
                                     module=__name__, frozen=True, gc=False, forbid_unknown_fields=True)
    record = msgspec.msgpack.Decoder(session_type).decode
    whole = msgspec.msgpack.Decoder(tuple[session_type, ...]).decode
    skims = msgspec.msgpack.Decoder(tuple[_SkimSession, ...]).decode
    skim_one = msgspec.msgpack.Decoder(_SkimSession).decode
    steps_of = msgspec.msgpack.Decoder(tuple[step_type, ...]).decode
    start = SESSION_START

    def skim(b: Any) -> tuple[int, int]:
        rec = skim_one(b)
        return rec.sid, _array_length(memoryview(rec.steps))

    def frame(payload: bytes, keep: Callable[[int], bool] | None) -> Any:
        array = b"\xdd" + payload.count(start).to_bytes(4, "big") + payload
        if keep is None:
            return whole(array)
        return [session_type(s.sid, s.phase, s.at, steps_of(s.steps)) if keep(s.sid)
                else _array_length(memoryview(s.steps)) for s in skims(array)]

    def session(rec: dict, where: str) -> Any:
        steps = []
        for k, st in enumerate(rec["steps"]):
            try:
                steps.append(step_type(st["op"], st["args"], st["bind"], st["expect"], st["think"], st["scenario"]))
            except (KeyError, TypeError, IndexError):
                raise FormatError(f"{where}: step {k} is not a step map ({', '.join(STEP_KEYS)})") from None
        return session_type(rec["sid"], rec["phase"], rec["at"], tuple(steps))

    return ReplayDecoders(session_type, step_type, record, skim, frame, session)
