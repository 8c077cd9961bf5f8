"""``capacity``: the pure search (table-driven), the SLO parser, and real searches against loopback shops.

The end-to-end searches replay a 2-second stress trace against the reference shop with and without
``--latency 20`` at ``--concurrency 8`` (so 20 ms a request caps the slow shop near 8/0.02 = 400
requests/s while the fast one takes thousands), and against ``--inject no-rollback`` (a shop the
stress trace proves wrong: its first step is NOT CLEAN and ends the search). Bounded: ``--max 16``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from wdmreplay.capacity import (BISECT, CONFIRM, PROBE, CapacityError, ReplayOptions, SearchPlan, bracket,
                                cut_trace, find_capacity, next_step, parse_slo, render_capacity_text)
from wdmreplay.workloads import generate
from wdmreplay.traces import TraceReader, load_results, read_header

SLO = "p99<300ms,unanswered<1%"
PLAN = SearchPlan(start=1.0, max_speed=16.0, factor=2.0, bisect_steps=2)


@pytest.fixture(scope="module")
def stress_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("capacity") / "stress.wdmt"
    generate("stress", path, seed=0, rate=30.0, duration=2.0)
    return path


# --- the search, without a clock --------------------------------------------------------------------

def _run(history_pass: dict[float, list[bool]], plan: SearchPlan = PLAN) -> list[tuple[float, bool, str]]:
    """Drive next_step with a fake shop: each speed's successive outcomes from ``history_pass``."""
    history: list[tuple[float, bool, str]] = []
    seen: dict[float, int] = {}
    while (nxt := next_step(history, plan)) is not None:
        speed, kind = nxt
        outcomes = history_pass.get(speed)
        ok = outcomes[min(seen.get(speed, 0), len(outcomes) - 1)] if outcomes else speed <= history_pass["knee"]
        seen[speed] = seen.get(speed, 0) + 1
        history.append((speed, ok, kind))
        assert len(history) < 40, history
    return history


@pytest.mark.parametrize("knee, expected_speeds, found", [
    # climb 1 2 4, fail at 8, bisect 5.66 (pass), 6.73 (fail), confirm 5.66
    (6.0, [1, 2, 4, 8, 5.66, 6.73, 5.66], 5.66),
    # everything passes up to max: climb to 16, confirm 16
    (100.0, [1, 2, 4, 8, 16, 16], 16),
    # start already fails: descend 0.5, 0.25 (pass), bisect 0.354 (fail), 0.297 (pass), confirm
    (0.3, [1, 0.5, 0.25, 0.354, 0.297, 0.297], 0.297),
    # nothing passes down to start / 2**3: give up
    (0.01, [1, 0.5, 0.25, 0.125], None),
])
def test_search_climbs_bisects_and_confirms(knee, expected_speeds, found):
    history = _run({"knee": knee})
    assert [s for s, _, _ in history] == expected_speeds
    lo, _ = bracket([(s, ok) for s, ok, _ in history])
    assert lo == found
    if found is not None:
        assert history[-1] == (found, True, CONFIRM)
        assert [k for _, _, k in history].count(BISECT) <= PLAN.bisect_steps


def test_a_failed_repeat_moves_the_knee_down():
    # 5.66 passes once then fails its confirmation: the knee falls to 4, which is then confirmed
    history = _run({"knee": 6.0, 5.66: [True, False]})
    assert history[-2:] == [(5.66, False, CONFIRM), (4.0, True, CONFIRM)]
    assert bracket([(s, ok) for s, ok, _ in history]) == (4.0, 5.66)


def test_first_step_is_the_start_speed_and_a_probe():
    assert next_step([], SearchPlan(start=3.0, max_speed=10.0)) == (3.0, PROBE)
    # the climb is capped at max
    assert next_step([(8.0, True, PROBE)], SearchPlan(start=1.0, max_speed=10.0)) == (10.0, PROBE)


@pytest.mark.parametrize("kwargs, message", [
    ({"start": 0.0}, "--start must be a positive"),
    ({"start": 4.0, "max_speed": 2.0}, "--max 2 is below --start 4"),
    ({"factor": 1.0}, "--factor must be above 1"),
    ({"bisect_steps": -1}, "--bisect must be 0 or more"),
])
def test_bad_search_options_are_refused(kwargs, message):
    with pytest.raises(CapacityError, match=message):
        SearchPlan(**kwargs)


