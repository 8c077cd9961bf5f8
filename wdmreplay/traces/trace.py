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

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypedDict

from .. import __version__
from ..operations import BUILTIN_ROUTES
from ..bugclasses import ExerciseCounter, count_exercises, quantity_counts
from .index import INDEX_KEY, TraceIndex
from .stream import FormatError, RecordReader, file_digest, packer, part_path, prologue, refuse_inputs, write_frame

TRACE_FORMAT = "wdm-trace"
TRACE_VERSION = 2
BLOCK_BYTES = 64 * 1024  # session bytes per frame (a frame closes at the first record past this)

EXPECT_VALUES = ("ok", "fail", "any")  # a step's expect; the results file codes them in this order


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
        self.header: dict[str, Any] = {
            "format": TRACE_FORMAT, "version": TRACE_VERSION, "workload": workload, "seed": seed,
            "params": params, "dialect": dialect, "phases": [{"name": n, "sessions": 0} for n in phases],
            "scenarios": list(scenarios), "sessions": 0, "requests": 0, "duration": 0.0,
            "expect": expect or {}, "generator": f"wdm-replay {__version__}",
        }
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
            for p in (self._body_path, tmp):
                try:
                    os.unlink(p)
                except OSError:
                    pass
        return self.header

    def abort(self) -> None:
        """Drop everything written so far (on error or interrupt)."""
        if not self.closed:
            self.closed = True
            self._body.close()
            try:
                os.unlink(self._body_path)
            except OSError:
                pass

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
        self.header: dict = self._r.header
        for key in ("workload", "phases", "sessions", "requests"):
            if key not in self.header:
                self._r.close()
                raise FormatError(f"{self.path}: trace header lacks {key!r}")
        h = self.header
        if not (isinstance(h["phases"], list) and all(isinstance(p, dict) for p in h["phases"])
                and isinstance(h["sessions"], int) and isinstance(h["requests"], int)):
            self._r.close()
            raise FormatError(f"{self.path}: corrupt trace header (phases, sessions or requests of the wrong type)")

    def __iter__(self) -> Iterator[Session]:
        return self.sessions()

    def sessions(self, keep: Callable[[int], bool] | None = None, *, tuples: bool = False) -> Iterator[Session]:
        """The sessions whose ``sid`` passes ``keep`` (all if None), in file order; counts checked at the end.

        The others are skipped without being decoded (a replay worker's share of the trace costs
        it only its own sessions' decoding); they still count against the trailer. With ``tuples``
        a session's ``steps`` and each step's ``args`` come as tuples, not lists (cheaper to
        decode; the replay engine only reads them); version-1 traces still give lists.
        """
        n_sessions = n_requests = 0
        self._r.use_list = not tuples
        seq = (list, tuple) if tuples else list
        n_phases = len(self.header["phases"])
        records = iter(self._r) if keep is None else self._r.iter_skipping("sid", keep, "steps")
        for rec in records:
            if rec.__class__ is int:  # a skipped session: the number of its steps
                n_sessions += 1
                n_requests += rec  # type: ignore[operator]
                continue
            try:
                steps = rec["steps"]
                if not (0 <= rec["phase"] < n_phases) or not isinstance(steps, seq):
                    raise KeyError
                rec["at"], rec["sid"]  # noqa: B018 - presence check
            except (KeyError, TypeError):
                raise FormatError(f"{self.path}: corrupt session record #{n_sessions}") from None
            n_sessions += 1
            n_requests += len(steps)
            yield rec  # type: ignore[misc]
        t = self._r.trailer or {}
        if (t.get("sessions"), t.get("requests")) != (n_sessions, n_requests):
            raise FormatError(
                f"{self.path}: corrupt: read {n_sessions} sessions / {n_requests} requests, "
                f"trailer says {t.get('sessions')} / {t.get('requests')}"
            )

    def close(self) -> None:
        """Close the file."""
        self._r.close()

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_header(path: str | Path) -> dict:
    """Just the header of a trace (validated)."""
    with TraceReader(path) as r:
        return r.header


def trace_digest(path: str | Path) -> str:
    """The identity of a trace file: the SHA-256 of its bytes."""
    return file_digest(path)


def run_exercises(trace: dict) -> tuple[dict | None, str | None]:
    """What a run's trace exercises, from the ``trace`` entry of its results header: ``(counts, source)``.

    The trace header's ``exercises`` (source ``"header"``); for a trace written before that key,
    counted from the trace file when it is still at the path the run read it from, unchanged (same
    digest; source ``"trace file"``); else ``(None, None)``.
    """
    header = trace.get("header") or {}
    if isinstance(header.get("exercises"), dict):
        return header["exercises"], "header"
    path = trace.get("path")
    if not path or not os.path.isfile(path):
        return None, None
    try:
        if trace_digest(path) != trace.get("digest"):
            return None, None
        with TraceReader(path) as r:
            return count_exercises(r, len(r.header["phases"]), quantity_counts(r.header.get("dialect"), BUILTIN_ROUTES)), \
                "trace file"
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
        workload = read_header(path).get("workload")
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
