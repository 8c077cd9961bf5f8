"""Latency, throughput and outcome statistics of a run — vectorized numpy, no per-row Python loop.

Response time = done − intended (includes queueing behind a slow target: no coordinated omission);
service time = done − sent; schedule lag = sent − intended. Skipped requests (never sent) count in
outcome shares but not in latencies. Grouped percentiles use one sort per measure: the group code is
folded into the sort key, so the percentiles of every operation (or every second) come out of one
``np.sort`` with index arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from ..api import OP_NAMES
from ..traces.results import OUTCOMES, SKIPPED, Results

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
LAG_PERCENTILES = (("p50", 0.50), ("p99", 0.99))
# Points of the per-operation response-time CDF in the report (for plots): every percent plus the tail.
CDF_POINTS = tuple(round(i / 100, 2) for i in range(101)) + (0.995, 0.999, 0.9999)


def grouped_quantiles(groups: np.ndarray, values: np.ndarray, n_groups: int,
                      qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantiles (linear interpolation, as ``np.quantile``), max and count of ``values`` per group.

    Returns ``(quantiles[n_groups, len(qs)], maxima[n_groups], counts[n_groups])``; groups without
    values get NaN. ``values`` must be finite; ``groups`` are ints in ``[0, n_groups)``.
    """
    counts = np.bincount(groups, minlength=n_groups) if groups.size else np.zeros(n_groups, np.int64)
    out = np.full((n_groups, len(qs)), np.nan)
    mx = np.full(n_groups, np.nan)
    if values.size == 0:
        return out, mx, counts
    vmin = float(values.min())
    span = float(values.max()) - vmin
    # Fold the group into the key: group g occupies [g*offset, g*offset + span]; one sort sorts all.
    offset = span * 1.5 + 1.0
    g = groups.astype(np.float64)
    key = np.sort(g * offset + (values - vmin))
    sorted_vals = key - np.repeat(np.arange(n_groups, dtype=np.float64) * offset, counts) + vmin
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    for j, q in enumerate(qs):
        pos = q * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts[has] - 1)
        frac = pos - lo
        a, b = sorted_vals[starts[has] + lo], sorted_vals[starts[has] + hi]
        out[has, j] = a + (b - a) * frac
    mx[has] = sorted_vals[starts[has] + counts[has] - 1]
    return out, mx, counts