# --- the SLO ------------------------------------------------------------------------------------------

def test_slo_parses_and_judges():
    slo = parse_slo(" P99 < 0.5s , unanswered<1% ,p50<20ms")
    assert slo.latency_ms == (("p50", 20.0), ("p99", 500.0)) and slo.unanswered == 0.01
    assert slo.text == "p50<20ms,p99<500ms,unanswered<1%,achieved>80%" and slo.achieved == 0.8
    assert slo.breaches({"p50": 10.0, "p99": 499.0}, 0.009) == ()
    assert slo.breaches({"p50": 10.0, "p99": 500.0}, 0.0) == ("p99 500.0 ms >= 500 ms",)
    assert slo.breaches({"p50": None, "p99": 1.0}, 0.02) == ("p50 - ms >= 20 ms", "unanswered 2.00% >= 1%")
    # the achieved share of the offered rate: 80% unless the SLO says otherwise
    assert slo.breaches({"p50": 1.0, "p99": 1.0}, 0.0, 0.75) == ("achieved 75% of offered <= 80%",)
    assert slo.breaches({"p50": 1.0, "p99": 1.0}, 0.0, 0.85) == ()
    assert slo.breaches({"p50": 1.0, "p99": 1.0}, 0.0, None) == ()  # a burst trace: no offered rate
    loose = parse_slo("p99<1s,achieved>0%")
    assert loose.achieved == 0.0 and loose.breaches({"p99": 1.0}, 0.0, 0.1) == ()
    assert parse_slo("achieved>50%").breaches({}, 0.5, 0.5) == ("achieved 50% of offered <= 50%",)


@pytest.mark.parametrize("text, message", [
    ("", "--slo is empty"),
    ("p99<fast", "cannot read 'p99<fast'"),
    ("p99<500", "needs a unit, ms or s"),
    ("unanswered<1", "needs a percentage"),
    ("unanswered<101%", "above 100%"),
    ("p99<500ms,p99<1s", "p99 given twice"),
    ("p98<500ms", "cannot read 'p98<500ms'"),
    ("p99<0ms", "positive finite bound"),
    ("achieved<90%", "cannot read 'achieved<90%'"),
    ("p99>5ms", "cannot read 'p99>5ms'"),
    ("achieved>100%", "a percentage below 100"),
    ("achieved>0.9", "a percentage below 100"),
])
def test_bad_slo_is_a_clear_error(text, message):
    with pytest.raises(CapacityError, match=message):
        parse_slo(text)


def test_cli_bad_slo_is_one_line_and_exit_2(stress_trace, shop):
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "capacity", str(stress_trace), "--url", shop.url,
                        "--slo", "p99<soon"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "cannot read 'p99<soon'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name,message", [("plot.txt", "written as .png, .svg or .pdf"),
                                           ("run.wdmr", "written as .png, .svg or .pdf"),
                                           ("old.png", None),
                                           ("no-such-dir/cap.png", "cannot write here"),
                                           ("a-file/cap.png", "cannot write here")])
def test_cli_plot_output_is_checked_before_the_search(stress_trace, shop, tmp_path, name, message):
    out = tmp_path / name
    (tmp_path / "a-file").write_text("a regular file, not a directory")
    if name == "old.png":  # an existing results file under a .png name is not replaced either
        import shutil
        shutil.copy(_results_file(stress_trace, shop, tmp_path), out)
        message = "already holds the results of a run"
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "capacity", str(stress_trace), "--url", shop.url,
                        "-d", str(tmp_path / "steps"), "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "steps").exists() or not list((tmp_path / "steps").glob("*.wdmr")), "the search ran"


def _results_file(trace, shop, tmp_path):
    out = tmp_path / "r.wdmr"
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url, "--speed", "max",
                        "-q", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def test_cli_speed_range_is_the_replayers():
    from wdmreplay.cli import SPEED_RANGE
    from wdmreplay.replayer.schedule import MAX_SPEED, MIN_SPEED

    assert (SPEED_RANGE.min, SPEED_RANGE.max) == (MIN_SPEED, MAX_SPEED)


def test_cli_help_has_examples():
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "capacity", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "Examples:" in r.stdout and "--slo" in r.stdout and "--step-seconds" in r.stdout


# --- real searches ---------------------------------------------------------------------------------------

def _search(trace, shop, outdir, **kw):
    return find_capacity(trace, outdir, slo=parse_slo(SLO), plan=PLAN,
                         opts=ReplayOptions(shop.target, concurrency=8, timeout=10.0), **kw)


