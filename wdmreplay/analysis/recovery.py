"""Faults in a run: the fault windows, an availability timeline, and each window's recovery.

Computed from the results alone (the ``fault`` / ``fault_do`` / ``fault_undo`` / ``fault_skipped``
events a ``replay --faults`` writes, see :mod:`wdmreplay.replayer.fault_schedule`, and the request columns).
A request's *time* is when it was answered (``done``; a skipped request: its ``intended`` time); it
is *answered* when the shop decided (2xx or 4xx), as in :mod:`.availability`.

Per window (``[do start, undo end]``):

- *in-window error share*: of the requests whose ``[intended, done]`` overlaps the window, the share
  not answered;
- *pre-fault success rate* (the baseline): the answered share of the requests answered in the
  :data:`BASELINE_S` seconds before the window starts (outside any other window); 100 % when there
  were none;
- *time to first success*: from the window's end to the ``done`` of the first 2xx request *sent*
  at or after the end;
- *recovery time*: from the window's end to the start of the first :data:`RECOVERY_WINDOW_S`-second
  window (slid in :data:`RECOVERY_STEP_S` steps from the end) whose requests, sent at or after the
  end, are answered at least at the baseline minus :data:`TOLERANCE` (an absolute share, 5
  percentage points) — and never sooner than the first success. None ("not recovered") when no
  such window comes before the next fault or the end of the run; *not measured* when no request
  was sent after the window (``requests_after`` 0): not a finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..traces.records import Event
from ..traces.results import EVENT_FAULT_SKIPPED, FAIL, FAULT_ACTION_EVENTS, OK, Results, is_fault_event
from .availability import FaultWindow, fault_windows

BASELINE_S = 10.0
RECOVERY_WINDOW_S = 1.0
RECOVERY_STEP_S = 0.1
TOLERANCE = 0.05
MAX_STEPS = 100_000  # recovery windows scanned per fault (the step widens for very long runs)


@dataclass(frozen=True, slots=True)
class FaultAction:
    """One recorded ``do`` / ``undo`` of a fault: when, how it ended, the tail of its output."""

    name: str
    which: str  # "do" or "undo"
    start: float
    end: float | None
    exit_code: int | None
    ok: bool
    command: str
    output: str
    timed_out: bool = False

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"name": self.name, "which": self.which, "start": self.start, "end": self.end,
                "exit": self.exit_code, "ok": self.ok, "timed_out": self.timed_out, "command": self.command,
                "output": self.output}


@dataclass(frozen=True, slots=True)
class WindowRecovery:
    """One fault window: requests inside it, the baseline before it, and the recovery after it."""

    name: str
    start: float
    end: float  # inf: the fault never ended
    requests: int  # requests overlapping the window
    unanswered: int
    baseline: float  # pre-fault success rate (0..1)
    baseline_requests: int
    first_success_s: float | None
    recovery_s: float | None
    requests_after: int = 0  # requests sent after the window, before the next one or the run's end

    @property
    def error_share(self) -> float | None:
        """Share of the window's requests not answered (None when it had none)."""
        return self.unanswered / self.requests if self.requests else None

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"name": self.name, "start": self.start, "end": None if math.isinf(self.end) else self.end,
                "requests": self.requests, "unanswered": self.unanswered, "error_share": self.error_share,
                "baseline": self.baseline, "baseline_requests": self.baseline_requests,
                "first_success_s": self.first_success_s, "recovery_s": self.recovery_s,
                "requests_after": self.requests_after}


@dataclass(frozen=True, slots=True)
class FaultAnalysis:
    """The faults of a run: windows with their recovery, the actions, and an availability timeline."""

    windows: tuple[WindowRecovery, ...]
    actions: tuple[FaultAction, ...]
    skipped: tuple[str, ...]
    bucket: float
    timeline_t: tuple[float, ...]
    timeline_requests: tuple[int, ...]
    timeline_answered: tuple[int, ...]

    @property
    def failed_actions(self) -> list[FaultAction]:
        """Actions that did not exit 0 in time."""
        return [a for a in self.actions if not a.ok]

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys): the report's ``faults`` section."""
        share = [None if n == 0 else a / n for n, a in zip(self.timeline_requests, self.timeline_answered)]
        return {"windows": [w.as_dict() for w in self.windows], "actions": [a.as_dict() for a in self.actions],
                "skipped": list(self.skipped),
                "definitions": {"baseline_s": BASELINE_S, "recovery_window_s": RECOVERY_WINDOW_S,
                                "recovery_step_s": RECOVERY_STEP_S, "tolerance": TOLERANCE},
                "timeline": {"bucket": self.bucket, "t": list(self.timeline_t),
                             "requests": list(self.timeline_requests), "answered": list(self.timeline_answered),
                             "share": share}}


