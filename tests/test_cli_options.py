"""Every numeric option of every command is validated: nan, inf and out-of-range values are one line, exit 2.

The table is built by walking ``cli.cli`` recursively, so an option added later is covered (or the
declaration test fails) without editing this file. Most cases run ``wdmreplay.cli.main`` in this
process (fast, and an uncaught exception fails the test with its traceback); the issue's own cases
also run as a user runs them, in a subprocess.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import click
import numpy as np
import pytest

from replay_support import closed_port, write_trace
from wdmreplay.analysis import build_report, compare_runs, render_text
from wdmreplay.analysis.compare import CompareError
from wdmreplay.analysis.consistency import AnalysisError
from wdmreplay.analysis.stats import MAX_TIMELINE_BUCKETS, run_window
from synthetic import History
from wdmreplay.cli import Finite, Speed, cli, main
from wdmreplay.replayer import ReplayError, replay_trace
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import SKIPPED, run_rate, send_window


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    """(command path, command) of every leaf command under ``cmd``."""
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _commands(cmd.commands[name], (*path, name))
    else:
        yield path, cmd


def _numeric_params():
    """(command path, command, param) of every int- or float-typed option or argument."""
    for path, cmd in _commands(cli):
        for p in cmd.params:
            if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield path, cmd, p


NUMERIC = list(_numeric_params())


def _bad_values(t: click.ParamType) -> list[str]:
    """Values the option must refuse: nan, infinities, just outside each bound, a fraction for ints."""
    bad = ["nan", "inf", "-inf"]
    lo, hi = t.min, t.max  # type: ignore[attr-defined]
    if isinstance(t, click.IntRange):
        bad.append("1.5")
        bad.append(str(lo - 1))
        if hi is not None:
            bad.append(str(hi + 1))
    else:
        bad.append(repr(float(lo)) if t.min_open else repr(lo - 1.0))  # type: ignore[attr-defined]
        if hi is not None:
            bad.append(repr(float(hi)) if t.max_open else repr(hi * 2.0 + 1.0))  # type: ignore[attr-defined]
    return bad


def _case_id(path, param, value):
    return f"{' '.join(path)} {param.opts[0]}={value}"


CASES = [(path, cmd, p, v) for path, cmd, p in NUMERIC for v in _bad_values(p.type)]


def test_the_walk_finds_the_options_the_issue_named():
    found = {(" ".join(path), p.opts[0]) for path, _, p in NUMERIC}
    assert {("report", "--bucket"), ("replay", "--settle"), ("compare", "--alpha"), ("compare", "--threshold"),
            ("serve", "--latency"), ("replay", "--concurrency"), ("generate-trace stress", "--rate")} <= found
    speed = next(p for p in cli.commands["replay"].params if p.name == "speed")
    assert isinstance(speed.type, Speed)  # a string option ("max" or a number), checked below


@pytest.mark.parametrize("path, cmd, param", NUMERIC, ids=[f"{' '.join(a)} {p.opts[0]}" for a, _, p in NUMERIC])
def test_every_numeric_option_is_finite_or_intrange_with_a_lower_bound(path, cmd, param):
    assert isinstance(param.type, (Finite, click.IntRange)), (
        f"{' '.join(path)} {param.opts[0]}: use wdmreplay.cli.Finite(lo, hi) or click.IntRange, not {param.type!r}")
    assert param.type.min is not None, f"{' '.join(path)} {param.opts[0]}: give the range a lower bound"


def _args_for(path, cmd, param, value) -> list[str]:
    """argv with the bad option first (click converts in command-line order) and dummy positionals."""
    argv = [*path]
    argv += [param.opts[0], value] if isinstance(param, click.Option) else []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            argv += [value if p is param else "x"] * (p.nargs if p.nargs > 0 else 1)
    return argv


def _run_main(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("path, cmd, param, value", CASES, ids=[_case_id(a, p, v) for a, _, p, v in CASES])
def test_bad_numeric_value_is_one_line_and_exit_2(path, cmd, param, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_main(_args_for(path, cmd, param, value), capsys)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith("wdm-replay: error: Invalid value for "), err
    assert (param.opts[0] if isinstance(param, click.Option) else param.human_readable_name) in err
    assert f"(see wdm-replay {' '.join(path)} --help)" in err
    assert list(tmp_path.iterdir()) == []  # refused before any file was written


@pytest.mark.parametrize("argv, message", [
    (["replay", "t.wdmt", "--speed", "nan"], "speed must be a positive number or 'max'"),
    (["replay", "t.wdmt", "--speed", "-1"], "speed must be a positive number or 'max'"),
    (["replay", "t.wdmt", "--speed", "0"], "speed must be a positive number or 'max'"),
    (["replay", "t.wdmt", "--speed", "1e-300"], "'1e-300' is not in 1e-06..1e+06 (or 'max')"),
    (["replay", "t.wdmt", "--speed", "1e300"], "'1e300' is not in 1e-06..1e+06 (or 'max')"),
    (["replay", "t.wdmt", "--url", "http://127.0.0.1:99999"], "bad base URL 'http://127.0.0.1:99999'"),
    (["replay", "t.wdmt", "--url", "http://[::1"], "bad base URL 'http://[::1'"),
    (["replay", "t.wdmt", "--urls", "."], "Invalid value for '--urls'"),
    (["replay", "t.wdmt", "--urls", "bad.json"], "bad.json: urls file is not valid JSON"),
    (["replay", "t.wdmt", "--routes", "bad.json"], "bad.json: routes file is not valid JSON"),
    (["generate-trace", "stress", "--weights", "1,2"], "--weights: expected 6 numbers"),
    (["generate-trace", "stress", "--weights", "nan,1,1,1,1,1"], "--weights: expected a finite number"),
    (["generate-trace", "stress", "--price-range", "5,1"], "--price-range: low end 5 is above high end 1"),
    (["generate-trace", "stress", "--stock-range", "1,inf"], "--stock-range: expected a finite number"),
    (["generate-trace", "stress", "--users", "2", "--wait", "5,1"], "--wait: minimum 5 is above maximum 1"),
    (["generate-trace", "stress", "--seed", str(2**64)], "Invalid value for '--seed'"),
    (["report", "."], "Invalid value for 'RESULTS'"),
    (["inspect", "nope.wdmt"], "nope.wdmt"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_other_bad_inputs_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    code, out, err = _run_main(argv, capsys)
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("wdm-replay: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "t.wdmt"]


@pytest.mark.parametrize("args, option", [
    (["report", "r.wdmr", "--bucket", "nan"], "--bucket"),
    (["replay", "t.wdmt", "--settle", "nan"], "--settle"),
    (["compare", "a.wdmr", "b.wdmr", "--alpha", "2"], "--alpha"),
    (["compare", "a.wdmr", "b.wdmr", "--threshold", "nan"], "--threshold"),
    (["serve", "--latency", "nan"], "--latency"),
])
def test_the_issues_cases_as_a_user_runs_them(args, option, tmp_path):
    p = subprocess.run([sys.executable, "-m", "wdmreplay", *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith(f"wdm-replay: error: Invalid value for '{option}'") and p.stderr.count("\n") == 1


# --- the library refuses nan where it is the entry point --------------------------------------


def _timed_history() -> History:
    h = History(scenarios=["a"])
    for k in range(50):
        h.req("find_item", ["i"], at=k * 0.1, latency=0.02, lag=0.001)
    return h


def test_build_report_refuses_a_bucket_that_is_not_a_positive_finite_number(tmp_path):
    r = load_results(_timed_history().write(tmp_path / "r.wdmr"))
    for bucket in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(AnalysisError, match="bucket must be a positive finite number"):
            build_report(r, bucket=bucket)


def test_a_tiny_bucket_is_widened_to_at_most_the_documented_number_of_buckets(tmp_path, capsys, monkeypatch):
    path = _timed_history().write(tmp_path / "r.wdmr")
    r = load_results(path)
    assert len(build_report(r, bucket=5e-324).stats.timeline.t) <= MAX_TIMELINE_BUCKETS  # smallest float
    tl = build_report(r, bucket=1e-9).stats.timeline
    end = float(np.nanmax(r.cols["done"]))
    assert len(tl.t) <= MAX_TIMELINE_BUCKETS and tl.requested_bucket == 1e-9
    assert tl.bucket >= end / MAX_TIMELINE_BUCKETS and sum(tl.count) == r.n
    assert build_report(r, bucket=0.5).stats.timeline.bucket == 0.5  # a usable bucket is kept
    monkeypatch.chdir(tmp_path)
    main(["report", "r.wdmr", "--bucket", "1e-9", "--no-check"])  # returns: exit 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"buckets of {tl.bucket:g} s, widened from 1e-09 s: at most {MAX_TIMELINE_BUCKETS} buckets" in out


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": float("nan")}, "threshold must be a finite fraction"),
    ({"threshold": -0.1}, "threshold must be a finite fraction"),
    ({"alpha": 2.0}, "alpha must be a significance level"),
    ({"alpha": float("nan")}, "alpha must be a significance level"),
    ({"alpha": 0.0}, "alpha must be a significance level"),
    ({"alpha": 1e-15}, "alpha must be a significance level of at least 1e-06"),  # was a ZeroDivisionError
])
def test_compare_runs_refuses_nan_and_out_of_range(tmp_path, kwargs, match):
    a = load_results(_timed_history().write(tmp_path / "a.wdmr"))
    b = load_results(_timed_history().write(tmp_path / "b.wdmr"))
    with pytest.raises(CompareError, match=match):
        compare_runs([a, b], **kwargs)
    assert compare_runs([a, b]).runs  # the same runs with the defaults compare


@pytest.mark.parametrize("kwargs, match", [
    ({"settle": float("nan")}, "settle must be"),
    ({"settle": float("inf")}, "settle must be"),
    ({"timeout": float("nan")}, "timeout must be"),
    ({"timeout": float("inf")}, "timeout must be"),
])
def test_replay_trace_refuses_nan_before_sending(tmp_path, kwargs, match):
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind="$u")])]])
    with pytest.raises(ReplayError, match=match):
        replay_trace(trace, tmp_path / "t.wdmr", target=f"http://127.0.0.1:{closed_port()}", **kwargs)
    assert not (tmp_path / "t.wdmr").exists()


# --- one rate: report's req/s is the send window's (final read and skipped requests outside) ----


def _trace_with_skips(path, n: int) -> None:
    """n sessions: create a user (ok) and an order for a user that does not exist (4xx), so the
    session's find_order of that order is skipped; the final read then reads every user back."""
    write_trace(path, [[(0.0, [step("create_user", [], bind=f"$s{i}.user"),
                                step("create_order", [f"nouser{i}"], bind=f"$s{i}.order", expect="fail"),
                                step("find_order", [f"$s{i}.order"])]) for i in range(n)]])


