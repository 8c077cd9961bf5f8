"""The replay schedule and summary statistics: pure functions, no clock, no I/O.

The event loop only sleeps and sends; every decision about *when* lives here, so it is tested
table-driven (like vegeta's ``Pace(elapsed, hits) -> (wait, stop)``). All times are seconds since
the run's start clock. ``speed`` is a multiple of the recorded pace, or ``None`` for "as fast as
possible" (then nothing waits and only ``--concurrency`` bounds the load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


MIN_SPEED, MAX_SPEED = 1e-6, 1e6  # outside: a run never done (1e-300) or indistinguishable from max (1e308)
SPEED_WORDS = ("max", "unlimited")  # the only ways to ask for "as fast as possible"


def parse_speed(text: str | float | None) -> float | None:
    """A speed option value: a finite number in [MIN_SPEED, MAX_SPEED], or ``"max"``/``None`` (as fast as possible).

    ``inf``, ``-inf`` and ``nan`` are refused like any other non-speed: only the word ``max`` asks
    for no pacing (``--speed -inf`` once ran at max).
    """
    if text is None:
        return None
    if isinstance(text, str):
        if text.strip().lower() in SPEED_WORDS:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"speed must be a positive number or 'max', got {text!r}") from None
    else:
        value = float(text)
    if not math.isfinite(value) or not value > 0:
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}")
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"speed {text!r} is not in {MIN_SPEED:g}..{MAX_SPEED:g} (or 'max')")
    return value


def session_due(phase_start: float, at: float, speed: float | None) -> float:
    """When a session starting ``at`` seconds into its phase is due (open model between sessions)."""
    if speed is None:
        return phase_start
    return phase_start + at / speed


def step_due(previous_done: float, think: float, speed: float | None) -> float:
    """When a step is due: the previous response plus its think time (closed model within a session)."""
    if speed is None:
        return previous_done
    return previous_done + think / speed


def pace(now: float, due: float) -> float:
    """How long to sleep at ``now`` before something ``due`` may be sent (0 when it is late)."""
    wait = due - now
    return wait if wait > 0.0 else 0.0


def may_launch(in_flight: int, cap: int) -> bool:
    """Whether another session may start: sessions in flight stay below ``cap`` (bounded memory)."""
    return in_flight < cap


def session_cap(concurrency: int, speed: float | None) -> int:
    """How many sessions may be in flight at once.

    As fast as possible, one session per connection: each session has at most one request out, so
    more would only queue. At a finite speed the schedule, not the target, decides when sessions
    start (open model), so the cap is generous: it only bounds memory when the target stalls, and
    a delayed start still counts from its scheduled time (the lag shows in the results).
    """
    if speed is None:
        return max(1, concurrency)
    return max(10_000, 16 * concurrency)


def shard_keep(shard: tuple[int, int] | None, worker: tuple[int, int] | None) -> Callable[[int], bool] | None:
    """The session filter of a ``--shard i/M`` and a worker ``j/N``: ``sid % M == i``, then ``(sid // M) % N == j``."""
    i, m = shard or (0, 1)
    j, n = worker or (0, 1)
    if m == 1 and n == 1:  # everything is kept: None lets the trace reader take its fast path
        return None
    return lambda sid: sid % m == i and (sid // m) % n == j


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` → ``(i, N)`` with ``0 <= i < N``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < N")
    return i, n


# --- summary statistics: a log-bucketed histogram, so memory does not grow with the run ---------

@dataclass(frozen=True)
class LogScale:
    """Geometric buckets for positive durations: bucket 0 holds every value up to ``low``, bucket b ≥ 1
    the values from ``low · ratio^(b−1)``, the last one everything above. A quantile reads as its
    bucket's geometric middle (``zero`` in bucket 0), so it is exact to within √ratio."""

    low: float
    ratio: float
    buckets: int
    zero: float

    def index(self, v: np.ndarray) -> np.ndarray:
        """The bucket of each value of ``v``, every one above ``low`` (:meth:`index_all` takes any)."""
        return np.minimum(np.floor(np.log(v / self.low) / math.log(self.ratio)).astype(np.int64) + 1, self.buckets - 1)

    def index_all(self, v: np.ndarray) -> np.ndarray:
        """The bucket of each value of ``v`` (not NaN); those up to ``low`` in bucket 0."""
        idx = np.zeros(len(v), dtype=np.int64)
        big = v > self.low
        idx[big] = self.index(v[big])
        return idx

    def quantile(self, hist: np.ndarray, q: float) -> float | None:
        """The ``q`` quantile (0..1) of a histogram on this scale; None if it is empty."""
        total = int(hist.sum())
        if total == 0:
            return None
        b = int(np.searchsorted(np.cumsum(hist), max(1, math.ceil(q * total))))
        if b == 0:
            return self.zero
        return self.low * self.ratio ** (b - 1) * math.sqrt(self.ratio)


HIST_MIN = 1e-6  # seconds; smaller values (including 0 and tiny negatives) land in bucket 0
HIST_RATIO = 1.005  # bucket width: quantiles are exact to within 0.5 %
HIST_BUCKETS = int(math.ceil(math.log(1e4 / HIST_MIN) / math.log(HIST_RATIO))) + 2
SUMMARY_SCALE = LogScale(HIST_MIN, HIST_RATIO, HIST_BUCKETS, 0.0)  # the replay summary's (1 µs to 10,000 s)


def histogram() -> np.ndarray:
    """An empty latency histogram (counts per geometric bucket from 1 µs to 10,000 s)."""
    return np.zeros(HIST_BUCKETS, dtype=np.int64)


def histogram_add(hist: np.ndarray, seconds: np.ndarray) -> None:
    """Add values (seconds; NaN ignored) to ``hist`` in place."""
    v = np.asarray(seconds, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return
    hist += np.bincount(SUMMARY_SCALE.index_all(v), minlength=HIST_BUCKETS)


def histograms_add(hists: tuple[np.ndarray, ...], values: tuple[np.ndarray, ...]) -> None:
    """:func:`histogram_add` of each of ``values`` to its histogram, in one pass when none needs a mask.

    Values all finite-or-infinite and above the first bucket (the usual chunk of a replay: every
    request took over a microsecond) take one logarithm and one count over them all — the same
    bucket for every value, without the masks' copies; any other values are added histogram by
    histogram.
    """
    v = np.concatenate(values)
    if not v.size:
        return
    if np.isnan(v).any() or not (v > HIST_MIN).all():
        for h, part in zip(hists, values):
            histogram_add(h, part)
        return
    idx = SUMMARY_SCALE.index(v)
    start = 0
    for k, part in enumerate(values):  # each histogram's buckets after the previous one's
        idx[start:start + part.size] += k * HIST_BUCKETS
        start += part.size
    counts = np.bincount(idx, minlength=len(hists) * HIST_BUCKETS).reshape(len(hists), HIST_BUCKETS)
    for h, c in zip(hists, counts):
        h += c


def histogram_quantile(hist: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile (0..1) of a summary histogram, as the bucket's geometric middle; None if empty."""
    return SUMMARY_SCALE.quantile(hist, q)


def rate(count: int, seconds: float) -> float | None:
    """``count / seconds``, or None when no time passed."""
    return count / seconds if seconds > 0 else None


def scheduled_rate(requests: int, duration: float, speed: float | None) -> float | None:
    """The request rate the trace's schedule asks for at ``speed`` (None for max or no duration)."""
    if speed is None or duration <= 0:
        return None
    return requests / (duration / speed)


def histogram_count_above(hist: np.ndarray, limit: float) -> int:
    """How many values of ``hist`` lie in buckets wholly above ``limit`` seconds (within a bucket's 0.5 %)."""
    if limit <= HIST_MIN:
        return int(hist[1:].sum())
    first = int(math.floor(math.log(limit / HIST_MIN) / math.log(HIST_RATIO))) + 2  # the first bucket above limit
    return int(hist[min(first, HIST_BUCKETS):].sum())


LATE_LIMIT = 0.010  # seconds of schedule lag (sent - intended) above which a request went out late
SATURATED_SHARE = 0.5  # at least this share of late requests waited for a connection: the shop held them


def lateness_cause(late: int, conn_waits: int, share: float = SATURATED_SHARE) -> str | None:
    """Why requests went out late: ``"saturated"``, ``"replayer"`` or None (none late).

    ``late`` requests had a schedule lag above :data:`LATE_LIMIT`; ``conn_waits`` requests found
    every ``--concurrency`` connection busy and waited for one. When most late requests waited, the
    connections were all held by requests the shop had not answered: the shop is saturated. When
    they found a free connection and were still late, the replayer itself started them late (its
    CPU could not keep up with the schedule).
    """
    if late <= 0:
        return None
    return "saturated" if conn_waits >= share * late else "replayer"


def is_lagging(lag_p99: float | None, speed: float | None, limit: float = LATE_LIMIT) -> bool:
    """Whether the load generator itself fell behind its schedule (p99 start lag above ``limit``)."""
    return speed is not None and lag_p99 is not None and lag_p99 > limit
