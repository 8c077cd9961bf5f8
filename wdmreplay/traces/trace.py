"""The trace file: format ``wdm-trace``, a header, sessions in phase/start order, a trailer.

Format history (bump ``TRACE_VERSION`` and add a line for every change a reader must know of):

- version 1: header {format, version, workload, seed, params, dialect, phases [{name, sessions}],
  scenarios [names], sessions, requests, duration, expect, generator}; sessions {sid, phase, at,
  steps}; step {op, args, bind, expect, think, scenario}; trailer {trailer: "wdm-trace",
  sessions, requests}. Optional header key (readers ignore unknown keys): expect_range {key: [lo,
  hi]} — bounds on the expect keys when they are not determined (consistency workload);
  exercises {bug class: count} — how often the trace contains the behaviour exposing each bug class
  of :mod:`wdmreplay.bugclasses` (written by every TraceWriter; absent from older traces, where
  ``inspect`` computes it from the sessions).
- version 2: the same header, sessions and trailer, each as records inside checksummed frames
  (see :mod:`.stream` and ``docs/formats.md``): a prologue {format, version}, a frame holding the
  header, frames of whole session records (a new frame once one holds 64 KiB), a frame holding the
  trailer. Any flipped byte is an error naming the frame's offset. Readers read versions 1 and 2.
- version 2, with an index (an addition readers may find or not, so still version 2): the trailer
  may carry ``index`` {ops, shared, literals {kind: [ids]}, ranges {kind: n}, unknown} — what a
  replay must know of the whole trace before it sends (:mod:`.index`), counted by the writer.

A step's ``args`` are literals (ints, strings) or symbol references — strings starting with ``$``
(``"$s12.item0"``) — filled in from ids bound by earlier steps' ``bind``. A step may reference only
symbols bound earlier in its own session or in an earlier phase, so sessions of one phase are
independent of each other (what lets the replayer shard them over workers).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypedDict

from .. import __version__
from ..operations import BUILTIN_ROUTES
from ..bugclasses import ExerciseCounter, count_exercises, quantity_counts
from .index import INDEX_KEY, TraceIndex
from .keys import EXPECT_VALUES, STEP_KEYS, is_step  # noqa: F401 - the format's names, re-exported here
from .records import TraceRef
from .stream import (FormatError, RecordReader, file_digest, packer, part_path, prologue, refuse_inputs, remove_quietly,
                     write_frame)

if TYPE_CHECKING:
    from .wire import ReplaySession

TRACE_FORMAT = "wdm-trace"
TRACE_VERSION = 2
BLOCK_BYTES = 64 * 1024  # session bytes per frame (a frame closes at the first record past this)


class Step(TypedDict):
    """One request of a session (as stored)."""

    op: str
    args: list
    bind: str | None
    expect: str  # "ok" | "fail" | "any"
    think: float
    scenario: str


class Session(TypedDict):
    """A sequence of steps sent one after another, starting ``at`` seconds into its phase."""

    sid: int
    phase: int
    at: float
    steps: list[Step]


def step(op: str, args: Sequence[Any] = (), bind: str | None = None, expect: str = "ok",
         think: float = 0.0, scenario: str = "") -> Step:
    """A step map with every key present (what writers should build)."""
    return {"op": op, "args": list(args), "bind": bind, "expect": expect, "think": think, "scenario": scenario}


def is_symbol(value: Any) -> bool:
    """Whether an argument is a symbol reference (``"$…"``) rather than a literal."""
    return isinstance(value, str) and value.startswith("$")


# --- the header as a typed record ------------------------------------------------------------------
#
# Readers get the header as a :class:`TraceHeader`, built once by :meth:`TraceHeader.from_record`:
# the defaults for older traces are applied there and nowhere else, a value of the wrong type is a
# one-line :class:`FormatError`, and keys this version does not know are kept in ``extra`` (and
# written back by :meth:`TraceHeader.to_record`). Sessions and steps stay TypedDicts (the replay
# engine reads them as msgspec Structs, :mod:`.wire`).

_REQUIRED = object()  # a key every record of its kind has had since version 1
_ABSENT = object()
_INT = (int,)  # checked by _check: bool is not an int here
_NUMBER = (int, float)
_OPT_MAP = (dict, type(None))
_EMPTY: Mapping[str, Any] = MappingProxyType({})  # the default of a map an older trace lacks (shared, so read-only)


def _no_map() -> Mapping[str, Any]:
    return _EMPTY


_TYPE_NAMES = {int: "int", float: "float", str: "str", list: "list", dict: "map", type(None): "null"}


def _type_names(types: tuple) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types)


def _check(value: Any, types: tuple) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def take_fields(rec: Any, spec: Mapping[str, tuple[tuple, Any]], where: str) -> tuple[dict, dict]:
    """``rec``'s values for the keys of ``spec`` (``key -> (types, default)``), checked, and its other keys.

    The one place a trace record's defaults are applied: an absent key takes its default (a
    :data:`_REQUIRED` one is an error), a present one must be of one of ``types``. Every problem
    is a one-line :class:`FormatError` starting with ``where``.
    """
    if not isinstance(rec, dict):
        raise FormatError(f"{where} is {type(rec).__name__}, not a map")
    out = {}
    for key, (types, default) in spec.items():
        value = rec.get(key, _ABSENT)
        if value is _ABSENT:
            if default is _REQUIRED:
                raise FormatError(f"{where} lacks {key!r}")
            value = default
        elif not _check(value, types):
            raise FormatError(f"{where}: {key!r} is {type(value).__name__} {_short(value)}, "
                              f"expected {_type_names(types)}")
        out[key] = value
    return out, {k: v for k, v in rec.items() if k not in spec}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class TracePhase:
    """One phase of a trace: its name and how many sessions it holds."""

    name: str
    sessions: int
    extra: Mapping[str, Any] = field(default_factory=_no_map)  # keys this version does not know

    @classmethod
    def from_record(cls, rec: Any, index: int, where: str) -> "TracePhase":
        """The phase at position ``index`` of a header's ``phases`` (older traces: name defaults to the index)."""
        known, extra = take_fields(rec, {"name": ((str,), str(index)), "sessions": (_INT, 0)},
                                   f"{where}: phase {index}")
        return cls(extra=extra, **known)

    def to_record(self) -> dict:
        """The phase as stored."""
        return {"name": self.name, "sessions": self.sessions, **self.extra}