def test_report_rate_is_the_send_window_rate_without_skipped_requests(shop, tmp_path):
    n = 40
    _trace_with_skips(tmp_path / "t.wdmt", n)
    summary = replay_trace(tmp_path / "t.wdmt", tmp_path / "t.wdmr", target=shop.target, speed=None)
    r = load_results(tmp_path / "t.wdmr", with_args=True)
    c = r.cols
    skipped = int((c["outcome"] == SKIPPED).sum())
    assert skipped == n and r.n == 3 * n and r.final is not None  # the final read ran after the window
    window = send_window(c["sent"], c["done"], c["outcome"])
    assert run_window(r) == window
    expected = run_rate(r.n - skipped, window)
    report = build_report(r)
    s = report.stats
    assert s.overall.rate == pytest.approx(expected, abs=1e-3)
    assert s.overall.rate < r.n / (window[1] - window[0])  # skipped rows are not counted
    assert s.span == pytest.approx(window[1] - window[0], abs=1e-6)
    assert s.span < r.trailer["wall"]  # the wall clock includes the final read; the window does not
    for op, sent in (("create_user", n), ("create_order", n)):
        assert s.by_op[op].rate == pytest.approx(run_rate(sent, window), abs=1e-3)
    assert s.by_op["find_order"].rate is None or s.by_op["find_order"].rate == 0.0
    text = render_text(report)
    assert "speed max" in text and f"{s.overall.rate:.1f} req/s over" in text
    assert summary.sent == r.n - skipped


