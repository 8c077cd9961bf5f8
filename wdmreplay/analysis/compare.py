"""Compare builds replayed with one trace: the run is the unit, runs are grouped by build label.

Files are grouped by the header's ``label`` (a file without one is a group of its own); the first
group is the base and every other group is compared with it. Per operation and per run: p50, p90
and p99 of the response time of *answered* requests (2xx/4xx — errors' latencies are shown apart),
the error share (5xx, timeouts, connection errors among sent requests), and the run's rate
(``traces.results.run_rate`` over ``send_window``). Latency ratios get an interval from a two-level
bootstrap (:mod:`.bootstrap`: runs, then requests within runs), at one level for all the gated tests
of a build together (Bonferroni), and an ``all`` row pools every operation. With one run on either side the
between-run noise cannot be measured, so the interval is widened by :data:`NOISE_FLOOR`, measured by
``bench/compare_calibration.py``, and the verdict says it is the weaker kind.

Gates (any of them is a regression, exit 1): a p50 or p99 that is significantly slower by more than
``threshold``; an error share significantly higher (one-sided Fisher exact test, scipy) by more than
``error_threshold`` (absolute); more anomalies of a kind per run; at ``--speed max`` only, a run rate
significantly lower by more than ``threshold``. :func:`compare_runs` computes a
:class:`CompareResult`; :mod:`.compare_text` (``render_compare_text``) and :mod:`.compare_html` only format it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WdmError
from ..operations import OP_NAMES
from ..traces.results import FAIL, INDETERMINATE, OK, SKIPPED, Results, run_rate, send_window
from .bootstrap import (all_failing_significant, critical_value, fisher_greater, log_mean_replicates,
                        log_quantile_replicates, ratio_interval)
from .check import CheckReport
from .consistency import KINDS

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
ALL = "all"  # the pseudo-operation of every answered request of a run
GATED = ("p50", "p99")  # the typical request and the tail; p90 is shown, not gated
MIN_SAMPLES = 20
# The smallest significance level: intervals of 1 - 1e-6. Far smaller ones (about 1e-15) make an
# interval's bound 0 in floating point, and no verdict can be drawn from that.
MIN_ALPHA = 1e-6
CDF_POINTS = tuple(i / 200 for i in range(201))
TAIL_SAMPLES = 2  # a quantile q is tested only when every run has ≥ this many answers above it

# Between-run noise of one run against one run of the same build, as a fraction of the ratio: the
# 95th percentile over 60 A/A single-run pairs of the largest |ratio − 1| over the gated operations
# (p50 60 %, p90 112 %, p99 324 %, rate 45 %), measured by `python bench/compare_calibration.py
# --seed 2` (240 runs of a 1,500-request stress trace at --speed max; busy neighbour in 60 of them;
# load average 10–12 on the 2-core machine shared with six other engineers' builds and tests), on
# 2026-12-01 — see docs/analysis.md "Calibration". Used only when a side has one run.
NOISE_FLOOR = {"p50": 0.60, "p90": 1.12, "p99": 3.24, "throughput": 0.45}


class CompareError(WdmError):
    """Runs that cannot be compared (different traces, a single build)."""


@dataclass(frozen=True, slots=True)
class OpRunStats:
    """One operation in one run: counts, answered-latency quantiles (ms), errors' median latency (ms)."""

    sent: int
    answered: int
    errors: int
    skipped: int
    quantiles_ms: tuple[float, ...] | None  # p50, p90, p99 of answered requests; None when none answered
    error_p50_ms: float | None


@dataclass(frozen=True, slots=True)
class RunStats:
    """One results file's contribution: its label, speed, rate and per-operation statistics."""

    file: str
    label: str
    complete: bool
    speed: float | None  # None = --speed max
    rate: float | None  # run_rate over send_window (req/s)
    scheduled_rate: float | None  # the trace's requests over its schedule at this speed (None at max)
    ops: dict[str, OpRunStats]


@dataclass(frozen=True, slots=True)
class Change:
    """A ratio new/base with its interval: significant when the interval excludes 1."""

    name: str  # "p50", "p90", "p99" or "throughput"
    base: float
    new: float
    ratio: float
    ci: tuple[float, float] | None
    significant: bool
    regression: bool
    gated: bool
    note: str = ""
    # The ratio these runs need before this gate fires: a slow-down beyond it (latency), a rate
    # below it (throughput); None when untested. Wide intervals push it far from 1.
    fires_at: float | None = None