def test_slow_shop_has_a_lower_capacity_and_repeats_within_one_bisection_step(stress_trace, shop_factory, tmp_path):
    fast = _search(stress_trace, shop_factory(), tmp_path / "fast")
    slow_shop = shop_factory(latency_ms=20)
    slow = [_search(stress_trace, slow_shop, tmp_path / f"slow{i}") for i in range(2)]
    for res in (fast, *slow):
        assert res.outcome in ("found", "at_max"), render_capacity_text(res)
        assert all(s.verdict == "CLEAN" for s in res.steps)
        # the knee is confirmed: it ran twice and passed both times
        assert [s.passed for s in res.steps if s.speed == res.speed] == [True, True]
    assert all(r.speed < fast.speed for r in slow), "\n".join(render_capacity_text(r) for r in (fast, *slow))
    assert slow[0].outcome == "found" and slow[0].resolution is not None
    # two repeats agree within one bisection step (the ratio of the final bracket)
    ratio = max(slow[0].speed, slow[1].speed) / min(slow[0].speed, slow[1].speed)
    assert ratio <= max(slow[0].resolution, slow[1].resolution) + 1e-9, "\n".join(render_capacity_text(r) for r in slow)
    # every step's results file is kept, and its figures are the run's
    for s in slow[0].steps:
        run = load_results(s.results)
        assert run.complete and run.header["speed"] == s.speed
    failing = [s for s in slow[0].steps if not s.passed]
    assert failing and all(any(b.startswith(("p99", "achieved")) for b in s.breaches) for s in failing)
    assert slow[0].rate == pytest.approx(read_header(stress_trace)["requests"] * slow[0].speed
                                         / read_header(stress_trace)["duration"], rel=1e-3)


def test_not_clean_step_ends_the_search_without_a_number(stress_trace, shop_factory, tmp_path):
    res = _search(stress_trace, shop_factory(inject="no-rollback"), tmp_path)
    assert res.outcome == "not_clean" and res.speed is None and res.rate is None and res.exit_code == 1
    assert len(res.steps) == 1 and res.steps[0].verdict == "NOT CLEAN" and res.steps[0].anomalies > 0
    assert "NOT CLEAN at speed 1" in render_capacity_text(res)
    # the correct shop on the same trace is not stopped
    ok = find_capacity(stress_trace, tmp_path / "ok", slo=parse_slo(SLO), plan=SearchPlan(1.0, 2.0, bisect_steps=0),
                       opts=ReplayOptions(shop_factory().target, concurrency=8))
    assert ok.outcome != "not_clean" and ok.speed is not None


def test_step_seconds_cuts_each_step(stress_trace, shop, tmp_path):
    res = find_capacity(stress_trace, tmp_path, slo=parse_slo("p99<2s,achieved>0%"),
                        plan=SearchPlan(start=1.0, max_speed=2.0, bisect_steps=0),
                        opts=ReplayOptions(shop.target), step_seconds=0.5)
    assert [s.speed for s in res.steps] == [1.0, 2.0, 2.0]
    full = read_header(stress_trace)
    for s in res.steps:
        assert s.seconds <= 0.5 + 0.5  # sessions start within the first half second (their steps may run past)
        assert load_results(s.results).header["trace"]["header"]["requests"] < full["requests"]
    cut = sorted(tmp_path.glob("step-01-*.wdmt"))
    assert len(cut) == 1
    h = read_header(cut[0])
    assert h["params"]["cut"]["until"] == 0.5 and h["expect"] == {} and h["workload"] == "stress"
    assert "expect_range" not in h and h["scenarios"] == full["scenarios"] and h["dialect"] == full["dialect"]
    if "exercises" in full:  # the cut's own counts, not the source's
        assert sum(h["exercises"].values()) <= sum(full["exercises"].values())
    with TraceReader(cut[0]) as r:
        assert all(s["at"] < 0.5 for s in r)


def test_cut_trace_keeps_earlier_phases_whole(tmp_path):
    src = tmp_path / "c.wdmt"
    generate("checkout", src, seed=1, rate=50, duration=2, items=10, users=10, orders=10, stock=100, credit=100)
    head = read_header(src)
    out = cut_trace(src, tmp_path / "cut.wdmt", 0.5)
    assert out.phases[0].sessions == head["phases"][0]["sessions"]
    assert 0 < out.phases[-1].sessions < head["phases"][-1]["sessions"]