@dataclass(frozen=True, slots=True)
class ShrinkNote:
    """The ``shrink`` section of a trace ``shrink`` wrote: what it reproduces, how often, from which run.

    The section is kept whole in ``record`` (what :meth:`to_record` gives back); the fields are what
    readers show.
    """

    kind: str | None
    entity: str | None
    role: str | None
    hits: int | None  # None: the reproduction rate was not measured (interrupted)
    runs: int | None
    source_run: str | None
    source_requests: int | None
    record: Mapping[str, Any]

    @classmethod
    def from_record(cls, rec: Any, where: str) -> "ShrinkNote":
        """Read the section; every part is optional (a hand-edited header still loads)."""
        opt_str, opt_int = (str, type(None)), (int, type(None))
        sec, _ = take_fields(rec, {"finding": (_OPT_MAP, None), "reproduction": (_OPT_MAP, None),
                                   "source": (_OPT_MAP, None)}, f"{where}: shrink")
        finding, _ = take_fields(sec["finding"] or {}, {"kind": (opt_str, None), "entity": (opt_str, None),
                                                        "role": (opt_str, None)}, f"{where}: shrink finding")
        rep, _ = take_fields(sec["reproduction"] or {}, {"hits": (opt_int, None), "runs": (opt_int, None)},
                             f"{where}: shrink reproduction")
        src, _ = take_fields(sec["source"] or {}, {"run": (opt_str, None), "requests": (opt_int, None)},
                             f"{where}: shrink source")
        return cls(finding["kind"], finding["entity"], finding["role"], rep["hits"], rep["runs"], src["run"],
                   src["requests"], rec)

    def to_record(self) -> dict:
        """The section as stored."""
        return dict(self.record)


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """A trace's header, typed (see the module's format history for each field).

    A field's default is what a trace written before the header had that key gets (and what a
    writer that does not set it writes); the four without one every trace header has had.
    """

    workload: str
    phases: tuple[TracePhase, ...]
    sessions: int
    requests: int
    format: str = TRACE_FORMAT
    version: int = TRACE_VERSION
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=_no_map)  # every generator option (each workload its own)
    dialect: str = "2024"  # the dialect of the traces written before the header named it
    scenarios: tuple[str, ...] = ()
    duration: float = 0.0  # seconds of schedule at speed 1
    expect: Mapping[str, Any] = field(default_factory=_no_map)  # aggregate expected outcomes
    generator: str | None = None  # the tool version that wrote it
    expect_range: Mapping[str, Any] | None = None  # {key: [lo, hi]} when the expect keys are not determined
    shrink: ShrinkNote | None = None  # written by `shrink`
    exercises: Mapping[str, int] | None = None  # {bug class: count}; None for traces that predate it
    # Keys this version does not know, and workload-specific ones (benchmark, proves): kept, written back.
    extra: Mapping[str, Any] = field(default_factory=_no_map)

    @classmethod
    def from_record(cls, rec: Any, path: str = "trace") -> "TraceHeader":
        """The header map as read from a file; :class:`FormatError` (one line naming ``path``) when malformed."""
        where = f"{path}: trace header"
        known, extra = take_fields(rec, _HEADER_SPEC, where)
        names = known["scenarios"]
        if not all(isinstance(n, str) for n in names):
            raise FormatError(f"{where}: 'scenarios' holds a name that is not a string")
        sh = known["shrink"]
        known.update(phases=tuple(TracePhase.from_record(p, i, where) for i, p in enumerate(known["phases"])),
                     scenarios=tuple(names), shrink=None if sh is None else ShrinkNote.from_record(sh, where))
        return cls(**known, extra=extra)

    def to_record(self) -> dict:
        """The header map as :class:`TraceWriter` writes it (same keys in the same order; optional ones when set)."""
        rec = {"format": self.format, "version": self.version, "workload": self.workload, "seed": self.seed,
               "params": dict(self.params), "dialect": self.dialect,
               "phases": [p.to_record() for p in self.phases], "scenarios": list(self.scenarios),
               "sessions": self.sessions, "requests": self.requests, "duration": self.duration,
               "expect": dict(self.expect), "generator": self.generator}
        if self.expect_range is not None:
            rec["expect_range"] = dict(self.expect_range)
        if self.shrink is not None:
            rec["shrink"] = self.shrink.to_record()
        rec.update(self.extra)
        if self.exercises is not None:
            rec["exercises"] = dict(self.exercises)
        return rec

    @property
    def phase_names(self) -> list[str]:
        """The phases' names, in order."""
        return [p.name for p in self.phases]