@dataclass(frozen=True, slots=True)
class GateLimit:
    """A gate these runs cannot fire (or only for an implausibly large change), and why."""

    gate: str  # "p50", "p99", "throughput", "error share", "anomalies"
    ops: tuple[str, ...]  # operations concerned (empty: the whole build)
    why: str  # one phrase, e.g. "interval 0.02–78x: too few runs to gate p99"


def _silent_why(silent: tuple[str, ...]) -> str:
    """Why there is no throughput comparison when the builds ``silent`` (labels) answered no request."""
    return f"no answered request in {' and '.join(silent)}: the rate of its failures is no throughput"


def throughput_not_compared(b: "BuildComparison") -> str:
    """Why ``b`` has no throughput comparison, in a few words (the renderers' "not compared (…)")."""
    return _silent_why(b.silent) if b.silent else "paced runs measure the schedule"


@dataclass(frozen=True, slots=True)
class ErrorChange:
    """Error shares (5xx, timeout, connection error among sent requests) base vs new, pooled over runs."""

    base_errors: int
    base_sent: int
    new_errors: int
    new_sent: int
    p_value: float | None
    significant: bool
    regression: bool

    @property
    def base_share(self) -> float:
        """Share of the base's sent requests that got no answer (0 when none sent)."""
        return self.base_errors / self.base_sent if self.base_sent else 0.0

    @property
    def new_share(self) -> float:
        """Share of the new build's sent requests that got no answer (0 when none sent)."""
        return self.new_errors / self.new_sent if self.new_sent else 0.0


@dataclass(frozen=True, slots=True)
class OpComparison:
    """One operation: latency changes (answered requests), error share, errors' latency, skipped."""

    op: str
    base_answered: int
    new_answered: int
    latency: tuple[Change, ...]
    errors: ErrorChange
    base_error_ms: float | None
    new_error_ms: float | None
    base_skipped: int
    new_skipped: int


@dataclass(frozen=True, slots=True)
class Rates:
    """Each build's request rate (req/s), the mean over its runs: achieved and scheduled (None: not known)."""

    base: float | None
    new: float | None
    base_scheduled: float | None
    new_scheduled: float | None


@dataclass(frozen=True, slots=True)
class BuildComparison:
    """One build (a label group) against the base build."""

    label: str
    files: tuple[str, ...]
    ops: tuple[OpComparison, ...]
    errors: ErrorChange  # all operations together
    throughput: Change | None  # None unless every run of both builds ran at --speed max
    base_anomalies: dict[str, float] | None  # per run (mean over the build's runs)
    new_anomalies: dict[str, float] | None
    noise_floor: bool  # a side had one run: intervals widened by NOISE_FLOOR
    rates: Rates
    tests: int  # gated tests sharing alpha (Bonferroni)
    critical: float  # the intervals' critical value (normal, at 1 − alpha/(2·tests))
    notes: tuple[str, ...] = ()
    limits: tuple[GateLimit, ...] = ()  # gates that cannot fire with these runs
    # Operations that some run of a side never got an answer for, per side: their latency is not compared.
    unanswered: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "base" / "new" -> ops
    # Labels of the builds that answered no request at all (unpaced runs): why throughput is not compared.
    silent: tuple[str, ...] = ()

    @property
    def latency_regressions(self) -> list[tuple[str, Change]]:
        """(op, change) of every gated quantile significantly slower beyond the threshold."""
        return [(o.op, c) for o in self.ops for c in o.latency if c.regression]

    @property
    def error_regressions(self) -> list[str]:
        """Operations whose error share rose significantly beyond the error threshold."""
        return [o.op for o in self.ops if o.errors.regression]

    @property
    def anomaly_increase(self) -> dict[str, float]:
        """Anomaly kinds the new build has more of per run than the base (kind → increase per run)."""
        if self.base_anomalies is None or self.new_anomalies is None:
            return {}
        return {k: self.new_anomalies[k] - self.base_anomalies[k] for k in KINDS
                if self.new_anomalies[k] > self.base_anomalies[k]}

    @property
    def regression(self) -> bool:
        """Whether this build regressed against the base (on any gate)."""
        return bool(self.latency_regressions or self.error_regressions or self.anomaly_increase
                    or (self.throughput is not None and self.throughput.regression))


