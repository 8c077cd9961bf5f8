"""A replay's end-of-run summary: a tally over the request chunks as they are written, and its text.

The tally keeps bounded memory (histograms and per-operation counters), the run's send window
(:func:`~wdmreplay.traces.results.send_window`, combined over chunks by min/max — the one
definition of a run's span and rate) and what the final read must wait for (the last abandoned
request). :func:`build_summary` computes the typed :class:`ReplaySummary` (what
:func:`~.run.replay_trace` returns), :func:`format_summary` renders it; ``as_dict()`` is its
JSON-ready map (the keys and order the summary dict always had).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..operations import OP_NAMES
from ..traces.results import (ERROR as _ERROR, INDETERMINATE, OUTCOMES, SKIPPED, TIMEOUT, bad_answers, run_rate,
                              send_window)
from ..terms import ACCEPTED, REFUSED, UNANSWERED
from ..terms import SKIPPED as SKIPPED_WORD  # SKIPPED is the outcome code here
from .schedule import (LATE_LIMIT, histogram, histogram_count_above, histogram_quantile, histograms_add, is_lagging,
                       lateness_cause, scheduled_rate)

if TYPE_CHECKING:  # start-up cost: the fault runner's module loads only for a run with --faults
    from .fault_schedule import FaultRunSummary

DIALECT_HINT_SHARE = 0.5  # more than this share of an operation's sent requests got 404 …
DIALECT_HINT_MIN = 3  # … out of at least this many: the shop may speak the other dialect
OTHER_DIALECT = {"2023": "2024", "2024": "2023"}


@dataclass(frozen=True, slots=True)
class ReadSample:
    """Of the ``batch_init`` entities the run did not touch, how many the final read read (a seeded sample)."""

    read: int
    of: int
    seed: int
    kinds: Mapping[str, Mapping[str, int]]  # per entity kind: {"read", "of", "seed"} (keyed by kind: data)

    def as_dict(self) -> dict:
        return {"read": self.read, "of": self.of, "seed": self.seed, "kinds": self.kinds}


@dataclass(frozen=True, slots=True)
class ReadStopped:
    """Why the final read's circuit breaker stopped reading (one line per distinct stop) and what it left unread."""

    why: tuple[str, ...]
    not_read: Mapping[str, int]  # entities not read back, by kind (keyed by entity kind: data)

    @classmethod
    def of(cls, stopped: Mapping | None) -> ReadStopped | None:
        """From :func:`~.final.stopped_of`'s ``{"why", "not_read"}`` (None: the breaker did not trip)."""
        return None if stopped is None else cls(tuple(stopped["why"]), dict(stopped["not_read"]))

    def as_dict(self) -> dict:
        return {"why": list(self.why), "not_read": dict(self.not_read)}


@dataclass(frozen=True, slots=True)
class FinalReadInfo:
    """What the final read covered and how long it took (the coordinator's record of it)."""

    seconds: float
    quiesce: float  # seconds waited for abandoned requests before the first snapshot
    snapshots: int
    entities: int
    sample: ReadSample | None = None  # None: every untouched batch_init entity was read
    stopped: ReadStopped | None = None  # None: the breaker did not trip

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "quiesce": self.quiesce, "snapshots": self.snapshots,
                "entities": self.entities, "sample": None if self.sample is None else self.sample.as_dict(),
                "stopped": None if self.stopped is None else self.stopped.as_dict()}


