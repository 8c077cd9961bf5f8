"""A replay's end-of-run summary: a tally over the request chunks as they are written, and its text.

The tally keeps bounded memory (histograms and per-operation counters), the run's send window
(:func:`~wdmreplay.traces.results.send_window`, combined over chunks by min/max — the one
definition of a run's span and rate) and what the final read must wait for (the last abandoned
request). :func:`build_summary` computes, :func:`format_summary` renders.
"""

from __future__ import annotations

import numpy as np

from ..api import OP_NAMES
from ..traces.results import INDETERMINATE, OUTCOMES, SKIPPED, TIMEOUT, run_rate, send_window
from ..terms import ACCEPTED, REFUSED, SKIPPED, UNANSWERED
from .schedule import histogram, histogram_add, histogram_quantile, is_lagging, scheduled_rate

DIALECT_HINT_SHARE = 0.5  # more than this share of an operation's sent requests got 404 …
DIALECT_HINT_MIN = 3  # … out of at least this many: the shop may speak the other dialect
OTHER_DIALECT = {"2023": "2024", "2024": "2023"}


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

    def add_chunk(self, cols: dict[str, bytes]) -> None:
        """Account one chunk of rows (column name → little-endian bytes)."""
        outcome = np.frombuffer(cols["outcome"], dtype="<u1")
        self.rows += len(outcome)
        self.outcomes += np.bincount(outcome, minlength=len(OUTCOMES))[: len(OUTCOMES)]
        sent_mask = outcome != SKIPPED
        intended = np.frombuffer(cols["intended"], dtype="<f8")
        sent = np.frombuffer(cols["sent"], dtype="<f8")
        done = np.frombuffer(cols["done"], dtype="<f8")
        histogram_add(self.response, (done - intended)[sent_mask])
        histogram_add(self.service, (done - sent)[sent_mask])
        histogram_add(self.lag, (sent - intended)[sent_mask])
        w = send_window(sent, done, outcome)
        if w is not None:
            self.window = w if self.window is None else (min(self.window[0], w[0]), max(self.window[1], w[1]))
        abandoned = done[outcome == TIMEOUT]
        if len(abandoned):
            last = float(abandoned.max())
            self.last_abandoned = last if self.last_abandoned is None else max(self.last_abandoned, last)
        op = np.frombuffer(cols["op"], dtype="<u1")
        status = np.frombuffer(cols["status"], dtype="<u2")
        n_ops = len(OP_NAMES)
        self.sent_by_op += np.bincount(op[sent_mask], minlength=n_ops)[:n_ops]
        self.not_found_by_op += np.bincount(op[sent_mask & (status == 404)], minlength=n_ops)[:n_ops]

    @property
    def indeterminate(self) -> int:
        """Requests whose effect is unknown (5xx, timeout, connection error)."""
        return int(sum(self.outcomes[c] for c in INDETERMINATE))


def dialect_hint(sent_by_op: np.ndarray, not_found_by_op: np.ndarray, dialect: str) -> dict | None:
    """Operations most of whose requests got 404, and the dialect the shop may speak instead (or None)."""
    ops = {OP_NAMES[i]: [int(not_found_by_op[i]), int(sent_by_op[i])] for i in range(len(OP_NAMES))
           if sent_by_op[i] >= DIALECT_HINT_MIN and not_found_by_op[i] > DIALECT_HINT_SHARE * sent_by_op[i]}
    if not ops:
        return None
    return {"ops": ops, "dialect": dialect, "other": OTHER_DIALECT.get(dialect)}


def build_summary(path: str, tally: Tally, *, header: dict, kept_requests: int, speed: float | None,
                  wall: float, complete: bool, reason: str | None, probes: int, bound: int,
                  final_reads: int, dialect: str) -> dict:
    """The run's summary dict (what ``replay_trace`` returns and :func:`format_summary` renders)."""
    outcomes = {name: int(c) for name, c in zip(OUTCOMES, tally.outcomes)}
    sent = tally.rows - outcomes["skipped"]
    window = tally.window
    lag_p99 = histogram_quantile(tally.lag, 0.99)
    return {
        "path": path,
        "requests": tally.rows,
        "sent": sent,
        "outcomes": outcomes,
        "wall": wall,
        "send_wall": 0.0 if window is None else max(0.0, window[1] - window[0]),
        "rate": run_rate(sent, window),
        "scheduled_rate": scheduled_rate(kept_requests, float(header.get("duration") or 0.0), speed),
        "p50": histogram_quantile(tally.response, 0.50),
        "p99": histogram_quantile(tally.response, 0.99),
        "service_p50": histogram_quantile(tally.service, 0.50),
        "service_p99": histogram_quantile(tally.service, 0.99),
        "lag_p99": lag_p99,
        "lagging": is_lagging(lag_p99, speed),
        "speed": speed,
        "complete": complete,
        "reason": reason,
        "bindings": bound,
        "probes": probes,
        "final_reads": final_reads,
        "dialect_hint": dialect_hint(tally.sent_by_op, tally.not_found_by_op, dialect),
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def format_summary(s: dict) -> str:
    """The end-of-run summary as a few lines of text."""
    oc = s["outcomes"]
    unanswered = [f"{oc[k]} {w}" for k, w in (("error", "5xx"), ("timeout", "timeout"), ("conn_error", "connection error"))
                  if oc.get(k)]
    counts = (f"{oc['ok']} {ACCEPTED} (2xx), {oc['fail']} {REFUSED} (4xx), "
              + (f"{sum(oc.get(k, 0) for k in ('error', 'timeout', 'conn_error'))} {UNANSWERED} ({', '.join(unanswered)})"
                 if unanswered else f"0 {UNANSWERED}")
              + (f", {oc['skipped']} {SKIPPED}" if oc.get("skipped") else "")
              + "; `check` says which the trace expects")
    achieved = "-" if s["rate"] is None else f"{s['rate']:.1f} req/s"
    if s["speed"] is None:
        scheduled = "max (speed max: as fast as --concurrency allows)"
    else:
        scheduled = "-" if s["scheduled_rate"] is None else f"{s['scheduled_rate']:.1f} req/s (speed {s['speed']:g})"
    lines = [
        f"{'replayed' if s['complete'] else 'PARTIAL (' + str(s['reason']) + ')'}: {s['requests']} requests "
        f"({s['sent']} sent) in {s['wall']:.2f} s -> {s['path']}",
        f"  answers: {counts}",
        f"  rate: {achieved} achieved (first send to last answer), scheduled {scheduled}",
        f"  response time p50 {_ms(s['p50'])}  p99 {_ms(s['p99'])};  schedule lag p99 {_ms(s['lag_p99'])}",
    ]
    if s["lagging"]:
        lines.append("  warning: requests went out late (p99 schedule lag above 10 ms): the replayer fell behind "
                     "(lower --speed or add --workers) or all --concurrency connections were busy (raise it)")
    hint = s.get("dialect_hint")
    if hint:
        ops = ", ".join(f"{op} {nf}/{n}" for op, (nf, n) in hint["ops"].items())
        other = f": try --dialect {hint['other']}" if hint["other"] else ""
        lines.append(f"  hint: most requests of {ops} got 404 — the shop may speak the other dialect{other} "
                     f"(this run used {hint['dialect']})")
    return "\n".join(lines)
