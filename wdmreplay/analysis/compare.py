"""Compare runs of one trace between builds: latency ratios with statistics, throughput, errors, anomalies.

Latencies are heavy-tailed, so no t-test on raw values: per operation the p50 change is tested with
Mann–Whitney U (scipy) and every ratio gets a bootstrap 95 % confidence interval from a seeded
generator. The bootstrap resamples at most ``BOOT_SAMPLE`` values per side (an m-out-of-n bootstrap:
a slightly wider, conservative interval, in bounded time whatever the run size).

A p50 change is *significant* when U's p-value is below ``alpha`` and the interval excludes 1; a
p99 change (a tail effect U does not see) when its interval excludes 1. A *regression* is a
significant slow-down by more than ``threshold``, or anomaly kinds the new run has more of.
:func:`compare_runs` computes a :class:`CompareResult`; :func:`render_compare_text` only formats it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..api import OP_CODES, WdmError
from ..traces.results import INDETERMINATE, Results
from .check import CheckReport
from .consistency import KINDS
from .stats import response_times, run_span

QUANTILES = (("p50", 0.50), ("p99", 0.99))
BOOT_RESAMPLES = 400
BOOT_SAMPLE = 5000
MWU_SAMPLE = 20000
MIN_SAMPLES = 20


class CompareError(WdmError):
    """Runs that cannot be compared (different traces, fewer than two runs)."""


@dataclass(frozen=True, slots=True)
class LatencyChange:
    """One operation's quantile in base vs new: ratio, 95 % CI, p-value, verdict."""

    op: str
    quantile: str
    base_ms: float
    new_ms: float
    ratio: float
    ci: tuple[float, float] | None
    p_value: float | None
    significant: bool
    regression: bool
    note: str = ""


@dataclass
class OpComparison:
    """Everything compared for one operation."""

    op: str
    base_count: int
    new_count: int
    latency: list[LatencyChange]
    throughput_ratio: float | None
    base_error_rate: float
    new_error_rate: float


@dataclass
class RunComparison:
    """One new run against the base."""

    label: str
    file: str
    ops: list[OpComparison]
    base_anomalies: dict[str, int] | None
    new_anomalies: dict[str, int] | None
    base_complete: bool = True
    new_complete: bool = True

    @property
    def latency_regressions(self) -> list[LatencyChange]:
        """Significant slow-downs beyond the threshold."""
        return [c for o in self.ops for c in o.latency if c.regression]

    @property
    def anomaly_increase(self) -> dict[str, int]:
        """Anomaly kinds the new run has more of than the base (kind → increase)."""
        if self.base_anomalies is None or self.new_anomalies is None:
            return {}
        return {k: self.new_anomalies[k] - self.base_anomalies[k] for k in KINDS
                if self.new_anomalies[k] > self.base_anomalies[k]}

    @property
    def regression(self) -> bool:
        """Whether this run regressed against the base."""
        return bool(self.latency_regressions or self.anomaly_increase)


