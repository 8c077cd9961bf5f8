"""``replay --ui``: the live figures (:mod:`wdmreplay.replayer.live`) and the live view as a user runs it.

The figures are checked without a clock against the replay's own tally (same chunks in, same
p50/p99 out); the command runs as a subprocess against the reference shop — a right one, and one
that answers 5xx to a share of requests — polling ``/stats.json`` during and after the run.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from replay_support import write_trace
from wdmreplay.operations import OP_NAMES
from wdmreplay.replayer.live import LiveStats
from wdmreplay.targets import parse_listen
from wdmreplay.replayer.summary import Tally, build_summary
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import CONN_ERROR, ERROR, FAIL, OK, OUTCOMES, SKIPPED, TIMEOUT

WDM = [sys.executable, "-m", "wdmreplay"]
URL_LINE = re.compile(r"live view: (http://\S+/) ")


# --- pure: parsing and the figures ----------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:8089", ("127.0.0.1", 8089)),
    ("localhost:0", ("localhost", 0)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("[::1]:9000", ("::1", 9000)),
])
def test_parse_listen_accepts_host_port(value, expected):
    assert parse_listen(value, "--ui") == expected


@pytest.mark.parametrize("value", ["8089", "stress.wdmt", ":8089", "host:", "host:http", "host:70000", "host:-1"])
def test_parse_listen_refuses_what_is_not_host_port(value):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(value, "--ui")


def _chunk(outcome, intended, sent, done, op, status):
    return {"outcome": np.asarray(outcome, "<u1").tobytes(), "intended": np.asarray(intended, "<f8").tobytes(),
            "sent": np.asarray(sent, "<f8").tobytes(), "done": np.asarray(done, "<f8").tobytes(),
            "op": np.asarray(op, "<u1").tobytes(), "status": np.asarray(status, "<u2").tobytes()}


def _random_chunks(seed, n_chunks=6, rows=200):
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_chunks):
        outcome = rng.choice([OK, OK, OK, FAIL, ERROR, TIMEOUT, CONN_ERROR, SKIPPED], rows)
        intended = np.sort(rng.uniform(c * 0.5, c * 0.5 + 3.0, rows))
        sent = intended + rng.exponential(0.001, rows)
        done = sent + rng.lognormal(-5, 1, rows)
        skipped = outcome == SKIPPED
        sent[skipped] = np.nan
        done[skipped] = np.nan
        status = np.select([outcome == OK, outcome == FAIL, outcome == ERROR], [200, 400, 500], 0)
        out.append(_chunk(outcome, intended, sent, done, rng.integers(0, len(OP_NAMES), rows), status))
    return out


def test_live_figures_equal_the_replay_summary_for_the_same_chunks():
    chunks = _random_chunks(7)
    stats, tally = LiveStats(total_requests=2000), Tally()
    for c in chunks:
        stats.add_chunk(c)
        tally.add_chunk(c)
    s = stats.snapshot()
    summary = build_summary("x.wdmr", tally, duration=None, kept_requests=2000, speed=None, wall=1.0, complete=True,
                            reason=None, probes=0, bound=0, final_reads=0, dialect="2024")
    oc = summary.outcomes
    assert s["requests_done"] == summary.requests == 1200 and s["requests_total"] == 2000
    assert (s["ok"], s["refused"], s["skipped"]) == (oc["ok"], oc["fail"], oc["skipped"])
    assert s["unanswered"] == oc["error"] + oc["timeout"] + oc["conn_error"] > 0
    assert s["rate"] == pytest.approx(summary.rate)
    assert s["p50_ms"] == pytest.approx(summary.p50 * 1000, abs=5e-4)  # rounded to µs
    assert s["p99_ms"] == pytest.approx(summary.p99 * 1000, abs=5e-4)
    # Every answered or unanswered request is in exactly one second of the series, by outcome class.
    series = s["series"]
    assert series["step_s"] == 1
    for key, n in (("ok", oc["ok"]), ("refused", oc["fail"]), ("unanswered", s["unanswered"])):
        assert sum(series[key]) == pytest.approx(n)
    # The per-operation table adds up to the totals, outcome by outcome.
    for key, outcome in (("ok", "ok"), ("refused", "fail"), ("error_5xx", "error"), ("timeout", "timeout"),
                         ("conn_error", "conn_error"), ("skipped", "skipped")):
        assert sum(r[key] for r in s["by_op"]) == oc[outcome]


def test_series_percentiles_follow_each_second():
    stats = LiveStats()
    # second 0: 100 answers of 2 ms; second 1: 100 answers of 200 ms (a slowdown must show as one).
    n = 100
    stats.add_chunk(_chunk([OK] * n, [0.1] * n, [0.1] * n, [0.102] * n, [0] * n, [200] * n))
    stats.add_chunk(_chunk([OK] * n, [1.0] * n, [1.0] * n, [1.2] * n, [0] * n, [200] * n))
    series = stats.snapshot()["series"]
    assert series["t"] == [0, 1] and series["ok"] == [100, 100]
    assert series["p50_ms"][0] == pytest.approx(2, rel=0.1) and series["p99_ms"][0] == pytest.approx(2, rel=0.1)
    assert series["p50_ms"][1] == pytest.approx(200, rel=0.1)


def test_a_second_still_filling_is_left_out_until_the_run_ends():
    stats = LiveStats()
    stats.add_event(5.0, "phase_start", {"phase": 0, "name": "p"})  # the run's clock started 5 s ago
    t = np.arange(0, 5, 0.25)  # four answers in each of seconds 0..4
    stats.add_chunk(_chunk([OK] * len(t), t, t, t + 0.01, [0] * len(t), [200] * len(t)))
    running = stats.snapshot()
    assert running["series"]["t"] == [0, 1, 2, 3] and running["series"]["ok"] == [4, 4, 4, 4]
    assert running["ok"] == 20  # the totals are not held back
    stats.finish(build_summary("r.wdmr", Tally(), duration=None, kept_requests=0, speed=None, wall=5.1, complete=True,
                               reason=None, probes=0, bound=0, final_reads=0, dialect="2024"))
    done = stats.snapshot()
    assert done["series"]["t"] == [0, 1, 2, 3, 4] and done["stage"] == "done"
    assert done["result"] == {"path": "r.wdmr", "complete": True, "reason": None, "wall_s": 5.1}


def test_long_runs_are_merged_to_a_bounded_number_of_points():
    stats = LiveStats()
    t = np.arange(0, 1000, 1.0) + 0.5
    stats.add_chunk(_chunk([OK] * len(t), t, t, t + 0.01, [0] * len(t), [200] * len(t)))
    series = stats.snapshot()["series"]
    assert len(series["t"]) <= 300 and series["step_s"] == 4
    assert series["ok"][0] == 1.0  # a rate per second, not a count per point
    assert sum(v * series["step_s"] for v in series["ok"]) == pytest.approx(1000)


def test_fault_windows_open_and_close_with_the_events():
    stats = LiveStats()
    stats.add_event(0.0, "phase_start", {"phase": 0, "name": "load"})
    stats.add_event(1.5, "fault_start", {"name": "kill-stock", "command": "x", "duration": 2})
    assert stats.snapshot()["faults"] == [{"name": "kill-stock", "start": 1.5, "end": None}]
    stats.add_event(1.5, "fault", {"name": "kill-stock", "end": 3.6})
    s = stats.snapshot()
    assert s["faults"] == [{"name": "kill-stock", "start": 1.5, "end": 3.6}] and s["phase"] == "load"
    stats.add_event(4.0, "final_read", {})
    assert stats.snapshot()["stage"] == "final read"


# --- the command, against the reference shop ------------------------------------------------------


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return json.load(r)


def _start_ui_replay(tmp_path: Path, shop_url: str, *extra: str, sessions: int = 300, gap: float = 0.01):
    """A replay with --ui on port 0 (running in the background) and the live view's URL from its stderr."""
    write_trace(tmp_path / "t.wdmt", [[(i * gap, [step("create_user", [], bind=f"$u{i}"),
                                                  step("add_funds", [f"$u{i}", 5], expect="any")])
                                       for i in range(sessions)]])
    proc = subprocess.Popen([*WDM, "replay", "t.wdmt", "--url", shop_url, "-o", "r.wdmr", *extra],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = URL_LINE.match(line)
    assert m, line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc, m.group(1)


def _poll_until_done(url: str, within: float = 60.0) -> list[dict]:
    seen: list[dict] = []
    end = time.monotonic() + within
    while time.monotonic() < end:
        s = _get_json(url + "stats.json")
        seen.append(s)
        if s["result"] is not None:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the live view never showed the end of the run: {seen[-1:]}")


def _assert_final_equals_results(final: dict, results_path: Path) -> None:
    r = load_results(results_path)
    counts = np.bincount(r.cols["outcome"], minlength=len(OUTCOMES))
    oc = dict(zip(OUTCOMES, map(int, counts)))
    assert final["requests_done"] == final["requests_total"] == r.n
    assert (final["ok"], final["refused"], final["skipped"]) == (oc["ok"], oc["fail"], oc["skipped"])
    assert final["unanswered"] == oc["error"] + oc["timeout"] + oc["conn_error"]
    assert final["result"]["path"] == "r.wdmr" and final["result"]["complete"] is True
    assert final["stage"] == "done"


def test_live_view_grows_during_the_run_and_ends_with_the_results_counts(shop, tmp_path):
    proc, url = _start_ui_replay(tmp_path, shop.url, "--ui", "127.0.0.1:0")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            page = r.read().decode()
        assert "<svg" in page and "stats.json" in page and "http" not in page.split("<script>")[1]
        seen = _poll_until_done(url)
        during = [s for s in seen if s["result"] is None and 0 < s["requests_done"] < s["requests_total"]]
        assert len(during) >= 3, [s["requests_done"] for s in seen]  # figures seen mid-run, more than once
        done = [s["requests_done"] for s in seen]
        assert done == sorted(done) and done[0] < done[-1]
        assert all(s["requests_total"] == 600 for s in seen if s["stage"] != "starting")
        assert during[-1]["elapsed_s"] > during[0]["elapsed_s"] > 0 and during[-1]["rate"] > 0
        time.sleep(0.5)
        final = _get_json(url + "stats.json")  # the page stays up after the run, figures frozen
        assert final["elapsed_s"] == seen[-1]["elapsed_s"]
        _assert_final_equals_results(final, tmp_path / "r.wdmr")
        assert final["unanswered"] == 0 and final["ok"] == 600
        assert final["p50_ms"] > 0 and final["p99_ms"] >= final["p50_ms"]
        assert {r["op"]: r["ok"] for r in final["by_op"]} == {"create_user": 300, "add_funds": 300}
        assert proc.poll() is None  # no --ui-linger: up until Ctrl-C
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "replayed: 600 requests" in out and "stays up until Ctrl-C" in err and "Traceback" not in err
    with pytest.raises(OSError):
        _get_json(url + "stats.json")  # the port is released


def test_live_view_shows_unanswered_requests_by_operation_of_a_failing_shop(shop_factory, tmp_path):
    # Two worker processes: the figures of both reach the one view.
    bad = shop_factory(error_rate=0.3, seed=5)
    proc, url = _start_ui_replay(tmp_path, bad.url, "--ui=127.0.0.1:0", "--ui-linger", "30", "--workers", "2",
                                 sessions=100, gap=0.01)
    try:
        seen = _poll_until_done(url)
        final = seen[-1]
        _assert_final_equals_results(final, tmp_path / "r.wdmr")
        assert final["unanswered"] > 0
        by_op = {r["op"]: r for r in final["by_op"]}
        assert by_op["create_user"]["error_5xx"] > 0
        assert sum(r["error_5xx"] for r in final["by_op"]) == final["outcomes"]["error"]
        assert sum(final["series"]["unanswered"]) == final["unanswered"]
    finally:
        proc.kill()
        proc.wait()


def test_ui_linger_ends_the_view_by_itself(shop, tmp_path):
    proc, url = _start_ui_replay(tmp_path, shop.url, "--ui", "127.0.0.1:0", "--ui-linger", "0.5",
                                 sessions=20)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stays up for 0.5 s" in err and "replayed: 40 requests" in out


def test_fault_windows_appear_in_the_live_view(shop, tmp_path):
    (tmp_path / "faults.json").write_text(json.dumps(
        {"faults": [{"name": "pause", "at": 0.3, "for": 1.0, "do": "true", "undo": "true"}]}))
    proc, url = _start_ui_replay(tmp_path, shop.url, "--faults", "faults.json", "--ui", "127.0.0.1:0",
                                 "--ui-linger", "30", sessions=200, gap=0.01)
    try:
        seen = _poll_until_done(url)
    finally:
        proc.kill()
        proc.wait()
    windows = [f for s in seen for f in s["faults"]]
    assert any(f["end"] is None for f in windows), "the window was never seen open"
    (last,) = seen[-1]["faults"]
    assert last["name"] == "pause" and last["end"] - last["start"] == pytest.approx(1.0, abs=0.5)
    r = load_results(tmp_path / "r.wdmr")
    (ev,) = [e for e in r.events if e["kind"] == "fault"]
    assert (last["start"], last["end"]) == (ev["at"], ev["end"])


def test_port_in_use_is_one_line_error_and_keeps_the_results_file(shop, tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    (tmp_path / "r.wdmr").write_bytes(b"an earlier run")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        # --force: the earlier file would be replaced by a run; the busy port must stop it first
        p = subprocess.run([*WDM, "replay", "t.wdmt", "--url", shop.url, "-o", "r.wdmr", "--force",
                            "--ui", f"127.0.0.1:{port}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == f"wdm-replay: error: --ui 127.0.0.1:{port}: cannot listen there: the port is in use " \
                       "(choose another: --ui HOST:PORT)\n"
    assert (tmp_path / "r.wdmr").read_bytes() == b"an earlier run"
    assert shop.stats()["by_op"].get("create_user", 0) == 0


@pytest.mark.parametrize("args, message", [
    (["--ui", "nonsense"], "Invalid value for '--ui': HOST:PORT"),
    (["--ui-linger", "3"], "--ui-linger goes with --ui"),
    (["--ui", "127.0.0.1:0", "--ui-linger", "-1"], "Invalid value for '--ui-linger'"),
])
def test_bad_ui_options_are_one_line_errors(shop, tmp_path, args, message):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = subprocess.run([*WDM, "replay", "t.wdmt", "--url", shop.url, *args], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("wdm-replay: error: ") and message in p.stderr and p.stderr.count("\n") == 1
    assert not (tmp_path / "t.wdmr").exists()


def test_help_documents_the_live_view():
    p = subprocess.run([*WDM, "replay", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    assert "--ui [HOST:PORT]" in text and "127.0.0.1:8089" in text and "--ui-linger S" in text
    assert "wdm-replay replay stress.wdmt --ui" in text


def test_ui_alone_listens_on_locusts_port(shop, tmp_path):
    # 127.0.0.1:8089 held here (or already by someone else: the same effect) — the error names the default.
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 8089))
            busy.listen(1)
        except OSError:
            pass
        p = subprocess.run([*WDM, "replay", "t.wdmt", "--url", shop.url, "--ui", "-q"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("wdm-replay: error: --ui 127.0.0.1:8089: cannot listen there") and \
        p.stderr.count("\n") == 1


def test_trace_taken_for_the_address_is_named_in_the_error(shop, tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = subprocess.run([*WDM, "replay", "--ui", "t.wdmt", "--url", shop.url], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "got 't.wdmt'; write --ui=HOST:PORT or put --ui after the trace" in p.stderr
