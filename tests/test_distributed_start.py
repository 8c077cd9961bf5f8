"""``replay --start-at`` and ``--shard auto/N``: parsing, refusals as one line, the wait, the header."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay_support import populate_and_order_trace
from wdmreplay.replayer import replay_trace
from wdmreplay.replayer.start import (START_LATE_TOLERANCE, check_start_at, format_utc, host_clock,
                                      parse_start_at, resolve_shard)
from wdmreplay.traces import load_results

WDM = [sys.executable, "-m", "wdmreplay"]


@pytest.mark.parametrize("text, expected", [
    ("1767225600", 1767225600.0),
    ("1767225600.25", 1767225600.25),
    ("2026-01-01T00:00:00Z", 1767225600.0),
    ("2026-01-01T00:00:00.5z", 1767225600.5),  # any number of digits, on every Python (3.10's
    ("2026-01-01T00:00:00,25Z", 1767225600.25),  # fromisoformat alone reads 3 or 6 after a ".")
    ("2026-01-01T01:00:00.1250+01:00", 1767225600.125),
    ("2026-01-01T00:00:00.1234567Z", 1767225600.123456),  # to the microsecond
    ("2026-01-01T01:00:00+01:00", 1767225600.0),
    (" 2026-01-01T00:00:00+00:00 ", 1767225600.0),
])
def test_parse_start_at_accepts_epoch_and_iso_with_zone(text, expected):
    assert parse_start_at(text) == expected


@pytest.mark.parametrize("text, words", [
    ("2026-01-01T00:00:00", "give the zone"),
    ("nan", "not a time"),
    ("inf", "not a time"),
    ("-5", "not a time"),
    ("0", "not a time"),
    ("tomorrow", "not epoch seconds or an ISO-8601 time"),
    ("", "not epoch seconds or an ISO-8601 time"),
])
def test_parse_start_at_refuses_what_is_not_one_instant(text, words):
    with pytest.raises(ValueError, match=words):
        parse_start_at(text)


@pytest.mark.parametrize("late, ok", [(-60.0, True), (0.0, True), (START_LATE_TOLERANCE * 0.9, True),
                                      (START_LATE_TOLERANCE * 1.1, False), (3600.0, False),
                                      (-8 * 86_400.0, False)])
def test_check_start_at_tolerance(late, ok):
    now = 1_800_000_000.0
    if ok:
        check_start_at(now - late, now)
    else:
        with pytest.raises(ValueError):
            check_start_at(now - late, now)


def test_format_utc_round_trips_through_parse():
    t = 1767225600.125
    assert format_utc(t) == "2026-01-01T00:00:00.125Z" and parse_start_at(format_utc(t)) == t


@pytest.mark.parametrize("text, env, expected", [
    (None, {}, None),
    ("1/4", {}, "1/4"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "0"}, "0/4"),
    ("auto/4", {"JOB_COMPLETION_INDEX": " 3 "}, "3/4"),
    ("auto/1", {"JOB_COMPLETION_INDEX": "0"}, "0/1"),
])
def test_resolve_shard(text, env, expected):
    assert resolve_shard(text, env) == expected


@pytest.mark.parametrize("text, env, words", [
    ("auto/4", {}, "JOB_COMPLETION_INDEX is not set"),
    ("auto/4", {"JOB_COMPLETION_INDEX": ""}, "JOB_COMPLETION_INDEX is not set"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "x"}, "is not an integer"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, r"is not in 0\.\.3"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "-1"}, r"is not in 0\.\.3"),
    ("auto/x", {"JOB_COMPLETION_INDEX": "0"}, "auto/N"),
    ("auto/0", {"JOB_COMPLETION_INDEX": "0"}, "N >= 1"),
])
def test_resolve_shard_refuses(text, env, words):
    with pytest.raises(ValueError, match=words):
        resolve_shard(text, env)


def test_host_clock_is_unknown_or_finite():
    c = host_clock()
    assert c is None or (c["source"] == "adjtimex"
                         and all(math.isfinite(c[k]) for k in ("offset", "maxerror", "esterror")))


def _cli(args, cwd, env=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    full_env.update(env or {})
    return subprocess.run([*WDM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.mark.parametrize("args, env, words", [
    (["--start-at", "2000-01-01T00:00:00Z"], {}, "in the past"),
    (["--start-at", "2030-01-01T00:00:00"], {}, "give the zone"),
    (["--start-at", "soon"], {}, "not epoch seconds"),
    # Epoch seconds past any date: the "days ahead" refusal formatted it as a date (OverflowError traceback).
    (["--start-at", "99999999999999999999999"], {}, "1e+23 (epoch seconds) is more than 7 days ahead"),
    (["--shard", "auto/3"], {}, "JOB_COMPLETION_INDEX is not set"),
    (["--shard", "auto/3"], {"JOB_COMPLETION_INDEX": "3"}, r"not in 0..2"),
])
def test_cli_refusals_are_one_line_before_anything_is_sent(shop, tmp_path, args, env, words):
    populate_and_order_trace(tmp_path / "t.wdmt", 2)
    p = _cli(["replay", "t.wdmt", "--url", shop.url, *args], tmp_path, env)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("wdm-replay: error:") and p.stderr.count("\n") == 1 and words.split("\\")[0] in p.stderr
    assert not (tmp_path / "t.wdmr").exists() and not (tmp_path / "t.wdmr.part").exists()


def test_start_at_waits_and_anchors_the_schedule(shop, tmp_path):
    populate_and_order_trace(tmp_path / "t.wdmt", 3)
    start = time.time() + 2.0
    summary = replay_trace(tmp_path / "t.wdmt", tmp_path / "r.wdmr", target=shop.url, speed=None,
                           shard=(0, 1), start_at=start)
    assert summary.complete
    r = load_results(tmp_path / "r.wdmr")
    assert r.header["start_at"] == start and "clock" in r.header
    first = next(e for e in r.events if e["kind"] == "phase_start")
    zero = first["wall"] - first["at"]
    assert abs(zero - start) < 0.05  # the run's clock 0 is --start-at itself
    assert float(r.cols["sent"].min()) >= 0.0  # nothing was sent before it
    assert float(r.cols["intended"].min()) >= 0.0


def test_ctrl_c_while_waiting_for_start_at_stops_within_a_second(shop, tmp_path):
    populate_and_order_trace(tmp_path / "t.wdmt", 2)
    p = subprocess.Popen([*WDM, "replay", "t.wdmt", "--url", shop.url, "-q", "--start-at",
                          str(time.time() + 120)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    part = Path(tmp_path / "t.wdmr.part")
    deadline = time.monotonic() + 60
    while not part.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert part.exists(), "the replay never opened its results file"
    time.sleep(3.0)  # the workers are up and the driver is waiting for --start-at
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    took = time.monotonic() - sent
    assert p.returncode == 130, err
    assert took < 5.0  # promised within 1 s; room for a loaded machine
    r = load_results(tmp_path / "t.wdmr")
    assert not r.complete and r.n == 0
    assert any(e["kind"] == "interrupt" and "start-at" in e["reason"] for e in r.events)


def test_start_at_just_past_keeps_the_schedule_at_that_instant(shop, tmp_path):
    populate_and_order_trace(tmp_path / "t.wdmt", 2)
    start = time.time() - START_LATE_TOLERANCE / 2
    summary = replay_trace(tmp_path / "t.wdmt", tmp_path / "r.wdmr", target=shop.url, speed=1.0, start_at=start)
    assert summary.complete
    r = load_results(tmp_path / "r.wdmr")
    first = next(e for e in r.events if e["kind"] == "phase_start")
    assert first["at"] == 0.0 and abs(first["wall"] - start) < 0.05
    # The first session was due at the start instant; it went out late, and its lag is on record.
    assert float(r.cols["intended"].min()) < START_LATE_TOLERANCE / 2 <= float(r.cols["sent"].min())