@dataclass(frozen=True, slots=True)
class CompareResult:
    """A base build against one or more other builds of the same trace, and every run's statistics."""

    base_label: str
    base_files: tuple[str, ...]
    digest: str
    threshold: float
    error_threshold: float
    alpha: float
    builds: tuple[BuildComparison, ...]
    runs: tuple[RunStats, ...]
    # Per build label: op → answered response times (ms) at CDF_POINTS, pooled over its runs (for plots).
    distributions: dict[str, dict[str, tuple[float, ...]]]

    @property
    def regression(self) -> bool:
        """Whether any build regressed (the exit-1 condition)."""
        return any(b.regression for b in self.builds)

    def to_json(self) -> dict:
        """JSON-ready form: :meth:`as_dict` (``render_json`` takes the result itself)."""
        return self.as_dict()

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys, schema ``wdm-compare/2``, documented in docs/analysis.md)."""
        return {
            "schema": "wdm-compare/2", "trace_digest": self.digest, "threshold": self.threshold,
            "error_threshold": self.error_threshold, "alpha": self.alpha, "regression": self.regression,
            "noise_floor": dict(NOISE_FLOOR),
            "base": {"label": self.base_label, "files": list(self.base_files)},
            "builds": [_build_dict(b) for b in self.builds],
            "runs": [{"file": r.file, "label": r.label, "complete": r.complete, "speed": r.speed,
                      "rate": _r(r.rate), "scheduled_rate": _r(r.scheduled_rate),
                      "ops": {op: {"sent": s.sent, "answered": s.answered, "errors": s.errors, "skipped": s.skipped,
                                   **{name: (_r(s.quantiles_ms[j]) if s.quantiles_ms else None)
                                      for j, (name, _) in enumerate(QUANTILES)},
                                   "error_p50_ms": _r(s.error_p50_ms)} for op, s in r.ops.items()}}
                     for r in self.runs],
        }


def _change_dict(c: Change) -> dict:
    return {"name": c.name, "base": _r(c.base), "new": _r(c.new), "ratio": _r(c.ratio),
            "ci": [_r(c.ci[0]), _r(c.ci[1])] if c.ci else None, "significant": c.significant,
            "regression": c.regression, "gated": c.gated, "note": c.note, "fires_at": _r(c.fires_at)}


def _error_dict(e: ErrorChange) -> dict:
    return {"base_errors": e.base_errors, "base_sent": e.base_sent, "new_errors": e.new_errors,
            "new_sent": e.new_sent, "base_share": _r(e.base_share, 6), "new_share": _r(e.new_share, 6),
            "p_value": _r(e.p_value, 6), "significant": e.significant, "regression": e.regression}


def _build_dict(b: BuildComparison) -> dict:
    return {
        "label": b.label, "files": list(b.files), "regression": b.regression, "noise_floor": b.noise_floor,
        "tests": b.tests, "critical": _r(b.critical),
        "rates": {"base": _r(b.rates.base), "new": _r(b.rates.new), "base_scheduled": _r(b.rates.base_scheduled),
                  "new_scheduled": _r(b.rates.new_scheduled)},
        "notes": list(b.notes), "errors": _error_dict(b.errors),
        "cannot_fire": [{"gate": g.gate, "ops": list(g.ops), "why": g.why} for g in b.limits],
        "no_answered_requests": {side: list(ops) for side, ops in b.unanswered.items()},
        "throughput": _change_dict(b.throughput) if b.throughput else None,
        "anomalies": {"base": b.base_anomalies, "new": b.new_anomalies, "increase": b.anomaly_increase},
        "ops": [{"op": o.op, "base_answered": o.base_answered, "new_answered": o.new_answered,
                 "latency_ms": [_change_dict(c) for c in o.latency], "errors": _error_dict(o.errors),
                 "base_error_ms": _r(o.base_error_ms), "new_error_ms": _r(o.new_error_ms),
                 "base_skipped": o.base_skipped, "new_skipped": o.new_skipped} for o in b.ops],
    }


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


# --- per-run statistics ------------------------------------------------------------------------


def _by_op(op: np.ndarray, values: np.ndarray, n_ops: int) -> list[np.ndarray]:
    """``values`` split by operation code, in their order: element k holds code k's (empty when none)."""
    return np.split(values[np.argsort(op, kind="stable")], np.cumsum(np.bincount(op, minlength=n_ops))[:-1])