def _with_overall(groups: np.ndarray, values: np.ndarray, n_groups: int,
                  qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`grouped_quantiles` plus one extra row (index ``n_groups``) over all values."""
    q, mx, counts = grouped_quantiles(groups, values, n_groups, qs)
    if values.size:
        overall = np.quantile(values, qs)  # partition-based: no second full sort
        top = float(values.max())
    else:
        overall, top = np.full(len(qs), np.nan), np.nan
    return np.vstack((q, overall)), np.append(mx, top), np.append(counts, values.size)


def _ms(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x) * 1000.0, 3)


def _latency_block(q: np.ndarray, mx: float, mean: float, names=PERCENTILES) -> dict:
    d = {name: _ms(q[j]) for j, (name, _) in enumerate(names)}
    d["max"] = _ms(mx)
    if mean is not None:
        d["mean"] = _ms(mean)
    return d


def run_span(results: Results) -> float:
    """Seconds the run took: the trailer's wall time, else first intended to last done."""
    wall = results.trailer.get("wall")
    if isinstance(wall, (int, float)) and wall > 0:
        return float(wall)
    c = results.cols
    if results.n == 0:
        return 0.0
    done = c["done"][np.isfinite(c["done"])]
    end = float(done.max()) if done.size else float(c["intended"].max())
    return max(end - float(c["intended"].min()), 0.0)


def compute_stats(results: Results, *, bucket: float = 1.0) -> dict:
    """Per operation and overall: count, req/s, outcomes, latency percentiles, lag; plus a timeline.

    Keys are stable (documented in docs/analysis.md); latencies are milliseconds.
    """
    c = results.cols
    op = c["op"].astype(np.int64)
    outcome = c["outcome"].astype(np.int64)
    span = run_span(results)
    n_ops = len(OP_NAMES)
    sent = outcome != SKIPPED
    sent_idx = np.nonzero(sent)[0]
    resp = (c["done"] - c["intended"])[sent_idx]
    serv = (c["done"] - c["sent"])[sent_idx]
    lag = (c["sent"] - c["intended"])[sent_idx]
    finite = np.isfinite(resp) & np.isfinite(serv) & np.isfinite(lag)
    sent_idx, resp, serv, lag = sent_idx[finite], resp[finite], serv[finite], lag[finite]
    op_sent = op[sent_idx]
    qs = tuple(q for _, q in PERCENTILES)
    lqs = tuple(q for _, q in LAG_PERCENTILES)
    # The CDF points ride along in the same sort as the headline percentiles.
    r_q, r_max, n_lat = _with_overall(op_sent, resp, n_ops, qs + CDF_POINTS)
    s_q, s_max, _ = _with_overall(op_sent, serv, n_ops, qs)
    l_q, l_max, _ = _with_overall(op_sent, lag, n_ops, lqs)
    r_sum = np.bincount(op_sent, weights=resp, minlength=n_ops)
    r_sum = np.append(r_sum, r_sum.sum())
    oc = np.bincount(op * len(OUTCOMES) + outcome, minlength=n_ops * len(OUTCOMES)).reshape(n_ops, len(OUTCOMES))
    oc = np.vstack((oc, oc.sum(axis=0)))

    def block(g: int) -> dict:
        count = int(oc[g].sum())
        mean = r_sum[g] / n_lat[g] if n_lat[g] else None
        return {
            "count": count,
            "rate": round(count / span, 3) if span > 0 else None,
            "outcomes": {name: int(oc[g][k]) for k, name in enumerate(OUTCOMES)},
            "shares": {name: (round(int(oc[g][k]) / count, 6) if count else 0.0) for k, name in enumerate(OUTCOMES)},
            "response_ms": _latency_block(r_q[g], r_max[g], mean),
            "service_ms": _latency_block(s_q[g], s_max[g], None),
            "lag_ms": _latency_block(l_q[g], l_max[g], None, LAG_PERCENTILES),
        }

    by_op = {OP_NAMES[g]: block(g) for g in range(n_ops) if oc[g].sum()}
    cdf_q = sorted(range(len(CDF_POINTS)), key=lambda j: CDF_POINTS[j])
    cdf = {OP_NAMES[g]: {"q": [CDF_POINTS[j] for j in cdf_q], "ms": [_ms(r_q[g][len(qs) + j]) for j in cdf_q]}
           for g in range(n_ops) if n_lat[g]}
    return {"span": round(span, 6), "overall": block(n_ops), "by_op": by_op, "cdf": cdf,
            "timeline": timeline(results, sent_idx, resp, bucket=bucket)}


def timeline(results: Results, rows: np.ndarray, resp: np.ndarray, *, bucket: float = 1.0) -> dict:
    """Per ``bucket``-second slice (by completion time): requests, ok, errors, response p50/p99."""
    c = results.cols
    if rows.size == 0:
        return {"bucket": bucket, "t": [], "count": [], "ok": [], "errors": [], "p50_ms": [], "p99_ms": []}
    done = c["done"][rows]
    b = np.floor(np.maximum(done, 0.0) / bucket).astype(np.int64)
    n_b = int(b.max()) + 1
    outcome = c["outcome"][rows]
    count = np.bincount(b, minlength=n_b)
    ok = np.bincount(b, weights=(outcome == 0), minlength=n_b).astype(np.int64)
    err = np.bincount(b, weights=(outcome >= 2), minlength=n_b).astype(np.int64)
    q, _, _ = grouped_quantiles(b, resp, n_b, (0.5, 0.99))
    return {"bucket": bucket, "t": [round(i * bucket, 6) for i in range(n_b)], "count": count.tolist(),
            "ok": ok.tolist(), "errors": err.tolist(),
            "p50_ms": [_ms(x) for x in q[:, 0]], "p99_ms": [_ms(x) for x in q[:, 1]]}


def response_times(results: Results) -> dict[str, np.ndarray]:
    """Response times (seconds) of sent requests per operation name — the samples compare tests."""
    c = results.cols
    rt = c["done"] - c["intended"]
    keep = (c["outcome"] != SKIPPED) & np.isfinite(rt)
    op = c["op"][keep]
    rt = rt[keep]
    order = np.argsort(op, kind="stable")
    op, rt = op[order], rt[order]
    codes, starts = np.unique(op, return_index=True)
    ends = np.append(starts[1:], op.size)
    return {OP_NAMES[int(k)]: rt[s:e] for k, s, e in zip(codes, starts, ends)}