def has_faults(results: Results) -> bool:
    """Whether the run had a fault schedule (a header ``faults`` list or any fault event)."""
    return bool(results.header_record.faults) or any(is_fault_event(e.kind) for e in results.event_records)


def _actions(events: Sequence[Event]) -> tuple[FaultAction, ...]:
    out = []
    for e in events:
        which = next((w for w, k in FAULT_ACTION_EVENTS.items() if k == e.kind), None)
        if which is None:
            continue
        out.append(FaultAction(str(e.name), which, e.at, e.end, e.exit, bool(e.ok), str(e.command or ""),
                               str(e.output or ""), bool(e.timed_out)))
    return tuple(out)


def _recovery(w: FaultWindow, sent: np.ndarray, done: np.ndarray, answered: np.ndarray, ok: np.ndarray,
              target: float, limit: float) -> tuple[float | None, float | None]:
    """(time to first success, recovery time) after window ``w``; requests sent at or after its end."""
    if math.isinf(w.end):
        return None, None
    after = (sent >= w.end) & ~np.isnan(done)
    first = done[after & ok]
    first_success = float(first.min() - w.end) if first.size else None
    t = done[after]
    order = np.argsort(t, kind="stable")
    t = t[order]
    cum = np.concatenate([[0], np.cumsum(answered[after][order])])
    span = limit - w.end
    if t.size == 0 or span < 0:
        return first_success, None
    step = max(RECOVERY_STEP_S, span / MAX_STEPS)
    starts = w.end + np.arange(int(span / step) + 1) * step
    lo = np.searchsorted(t, starts, "left")
    hi = np.searchsorted(t, starts + RECOVERY_WINDOW_S, "left")
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (cum[hi] - cum[lo]) / n
    good = np.nonzero((n > 0) & (share >= target - 1e-12))[0]
    if not good.size:
        return first_success, None
    # A window can qualify on answers to requests sent before the shop took connections again
    # (they waited in its listen backlog): recovery is never sooner than the first success.
    rec = float(starts[good[0]] - w.end)
    return first_success, rec if first_success is None else max(rec, first_success)


def analyze_faults(results: Results, *, bucket: float = 1.0) -> FaultAnalysis:
    """The fault analysis of a run (vectorized over the request columns)."""
    c = results.cols
    windows = sorted(fault_windows(results.event_records), key=lambda w: w.start)
    outcome = c["outcome"]
    intended, sent, done = c["intended"], c["sent"], c["done"]
    when = np.where(np.isnan(done), intended, done)
    answered = (outcome == OK) | (outcome == FAIL)
    ok = outcome == OK
    end_of_run = float(when.max()) if when.size else 0.0
    in_any = np.zeros(results.n, dtype=bool)
    for w in windows:
        in_any |= (intended <= w.end) & (when >= w.start)
    out = []
    for i, w in enumerate(windows):
        inside = (intended <= w.end) & (when >= w.start)
        base = ~in_any & (when < w.start) & (when >= w.start - BASELINE_S)
        nb = int(np.count_nonzero(base))
        baseline = float(np.count_nonzero(base & answered)) / nb if nb else 1.0
        limit = min([x.start for x in windows[i + 1:]] + [end_of_run])
        first, rec = _recovery(w, sent, done, answered, ok, baseline - TOLERANCE, limit)
        n_after = int(np.count_nonzero((sent >= w.end) & (sent < limit))) if not math.isinf(w.end) else 0
        out.append(WindowRecovery(w.name, w.start, w.end, int(np.count_nonzero(inside)),
                                  int(np.count_nonzero(inside & ~answered)), baseline, nb, first, rec, n_after))
    nb = max(1, int(math.ceil(end_of_run / bucket))) if results.n else 0
    idx = np.minimum((np.maximum(when, 0.0) / bucket).astype(np.int64), max(nb - 1, 0))
    reqs = np.bincount(idx, minlength=nb) if nb else np.zeros(0, np.int64)
    ans = np.bincount(idx, weights=answered, minlength=nb).astype(np.int64) if nb else np.zeros(0, np.int64)
    skipped = tuple(str(e.name) for e in results.event_records if e.kind == EVENT_FAULT_SKIPPED)
    return FaultAnalysis(tuple(out), _actions(results.event_records), skipped, bucket,
                         tuple(round(k * bucket, 9) for k in range(nb)), tuple(int(x) for x in reqs),
                         tuple(int(x) for x in ans))