def test_replay_summary_rate_equals_report_rate(shop, tmp_path):
    _trace_with_skips(tmp_path / "t.wdmt", 40)
    summary = replay_trace(tmp_path / "t.wdmt", tmp_path / "t.wdmr", target=shop.target, speed=None)
    report = build_report(load_results(tmp_path / "t.wdmr"))
    assert summary.rate == pytest.approx(report.stats.overall.rate, rel=1e-6, abs=1e-3)


def test_finite_refuses_what_floatrange_lets_through():
    t = Finite(0, 1)
    assert t.convert("0.5", None, None) == 0.5
    for v in ("nan", "inf", "-inf", "2", "-0.1"):
        with pytest.raises(click.BadParameter):
            t.convert(v, None, None)
    assert math.isnan(click.FloatRange(0, 1).convert("nan", None, None))  # why Finite exists


@pytest.mark.parametrize("url, problem", [
    ("http://127.0.0.1:99999", "its port must be a number in 1-65535"),
    ("http://127.0.0.1:0", "its port must be a number in 1-65535"),
    ("http://127.0.0.1:http", "its port must be a number in 1-65535"),
    ("http://:8000", "it has no host"),
    ("localhost:8000", "it must start with http:// or https://"),
    ("ftp://localhost", "it must start with http:// or https://"),
    ("http://[::1", "Invalid IPv6 URL"),
    (None, "it is not a string"),
])
def test_every_target_url_is_checked_in_one_place(url, problem, tmp_path):
    from wdmreplay.errors import ApiError
    from wdmreplay.targets import Target, load_urls

    good = "http://127.0.0.1:8000"
    with pytest.raises(ApiError, match=f"^bad base URL {re.escape(repr(url))}: {re.escape(problem)}$"):
        Target(good, url, good)  # type: ignore[arg-type]
    if url is not None:
        with pytest.raises(ApiError, match=re.escape(f"urls.json: PAYMENT_URL: bad base URL {url!r}: {problem}")):
            (tmp_path / "urls.json").write_text(json.dumps({"ORDER_URL": good, "PAYMENT_URL": url, "STOCK_URL": good}))
            load_urls(tmp_path / "urls.json")
    assert Target.single("https://shop.example:443/").stock_url == "https://shop.example:443"