def _scheduled_rate(r: Results, speed: float | None) -> float | None:
    th = r.header_record.trace_header  # the trace's header as the results header copied it
    n, duration = th.requests, th.duration
    if speed is None or n is None or duration is None or duration <= 0:
        return None
    return float(n) / (float(duration) / speed)


def run_stats(r: Results) -> tuple[RunStats, dict[str, np.ndarray]]:
    """A run's :class:`RunStats`, and the answered response times (seconds) per operation (the samples)."""
    c = r.cols
    op = c["op"].astype(np.int64)
    oc = c["outcome"]
    rt = c["done"] - c["intended"]
    finite = np.isfinite(rt)
    answered = ((oc == OK) | (oc == FAIL)) & finite
    errors = np.isin(oc, INDETERMINATE)
    n_ops = len(OP_NAMES)
    sent_n = np.bincount(op[oc != SKIPPED], minlength=n_ops)
    ans_n = np.bincount(op[answered], minlength=n_ops)
    err_n = np.bincount(op[errors], minlength=n_ops)
    skip_n = np.bincount(op[oc == SKIPPED], minlength=n_ops)
    ans_rt = _by_op(op[answered], rt[answered], n_ops)
    err_rt = _by_op(op[errors & finite], rt[errors & finite], n_ops)
    qs = tuple(q for _, q in QUANTILES)
    ops, samples = {}, {}
    for code in np.flatnonzero(sent_n + skip_n):
        name = OP_NAMES[code]
        x, e = ans_rt[code], err_rt[code]
        ops[name] = OpRunStats(int(sent_n[code]), int(ans_n[code]), int(err_n[code]), int(skip_n[code]),
                               tuple(float(v) * 1e3 for v in np.quantile(x, qs)) if x.size else None,
                               float(np.median(e)) * 1e3 if e.size else None)
        if x.size:
            samples[name] = x
    if ops:
        # Every operation together: the most stable view of a build-wide change (gated like an operation).
        ops[ALL] = OpRunStats(int(sent_n.sum()), int(ans_n.sum()), int(err_n.sum()), int(skip_n.sum()),
                              tuple(float(v) * 1e3 for v in np.quantile(rt[answered], qs)) if answered.any() else None,
                              float(np.median(rt[errors & finite])) * 1e3 if (errors & finite).any() else None)
        if answered.any():
            samples[ALL] = rt[answered]
    speed = r.header_record.speed
    speed = float(speed) if isinstance(speed, (int, float)) else None
    rate = run_rate(int(sent_n.sum()), send_window(c["sent"], c["done"], oc))
    stats = RunStats(Path(r.path).name, r.label, r.complete, speed, rate, _scheduled_rate(r, speed), ops)
    return stats, samples


# --- grouping and comparison -------------------------------------------------------------------