@dataclass
class CompareResult:
    """Base vs one or more new runs of the same trace."""

    base_label: str
    base_file: str
    digest: str
    threshold: float
    alpha: float
    runs: list[RunComparison] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        """Whether any new run regressed (the exit-1 condition)."""
        return any(r.regression for r in self.runs)

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys, documented in docs/analysis.md)."""
        return {
            "schema": "wdm-compare/1", "base": {"label": self.base_label, "file": self.base_file},
            "trace_digest": self.digest, "threshold": self.threshold, "alpha": self.alpha,
            "regression": self.regression,
            "runs": [{
                "label": r.label, "file": r.file, "regression": r.regression,
                "base_complete": r.base_complete, "new_complete": r.new_complete,
                "anomalies": {"base": r.base_anomalies, "new": r.new_anomalies, "increase": r.anomaly_increase},
                "ops": [{
                    "op": o.op, "base_count": o.base_count, "new_count": o.new_count,
                    "throughput_ratio": _r(o.throughput_ratio), "base_error_rate": _r(o.base_error_rate),
                    "new_error_rate": _r(o.new_error_rate),
                    "latency": [{"quantile": c.quantile, "base_ms": _r(c.base_ms), "new_ms": _r(c.new_ms),
                                 "ratio": _r(c.ratio), "ci": [_r(c.ci[0]), _r(c.ci[1])] if c.ci else None,
                                 "p_value": _r(c.p_value, 6), "significant": c.significant,
                                 "regression": c.regression, "note": c.note} for c in o.latency],
                } for o in r.ops],
            } for r in self.runs],
        }


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _quantile_change(op: str, name: str, q: float, base: np.ndarray, new: np.ndarray, p_value: float | None,
                     rng: np.random.Generator, threshold: float, alpha: float) -> LatencyChange:
    b_q, n_q = float(np.quantile(base, q)), float(np.quantile(new, q))
    ratio = n_q / b_q if b_q > 0 else (1.0 if n_q == b_q else float("inf"))
    if min(base.size, new.size) < MIN_SAMPLES:
        return LatencyChange(op, name, b_q * 1e3, n_q * 1e3, ratio, None, None, False, False,
                             f"too few samples (< {MIN_SAMPLES})")
    mb, mn = min(base.size, BOOT_SAMPLE), min(new.size, BOOT_SAMPLE)
    bq = np.quantile(base[rng.integers(0, base.size, (BOOT_RESAMPLES, mb))], q, axis=1)
    nq = np.quantile(new[rng.integers(0, new.size, (BOOT_RESAMPLES, mn))], q, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(bq > 0, nq / np.where(bq > 0, bq, 1.0), np.where(nq == bq, 1.0, np.inf))
    lo, hi = (float(x) for x in np.quantile(ratios, [0.025, 0.975]))
    excludes_one = lo > 1.0 or hi < 1.0
    significant = excludes_one and (p_value is not None and p_value < alpha if name == "p50" else True)
    regression = significant and ratio > 1.0 + threshold
    return LatencyChange(op, name, b_q * 1e3, n_q * 1e3, ratio, (lo, hi), p_value if name == "p50" else None,
                         significant, regression)


def _mwu(base: np.ndarray, new: np.ndarray, rng: np.random.Generator) -> float | None:
    from scipy.stats import mannwhitneyu

    if min(base.size, new.size) < MIN_SAMPLES:
        return None
    if base.size > MWU_SAMPLE:
        base = rng.choice(base, MWU_SAMPLE, replace=False)
    if new.size > MWU_SAMPLE:
        new = rng.choice(new, MWU_SAMPLE, replace=False)
    return float(mannwhitneyu(base, new, alternative="two-sided").pvalue)


def _error_rates(results: Results) -> dict[int, tuple[int, int]]:
    c = results.cols
    op = c["op"].astype(np.int64)
    count = np.bincount(op)
    errs = np.bincount(op, weights=np.isin(c["outcome"], INDETERMINATE)).astype(np.int64)
    return {k: (int(count[k]), int(errs[k])) for k in range(count.size) if count[k]}


def compare_runs(runs: list[Results], *, checks: list[CheckReport | None] | None = None,
                 threshold: float = 0.10, alpha: float = 0.05, seed: int = 0) -> CompareResult:
    """Compare ``runs[1:]`` against ``runs[0]`` (all of the same trace); ``checks`` adds anomaly deltas.

    Raises :class:`CompareError` for fewer than two runs, runs of different traces, or a ``threshold``
    / ``alpha`` that is nan or out of range.
    """
    if len(runs) < 2:
        raise CompareError("compare needs at least two results files (BASE NEW)")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise CompareError(f"threshold must be a finite fraction >= 0 (0.10 = 10 %), got {threshold!r}")
    if not 0 < alpha < 1:
        raise CompareError(f"alpha must be a significance level between 0 and 1, got {alpha!r}")
    base = runs[0]
    digest = (base.header.get("trace") or {}).get("digest")
    for r in runs[1:]:
        d = (r.header.get("trace") or {}).get("digest")
        if d != digest:
            raise CompareError(
                f"{Path(r.path).name} replays a different trace than {Path(base.path).name} "
                f"({str(d)[:19]}… vs {str(digest)[:19]}…); compare needs runs of the same trace")
    checks = checks or [None] * len(runs)
    rng = np.random.default_rng(seed)
    base_rt = response_times(base)
    base_err = _error_rates(base)
    base_span = run_span(base)
    result = CompareResult(base.label, Path(base.path).name, str(digest), threshold, alpha)
    for r, chk in zip(runs[1:], checks[1:]):
        new_rt = response_times(r)
        new_err = _error_rates(r)
        new_span = run_span(r)
        ops = []
        for op in sorted(set(base_rt) | set(new_rt), key=lambda n: OP_CODES[n]):
            b, n = base_rt.get(op, np.empty(0)), new_rt.get(op, np.empty(0))
            code = OP_CODES[op]
            bc, be = base_err.get(code, (0, 0))
            nc, ne = new_err.get(code, (0, 0))
            changes = []
            if b.size and n.size:
                p = _mwu(b, n, rng)
                changes = [_quantile_change(op, name, q, b, n, p, rng, threshold, alpha) for name, q in QUANTILES]
            tput = ((nc / new_span) / (bc / base_span)) if bc and base_span > 0 and new_span > 0 else None
            ops.append(OpComparison(op, bc, nc, changes, tput, be / bc if bc else 0.0, ne / nc if nc else 0.0))
        result.runs.append(RunComparison(
            r.label, Path(r.path).name, ops,
            checks[0].anomaly_counts if checks[0] is not None else None,
            chk.anomaly_counts if chk is not None else None, base.complete, r.complete))
    return result


def _change_words(ratio: float) -> str:
    if not np.isfinite(ratio):
        return "inf x slower"
    if abs(ratio - 1.0) < 0.005:
        return "no change"
    return f"{ratio:.2f}x slower" if ratio > 1.0 else f"{1.0 / ratio:.2f}x faster"


def render_compare_text(res: CompareResult) -> str:
    """Text of a comparison: significant changes, throughput, errors, anomalies, a not-significant footer."""
    lines = [f"base: {res.base_label} ({res.base_file}); trace {res.digest[:19]}…; "
             f"threshold {res.threshold * 100:g}%, alpha {res.alpha:g}"]
    for run in res.runs:
        lines.append("")
        lines.append(f"{run.label} ({run.file}) vs {res.base_label}:")
        if not run.new_complete or not run.base_complete:
            lines.append("  WARNING: partial run(s) compared: " + ", ".join(
                n for n, ok in (("base", run.base_complete), ("new", run.new_complete)) if not ok))
        hidden, too_few = [], []
        for o in run.ops:
            for c in o.latency:
                if c.note:
                    if c.op not in too_few:
                        too_few.append(c.op)
                    continue
                if not c.significant:
                    hidden.append(f"{c.op} {c.quantile} ({_change_words(c.ratio)})")
                    continue
                ci = f", 95% CI {c.ci[0]:.2f}–{c.ci[1]:.2f}" if c.ci else ""
                flag = f" — REGRESSION (> {res.threshold * 100:g}%)" if c.regression else ""
                lines.append(f"  {c.op} {c.quantile}: {_change_words(c.ratio)} (significant{ci}){flag}")
        tp = [f"{o.op} {o.throughput_ratio:.2f}x" for o in run.ops if o.throughput_ratio is not None]
        if tp:
            lines.append("  throughput: " + ", ".join(tp))
        errs = [f"{o.op} {o.base_error_rate * 100:.1f}% -> {o.new_error_rate * 100:.1f}%"
                for o in run.ops if o.base_error_rate != o.new_error_rate]
        lines.append("  error rate: " + (", ".join(errs) if errs else "unchanged"))
        if run.base_anomalies is None or run.new_anomalies is None:
            lines.append("  anomalies: not compared (no check)")
        else:
            diff = [f"{k} {run.base_anomalies[k]} -> {run.new_anomalies[k]}" for k in KINDS
                    if run.base_anomalies[k] or run.new_anomalies[k]]
            lines.append("  anomalies: " + (", ".join(diff) if diff else "none in either run"))
        if hidden:
            lines.append("  not significant: " + ", ".join(hidden))
        if too_few:
            lines.append(f"  too few samples (< {MIN_SAMPLES}) to test: " + ", ".join(too_few))
        why = [f"{c.op} {c.quantile} {_change_words(c.ratio)}" for c in run.latency_regressions]
        if run.anomaly_increase:
            why.append("more anomalies: " + ", ".join(f"{k} +{v}" for k, v in run.anomaly_increase.items()))
        lines.append("  verdict: " + (f"REGRESSION ({'; '.join(why)})" if why else "no regression"))
    return "\n".join(lines) + "\n"
