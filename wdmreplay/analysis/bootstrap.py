"""Two-level bootstrap of a build's latency quantiles: resample runs, then requests within runs.

The run, not the request, is the unit of a comparison (DESIGN §8): requests within one run share
the machine's momentary state, so a request-level interval is too narrow by however much the runs
differ. A build's statistic for quantile *q* is the geometric mean over its runs of each run's
*q*-quantile; one bootstrap replicate draws the runs with replacement and, for every run drawn, a
resample of its requests (at most ``cap`` of them: an m-out-of-n bootstrap, slightly wider, in
bounded time). With *k* runs the run-level bootstrap underestimates the between-run variance by the
factor (k−1)/k, so each build's replicates are spread about their mean by √(k/(k−1)).

Everything here is a pure function of its inputs and a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

RESAMPLES = 300
CAP = 1000
EXACT_TERMS = 200  # all_failing_significant's exact factors at most


def log_quantile_replicates(runs: list[np.ndarray], qs: tuple[float, ...], rng: np.random.Generator, *,
                            resamples: int = RESAMPLES, cap: int = CAP) -> np.ndarray:
    """Bootstrap replicates of log(build statistic) per quantile: shape ``(resamples, len(qs))``.

    ``runs`` holds each run's samples (non-empty, positive). Requests are resampled within each run
    (vectorized, one index matrix per run), then runs are resampled; the spread is widened by
    √(k/(k−1)) for k ≥ 2 runs (the small-sample correction of the bootstrap variance).
    """
    k = len(runs)
    per_run = np.empty((k, resamples, len(qs)))
    for i, x in enumerate(runs):
        m = min(x.size, cap)
        draws = x[rng.integers(0, x.size, (resamples, m))]
        per_run[i] = np.log(np.maximum(np.quantile(draws, qs, axis=1).T, 1e-9))
    if k == 1:
        return per_run[0]
    pick = rng.integers(0, k, (resamples, k))
    reps = per_run[pick, np.arange(resamples)[:, None], :].mean(axis=1)
    return reps.mean(axis=0) + (reps - reps.mean(axis=0)) * np.sqrt(k / (k - 1))


def log_mean_replicates(values: np.ndarray, rng: np.random.Generator, *, resamples: int = RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of the mean of ``values`` (one per run), spread by √(k/(k−1)); shape ``(resamples,)``."""
    k = values.size
    if k == 1:
        return np.full(resamples, float(values[0]))
    reps = values[rng.integers(0, k, (resamples, k))].mean(axis=1)
    return reps.mean() + (reps - reps.mean()) * np.sqrt(k / (k - 1))


def critical_value(level: float) -> float:
    """Two-sided normal critical value at ``level`` (1.96 at 0.95)."""
    from scipy.special import ndtri

    return float(ndtri(1 - (1 - level) / 2))


def ratio_interval(log_ratio: float, se: float, crit: float, floor: float = 0.0) -> tuple[float, float]:
    """Interval of a ratio from its log, the bootstrap standard error of that log and a critical value,
    widened by ``floor``.

    ``floor`` (a fraction, e.g. 0.15) is the between-run noise neither side could measure (one run
    each): the interval becomes [lo/(1+floor), hi·(1+floor)].
    """
    return float(np.exp(log_ratio - crit * se) / (1 + floor)), float(np.exp(log_ratio + crit * se) * (1 + floor))


def fisher_greater(new_events: int, new_n: int, base_events: int, base_n: int) -> float:
    """One-sided Fisher exact p-value that the new share of events is higher than the base's.

    ``scipy.stats.fisher_exact`` on the 2×2 table (events, non-events) × (new, base), ``alternative=
    "greater"``: the hypergeometric upper tail P(X ≥ new_events). ``scipy.stats`` is imported here, by
    the comparison that needs it, not by every command (it takes about 0.6 s).
    """
    from scipy.stats import fisher_exact

    table = [[new_events, new_n - new_events], [base_events, base_n - base_events]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def all_failing_significant(new_n: int, base_events: int, base_n: int, alpha: float) -> bool:
    """Whether every one of ``new_n`` requests failing would be a significantly higher share than
    ``base_events`` of ``base_n`` (:func:`fisher_greater` of ``(new_n, new_n, base_events, base_n)``
    below ``alpha``), exactly and without scipy.

    With every new request failing, the table's upper tail is its one extreme term:
    p = C(base_events + new_n, new_n) / C(base_n + new_n, new_n) = ∏ᵢ₌₁..ₙ (base_events + i) / (base_n + i).
    Each factor is at most 1, so the product is computed in exact fractions only until it falls
    below ``alpha`` (read as the decimal it was given: 0.05 is 1/20). This is the question the
    comparison asks of every operation (can its error-share gate fire at all?), and answering it
    this way spares a comparison without errors the import of ``scipy.stats``.
    """
    if not 0 <= base_events <= base_n or new_n < 1:
        raise ValueError(f"counts out of range: {new_n} failing, {base_events} of {base_n}")
    limit = Fraction(repr(float(alpha)))
    p = Fraction(1)
    for i in range(1, min(new_n, EXACT_TERMS) + 1):
        p *= Fraction(base_events + i, base_n + i)
        if p < limit:
            return True
    # Not below alpha after EXACT_TERMS factors: a base whose error share is nearly 1 (an error
    # threshold near 0 lets such a gate be asked); scipy's float tail, not an ever longer product.
    return new_n > EXACT_TERMS and fisher_greater(new_n, new_n, base_events, base_n) < alpha