@dataclass(frozen=True, slots=True)
class DialectHint:
    """Operations most of whose requests got 404 (``ops``: name → (404s, sent)), and the dialect to try instead."""

    ops: Mapping[str, tuple[int, int]]
    dialect: str
    other: str | None

    def as_dict(self) -> dict:
        return {"ops": {op: list(v) for op, v in self.ops.items()}, "dialect": self.dialect, "other": self.other}


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """A replay's end-of-run summary: what :func:`~.run.replay_trace` returns (built once by :func:`build_summary`).

    Times are seconds, rates requests per second (None when not measurable). ``outcomes`` counts every
    outcome class by name; ``faults`` is the fault schedule's summary (None without ``--faults``).
    Read the attributes; :meth:`as_dict` is the JSON-ready map (the record is not subscriptable).
    """

    path: str
    requests: int
    sent: int
    outcomes: Mapping[str, int]
    wall: float
    send_wall: float
    rate: float | None
    scheduled_rate: float | None
    p50: float | None
    p99: float | None
    service_p50: float | None
    service_p99: float | None
    lag_p99: float | None
    lagging: bool
    late: int
    conn_waits: int
    late_cause: str | None  # "saturated", "replayer" or None (not lagging)
    final_read: FinalReadInfo | None
    speed: float | None
    complete: bool
    reason: str | None
    bindings: int
    probes: int
    final_reads: int
    dialect_hint: DialectHint | None = None
    faults: FaultRunSummary | None = None
    bad_answers: int = 0  # of outcomes["error"]: not a 5xx but a 2xx without the API's JSON, or a 1xx/3xx

    def as_dict(self) -> dict:
        """The JSON-ready summary map: the keys, order and values the summary dict always had."""
        out: dict[str, Any] = {
            "path": self.path, "requests": self.requests, "sent": self.sent, "outcomes": dict(self.outcomes),
            "wall": self.wall, "send_wall": self.send_wall, "rate": self.rate, "scheduled_rate": self.scheduled_rate,
            "p50": self.p50, "p99": self.p99, "service_p50": self.service_p50, "service_p99": self.service_p99,
            "lag_p99": self.lag_p99, "lagging": self.lagging, "late": self.late, "conn_waits": self.conn_waits,
            "late_cause": self.late_cause,
            "final_read": None if self.final_read is None else self.final_read.as_dict(),
            "speed": self.speed, "complete": self.complete, "reason": self.reason, "bindings": self.bindings,
            "probes": self.probes, "final_reads": self.final_reads,
            "dialect_hint": None if self.dialect_hint is None else self.dialect_hint.as_dict(),
        }
        if self.faults is not None:
            out["faults"] = self.faults.as_dict()
        return out


class Tally:
    """Summary statistics over request chunks as they are written (bounded memory: histograms, counters)."""

    def __init__(self) -> None:
        self.rows = 0
        self.outcomes = np.zeros(len(OUTCOMES), dtype=np.int64)
        self.response = histogram()
        self.service = histogram()
        self.lag = histogram()
        self.window: tuple[float, float] | None = None  # first send, last answer (skipped excluded)
        self.last_abandoned: float | None = None  # latest `done` of a timed-out / interrupted request
        self.sent_by_op = np.zeros(len(OP_NAMES), dtype=np.int64)
        self.not_found_by_op = np.zeros(len(OP_NAMES), dtype=np.int64)
        self.bad_answers = 0  # "error" rows with no 5xx: answers a correct shop never gives (a 2xx without its JSON, 1xx/3xx)

    def add_chunk(self, cols: Mapping[str, Any]) -> None:
        """Account one chunk of rows (column name → little-endian bytes, or a view of them)."""
        outcome = np.frombuffer(cols["outcome"], dtype="<u1")
        self.rows += len(outcome)
        counts = np.bincount(outcome, minlength=len(OUTCOMES))
        self.outcomes += counts[: len(OUTCOMES)]
        intended = np.frombuffer(cols["intended"], dtype="<f8")
        sent = np.frombuffer(cols["sent"], dtype="<f8")
        done = np.frombuffer(cols["done"], dtype="<f8")
        op = np.frombuffer(cols["op"], dtype="<u1")
        status = np.frombuffer(cols["status"], dtype="<u2")
        n_ops = len(OP_NAMES)
        # The rows that were sent: every row of the usual chunk (a slice: views, no masked copies).
        sent_rows = slice(None) if counts[SKIPPED] == 0 else outcome != SKIPPED
        histograms_add((self.response, self.service, self.lag),
                       ((done - intended)[sent_rows], (done - sent)[sent_rows], (sent - intended)[sent_rows]))
        self.sent_by_op += np.bincount(op[sent_rows], minlength=n_ops)[:n_ops]
        if counts[_ERROR]:
            self.bad_answers += int(np.count_nonzero(bad_answers(outcome, status)))
        not_found = status == 404
        if counts[SKIPPED]:
            not_found &= sent_rows
        self.not_found_by_op += np.bincount(op[not_found], minlength=n_ops)[:n_ops]
        w = send_window(sent, done, outcome)
        if w is not None:
            self.window = w if self.window is None else (min(self.window[0], w[0]), max(self.window[1], w[1]))
        if counts[TIMEOUT]:
            last = float(done[outcome == TIMEOUT].max())
            self.last_abandoned = last if self.last_abandoned is None else max(self.last_abandoned, last)

    @property
    def indeterminate(self) -> int:
        """Requests whose effect is unknown (5xx, timeout, connection error)."""
        return int(sum(self.outcomes[c] for c in INDETERMINATE))


