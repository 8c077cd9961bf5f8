"""Availability: per operation, the share of requests that got an answer.

An *answer* is a 2xx or 4xx (the shop decided); a 5xx, a bad answer (a 2xx without the JSON the
API promises, a 1xx/3xx), timeout, connection error or a skipped request (its creating request got
no answer) is *unanswered*. Every request counts, whatever its step expects: a step's ``any``
only widens which answers are correct (the correctness section's business), never whether a 5xx
or a timeout is an answer (issue 19: a trace of ``any`` checkouts once hid 1,425 unanswered ones).

**Fault windows.** Requests whose ``[intended, done]`` interval overlaps a declared fault window
are counted apart (``in_fault``) and left out of the share: a fault schedule makes the shop
unavailable on purpose. A window is a results event ``{"kind": "fault", "at": start, "end": end,
"name": …}`` (seconds on the run's clock; ``end`` missing means the fault never ended); a
``fault_start`` event with no ``fault`` of its name (a replay killed during the fault) is a window
open to the run's end. A skipped
request has no ``done``: its ``intended`` time alone decides — except that a skipped request of a
session that had a request in a fault window is counted with the fault too, wherever its own time
falls: it was skipped because a request the fault left unanswered never bound its id (the fault's
consequence, not the shop's unavailability after it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..operations import OP_NAMES
from ..traces.records import Event
from ..traces.results import (CONN_ERROR, ERROR, EVENT_FAULT, EVENT_FAULT_START, FAIL, OK, SKIPPED, TIMEOUT,
                              Results, bad_answers)


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A declared fault: name and [start, end] on the run's clock (end may be inf)."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class OpAvailability:
    """Answered vs unanswered requests of one operation (or ``overall``), fault windows apart."""

    op: str
    counted: int  # requests counted (determined expectation, outside fault windows)
    answered: int
    error: int  # 5xx
    bad_answer: int  # an answer a correct shop never gives: a 2xx without the expected JSON, a 1xx/3xx
    timeout: int
    conn_error: int
    skipped: int
    in_fault: int  # requests overlapping a fault window (not counted)

    @property
    def share(self) -> float | None:
        """answered / counted (None when nothing was counted)."""
        return self.answered / self.counted if self.counted else None

    def breakdown(self) -> str:
        """``"12/100 answered (12.0%): 80 5xx, 8 timeout"`` — the unanswered kinds that occurred."""
        parts = [f"{n} {name}" for n, name in ((self.error, "5xx"), (self.bad_answer, "bad answer"),
                                                (self.timeout, "timeout"),
                                                (self.conn_error, "connection error"), (self.skipped, "skipped")) if n]
        share = self.share
        pct = "-" if share is None else f"{100.0 * share:.1f}%"
        return f"{self.answered}/{self.counted} answered ({pct})" + (": " + ", ".join(parts) if parts else "")

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"counted": self.counted, "answered": self.answered, "share": self.share, "error": self.error,
                "bad_answer": self.bad_answer, "timeout": self.timeout, "conn_error": self.conn_error, "skipped": self.skipped,
                "in_fault": self.in_fault}


@dataclass(frozen=True, slots=True)
class Availability:
    """Per-operation and overall availability of a run, and the basis it was computed on."""

    basis: str  # "all": every request counts (files of older checks may say "determined")
    ops: tuple[OpAvailability, ...]
    overall: OpAvailability
    windows: tuple[FaultWindow, ...]

    def below(self, min_share: float) -> list[OpAvailability]:
        """Operations whose share of answered requests is below ``min_share`` (0..1)."""
        return [a for a in self.ops if a.share is not None and a.share < min_share]

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"basis": self.basis, "ops": {a.op: a.as_dict() for a in self.ops}, "overall": self.overall.as_dict(),
                "fault_windows": [{"name": w.name, "start": w.start, "end": None if math.isinf(w.end) else w.end}
                                  for w in self.windows]}


def fault_windows(events: Sequence[Event]) -> tuple[FaultWindow, ...]:
    """The fault windows declared by a run's events (kind ``fault``), and the open ones (``fault_start`` only).

    A ``fault_start`` without its ``fault`` (the replay died, or was killed, before the ``undo``
    ended) is a window that lasts to the run's end (``end`` = inf).
    """
    out = []
    closed = set()
    for e in events:
        if e.kind == EVENT_FAULT:
            name = str(e.name or "fault")
            out.append(FaultWindow(name, e.at, math.inf if e.end is None else float(e.end)))
            closed.add((e.shard, name))
    for e in events:
        name = str(e.name or "fault")
        if e.kind == EVENT_FAULT_START and (e.shard, name) not in closed:
            out.append(FaultWindow(name, e.at, math.inf))
    return tuple(out)


def _tally(op: str, outcome: np.ndarray, status: np.ndarray, counted: np.ndarray, in_fault: np.ndarray) -> OpAvailability:
    o = outcome[counted]
    bad = bad_answers(o, status[counted])
    five = (o == ERROR) & ~bad
    return OpAvailability(op, int(o.size), int(np.count_nonzero((o == OK) | (o == FAIL))),
                          int(np.count_nonzero(five)), int(np.count_nonzero(bad)), int(np.count_nonzero(o == TIMEOUT)),
                          int(np.count_nonzero(o == CONN_ERROR)), int(np.count_nonzero(o == SKIPPED)),
                          int(np.count_nonzero(in_fault)))


def compute_availability(results: Results, windows: tuple[FaultWindow, ...] | None = None) -> Availability:
    """Availability per operation and overall (vectorized; one pass per operation present).

    ``windows``: the spans counted apart (default: the run's declared fault windows; ``check``
    passes each window extended by its recovery, :func:`.faults.apart_windows`).
    """
    c = results.cols
    if windows is None:
        windows = fault_windows(results.event_records)
    determined = np.ones(results.n, dtype=bool)  # every request counts (see the module doc)
    basis = "all"
    faulted = np.zeros(results.n, dtype=bool)
    if windows:
        start = c["intended"]
        end = np.where(np.isnan(c["done"]), c["intended"], c["done"])
        for w in windows:
            faulted |= (start <= w.end) & (end >= w.start)
        hit_sessions = np.unique(c["sid"][faulted])
        faulted |= (c["outcome"] == SKIPPED) & np.isin(c["sid"], hit_sessions)
    counted = determined & ~faulted
    ops = []
    for code in np.unique(c["op"][determined]).tolist():
        sel = c["op"] == code
        ops.append(_tally(OP_NAMES[code], c["outcome"], c["status"], counted & sel, determined & faulted & sel))
    overall = _tally("overall", c["outcome"], c["status"], counted, determined & faulted)
    return Availability(basis, tuple(ops), overall, windows)