def group_by_label(runs: list[Results]) -> list[list[int]]:
    """Indices of ``runs`` grouped by header label, in order of first appearance; no label → own group."""
    groups: dict[object, list[int]] = {}
    for i, r in enumerate(runs):
        key = r.header_record.label or ("file", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _check_same_trace(runs: list[Results]) -> str:
    base = runs[0]
    digest = base.header_record.trace.digest
    for r in runs[1:]:
        d = r.header_record.trace.digest
        if d != digest:
            raise CompareError(
                f"{Path(r.path).name} replays a different trace than {Path(base.path).name} "
                f"({str(d)[:19]}… vs {str(digest)[:19]}…); compare needs runs of the same trace")
    return str(digest)


@dataclass(frozen=True, slots=True)
class _Estimate:
    """A ratio before its interval: log ratio and its bootstrap standard error (None: not testable)."""

    name: str
    base: float
    new: float
    log_ratio: float
    se: float | None
    gated: bool
    note: str = ""


def min_answers(q: float) -> int:
    """Answers every run needs for quantile ``q`` to be tested: ≥ MIN_SAMPLES and ≥ TAIL_SAMPLES above it."""
    return max(MIN_SAMPLES, round(TAIL_SAMPLES / (1 - q)))


def _latency_estimates(base: list[np.ndarray], new: list[np.ndarray], rng: np.random.Generator) -> list[_Estimate]:
    """p50/p90/p99 of one operation: log ratio of the builds' statistics, two-level bootstrap SE."""
    qs = tuple(q for _, q in QUANTILES)
    point_b = np.array([np.log(np.maximum(np.quantile(x, qs), 1e-9)) for x in base]).mean(axis=0)
    point_n = np.array([np.log(np.maximum(np.quantile(x, qs), 1e-9)) for x in new]).mean(axis=0)
    smallest = min(x.size for x in (*base, *new))
    testable = [smallest >= min_answers(q) for q in qs]
    se = np.full(len(qs), np.nan)
    if any(testable):
        se = (log_quantile_replicates(new, qs, rng) - log_quantile_replicates(base, qs, rng)).std(axis=0, ddof=1)
    out = []
    for j, (name, q) in enumerate(QUANTILES):
        b_ms, n_ms = float(np.exp(point_b[j])) * 1e3, float(np.exp(point_n[j])) * 1e3
        note = ""
        if not testable[j]:
            note = f"too few answers (< {min_answers(q)} in a run)"
        out.append(_Estimate(name, b_ms, n_ms, float(point_n[j] - point_b[j]),
                             float(se[j]) if testable[j] else None, name in GATED, note))
    return out


def _decide(e: _Estimate, crit: float, floor: bool, threshold: float) -> Change:
    """The interval and verdict of one estimate: slower is new/base > 1; the rate's regression is < 1."""
    ratio = float(np.exp(e.log_ratio))
    if e.se is None:
        return Change(e.name, e.base, e.new, ratio, None, False, False, e.gated, e.note)
    lo, hi = ratio_interval(e.log_ratio, e.se, crit, NOISE_FLOOR[e.name] if floor else 0.0)
    significant = lo > 1.0 or hi < 1.0
    half_width = ratio / lo  # the interval's factor either side of the ratio: lo = ratio / w, hi = ratio * w
    if e.name == "throughput":
        worse = hi < 1.0 and ratio < 1.0 / (1.0 + threshold)
        fires_at = min(1.0 / (1.0 + threshold), 1.0 / half_width)
    else:
        worse = lo > 1.0 and ratio > 1.0 + threshold
        fires_at = max(1.0 + threshold, half_width)
    return Change(e.name, e.base, e.new, ratio, (lo, hi), significant, e.gated and significant and worse, e.gated,
                  fires_at=fires_at)


def _error_change(be: int, bs: int, ne: int, ns: int, alpha: float, error_threshold: float) -> ErrorChange:
    """Error shares base vs new; significant by a one-sided Fisher exact test (is new's share higher?)."""
    p = fisher_greater(ne, ns, be, bs) if bs and ns and (be or ne) else None
    significant = p is not None and p < alpha
    rise = (ne / ns if ns else 0.0) - (be / bs if bs else 0.0)
    return ErrorChange(be, bs, ne, ns, p, significant, significant and rise > error_threshold)


def _throughput_estimate(base: list[RunStats], new: list[RunStats], rng: np.random.Generator) -> _Estimate | None:
    """Run rates (req/s) base vs new — only when every run of both builds ran at --speed max."""
    if any(r.speed is not None for r in (*base, *new)):
        return None
    b = np.log(np.array([r.rate for r in base if r.rate]))
    n = np.log(np.array([r.rate for r in new if r.rate]))
    if not b.size or not n.size:
        return None
    se = float((log_mean_replicates(n, rng) - log_mean_replicates(b, rng)).std(ddof=1))
    return _Estimate("throughput", float(np.exp(b.mean())), float(np.exp(n.mean())), float(n.mean() - b.mean()),
                     se, True)


def _anomalies_per_run(checks: list[CheckReport | None]) -> dict[str, float] | None:
    if any(c is None for c in checks):
        return None
    return {k: sum(c.anomaly_counts[k] for c in checks) / len(checks) for k in KINDS}  # type: ignore[union-attr]


def _compare_build(base_idx: list[int], new_idx: list[int], stats: list[RunStats], samples: list[dict],
                   checks: list[CheckReport | None], rng: np.random.Generator, *, threshold: float,
                   error_threshold: float, alpha: float) -> BuildComparison:
    floor = len(base_idx) == 1 or len(new_idx) == 1
    bs, ns = [stats[i] for i in base_idx], [stats[i] for i in new_idx]
    names = sorted({op for r in (*bs, *ns) for op in r.ops}, key=op_order)
    estimates: dict[str, list[_Estimate]] = {}
    for op in names:
        b_x = [samples[i][op] for i in base_idx if op in samples[i]]
        n_x = [samples[i][op] for i in new_idx if op in samples[i]]
        if len(b_x) == len(base_idx) and len(n_x) == len(new_idx):
            estimates[op] = _latency_estimates(b_x, n_x, rng)
    # A side that answered nothing at all (a 5xx storm, a shop answering garbage) ran at the rate of
    # its failures: comparing that rate would call the healthy side a throughput REGRESSION.
    silent = [side for side, runs in (("base", bs), ("new", ns))
              if all(ALL not in r.ops or not r.ops[ALL].answered for r in runs)]
    tput = None if silent else _throughput_estimate(bs, ns, rng)
    # One family of tests per build: the gated tests share alpha (Bonferroni), so a comparison of
    # many operations does not raise more false alarms than one of a few.
    tests = sum(e.gated and e.se is not None for es in estimates.values() for e in es) + (tput is not None)
    crit = critical_value(1.0 - alpha / max(tests, 1))
    ops = []
    for op in names:
        def tot(runs: list[RunStats], field: str) -> int:
            return sum(getattr(r.ops[op], field) for r in runs if op in r.ops)

        def err_ms(runs: list[RunStats]) -> float | None:
            v = [r.ops[op].error_p50_ms for r in runs if op in r.ops and r.ops[op].error_p50_ms is not None]
            return float(np.median(v)) if v else None

        latency = tuple(_decide(e, crit, floor, threshold) for e in estimates.get(op, ()))
        ops.append(OpComparison(
            op, tot(bs, "answered"), tot(ns, "answered"), latency,
            _error_change(tot(bs, "errors"), tot(bs, "sent"), tot(ns, "errors"), tot(ns, "sent"), alpha, error_threshold),
            err_ms(bs), err_ms(ns), tot(bs, "skipped"), tot(ns, "skipped")))
    all_errors = next((o.errors for o in ops if o.op == ALL), _error_change(0, 0, 0, 0, alpha, error_threshold))
    notes = []
    if any(not r.complete for r in (*bs, *ns)):
        notes.append("partial run(s) compared: " + ", ".join(r.file for r in (*bs, *ns) if not r.complete))
    speeds = {r.speed for r in (*bs, *ns)}
    if len(speeds) > 1:
        notes.append("runs replayed at different speeds (" + ", ".join(
            "max" if s is None else f"{s:g}" for s in sorted(speeds, key=lambda s: -1 if s is None else s))
            + "): latencies are not like for like")
    # An operation some run of a side never got an answer for (all failed, unanswered or skipped).
    unanswered = {side: tuple(op for op in names if any(op not in r.ops or not r.ops[op].answered for r in runs))
                  for side, runs in (("base", bs), ("new", ns))}
    unanswered = {side: o for side, o in unanswered.items() if o}
    throughput = _decide(tput, crit, floor, threshold) if tput is not None else None
    b_anom = _anomalies_per_run([checks[i] for i in base_idx])
    n_anom = _anomalies_per_run([checks[i] for i in new_idx])
    labels = {"base": bs[0].label, "new": ns[0].label}
    paced = any(r.speed is not None for r in (*bs, *ns))
    silent_labels = () if paced else tuple(labels[side] for side in silent)  # paced runs: that is the reason
    limits = gate_limits(ops, throughput, unanswered, labels, checked=b_anom is not None and n_anom is not None,
                         paced=paced, alpha=alpha, error_threshold=error_threshold, silent=silent_labels)
    return BuildComparison(
        ns[0].label, tuple(r.file for r in ns), tuple(ops),
        all_errors, throughput, b_anom, n_anom,
        floor, Rates(_mean([r.rate for r in bs]), _mean([r.rate for r in ns]),
                     _mean([r.scheduled_rate for r in bs]), _mean([r.scheduled_rate for r in ns])),
        tests, crit, tuple(notes), limits, unanswered, silent_labels)


# A gate whose interval lets a doubling (or halving of the rate) through cannot gate anything a
# build would be rejected for: it is reported as unable to fire with these runs.
WEAK_GATE_RATIO = 2.0


def _ratio_words(x: float) -> str:
    return f"{x:.2g}x" if x < 10 else f"{x:.0f}x"


def _error_gate_why(e: ErrorChange, alpha: float, error_threshold: float) -> str | None:
    """Why an error-share gate cannot fire with these request counts (None: it can)."""
    if not e.base_sent or not e.new_sent:
        return "no request sent by one build"
    if e.base_share + error_threshold >= 1.0:
        return f"the base's error share is already above {100 * (1 - error_threshold):g}%"
    if not all_failing_significant(e.new_sent, e.base_errors, e.base_sent, alpha):
        return "too few requests: even every one of them failing would not be significant"
    return None


def gate_limits(ops: list[OpComparison], throughput: Change | None, unanswered: dict[str, tuple[str, ...]],
                labels: dict[str, str], *, checked: bool, paced: bool, alpha: float,
                error_threshold: float, silent: tuple[str, ...] = ()) -> tuple[GateLimit, ...]:
    """The gates a build's comparison cannot fire with these runs, grouped by gate and reason.

    Latency gates: too few answers to test, no answered requests on a side, or an interval so wide
    that only a change beyond :data:`WEAK_GATE_RATIO` would count; the error share of operations
    with too few requests; throughput when runs were paced (or its interval is that wide), or when a
    build (``silent``: their labels) answered no request at all; anomalies when there was no check.
    """
    out: list[GateLimit] = []
    for gate in GATED:
        few, wide = [], []
        for o in ops:
            for c in o.latency:
                if c.name != gate:
                    continue
                if c.note:
                    few.append(o.op)
                elif c.fires_at is not None and c.fires_at > WEAK_GATE_RATIO:
                    wide.append((o.op, c))
        if few:
            q = dict(QUANTILES)[gate]
            out.append(GateLimit(gate, tuple(few), f"too few answers to test {gate} (every run needs {min_answers(q)})"))
        if wide:
            op, c = max(wide, key=lambda x: x[1].fires_at)
            out.append(GateLimit(gate, tuple(o for o, _ in wide),
                                 f"interval {c.ci[0]:.2g}–{_ratio_words(c.ci[1])} at its widest ({op}): too few runs "
                                 f"to gate {gate} (a slow-down below {_ratio_words(c.fires_at)} cannot fire it)"))
    for side, names in unanswered.items():
        out.append(GateLimit("latency", names, f"no answered requests in {labels[side]} (every one failed, got no "
                                               f"answer or was skipped): their latency cannot be compared"))
    by_why: dict[str, list[str]] = {}
    for o in ops:
        why = _error_gate_why(o.errors, alpha, error_threshold)
        if why:
            by_why.setdefault(why, []).append(o.op)
    out += [GateLimit("error share", tuple(names), why) for why, names in by_why.items()]
    if throughput is None:
        why = ("runs paced by the schedule measure the schedule's rate, not the shop's: gated only when every run "
               "is at --speed max") if paced else _silent_why(silent) if silent else "no rate measured"
        out.append(GateLimit("throughput", (), why))
    elif throughput.fires_at is not None and throughput.fires_at < 1.0 / WEAK_GATE_RATIO:
        out.append(GateLimit("throughput", (), f"interval {throughput.ci[0]:.2g}–"
                                               f"{_ratio_words(throughput.ci[1])}: too few runs to gate throughput "
                                               f"(a drop to above {_ratio_words(throughput.fires_at)} cannot fire it)"))
    if not checked:
        out.append(GateLimit("anomalies", (), "no consistency check (compare --no-check, or results without args)"))
    return tuple(out)


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x]
    return float(np.mean(v)) if v else None


