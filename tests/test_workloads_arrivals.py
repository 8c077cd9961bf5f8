"""Arrival models: pure functions of their inputs, tested without a clock."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from wdmreplay.workloads.arrivals import open_arrivals, spawn_times, think_times


@pytest.mark.parametrize("rate,n,want", [
    (1.0, 3, [0.0, 1.0, 2.0]),
    (4.0, 5, [0.0, 0.25, 0.5, 0.75, 1.0]),
    (3.0, 4, [0.0, 1 / 3, 2 / 3, 1.0]),
])
def test_constant_arrivals(rate: float, n: int, want: list[float]) -> None:
    assert list(itertools.islice(open_arrivals(rate, "constant", random.Random(0)), n)) == want


def test_constant_arrivals_do_not_drift() -> None:
    ats = list(itertools.islice(open_arrivals(3.0, "constant", random.Random(0)), 300_001))
    assert ats[-1] == 100_000.0


def test_poisson_arrivals_rate_and_gaps() -> None:
    ats = list(itertools.islice(open_arrivals(50.0, "poisson", random.Random(1)), 20_000))
    gaps = [b - a for a, b in zip([0.0, *ats], ats)]
    assert all(g > 0 for g in gaps)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 50, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(mean, rel=0.05)  # exponential: sd == mean
    again = list(itertools.islice(open_arrivals(50.0, "poisson", random.Random(1)), 20_000))
    assert again == ats


@pytest.mark.parametrize("bad", [(0.0, "poisson"), (-1.0, "constant"), (1.0, "bursty")])
def test_bad_arrivals(bad) -> None:
    with pytest.raises(ValueError):
        next(open_arrivals(bad[0], bad[1], random.Random(0)))


@pytest.mark.parametrize("users,rate,want", [
    (3, 1.0, [0.0, 1.0, 2.0]),
    (4, 2.0, [0.0, 0.5, 1.0, 1.5]),
    (0, 5.0, []),
])
def test_spawn_times(users: int, rate: float, want: list[float]) -> None:
    assert spawn_times(users, rate) == want


@pytest.mark.parametrize("start,duration,wait,want", [
    (0.0, 10.0, (2.0, 2.0), [0.0, 2.0, 2.0, 2.0, 2.0]),  # runs at 0, 2, 4, 6, 8
    (5.0, 10.0, (2.0, 2.0), [0.0, 2.0, 2.0]),  # 5, 7, 9
    (10.0, 10.0, (1.0, 1.0), []),  # spawned at the end: nothing
    (0.0, 1.0, (5.0, 5.0), [0.0]),
])
def test_think_times_table(start: float, duration: float, wait, want: list[float]) -> None:
    assert list(think_times(start, duration, wait, random.Random(0))) == want


def test_think_times_within_wait_and_before_duration() -> None:
    ts = list(think_times(1.0, 500.0, (1.0, 15.0), random.Random(3)))
    assert ts[0] == 0.0 and all(1.0 <= t <= 15.0 for t in ts[1:])
    assert 1.0 + sum(ts) < 500.0 <= 1.0 + sum(ts) + 15.0