def apart_windows(fa: FaultAnalysis, max_recovery: float) -> tuple[FaultWindow, ...]:
    """The spans availability counts apart: each fault window and its recovery.

    A restarted service refuses requests until it is ready again; that recovery is measured and
    bounded by ``--max-recovery`` (:func:`recovery_findings`), not charged to ``--min-availability``
    as well. The span after a window that recovered in time is its recovery time plus the
    :data:`RECOVERY_WINDOW_S` window that showed it (the tolerance lets that window hold a last
    refusal or two); after one that did not, ``max_recovery`` only: what comes later counts as usual.
    """
    out = []
    for w in fa.windows:
        rec = w.recovery_s
        extra = rec + RECOVERY_WINDOW_S if rec is not None and rec <= max_recovery else max_recovery
        out.append(FaultWindow(w.name, w.start, w.end + extra))
    return tuple(out)


def recovery_findings(fa: FaultAnalysis, max_recovery: float) -> list[str]:
    """Availability findings of ``check --max-recovery``: each window not back to its baseline in time."""
    why = []
    for w in fa.windows:
        target = f"{100.0 * max(0.0, w.baseline - TOLERANCE):.1f}% answered"
        if math.isinf(w.end) or (w.recovery_s is None and not w.requests_after):
            continue  # never ended (coverage: action_findings), or no request after it: not measured, not slow
        if w.recovery_s is None:
            why.append(f"fault {w.name}: did not recover to the pre-fault success rate ({target}) before the "
                       f"run ended (limit --max-recovery {max_recovery:g} s)")
        elif w.recovery_s > max_recovery:
            why.append(f"fault {w.name}: recovery took {w.recovery_s:.2f} s to {target} > --max-recovery "
                       f"{max_recovery:g} s")
    return why


def action_findings(fa: FaultAnalysis) -> list[str]:
    """Coverage findings of ``check``: each failed action, and each window left open, makes the run unjudgeable.

    A failed ``do`` means the fault did not happen as planned (the run does not test what it
    claims); a failed ``undo`` or a window with no ``undo`` at all means the shop may not have been
    restored before the final read. Either way the verdict is INCONCLUSIVE, never CLEAN.
    """
    why = []
    for a in fa.failed_actions:
        how = "timed out" if a.timed_out else "did not start" if a.exit_code is None else f"exit {a.exit_code}"
        consequence = ("the fault did not happen as planned" if a.which == "do"
                       else "the shop may not have been restored")
        why.append(f"fault {a.name}'s {a.which} failed ({how}): {consequence}")
    for w in fa.windows:
        if math.isinf(w.end):
            why.append(f"fault {w.name}: no undo recorded (window open to the run's end): "
                       f"the shop may not have been restored")
    return why


def _s(x: float | None) -> str:
    return "not recovered" if x is None else f"{x:.2f} s"


def fault_lines(fa: FaultAnalysis, *, timeline: bool = True) -> list[str]:
    """Text lines of the report's ``faults`` section; ``timeline``: with availability over time."""
    lines = ["faults"]
    for w in fa.windows:
        end = "open to the run's end (no undo recorded)" if math.isinf(w.end) else f"{w.end:.2f} s"
        es = "-" if w.error_share is None else f"{100.0 * w.error_share:.1f}%"
        lines.append(f"  {w.name}: window {w.start:.2f} s -> {end}; {w.requests} requests overlap it, "
                     f"{es} unanswered")
        lines.append(f"    pre-fault success rate {100.0 * w.baseline:.1f}% ({w.baseline_requests} requests); "
                     f"first success {_s(w.first_success_s)} after the end; recovery "
                     + ("not measured (no request was sent after the window)"
                        if w.recovery_s is None and not w.requests_after else _s(w.recovery_s)))
    for a in fa.failed_actions:
        tail = a.output.strip().splitlines()[-1:] if a.output.strip() else []
        lines.append(f"  FAILED {a.which} of {a.name} (exit {a.exit_code}): {a.command}"
                     + (f" — {tail[0][:200]}" if tail else ""))
    for name in fa.skipped:
        lines.append(f"  {name}: skipped (not due before the run ended)")
    windows = [(w.start, w.end) for w in fa.windows]
    n = len(fa.timeline_t) if timeline else 0
    if n:
        step = -(-n // 30)
        lines.append(f"  availability over time ({fa.bucket:g} s buckets{f', every {step}th shown' if step > 1 else ''}; "
                     f"* = overlaps a fault window)")
        for k in range(0, n, step):
            t0, t1 = fa.timeline_t[k], fa.timeline_t[k] + fa.bucket
            mark = "*" if any(s <= t1 and e >= t0 for s, e in windows) else " "
            requests, answered = fa.timeline_requests[k], fa.timeline_answered[k]
            sh = None if requests == 0 else answered / requests
            bar = "" if sh is None else "#" * int(round(20 * sh))
            pct = "    -" if sh is None else f"{100.0 * sh:5.1f}"
            lines.append(f"  {mark}{t0:>8g} {pct}% {answered:>6}/{requests:<6} {bar}")
    return lines + [""]