def compare_runs(runs: list[Results], *, checks: list[CheckReport | None] | None = None,
                 threshold: float = 0.10, error_threshold: float = 0.01, alpha: float = 0.05,
                 seed: int = 0) -> CompareResult:
    """Compare the builds of ``runs`` (grouped by label; the first group is the base) of one trace.

    ``checks`` (one per run, or None) adds anomaly deltas. ``threshold`` is the fraction a latency
    (or, at --speed max, the rate) must worsen by, ``error_threshold`` the absolute rise of the error
    share, ``alpha`` the significance level (intervals are 1−alpha). Raises :class:`CompareError`
    for fewer than two builds, runs of different traces, or a ``threshold`` / ``error_threshold`` /
    ``alpha`` that is nan or out of range.
    """
    if not runs:
        raise CompareError("compare needs results files of at least two builds (BASE NEW)")
    for name, value in (("threshold", threshold), ("error_threshold", error_threshold)):
        if not (np.isfinite(value) and value >= 0):
            raise CompareError(f"{name} must be a finite fraction >= 0 (0.10 = 10 %), got {value!r}")
    if not MIN_ALPHA <= alpha < 1:
        raise CompareError(f"alpha must be a significance level of at least {MIN_ALPHA:g} and below 1, got {alpha!r}")
    digest = _check_same_trace(runs)
    groups = group_by_label(runs)
    if len(groups) < 2:
        raise CompareError(f"compare needs at least two builds; all {len(runs)} files have label "
                           f"{runs[0].label!r} (replay with --label, or give files of another build)")
    checks = checks or [None] * len(runs)
    rng = np.random.default_rng(seed)
    pairs = [run_stats(r) for r in runs]
    stats = [p[0] for p in pairs]
    samples = [p[1] for p in pairs]
    builds = tuple(_compare_build(groups[0], g, stats, samples, checks, rng, threshold=threshold,
                                  error_threshold=error_threshold, alpha=alpha) for g in groups[1:])
    return CompareResult(stats[groups[0][0]].label, tuple(stats[i].file for i in groups[0]), digest, threshold,
                         error_threshold, alpha, builds, tuple(stats),
                         {stats[g[0]].label: _distributions([samples[i] for i in g]) for g in groups})


