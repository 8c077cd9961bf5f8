"""Arrival models: when sessions start. Pure functions of their inputs and an explicit RNG.

*Open* model: sessions arrive at a rate, independent of how fast the target answers — Poisson
(exponential gaps) or constant (evenly spaced). *Closed* model (Locust-like): a fixed number of
users spawn at a spawn rate and each runs scenario after scenario with think time in between.
"""

from __future__ import annotations

import random
from typing import Iterator

ARRIVALS = ("poisson", "constant")


def open_arrivals(rate: float, kind: str, rng: random.Random) -> Iterator[float]:
    """Session start times (seconds, ascending, first at 0 for constant) for an open model at ``rate``/s.

    Endless; the caller stops on a duration or a count. Poisson gaps come from ``rng``; constant
    arrivals are ``k / rate`` (computed by multiplication, so no rounding drift accumulates).
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    if kind == "constant":
        k = 0
        while True:
            yield k / rate
            k += 1
    elif kind == "poisson":
        t = 0.0
        expo = rng.expovariate
        while True:
            t += expo(rate)
            yield t
    else:
        raise ValueError(f"unknown arrival model {kind!r}")


def spawn_times(users: int, spawn_rate: float) -> list[float]:
    """When each of ``users`` closed-model users starts: user ``k`` at ``k / spawn_rate`` seconds."""
    if spawn_rate <= 0:
        raise ValueError("spawn rate must be > 0")
    return [k / spawn_rate for k in range(users)]


def think_times(start: float, duration: float, wait: tuple[float, float], rng: random.Random) -> Iterator[float]:
    """Think times before each scenario run after the first, for a user starting at ``start``.

    A user runs its first scenario at ``start``; before each later one it thinks a uniform
    ``wait`` time. Runs are counted on the think-time clock alone (response times are unknown when
    generating), stopping once the next run would begin at or after ``duration``. Yields ``0.0``
    for the first run, then each think time.
    """
    lo, hi = wait
    if start >= duration:
        return
    yield 0.0
    t = start
    span = hi - lo
    rand = rng.random
    while True:
        w = round(lo + span * rand(), 6)
        t += w
        if t >= duration:
            return
        yield w