def dialect_hint(sent_by_op: np.ndarray, not_found_by_op: np.ndarray, dialect: str) -> DialectHint | None:
    """Operations most of whose requests got 404, and the dialect the shop may speak instead (or None)."""
    ops = {OP_NAMES[i]: (int(not_found_by_op[i]), int(sent_by_op[i])) for i in range(len(OP_NAMES))
           if sent_by_op[i] >= DIALECT_HINT_MIN and not_found_by_op[i] > DIALECT_HINT_SHARE * sent_by_op[i]}
    if not ops:
        return None
    return DialectHint(ops, dialect, OTHER_DIALECT.get(dialect))  # a map keyed by dialect name


def build_summary(path: str, tally: Tally, *, duration: float | None, kept_requests: int, speed: float | None,
                  wall: float, complete: bool, reason: str | None, probes: int, bound: int,
                  final_reads: int, dialect: str, conn_waits: int = 0, final_read: FinalReadInfo | None = None,
                  faults: FaultRunSummary | None = None) -> ReplaySummary:
    """The run's :class:`ReplaySummary` (what ``replay_trace`` returns and :func:`format_summary` renders).

    ``duration``: the trace's scheduled seconds at speed 1 (None or 0: unknown); ``conn_waits``:
    requests that waited for a connection (all busy); ``final_read``: the coordinator's record of
    the final read; ``faults``: what the fault schedule's actions did.
    """
    outcomes = {name: int(c) for name, c in zip(OUTCOMES, tally.outcomes)}
    sent = tally.rows - outcomes["skipped"]
    window = tally.window
    lag_p99 = histogram_quantile(tally.lag, 0.99)
    lagging = is_lagging(lag_p99, speed)
    late = histogram_count_above(tally.lag, LATE_LIMIT) if speed is not None else 0
    return ReplaySummary(
        path=path,
        requests=tally.rows,
        sent=sent,
        outcomes=outcomes,
        bad_answers=tally.bad_answers,
        wall=wall,
        send_wall=0.0 if window is None else max(0.0, window[1] - window[0]),
        rate=run_rate(sent, window),
        scheduled_rate=scheduled_rate(kept_requests, float(duration or 0.0), speed),
        p50=histogram_quantile(tally.response, 0.50),
        p99=histogram_quantile(tally.response, 0.99),
        service_p50=histogram_quantile(tally.service, 0.50),
        service_p99=histogram_quantile(tally.service, 0.99),
        lag_p99=lag_p99,
        lagging=lagging,
        late=late,
        conn_waits=conn_waits,
        late_cause=lateness_cause(late, conn_waits) if lagging else None,
        final_read=final_read,
        speed=speed,
        complete=complete,
        reason=reason,
        bindings=bound,
        probes=probes,
        final_reads=final_reads,
        dialect_hint=dialect_hint(tally.sent_by_op, tally.not_found_by_op, dialect),
        faults=faults,
    )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def _lateness_lines(s: ReplaySummary) -> list[str]:
    """The lateness warning, naming which of the two causes happened (the run knows which)."""
    if not s.lagging:
        return []
    head = (f"  warning: requests went out late (p99 schedule lag {_ms(s.lag_p99)}, {s.late} request(s) "
            f"more than 10 ms after their intended time; {s.conn_waits} waited for a connection)")
    if s.late_cause == "saturated":
        return [head, "    cause: every --concurrency connection was busy waiting on the shop: the shop is saturated "
                      "at this load and the run measures its capacity; raising --concurrency only moves the wait into "
                      "timeouts (lower --speed to test below capacity)"]
    return [head, "    cause: the replayer itself started them late, with connections free: it could not keep up "
                  "with the schedule (CPU-bound: add --workers, or lower --speed)"]


