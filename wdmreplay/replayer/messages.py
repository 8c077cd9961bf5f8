"""The records a replay coordinator and its worker processes exchange over one pipe each.

Typed, frozen records instead of positional tuples, so each side of the protocol names what it
reads. Coordinator → worker: :class:`RunPhase`, :class:`Stop`, :class:`ReadFinal`, :class:`End`.
Worker → coordinator: :class:`Ready`, :class:`Chunk`, :class:`Bindings`, :class:`Progress`,
:class:`PhaseDone`, :class:`FinalProgress`, :class:`FinalDone`, :class:`Bye`, :class:`Failed`.

A worker sends its rows (:class:`Chunk`) and bindings at least every :data:`FLUSH_EVERY` seconds,
so the coordinator (and the results file) never lags the run by more than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..traces.results import COLUMN_SIZES

FLUSH_EVERY = 0.5  # seconds: the longest a row or binding waits in a worker before it goes to the coordinator


# --- coordinator → worker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunPhase:
    """Run phase ``phase`` from ``start`` s after the start clock ``t0``, after adding ``bindings`` (made by others)."""

    phase: int
    start: float
    t0: float
    bindings: dict[str, str]


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop sending (Ctrl-C / SIGTERM at the coordinator) and stop a final read in progress."""


@dataclass(frozen=True, slots=True)
class ReadFinal:
    """Read back this worker's share of the final state: ``entities`` {kind: [ids]} with ``concurrency`` readers."""

    entities: dict[str, list[str]]
    concurrency: int


@dataclass(frozen=True, slots=True)
class End:
    """Flush, close the clients and say :class:`Bye`."""


# --- worker → coordinator ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker opened its clients and the trace; it waits for a phase."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Request rows: ``record``, the results file's record of them, packed; ``n`` rows; ``at``, where each column starts in it.

    The worker packs the whole record (:func:`~wdmreplay.traces.results.requests_record_at`:
    columns, args, arg columns, errors), so the coordinator writes its bytes without decoding them,
    and reads the columns (its tally, the live view) in place: :meth:`columns`.
    """

    record: bytes
    n: int
    at: tuple[int, ...]

    def columns(self) -> dict[str, memoryview]:
        """Column name → its little-endian bytes, a view into :attr:`record`."""
        view = memoryview(self.record)
        n = self.n
        return {name: view[o:o + n * size] for (name, size), o in zip(COLUMN_SIZES, self.at)}


@dataclass(frozen=True, slots=True)
class Bindings:
    """Every binding made since the last one sent (symbol → id), as the results file's ``bindings`` record, packed.

    The worker packs it (:func:`~wdmreplay.traces.results.bindings_record`); the coordinator writes
    the bytes as they come.
    """

    record: bytes


@dataclass(frozen=True, slots=True)
class Progress:
    """Requests recorded so far (sent or skipped) and how many of them were errors."""

    done: int
    errors: int


@dataclass(frozen=True, slots=True)
class PhaseDone:
    """A phase ended here: the shared symbols bound in it, whether it stopped early, how many symbols, their ids."""

    phase: int
    shared: dict[str, str]
    stopped: bool
    bound: int
    ids: dict[str, list[str]] = field(default_factory=dict)  # per kind; only when the final read needs them


@dataclass(frozen=True, slots=True)
class FinalProgress:
    """Entities of the current final-read snapshot read so far by this worker."""

    read: int


@dataclass(frozen=True, slots=True)
class FinalDone:
    """This worker's share of one final-state snapshot: state sections, missing ids with reasons, reads sent."""

    state: dict[str, dict]
    missing: dict[str, dict]
    reads: int
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Bye:
    """The worker closed: its final request count, errors, and requests that waited for a connection (all busy)."""

    done: int
    errors: int
    conn_waits: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker failed: the error and a short traceback."""

    text: str