def test_cli_json_table_and_plot(stress_trace, shop, tmp_path):
    plot = tmp_path / "cap.png"
    args = [sys.executable, "-m", "wdmreplay", "capacity", str(stress_trace), "--url", shop.url, "--slo", "p99<2s,achieved>0%",
            "--start", "2", "--max", "4", "--bisect", "0", "-d", str(tmp_path / "runs"), "-o", str(plot)]
    r = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["speed"] == 4.0 and doc["outcome"] == "at_max" and doc["slo"] == "p99<2000ms,achieved>0%"
    assert doc["rate"] == pytest.approx(4 * read_header(stress_trace)["requests"] / read_header(stress_trace)["duration"],
                                        rel=1e-3)
    assert [s["speed"] for s in doc["steps"]] == [2.0, 4.0, 4.0]
    assert all(set(s) >= {"speed", "offered_rate", "achieved_rate", "p50_ms", "p99_ms", "unanswered", "passed",
                          "verdict", "results"} for s in doc["steps"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "runs").glob("step-*.wdmr"))) == 3
    r = subprocess.run([*args[:9], "--start", "4", "--max", "4", "-d", str(tmp_path / "runs2"), "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "knee: speed 4 =" in r.stdout and "every speed up to --max 4" in r.stdout
    assert r.stderr == ""
    assert all(math.isfinite(float(line.split()[3])) for line in r.stdout.splitlines()[2:4])


def test_cli_unreachable_target_is_one_line(stress_trace, tmp_path):
    from replay_support import closed_port

    r = subprocess.run([sys.executable, "-m", "wdmreplay", "capacity", str(stress_trace), "--url",
                        f"http://127.0.0.1:{closed_port()}", "-d", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot reach" in r.stderr


def test_cli_without_matplotlib_says_so_and_still_searches(stress_trace, shop, tmp_path):
    # matplotlib made unimportable in the child (sys.modules entry None: ImportError on import)
    code = ("import sys; sys.modules['matplotlib'] = None; from wdmreplay.cli import main; main(sys.argv[1:])")
    plot = tmp_path / "cap.png"
    r = subprocess.run([sys.executable, "-c", code, "capacity", str(stress_trace), "--url", shop.url,
                        "--slo", "p99<2s,achieved>0%", "--start", "4", "--max", "4", "-d", str(tmp_path / "runs"),
                        "-o", str(plot), "-q"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no plot: matplotlib is not installed (pip install 'wdm-replay[html]')" in r.stderr
    assert r.stderr.count("\n") == 1 and "knee: speed 4 =" in r.stdout and not plot.exists()


def test_cli_interrupt_stops_with_130_and_keeps_finished_steps(tmp_path, shop):
    import signal
    import time

    trace = tmp_path / "long.wdmt"
    generate("stress", trace, seed=0, rate=10.0, duration=20.0)
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-m", "wdmreplay", "capacity", str(trace), "--url", shop.url,
                          "--start", "1", "--max", "2", "-d", str(runs), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(runs.glob("step-01-*.wdmr.part")):
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "did not complete (interrupted)" in err and "Traceback" not in err
    (part,) = [f for f in runs.iterdir() if f.name.startswith("step-01-")]
    assert not load_results(part).complete  # the interrupted step is a valid, partial results file


def test_a_shop_that_answers_nothing_stops_the_search_at_its_first_step(stress_trace, tmp_path):
    """Every request 500 (or an HTML page): no slower speed can help, so there is one step, not four."""
    from replay_support import TinyTarget

    from wdmreplay.targets import Target

    for status, body in ((500, b"internal error"), (200, b"<html>maintenance</html>")):
        with TinyTarget(lambda method, path: (status, body, 0)) as dead:
            res = find_capacity(stress_trace, tmp_path / str(status), slo=parse_slo(SLO), plan=PLAN,
                                opts=ReplayOptions(Target.single(dead.url), concurrency=8, timeout=5.0))
        text = render_capacity_text(res)
        assert res.outcome == "none_met" and res.exit_code == 3 and res.speed is None, text
        assert [(s.speed, s.unanswered, s.passed) for s in res.steps] == [(1.0, 1.0, False)], text
        assert "the shop answered none of step 1's requests" in text
        assert any("got no answer to any of its requests" in n and "cannot change that" in n for n in res.notes)
