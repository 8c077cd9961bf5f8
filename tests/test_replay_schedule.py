"""Table-driven tests of the replayer's pure scheduling and summary functions (no clock)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wdmreplay.replayer.schedule import (histogram, histogram_add, histogram_quantile, is_lagging,
                                         may_launch, pace, parse_shard, parse_speed, rate,
                                         scheduled_rate, session_cap, session_due, shard_keep, step_due)


@pytest.mark.parametrize("phase_start, at, speed, due", [
    (0.0, 0.0, 1.0, 0.0),
    (0.0, 3.0, 1.0, 3.0),
    (0.0, 3.0, 2.0, 1.5),
    (0.0, 3.0, 0.5, 6.0),
    (10.0, 3.0, 10.0, 10.3),
    (10.0, 3.0, None, 10.0),  # as fast as possible: the schedule is ignored
])
def test_session_due_is_phase_start_plus_at_over_speed(phase_start, at, speed, due):
    assert session_due(phase_start, at, speed) == pytest.approx(due)


@pytest.mark.parametrize("previous_done, think, speed, due", [
    (1.0, 0.0, 1.0, 1.0),
    (1.0, 0.5, 1.0, 1.5),
    (1.0, 0.5, 2.0, 1.25),
    (1.0, 0.5, 0.25, 3.0),
    (1.0, 0.5, None, 1.0),  # max: no think time
])
def test_step_due_is_previous_response_plus_think_over_speed(previous_done, think, speed, due):
    assert step_due(previous_done, think, speed) == pytest.approx(due)


@pytest.mark.parametrize("now, due, wait", [
    (0.0, 1.0, 1.0),
    (0.9, 1.0, 0.1),
    (1.0, 1.0, 0.0),
    (1.5, 1.0, 0.0),  # late: send at once, the lag is recorded, never a negative sleep
])
def test_pace(now, due, wait):
    assert pace(now, due) == pytest.approx(wait)


@pytest.mark.parametrize("in_flight, cap, ok", [(0, 1, True), (9, 10, True), (10, 10, False), (11, 10, False)])
def test_may_launch(in_flight, cap, ok):
    assert may_launch(in_flight, cap) is ok


@pytest.mark.parametrize("concurrency, speed, cap", [
    (64, None, 64),  # max: one session per connection
    (0, None, 1),
    (64, 1.0, 10_000),  # scheduled: generous, memory bound only
    (1000, 2.0, 16_000),
])
def test_session_cap(concurrency, speed, cap):
    assert session_cap(concurrency, speed) == cap


@pytest.mark.parametrize("text, speed", [
    ("1", 1.0), ("0.5", 0.5), ("10", 10.0), ("max", None), ("MAX", None), (None, None), (2, 2.0),
    ("unlimited", None), ("1e-6", 1e-6), ("1e6", 1e6),
])
def test_parse_speed(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "", "inf", "-inf", "1e308", "1e-300", float("-inf"),
                                  float("nan"), 0.0])
def test_parse_speed_refuses(text):
    with pytest.raises(ValueError, match="speed"):
        parse_speed(text)


@pytest.mark.parametrize("text, shard", [("0/1", (0, 1)), ("2/4", (2, 4)), (None, None)])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1", "a/b", "0/0"])
def test_parse_shard_refuses(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


@pytest.mark.parametrize("shard, worker", [(None, (0, 2)), ((1, 3), None), ((1, 3), (1, 2)), ((0, 2), (2, 3))])
def test_shard_keep_partitions_sessions(shard, worker):
    # Every session belongs to exactly one (shard, worker) pair: the workers of a shard cover it exactly.
    m = shard[1] if shard else 1
    n = worker[1] if worker else 1
    sids = range(200)
    owners = [[(i, j) for i in range(m) for j in range(n)
               if shard_keep((i, m) if shard else None, (j, n) if worker else None)(sid)] for sid in sids]
    assert all(len(o) == 1 for o in owners)
    assert shard_keep(None, None) is None
    assert shard_keep(None, (0, 1)) is None and shard_keep((0, 1), (0, 1)) is None  # one worker, no shard: no filter


@pytest.mark.parametrize("values, q, expected", [
    ([0.010] * 100, 0.5, 0.010),
    ([0.001] * 99 + [1.0], 0.99, 0.001),
    ([0.001] * 98 + [1.0] * 2, 0.99, 1.0),
    (list(np.linspace(0.001, 0.100, 100)), 0.5, 0.050),
    ([0.0, -0.0001, 0.002], 0.5, 0.0),  # zero and tiny negative lags land in the first bucket
])
def test_histogram_quantile_within_half_percent(values, q, expected):
    h = histogram()
    histogram_add(h, np.asarray(values, dtype=np.float64))
    got = histogram_quantile(h, q)
    if expected == 0.0:
        assert got == 0.0
    else:
        assert got == pytest.approx(expected, rel=0.006)


def test_histogram_empty_and_nan():
    h = histogram()
    histogram_add(h, np.array([math.nan, math.nan]))
    assert histogram_quantile(h, 0.5) is None
    histogram_add(h, np.array([0.5, math.nan]))
    assert histogram_quantile(h, 0.99) == pytest.approx(0.5, rel=0.006)


@pytest.mark.parametrize("requests, duration, speed, expected", [
    (1000, 10.0, 1.0, 100.0),
    (1000, 10.0, 2.0, 200.0),
    (1000, 10.0, None, None),
    (1000, 0.0, 1.0, None),
])
def test_scheduled_rate(requests, duration, speed, expected):
    assert scheduled_rate(requests, duration, speed) == expected


@pytest.mark.parametrize("lag, speed, lagging", [
    (0.011, 1.0, True), (0.009, 1.0, False), (0.5, None, False), (None, 1.0, False),
])
def test_is_lagging(lag, speed, lagging):
    assert is_lagging(lag, speed) is lagging


def test_rate():
    assert rate(10, 2.0) == 5.0
    assert rate(10, 0.0) is None