# The header's keys with the types a stored value may have; each absent key gets its field's default.
_HEADER_TYPES: dict[str, tuple] = {
    "format": (str,), "version": _INT, "workload": (str,), "seed": _INT, "params": (dict,), "dialect": (str,),
    "phases": (list,), "scenarios": (list,), "sessions": _INT, "requests": _INT, "duration": _NUMBER,
    "expect": (dict,), "generator": (str, type(None)),
    "expect_range": _OPT_MAP, "shrink": _OPT_MAP, "exercises": _OPT_MAP,  # optional: written when set
}
_HEADER_SPEC = {f.name: (_HEADER_TYPES[f.name], f.default if f.default is not MISSING
                         else f.default_factory() if f.default_factory is not MISSING else _REQUIRED)
                for f in fields(TraceHeader) if f.name != "extra"}


@dataclass(frozen=True, slots=True)
class TraceTrailer:
    """A trace's trailer: the counts the reader checks what it read against (other keys kept in ``extra``)."""

    sessions: int | None
    requests: int | None
    extra: Mapping[str, Any] = field(default_factory=_no_map)  # keys this version does not know

    @classmethod
    def from_record(cls, rec: dict | None, path: str) -> "TraceTrailer":
        """The trailer map (None: the file had none)."""
        opt_int = (int, type(None))
        known, extra = take_fields(rec or {}, {"sessions": (opt_int, None), "requests": (opt_int, None)},
                                   f"{path}: trace trailer")
        extra.pop("trailer", None)  # the format's name, checked by the stream reader
        return cls(**known, extra=extra)


