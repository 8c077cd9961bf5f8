"""Latency, throughput and outcome statistics of a run — vectorized numpy, no per-row Python loop.

Response time = done − intended (includes queueing behind a slow target: no coordinated omission);
service time = done − sent; schedule lag = sent − intended. Skipped requests (never sent) count in
outcome shares but not in latencies or rates. A run's span and rate are those of
:func:`~wdmreplay.traces.results.send_window` / ``run_rate`` (first send to last answer of the
trace's sent requests; the final read and skipped requests outside), the same figures the replay
summary and ``compare`` use. Percentiles are ``np.quantile``'s (linear rule), which never
sorts the run (it partitions at the ranks it needs: linear time); rows are grouped once per key
(operation, or time bucket) with a radix argsort — what keeps ten million rows within seconds.
The Python loops here run per group, never per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..operations import OP_NAMES
from ..traces.results import OUTCOMES, SKIPPED, Results, run_rate, send_window

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
LAG_PERCENTILES = (("p50", 0.50), ("p99", 0.99))
# Points of the per-operation response-time CDF in the report (for plots): every percent plus the tail.
CDF_POINTS = tuple(round(i / 100, 2) for i in range(101)) + (0.995, 0.999, 0.9999)


CDF_SAMPLE = 100_000  # values per operation the plotted CDF is computed from (evenly strided beyond)
# Timeline buckets at most; a smaller --bucket is widened (to a 1-2-5 value) so memory stays bounded.
MAX_TIMELINE_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class OpStats:
    """One operation's (or the whole run's) figures. Latencies are milliseconds, keyed by statistic
    (``min``, the percentile names of :data:`PERCENTILES` / :data:`LAG_PERCENTILES`, ``max``, ``mean``)."""

    count: int
    rate: float | None  # req/s over the run's send window; None when nothing was sent
    outcomes: Mapping[str, int]  # per outcome name (:data:`~wdmreplay.traces.results.OUTCOMES`)
    shares: Mapping[str, float]  # the same, as shares of ``count``
    response_ms: Mapping[str, float | None]
    service_ms: Mapping[str, float | None]
    lag_ms: Mapping[str, float | None]

    @property
    def unanswered(self) -> int:
        """Requests sent that got no answer: 5xx, timeout or connection error."""
        return self.outcomes["error"] + self.outcomes["timeout"] + self.outcomes["conn_error"]

    @property
    def unanswered_share(self) -> float:
        """The share of ``count`` that got no answer."""
        return self.shares["error"] + self.shares["timeout"] + self.shares["conn_error"]

    def to_json(self) -> dict:
        """JSON-ready form (stable keys, documented in docs/analysis.md)."""
        return {"count": self.count, "rate": self.rate, "outcomes": dict(self.outcomes), "shares": dict(self.shares),
                "response_ms": dict(self.response_ms), "service_ms": dict(self.service_ms), "lag_ms": dict(self.lag_ms)}


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per time bucket (by completion time): requests, 2xx, unanswered, response p50/p99 (ms, None if empty)."""

    bucket: float  # seconds per bucket used
    requested_bucket: float  # seconds asked for (smaller when widened to MAX_TIMELINE_BUCKETS)
    t: tuple[float, ...]
    count: tuple[int, ...]
    ok: tuple[int, ...]
    errors: tuple[int, ...]
    p50_ms: tuple[float | None, ...]
    p99_ms: tuple[float | None, ...]

    @property
    def widened(self) -> bool:
        """Whether the bucket asked for was widened (too many buckets for the run)."""
        return self.requested_bucket != self.bucket

    def to_json(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"bucket": self.bucket, "requested_bucket": self.requested_bucket, "t": list(self.t),
                "count": list(self.count), "ok": list(self.ok), "errors": list(self.errors),
                "p50_ms": list(self.p50_ms), "p99_ms": list(self.p99_ms)}


@dataclass(frozen=True, slots=True)
class Cdf:
    """Points of one operation's response-time CDF: quantile ``q[i]`` is ``ms[i]`` milliseconds."""

    q: tuple[float, ...]
    ms: tuple[float | None, ...]

    def to_json(self) -> dict:
        """JSON-ready form."""
        return {"q": list(self.q), "ms": list(self.ms)}


@dataclass(frozen=True, slots=True)
class Stats:
    """A run's statistics: span (s), the whole run, per operation (those with a request), CDFs, timeline."""

    span: float
    overall: OpStats
    by_op: Mapping[str, OpStats]
    cdf: Mapping[str, Cdf]
    timeline: Timeline

    def to_json(self) -> dict:
        """JSON-ready form (the report's ``stats``; stable keys, documented in docs/analysis.md)."""
        return {"span": self.span, "overall": self.overall.to_json(),
                "by_op": {k: v.to_json() for k, v in self.by_op.items()},
                "cdf": {k: v.to_json() for k, v in self.cdf.items()}, "timeline": self.timeline.to_json()}