def op_order(op: str) -> int:
    """Sort key: the shop's operations in their table's order, unknown names after them."""
    return OP_NAMES.index(op) if op in OP_NAMES else len(OP_NAMES)


def _distributions(samples: list[dict[str, np.ndarray]]) -> dict[str, tuple[float, ...]]:
    ops = sorted({op for s in samples for op in s}, key=op_order)
    return {op: tuple(float(v) * 1e3 for v in np.quantile(np.concatenate([s[op] for s in samples if op in s]),
                                                          CDF_POINTS)) for op in ops}


# --- text --------------------------------------------------------------------------------------


def change_words(ratio: float) -> str:
    """``1.31x slower`` / ``1.12x faster`` / ``no change`` (pyperf's wording)."""
    if not np.isfinite(ratio):
        return "inf x slower"
    if abs(ratio - 1.0) < 0.005:
        return "no change"
    return f"{ratio:.2f}x slower" if ratio > 1.0 else f"{1.0 / ratio:.2f}x faster"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def floor_words() -> str:
    """The noise floor as printed: ``p50 ±35%, p99 ±80%, throughput ±30%``."""
    return ", ".join(f"{k} ±{v * 100:g}%" for k, v in NOISE_FLOOR.items() if k in GATED or k == "throughput")


def regression_reasons(res: CompareResult, b: BuildComparison) -> list[str]:
    """What made build ``b`` a regression, one phrase per gate that fired (empty: no regression)."""
    why = [f"{op} {c.name} {change_words(c.ratio)}" for op, c in b.latency_regressions]
    why += [f"{o.op} error share {_pct(o.errors.base_share)} -> {_pct(o.errors.new_share)}"
            for o in b.ops if o.op in b.error_regressions]
    if b.throughput is not None and b.throughput.regression:
        why.append(f"throughput {b.throughput.ratio:.2f}x")
    if b.anomaly_increase:
        why.append("more anomalies: " + ", ".join(f"{k} +{v:g}/run" for k, v in b.anomaly_increase.items()))
    return why


def compare_files(paths: list[str], *, check: bool = True, threshold: float = 0.10, error_threshold: float = 0.01,
                  alpha: float = 0.05, seed: int = 0) -> CompareResult:
    """Load results files (with the consistency check unless ``check`` is False) and :func:`compare_runs` them."""
    from ..traces import load_results
    from .check import check_results

    runs = [load_results(p, with_args=check) for p in paths]
    checks = [check_results(r) for r in runs] if check else None
    return compare_runs(runs, checks=checks, threshold=threshold, error_threshold=error_threshold, alpha=alpha,
                        seed=seed)