def format_summary(s: ReplaySummary) -> str:
    """The end-of-run summary as a few lines of text."""
    oc = s.outcomes  # every outcome class, counted (keyed by outcome name)
    kinds = ((oc["error"] - s.bad_answers, "5xx"), (s.bad_answers, "bad answer"), (oc["timeout"], "timeout"),
             (oc["conn_error"], "connection error"))
    unanswered = [f"{n} {w}" for n, w in kinds if n]
    counts = (f"{oc['ok']} {ACCEPTED} (2xx), {oc['fail']} {REFUSED} (4xx), "
              + (f"{sum(oc[k] for k in ('error', 'timeout', 'conn_error'))} {UNANSWERED} ({', '.join(unanswered)})"
                 if unanswered else f"0 {UNANSWERED}")
              + (f", {oc['skipped']} {SKIPPED_WORD}" if oc["skipped"] else "")
              + "; `check` says which the trace expects")
    achieved = "-" if s.rate is None else f"{s.rate:.1f} req/s"
    if s.speed is None:
        scheduled = "max (speed max: as fast as --concurrency allows)"
    else:
        scheduled = "-" if s.scheduled_rate is None else f"{s.scheduled_rate:.1f} req/s (speed {s.speed:g})"
    lines = [
        f"{'replayed' if s.complete else 'PARTIAL (' + str(s.reason) + ')'}: {s.requests} requests "
        f"({s.sent} sent) in {s.wall:.2f} s -> {s.path}",
        f"  answers: {counts}",
        f"  rate: {achieved} achieved (first send to last answer), scheduled {scheduled}",
        f"  response time p50 {_ms(s.p50)}  p99 {_ms(s.p99)} (from each request's intended time: waits "
        f"included, so p99 may exceed --timeout);  schedule lag p99 {_ms(s.lag_p99)}",
    ]
    fr = s.final_read
    if fr is not None:
        sample = fr.sample
        sampled = (f", of them {sample.read} of {sample.of} batch_init entities the run did not touch "
                   f"(a sample, seed {sample.seed})") if sample else ""
        lines.append(f"  final read: {fr.entities} entities{sampled} in {fr.seconds:.2f} s "
                     f"({fr.snapshots} snapshot(s), {fr.quiesce:.2f} s waiting for abandoned requests), "
                     f"after the send window of {s.send_wall:.2f} s")
        if fr.stopped is not None:
            unread = sum(fr.stopped.not_read.values())
            lines += [f"  {why} ({unread} entities not read back)" for why in fr.stopped.why]
    lines += _lateness_lines(s)
    hint = s.dialect_hint
    if hint is not None:
        ops = ", ".join(f"{op} {nf}/{n}" for op, (nf, n) in hint.ops.items())
        other = f": try --dialect {hint.other}" if hint.other else ""
        lines.append(f"  hint: most requests of {ops} got 404 — the shop may speak the other dialect{other} "
                     f"(this run used {hint.dialect})")
    return "\n".join(lines)