class Grouping:
    """Rows grouped by a small-integer key, once, for many measures (one radix argsort).

    ``segments(values)`` returns the values of each group as contiguous slices; percentiles then
    come from ``np.partition`` per group (linear time), never from a full sort of the run.
    """

    def __init__(self, groups: np.ndarray, n_groups: int):
        self.n_groups = n_groups
        self.counts = np.bincount(groups, minlength=n_groups) if groups.size else np.zeros(n_groups, np.int64)
        # A stable sort of 8/16-bit keys is a radix sort: linear in the number of rows.
        key = groups.astype(np.uint8 if n_groups <= 256 else np.uint16 if n_groups <= 65536 else np.int64)
        self.order = np.argsort(key, kind="stable")
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)

    def segments(self, values: np.ndarray) -> list[np.ndarray | None]:
        """Per group: its values (a view into one gathered array), or None when empty."""
        v = values[self.order]
        return [v[s:s + c] if c else None for s, c in zip(self.starts.tolist(), self.counts.tolist())]


def quantiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, float]:
    """Quantiles (``np.quantile``'s linear rule) and the maximum (its 1.0 quantile), in one call."""
    out = np.quantile(values, (*qs, 1.0))
    return out[:-1], float(out[-1])


def grouped_quantiles(groups: np.ndarray | Grouping, values: np.ndarray, n_groups: int,
                      qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantiles (as ``np.quantile``), max and count of ``values`` per group.

    Returns ``(quantiles[n_groups, len(qs)], maxima[n_groups], counts[n_groups])``; groups without
    values get NaN. ``values`` must be finite; ``groups`` are ints in ``[0, n_groups)`` (or a
    :class:`Grouping` of them, to share the grouping between measures).
    """
    grouping = groups if isinstance(groups, Grouping) else Grouping(groups, n_groups)
    out = np.full((n_groups, len(qs)), np.nan)
    mx = np.full(n_groups, np.nan)
    for g, seg in enumerate(grouping.segments(values)):
        if seg is not None:
            out[g], mx[g] = quantiles(seg, qs)
    return out, mx, grouping.counts


def _with_overall(grouping: Grouping, values: np.ndarray,
                  qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`grouped_quantiles` plus one extra row (index ``n_groups``) over all values."""
    q, mx, counts = grouped_quantiles(grouping, values, grouping.n_groups, qs)
    if values.size:
        overall, top = quantiles(values, qs)
    else:
        overall, top = np.full(len(qs), np.nan), np.nan
    return np.vstack((q, overall)), np.append(mx, top), np.append(counts, values.size)


def _cdf(seg: np.ndarray) -> Cdf:
    """Response-time CDF points of one operation (from an evenly strided subsample when large)."""
    if seg.size > CDF_SAMPLE:
        seg = seg[::-(-seg.size // CDF_SAMPLE)]
    pts = sorted(CDF_POINTS)
    q, _ = quantiles(seg, tuple(pts))
    return Cdf(tuple(pts), tuple(_ms(x) for x in q))


def _ms(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x) * 1000.0, 3)


def _with_overall_min(grouping: Grouping, values: np.ndarray) -> np.ndarray:
    """The least value per group, plus one extra entry over all values (NaN where there is none)."""
    mn = np.full(grouping.n_groups + 1, np.nan)
    for g, seg in enumerate(grouping.segments(values)):
        if seg is not None:
            mn[g] = seg.min()
    if values.size:
        mn[-1] = values.min()
    return mn


def _latency_block(q: np.ndarray, mx: float, mean: float, names=PERCENTILES, mn: float = math.nan) -> dict:
    d = {"min": _ms(mn)}
    d.update((name, _ms(q[j])) for j, (name, _) in enumerate(names))
    d["max"] = _ms(mx)
    if mean is not None:
        d["mean"] = _ms(mean)
    return d


def run_window(results: Results) -> tuple[float, float] | None:
    """The run's send window (first send, last answer) over its sent trace requests; None if none was sent."""
    c = results.cols
    sent, done, outcome = c["sent"], c["done"], c["outcome"]
    finite = np.isfinite(sent) & np.isfinite(done)
    if not finite.all():
        sent, done, outcome = sent[finite], done[finite], outcome[finite]
    return send_window(sent, done, outcome)


def compute_stats(results: Results, *, bucket: float = 1.0) -> Stats:
    """Per operation and overall: count, req/s, outcomes, latency percentiles, lag; plus a timeline.

    Keys are stable (documented in docs/analysis.md); latencies are milliseconds.
    """
    c = results.cols
    op, outcome = c["op"], c["outcome"]
    window = run_window(results)
    span = window[1] - window[0] if window is not None else 0.0
    n_ops = len(OP_NAMES)
    done, sent = c["done"], c["sent"]
    resp = done - c["intended"]
    lag = sent - c["intended"]
    # NaN times (skipped rows, or a request that never finished) drop out here, in one mask.
    keep = np.isfinite(resp) & np.isfinite(lag)
    if not keep.all():
        resp, lag, done, sent, op_sent = resp[keep], lag[keep], done[keep], sent[keep], op[keep]
    else:
        op_sent = op
    serv = done - sent
    qs = tuple(q for _, q in PERCENTILES)
    lqs = tuple(q for _, q in LAG_PERCENTILES)
    by_op_rows = Grouping(op_sent, n_ops)
    r_q, r_max, n_lat = _with_overall(by_op_rows, resp, qs)
    s_q, s_max, _ = _with_overall(by_op_rows, serv, qs)
    l_q, l_max, _ = _with_overall(by_op_rows, lag, lqs)
    # The least of each: a response or lag below 0 would be a request sent before its intended time.
    r_min, s_min, l_min = (_with_overall_min(by_op_rows, v) for v in (resp, serv, lag))
    r_sum = np.bincount(op_sent, weights=resp, minlength=n_ops)
    r_sum = np.append(r_sum, r_sum.sum())
    oc = np.bincount(op.astype(np.int64) * len(OUTCOMES) + outcome,
                     minlength=n_ops * len(OUTCOMES)).reshape(n_ops, len(OUTCOMES))
    oc = np.vstack((oc, oc.sum(axis=0)))

    def block(g: int) -> OpStats:
        count = int(oc[g].sum())
        mean = r_sum[g] / n_lat[g] if n_lat[g] else None
        rate = run_rate(count - int(oc[g][SKIPPED]), window)  # per operation: over the run's window
        return OpStats(
            count=count,
            rate=round(rate, 3) if rate is not None else None,
            outcomes={name: int(oc[g][k]) for k, name in enumerate(OUTCOMES)},
            shares={name: (round(int(oc[g][k]) / count, 6) if count else 0.0) for k, name in enumerate(OUTCOMES)},
            response_ms=_latency_block(r_q[g], r_max[g], mean, mn=r_min[g]),
            service_ms=_latency_block(s_q[g], s_max[g], None, mn=s_min[g]),
            lag_ms=_latency_block(l_q[g], l_max[g], None, LAG_PERCENTILES, mn=l_min[g]),
        )

    by_op = {OP_NAMES[g]: block(g) for g in range(n_ops) if oc[g].sum()}
    cdf = {OP_NAMES[g]: _cdf(seg) for g, seg in enumerate(by_op_rows.segments(resp)) if seg is not None}
    return Stats(round(span, 6), block(n_ops), by_op, cdf,
                 timeline(done, c["outcome"][keep] if not keep.all() else c["outcome"], resp, bucket=bucket))


def timeline_bucket(end: float, bucket: float) -> float:
    """``bucket``, or the smallest 1-2-5 × 10^k seconds that covers ``[0, end]`` in MAX_TIMELINE_BUCKETS."""
    if end / bucket < MAX_TIMELINE_BUCKETS:  # (a float compare: end / 5e-324 is inf)
        return bucket
    need = end / (MAX_TIMELINE_BUCKETS - 1)
    exp = math.floor(math.log10(need))
    for mantissa in (1, 2, 5, 10):
        wide = mantissa * 10.0 ** exp
        if wide >= need and end / wide < MAX_TIMELINE_BUCKETS:
            return wide
    return 10.0 ** (exp + 2)


def timeline(done: np.ndarray, outcome: np.ndarray, resp: np.ndarray, *, bucket: float = 1.0) -> Timeline:
    """Per ``bucket``-second slice (by completion time ``done``): requests, ok, errors, response p50/p99.

    At most MAX_TIMELINE_BUCKETS slices: a bucket too small for the run is widened; ``bucket`` is
    the width used and ``requested_bucket`` the one asked for.
    """
    if done.size == 0:
        return Timeline(bucket, bucket, (), (), (), (), (), ())
    requested, bucket = bucket, timeline_bucket(max(float(done.max()), 0.0), bucket)
    b = (np.maximum(done, 0.0) // bucket).astype(np.int64)
    n_b = int(b.max()) + 1
    count = np.bincount(b, minlength=n_b)
    ok = np.bincount(b[outcome == 0], minlength=n_b)
    err = np.bincount(b[outcome >= 2], minlength=n_b)
    q, _, _ = grouped_quantiles(b, resp, n_b, (0.5, 0.99))
    return Timeline(bucket, requested, tuple(round(i * bucket, 6) for i in range(n_b)), tuple(count.tolist()),
                    tuple(ok.tolist()), tuple(err.tolist()), tuple(_ms(x) for x in q[:, 0]),
                    tuple(_ms(x) for x in q[:, 1]))
