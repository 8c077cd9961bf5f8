"""Lateness diagnosed (issue 25 item 7): the replay's warning names the cause that happened.

Either every ``--concurrency`` connection was busy waiting on the shop (the shop is saturated: the
run measures its capacity) or the replayer itself started requests late with connections free
(CPU-bound). Over real HTTP against the reference shop: a slowed shop behind two connections
(saturated), a burst of sessions all due at one instant with connections to spare (the replayer),
and the same traces at a pace both keep up with (no warning).
"""

from __future__ import annotations

import numpy as np
import pytest

from replay_support import write_trace
from wdmreplay.replayer import format_summary, replay_trace
from wdmreplay.replayer.schedule import histogram, histogram_add, histogram_count_above, lateness_cause
from wdmreplay.traces import step


@pytest.mark.parametrize("late, waits, cause", [
    (0, 0, None), (0, 50, None),  # nothing late: no cause, whatever waited
    (100, 100, "saturated"), (100, 50, "saturated"), (100, 49, "replayer"), (100, 0, "replayer"),
    (10, 1000, "saturated"),  # waits beyond the late ones (short waits) still say the connections were busy
])
def test_lateness_cause(late, waits, cause):
    assert lateness_cause(late, waits) == cause


@pytest.mark.parametrize("values, limit, above", [
    ([0.001, 0.009, 0.011, 0.5], 0.010, 2),
    ([0.0, -0.001, 0.02], 0.010, 1),
    ([], 0.010, 0),
    ([0.0101, 0.0099], 0.010, 1),
])
def test_histogram_count_above(values, limit, above):
    h = histogram()
    histogram_add(h, np.asarray(values, dtype=float))
    assert histogram_count_above(h, limit) == above


def _paced_trace(path, sessions: int, spacing: float) -> None:
    write_trace(path, [[(i * spacing, [step("create_user", [], bind=f"$u{i}")]) for i in range(sessions)]])


def test_a_saturated_shop_is_named_as_the_cause(shop_factory, tmp_path):
    trace = tmp_path / "t.wdmt"
    _paced_trace(trace, 60, 0.01)  # 100 sessions/s; two connections at 100 ms a request hold 20/s
    slow = shop_factory(latency_ms=100)
    s = replay_trace(trace, tmp_path / "r.wdmr", target=slow.target, speed=1.0, concurrency=2, final_read=False)
    assert s.lagging and s.late_cause == "saturated" and s.conn_waits >= s.late / 2 > 0
    text = format_summary(s)
    assert "the shop is saturated" in text and "raising --concurrency only moves the wait into timeouts" in text
    assert "CPU-bound" not in text
    # the same shop with a connection per session: no request waits for one, and the shop is not
    # blamed (a busy machine may still delay a request or two: then the replayer is named, rightly)
    s = replay_trace(trace, tmp_path / "ok.wdmr", target=slow.target, speed=1.0, concurrency=256, final_read=False)
    assert s.conn_waits == 0 and s.late_cause != "saturated"
    assert "the shop is saturated" not in format_summary(s)


def test_a_replayer_that_cannot_keep_up_is_named_as_the_cause(shop, shop_factory, tmp_path):
    trace = tmp_path / "t.wdmt"
    _paced_trace(trace, 1500, 0.0)  # every session due at one instant: one process starts them one by one
    s = replay_trace(trace, tmp_path / "r.wdmr", target=shop.target, speed=1.0, concurrency=4096, final_read=False)
    assert s.lagging and s.late_cause == "replayer" and s.conn_waits == 0 and s.late > 0
    text = format_summary(s)
    assert "the replayer itself started them late" in text and "add --workers" in text
    assert "the shop is saturated" not in text
    # the same burst through two connections of a slow shop: now the connections were the wait
    slow = shop_factory(latency_ms=20)
    _paced_trace(trace, 100, 0.0)
    s = replay_trace(trace, tmp_path / "busy.wdmr", target=slow.target, speed=1.0, concurrency=2, final_read=False)
    assert s.late_cause == "saturated" and "the replayer itself" not in format_summary(s)


def test_the_summary_says_where_response_time_is_measured_from(shop, tmp_path):
    trace = tmp_path / "t.wdmt"
    _paced_trace(trace, 3, 0.01)
    s = replay_trace(trace, tmp_path / "r.wdmr", target=shop.target, speed=1.0)
    assert "from each request's intended time" in format_summary(s) and "may exceed --timeout" in format_summary(s)
    fr = s.final_read
    assert fr.entities == 3 and fr.seconds > 0 and fr.snapshots == 1
    assert "final read: 3 entities in" in format_summary(s) and "after the send window of" in format_summary(s)