class TraceWriter:
    """Streams sessions to a trace file; the header's counts are filled in on :meth:`close`.

    Sessions go, framed in blocks of about 64 KiB, to a temporary body file beside the target;
    ``close`` writes header, body and trailer into ``<path>.part`` and renames it into place, so a
    crashed or interrupted generation never leaves a half-written trace under the requested name.
    Memory is constant but for the trailer's ``index`` (the distinct shared symbols and literal ids
    seen: what a replay's scan of the trace held too). ``inputs`` are files the command reads: an
    output that is one of them is refused before anything is written.
    """

    def __init__(self, path: str | Path, *, workload: str, seed: int, params: dict, phases: Sequence[str],
                 scenarios: Sequence[str] = (), dialect: str = "2024", expect: dict | None = None,
                 inputs: Iterable[str | Path] = (), exercises: bool = True):
        self.path = Path(path)
        refuse_inputs(self.path, inputs)
        # The header map being filled in (the counts as sessions come; callers may add keys before close).
        self.header: dict[str, Any] = TraceHeader(
            workload=workload, seed=seed, params=params, dialect=dialect,
            phases=tuple(TracePhase(n, 0) for n in phases), scenarios=tuple(scenarios), sessions=0, requests=0,
            expect=expect or {}, generator=f"wdm-replay {__version__}").to_record()
        self.header["params"], self.header["expect"] = params, expect or {}  # the caller's maps, not copies
        self._pack = packer()
        parent = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, self._body_path = tempfile.mkstemp(prefix=".wdm-trace-body-", dir=parent)
        except OSError as e:
            raise FormatError(f"{self.path}: cannot write here: {e.strerror}") from None
        self._body = os.fdopen(fd, "wb", buffering=1 << 20)
        self._block = bytearray()  # packed sessions not yet framed
        self._last = (-1, float("-inf"))
        self._phase_end = [0.0] * len(phases)
        # What the trace exercises (header "exercises"), counted as sessions stream past.
        self._exercises = (ExerciseCounter(len(phases), quantity_counts(dialect, BUILTIN_ROUTES))
                           if exercises else None)
        # What a replay must know of the whole trace before it sends (trailer "index"): counted here,
        # so that a replay need not decode every session first.
        self._index = TraceIndex()
        self.closed = False

    def write_session(self, sid: int, phase: int, at: float, steps: list[Step]) -> None:
        """Append one session; sessions must come in (phase, at) order."""
        if (phase, at) < self._last:
            raise ValueError(f"session {sid} out of order: phase {phase} at {at} after {self._last}")
        self._last = (phase, at)
        h = self.header
        h["phases"][phase]["sessions"] += 1
        h["sessions"] += 1
        h["requests"] += len(steps)
        end = at + sum(s["think"] for s in steps)
        if end > self._phase_end[phase]:
            self._phase_end[phase] = end
        if self._exercises is not None:
            self._exercises.add(sid, phase, steps)
        self._index.add(sid, steps)
        block = self._block
        block += self._pack.pack({"sid": sid, "phase": phase, "at": at, "steps": steps})
        if len(block) >= BLOCK_BYTES:
            write_frame(self._body, block)
            block.clear()

    def set_expect(self, expect: dict) -> None:
        """Set the aggregate expected outcome (known only once generation is done, for some workloads)."""
        self.header["expect"] = expect

    def close(self) -> dict:
        """Write the final file and return its header."""
        if self.closed:
            return self.header
        self.closed = True
        if self._block:
            write_frame(self._body, self._block)
            self._block.clear()
        self._body.close()
        self.header["duration"] = round(sum(self._phase_end), 6)
        if self._exercises is not None:
            self.header["exercises"] = self._exercises.result()
        tmp = part_path(self.path)
        try:
            with open(tmp, "wb") as out, open(self._body_path, "rb") as body:
                out.write(prologue(TRACE_FORMAT, TRACE_VERSION))
                write_frame(out, self._pack.pack(self.header))
                shutil.copyfileobj(body, out, 1 << 20)
                write_frame(out, self._pack.pack({"trailer": TRACE_FORMAT, "sessions": self.header["sessions"],
                                                  "requests": self.header["requests"],
                                                  INDEX_KEY: self._index.record()}))
            os.replace(tmp, self.path)
        except OSError as e:
            raise FormatError(f"{self.path}: cannot write: {e.strerror}") from None
        finally:
            remove_quietly(self._body_path, tmp)
        return self.header

    def abort(self) -> None:
        """Drop everything written so far (on error or interrupt)."""
        if not self.closed:
            self.closed = True
            self._body.close()
            remove_quietly(self._body_path)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TraceReader:
    """Streams a trace: ``header`` at once, sessions by iteration, counts checked at the end.

    Raises :class:`FormatError` (one line, naming the file) for a missing file, another format, a
    newer version, a truncated or corrupt file, or counts that disagree with the trailer.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._r = RecordReader(path, TRACE_FORMAT, TRACE_VERSION)
        self.header: dict = self._r.header  # the map as stored (what a results header copies)
        try:
            self.trace_header = TraceHeader.from_record(self.header, self.path)  # the typed header
        except FormatError:
            self._r.close()
            raise
        self.trailer: TraceTrailer | None = None  # after iteration

    def __iter__(self) -> Iterator[Session]:
        return self.sessions()

    def sessions(self, keep: Callable[[int], bool] | None = None, *, tuples: bool = False) -> Iterator[Session]:
        """The sessions whose ``sid`` passes ``keep`` (all if None), in file order; counts checked at the end.

        The others are skipped without being decoded; they still count against the trailer. With
        ``tuples`` a session's ``steps`` and each step's ``args`` come as tuples, not lists (cheaper
        to decode); version-1 traces still give lists. The replay engine reads
        :meth:`replay_sessions` instead.
        """
        self._r.use_list = not tuples
        self._r.decode_fast = self._r.skim_fast = self._r.frame_fast = None
        return self._sessions(keep, tuples)

    def _sessions(self, keep: Callable[[int], bool] | None, tuples: bool) -> Iterator[Session]:
        n_sessions = n_requests = 0
        seq = (list, tuple) if tuples else list
        n_phases = len(self.trace_header.phases)
        records = iter(self._r) if keep is None else self._r.iter_skipping("sid", keep, "steps")
        for rec in records:
            if rec.__class__ is int:  # a skipped session: the number of its steps
                n_sessions += 1
                n_requests += rec  # type: ignore[operator]
                continue
            self._check_session(rec, n_sessions, n_phases, seq)
            n_sessions += 1
            n_requests += len(rec["steps"])
            yield rec  # type: ignore[misc]
        self._check_counts(n_sessions, n_requests)

    def replay_sessions(self, keep: Callable[[int], bool] | None = None) -> Iterator[ReplaySession]:
        """The sessions as :meth:`sessions` gives them, each a :class:`.wire.ReplaySession` (what the engine reads).

        A version-2 trace's session records are decoded by msgspec straight into Structs, a whole
        frame at once when it takes it (:func:`.wire.frame_decoder`), else record by record
        (:func:`.wire.session_decoder`); with ``keep``, every other session is passed over after
        reading only its ``sid`` and its number of steps (:func:`.wire.skim_decoder`). A record
        msgspec refuses, and a version-1 trace, is decoded by msgpack as before and made into the
        same Struct (:func:`.wire.replay_session`); a step that is not a map of the format's keys is
        a :class:`FormatError`.
        """
        # Set up here, not when the first session is read: importing msgspec and making the
        # decoders takes milliseconds, which must not land inside a replay's timed phase.
        from .wire import frame_decoder, session_decoder, skim_decoder

        self._r.use_list = False
        self._r.frame_fast = frame_decoder()
        self._r.decode_fast = session_decoder()
        self._r.skim_fast = None if keep is None else skim_decoder()
        return self._replay_sessions(keep)

    def _replay_sessions(self, keep: Callable[[int], bool] | None) -> Iterator[ReplaySession]:
        from .wire import ReplaySession, replay_session

        n_sessions = n_requests = 0
        n_phases = len(self.trace_header.phases)
        records = iter(self._r) if keep is None else self._r.iter_skipping("sid", keep, "steps")
        for rec in records:
            cls = rec.__class__
            if cls is int:  # a skipped session: the number of its steps
                n_sessions += 1
                n_requests += rec  # type: ignore[operator]
                continue
            if cls is not ReplaySession:  # msgpack's map (a record msgspec refused, a version-1 trace)
                self._check_session(rec, n_sessions, n_phases, (list, tuple))
                rec = replay_session(rec, f"{self.path}: corrupt session record #{n_sessions}")
            elif not 0 <= rec.phase < n_phases:
                raise FormatError(f"{self.path}: corrupt session record #{n_sessions}")
            n_sessions += 1
            n_requests += len(rec.steps)
            yield rec
        self._check_counts(n_sessions, n_requests)

    def _check_session(self, rec: Any, n: int, n_phases: int, seq: type | tuple) -> None:
        """Refuse (:class:`FormatError`) a session map without its keys, with a phase that is not an integer
        in range, a start time that is not a finite number or steps not an array."""
        try:
            phase, at = rec["phase"], rec["at"]
            if (phase.__class__ is not int or not 0 <= phase < n_phases or not isinstance(rec["steps"], seq)
                    or at.__class__ not in (int, float) or not math.isfinite(at)):
                raise KeyError
            rec["sid"]  # noqa: B018 - presence check
        except (KeyError, TypeError):
            raise FormatError(f"{self.path}: corrupt session record #{n}") from None

    def _check_counts(self, n_sessions: int, n_requests: int) -> None:
        t = self.trailer = TraceTrailer.from_record(self._r.trailer, self.path)
        if (t.sessions, t.requests) != (n_sessions, n_requests):
            raise FormatError(
                f"{self.path}: corrupt: read {n_sessions} sessions / {n_requests} requests, "
                f"trailer says {t.sessions} / {t.requests}"
            )

    def close(self) -> None:
        """Close the file."""
        self._r.close()

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_header(path: str | Path) -> dict:
    """Just the header of a trace (validated), as the map stored (what a results header copies)."""
    with TraceReader(path) as r:
        return r.header


def read_trace_header(path: str | Path) -> TraceHeader:
    """Just the header of a trace, typed (validated; older traces' defaults applied)."""
    with TraceReader(path) as r:
        return r.trace_header


def trace_digest(path: str | Path) -> str:
    """The identity of a trace file: the SHA-256 of its bytes."""
    return file_digest(path)


def run_exercises(trace: TraceRef) -> tuple[Mapping | None, str | None]:
    """What a run's trace exercises, from the ``trace`` entry of its results header: ``(counts, source)``.

    The trace header's ``exercises`` (source ``"header"``); for a trace written before that key,
    counted from the trace file when it is still at the path the run read it from, unchanged (same
    digest; source ``"trace file"``); else ``(None, None)``.
    """
    exercises = trace.typed_header.exercises
    if exercises is not None:
        return exercises, "header"
    path = trace.path
    if not path or not os.path.isfile(path):
        return None, None
    try:
        if trace_digest(path) != trace.digest:
            return None, None
        with TraceReader(path) as r:
            th = r.trace_header
            return count_exercises(r, len(th.phases), quantity_counts(th.dialect, BUILTIN_ROUTES)), "trace file"
    except (FormatError, OSError):
        return None, None


# Workloads `generate-trace` makes: same header params, same bytes, so a file of one is replaced freely.
GENERATED_WORKLOADS = frozenset({"stress", "consistency", "checkout", "contention"})


def _held_record(path: str) -> str | None:
    """What an existing file at ``path`` holds that no command could make again; None when it can be remade.

    A generated trace (its header's params regenerate it) and an empty file can be remade; a run's
    results, a recorded or shrunk trace, and any other file cannot.
    """
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return None
    try:
        workload = read_trace_header(path).workload
    except FormatError as e:
        if "'wdm-results' file" in str(e):
            return "the results of a run"
        return "a file that is not a generated trace"
    if workload in GENERATED_WORKLOADS:
        return None
    return f"a {workload} trace" if workload in ("recorded", "shrunk") else f"a trace of workload {workload!r}"


def refuse_replacing(output: str | Path, force: bool) -> None:
    """Raise :class:`FormatError` when ``output`` exists and holds a record no command could make again.

    Called by the trace writers (generate-trace, record, shrink) and merge before any work, so a
    run's results or a recorded trace is never replaced silently; ``force`` (their ``--force``) allows it.
    """
    out = str(output)
    if force or not os.path.lexists(out) or os.path.isdir(out):
        return
    held = _held_record(out)
    if held is not None:
        raise FormatError(f"{out}: already holds {held}; give --force to replace it, or choose another -o")
