"""``grade``: four loopback shops (correct, --inject lost-update, --latency 20, a dead port) graded on the
same small traces, the leaderboard's three files, resume and --force, refused inputs, team commands,
and the leaderboard page in headless Chromium.

Bounded: a 2-second stress trace at 30 sessions/s, a 60-order consistency trace, ``--capacity-max 16``
with two bisection steps, ``--concurrency 8`` (the slow shop's 20 ms then caps it near 400 requests/s).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser_support import external_urls, horizontal_overflow, open_page
from replay_support import closed_port
from wdmreplay.grade import GradeError, load_teams, parse_suites
from wdmreplay.workloads import generate
from wdmreplay.traces import trace_digest

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
FAST = ["--slo", "p99<300ms,unanswered<1%", "--capacity-max", "16", "--bisect", "2", "--concurrency", "8",
        "--no-html"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("grade-traces")
    generate("stress", d / "stress.wdmt", seed=0, rate=30.0, duration=2.0)
    generate("consistency", d / "consistency.wdmt", seed=0, items=5, stock=10, users=50, credit=5, orders=60)
    return d


def grade(toml: Path, outdir: Path, traces: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdmreplay", "grade", str(toml), "-d", str(outdir),
                           "--consistency-trace", str(traces / "consistency.wdmt"),
                           "--stress-trace", str(traces / "stress.wdmt"), *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def four_shops(tmp_path_factory, traces):
    """The issue's four teams graded once (module scope: the other tests read the same session)."""
    from wdmreplay.shop import ShopThread

    d = tmp_path_factory.mktemp("grade-four")
    with ShopThread() as ref, ShopThread(inject="lost-update") as racy, ShopThread(latency_ms=20) as slow:
        toml = d / "teams.toml"
        # the file order is not the rank order: the board must sort
        toml.write_text(f'[teams.dead]\nurl = "http://127.0.0.1:{closed_port()}"\n'
                        f'[teams.slow]\nurl = "{slow.url}"\n'
                        f'[teams.racy]\nurl = "{racy.url}"\n'
                        f'[teams.correct]\nurl = "{ref.url}"\n')
        out = d / "grading"
        first = grade(toml, out, traces, *FAST[:-1])  # with HTML reports per run
        second = grade(toml, out, traces, *FAST, "--json")  # resume: nothing to grade
        yield {"toml": toml, "out": out, "first": first, "second": second, "urls": (ref.url, racy.url, slow.url)}


def test_four_shops_ranked_and_marked(four_shops):
    r = four_shops["first"]
    assert r.returncode == 0, r.stderr[-3000:]
    board = json.loads((four_shops["out"] / "leaderboard.json").read_text())
    teams = {t["name"]: t for t in board["teams"]}
    assert [t["name"] for t in board["teams"]] == ["correct", "slow", "racy", "dead"], r.stdout
    assert [t["rank"] for t in board["teams"]] == [1, 2, 3, 4]
    assert teams["correct"]["status"] == "ok" and teams["slow"]["status"] == "ok"
    assert teams["racy"]["status"] == "not_clean" and not teams["racy"]["ranked"]
    assert teams["dead"]["status"] == "unreachable" and "cannot reach" in teams["dead"]["error"]
    # the correct shop: CLEAN, no anomalies, a higher capacity than the slow one
    assert teams["correct"]["consistency"] == "CLEAN" and teams["correct"]["anomaly_count"] == 0
    assert teams["slow"]["consistency"] == "CLEAN"
    assert teams["slow"]["capacity"]["rate"] < teams["correct"]["capacity"]["rate"]
    assert teams["slow"]["stress"]["p50_ms"] >= 20.0 > teams["correct"]["stress"]["p50_ms"]
    # the lost-update shop: NOT CLEAN with its anomalies, and no capacity for a wrong shop
    assert teams["racy"]["consistency"] == "NOT CLEAN"
    assert teams["racy"]["anomalies"].get("lost_update", 0) > 0
    assert teams["racy"]["capacity"]["rate"] is None and "NOT CLEAN" in teams["racy"]["capacity"]["note"]
    assert teams["racy"]["why"].startswith("consistency: ") and "lost_update" in teams["racy"]["why"]
    # fairness: the traces every team got, the tool, the machine, the load at each team's runs
    fair = board["fairness"]
    assert fair["traces"]["stress"] == trace_digest(four_shops["out"] / "traces" / "stress.wdmt")
    assert fair["traces"]["consistency"] == trace_digest(four_shops["out"] / "traces" / "consistency.wdmt")
    assert fair["tool"] and fair["tool"][0].startswith("wdm-replay ") and fair["machines"][0]["cpus"] >= 1
    assert set(fair["load"]) == set(teams) and all(v["started"] <= v["ended"] for v in fair["load"].values())
    assert "come last" in board["rule"] and "capacity" in board["rule"]
    assert r.stdout.splitlines()[1].split()[:3] == ["1", "correct", "OK"]


def test_every_run_kept_and_linked(four_shops):
    out = four_shops["out"]
    board = json.loads((out / "leaderboard.json").read_text())
    for t in board["teams"]:
        for suite, link in t["links"].items():
            assert (out / link).is_file(), (t["name"], suite, link)
    correct = out / "teams" / "correct"
    assert (correct / "consistency.wdmr").is_file() and (correct / "stress.wdmr").is_file()
    assert (correct / "consistency-report.html").read_text().startswith("<!DOCTYPE html>")
    cap = json.loads((correct / "capacity" / "capacity.json").read_text())
    assert len(list((correct / "capacity").glob("step-*.wdmr"))) == len(cap["steps"]) >= 2
    assert not (out / "teams" / "dead" / "consistency.wdmr").exists()


def test_csv_has_one_row_per_team_in_rank_order(four_shops):
    rows = list(csv.DictReader(io.StringIO((four_shops["out"] / "leaderboard.csv").read_text())))
    assert [(r["rank"], r["name"], r["status"]) for r in rows] == [
        ("1", "correct", "ok"), ("2", "slow", "ok"), ("3", "racy", "not_clean"), ("4", "dead", "unreachable")]
    assert "lost_update=" in rows[2]["anomalies"] and float(rows[0]["capacity_rate"]) > float(rows[1]["capacity_rate"])


def test_rerun_skips_graded_teams(four_shops):
    r = four_shops["second"]
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("already graded") == 4 and "--force regrades" in r.stderr
    doc = json.loads(r.stdout)
    assert [t["name"] for t in doc["teams"]] == ["correct", "slow", "racy", "dead"]


def test_force_regrades_and_other_traces_are_refused(four_shops, traces, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(four_shops["out"], out)
    other = tmp_path / "other.wdmt"
    generate("stress", other, seed=5, rate=30.0, duration=2.0)
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "grade", str(four_shops["toml"]), "-d", str(out),
                        "--consistency-trace", str(traces / "consistency.wdmt"), "--stress-trace", str(other)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds another stress trace" in r.stderr
    # a team record from another trace (a hand-copied directory): the board refuses to mix them
    rec_path = out / "teams" / "slow" / "team.json"
    rec = json.loads(rec_path.read_text())
    rec["traces"]["stress"] = "sha256:" + "0" * 64
    rec_path.write_text(json.dumps(rec))
    r = grade(four_shops["toml"], out, traces, *FAST)
    assert r.returncode == 2 and "were graded on different stress traces" in r.stderr and "--force" in r.stderr


def test_force_regrades_a_team(traces, shop, tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text(f'[teams.only]\nurl = "{shop.url}"\n')
    out = tmp_path / "g"
    r = grade(toml, out, traces, "--suite", "stress", *FAST)
    assert r.returncode == 0, r.stderr
    first = json.loads((out / "teams" / "only" / "team.json").read_text())
    r = grade(toml, out, traces, "--suite", "stress", "--force", *FAST)
    assert r.returncode == 0 and "already graded" not in r.stderr
    again = json.loads((out / "teams" / "only" / "team.json").read_text())
    assert again["started"] > first["started"] and again["status"] == "ok"
    assert list(again["runs"]) == ["stress"]


def test_team_commands_run_and_a_failing_reset_marks_the_team_crashed(traces, shop, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    toml = tmp_path / "t.toml"
    toml.write_text(f'[teams.good]\nurl = "{shop.url}"\nbefore = "echo before $WDM_GRADE_TEAM >> marks/log"\n'
                    f'reset = "echo reset $WDM_GRADE_STEP >> marks/log"\nafter = "echo after >> marks/log"\n'
                    f'[teams.broken]\nurl = "{shop.url}"\nreset = "echo no database >&2; exit 3"\n'
                    f'after = "echo after-broken >> marks/log"\n')
    out = tmp_path / "g"
    r = grade(toml, out, traces, "--suite", "consistency,stress", *FAST)
    assert r.returncode == 0, r.stderr
    log = (marks / "log").read_text().splitlines()
    assert log == ["before good", "reset reset before consistency", "reset reset before stress", "after",
                   "after-broken"]
    board = json.loads((out / "leaderboard.json").read_text())
    assert [(t["name"], t["status"]) for t in board["teams"]] == [("good", "ok"), ("broken", "error")]
    err = board["teams"][1]["error"]
    assert "reset before consistency command exited 3" in err and "no database" in err
    assert "CRASHED" in (out / "leaderboard.html").read_text()


@pytest.mark.parametrize("text, message", [
    ("[teams.a]\n", "give exactly one of url"),
    ('[teams.a]\nurl = "http://127.0.0.1:1"\nurls = "u.json"\n', "give exactly one of url"),
    ('[teams.a]\nurl = "ftp://x"\n', "[teams.a]"),
    ('[teams.a]\nurl = "http://127.0.0.1:1"\ncolour = "red"\n', "unknown key(s) colour"),
    ('[teams.a]\nurl = "http://127.0.0.1:1"\nfaults = "nope.json"\n', "faults file 'nope.json' not found"),
    # A faults file that is there but no schedule: refused when TEAMS.toml is read, not once the
    # team's other suites have run (then the team was marked CRASHED and grade exited 0).
    ('[teams.a]\nurl = "http://127.0.0.1:1"\nfaults = "garbage.json"\n', "garbage.json: not valid JSON"),
    ('[teams.a]\nurl = "http://127.0.0.1:1"\nfaults = "empty.json"\n', "empty.json: the schedule has no faults"),
    ('[teams."a b"]\nurl = "http://127.0.0.1:1"\n', "a team name is letters"),
    ('[teams.a]\nurl = 5\n', "url must be a non-empty string"),
    ("teams = 3\n", "no teams"),
    ("[team.a]\nurl = 'http://x:1'\n", "unknown top-level key(s) team"),
    ("[teams.a\n", "not valid TOML"),
    (b'[teams.a]\nurl = "http://x\xff"\n', "not valid TOML"),  # not UTF-8: once a traceback
])
def test_bad_teams_toml_is_one_line_exit_2(tmp_path, text, message):
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "empty.json").write_text('{"faults": []}')
    toml = tmp_path / "teams.toml"
    toml.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(GradeError) as e:
        load_teams(toml)
    assert message in str(e.value) and "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "grade", str(toml), "-d", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_urls_json_relative_to_the_toml_and_suites(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "urls.json").write_text(json.dumps({k: "http://127.0.0.1:9" for k in
                                                          ("ORDER_URL", "PAYMENT_URL", "STOCK_URL")}))
    toml = tmp_path / "teams.toml"
    toml.write_text('[teams.b]\nurls = "b/urls.json"\n')
    (team,) = load_teams(toml)
    assert team.target.base("orders") == "http://127.0.0.1:9" and team.where == "b/urls.json"
    assert parse_suites("faults, consistency") == ("consistency", "faults")
    with pytest.raises(GradeError, match="unknown suite speed"):
        parse_suites("consistency,speed")


def test_grade_help_has_examples():
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "grade", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "Examples:" in r.stdout and "[teams.alpha]" in r.stdout


def test_leaderboard_page_in_chromium(four_shops, browser, tmp_path):
    # WDM_SCREENSHOTS=1 refreshes the README's picture; otherwise a test run leaves the work tree alone.
    shot = DOCS_IMG / "leaderboard.png" if os.environ.get("WDM_SCREENSHOTS") else tmp_path / "leaderboard.png"
    page = open_page(browser, four_shops["out"] / "leaderboard.html", screenshot=shot)
    assert page.locator("#banner").count() == 1 and "1. correct" in page.locator("#banner").inner_text()
    assert page.locator("#board tbody tr").count() == 4
    assert horizontal_overflow(page) == 0
    assert external_urls(page) == []
    names = lambda: page.eval_on_selector_all("#board tbody tr", "rows => rows.map(r => r.dataset.team)")
    assert names() == ["correct", "slow", "racy", "dead"]
    assert page.locator("tr[data-team=racy] .status").inner_text() == "NOT CLEAN"
    assert "lost_update" in page.locator("tr[data-team=racy]").inner_text()
    assert page.locator("tr[data-team=dead] .status").inner_text() == "UNREACHABLE"
    assert "Rank rule" in page.locator(".rule").inner_text()
    # sortable: p50 ascending puts the slow shop (20 ms a request) after the fast ones; unmeasured last
    page.locator("#board th", has_text="p50 ms").click()
    order = names()
    assert order.index("slow") > order.index("correct") and order[-1] == "dead"
    page.locator("#board th", has_text="p50 ms").click()  # descending: slow first, unmeasured still last
    assert names()[0] == "slow" and names()[-1] == "dead"
    # a cell links to its run's report, and the link resolves
    href = page.locator("tr[data-team=correct] td >> a").first.get_attribute("href")
    assert (four_shops["out"] / href).is_file()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_faults_suite_availability_and_recovery(tmp_path):
    """A team's own fault schedule (kill -9, restart) on its shop: the durable shop keeps its data and
    recovers (ok, availability and recovery time on the board); an in-memory shop loses everything it
    acknowledged: what it created with a 2xx now answers "not found" (lost_entity: NOT CLEAN, marked,
    last whatever its latency)."""
    from fault_support import ProcessShop, write_schedule
    from wdmreplay.shop.processes import ShopProcess

    trace = tmp_path / "stress.wdmt"
    generate("stress", trace, seed=2, rate=15.0, duration=5.0)
    (tmp_path / "durable-data").mkdir()
    durable = ShopProcess(str(tmp_path / "durable-data"))
    volatile = ProcessShop(tmp_path)
    fault = {"name": "kill-shop", "at": 1.5, "for": 1.0, "timeout": 60}
    write_schedule(tmp_path / "durable.json", [{**fault, "do": durable.kill_command("shop"),
                                                "undo": durable.restart_command("shop")}])
    write_schedule(tmp_path / "volatile.json", [{**fault, "do": volatile.kill_command(),
                                                 "undo": volatile.start_command()}])
    with durable:
        volatile.start()
        try:
            toml = tmp_path / "teams.toml"
            toml.write_text(f'[teams.volatile]\nurl = "{volatile.url}"\nfaults = "volatile.json"\n'
                            f'[teams.durable]\nurl = "{durable.url()}"\nfaults = "durable.json"\n')
            r = subprocess.run([sys.executable, "-m", "wdmreplay", "grade", str(toml), "-d", str(tmp_path / "g"),
                                "--stress-trace", str(trace), "--suite", "stress,faults", "--no-html",
                                "--max-recovery", "5"], capture_output=True, text=True, timeout=300)
        finally:
            volatile.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    board = json.loads((tmp_path / "g" / "leaderboard.json").read_text())
    teams = {t["name"]: t for t in board["teams"]}
    assert [t["name"] for t in board["teams"]] == ["durable", "volatile"], r.stdout
    d, v = teams["durable"], teams["volatile"]
    assert d["status"] == "ok" and d["faults"]["verdict"] == "CLEAN", d
    # the kill really hit (some requests unanswered), and the shop came back within the bound
    assert 0.0 < d["faults"]["availability"] < 1.0 and d["stress"]["verdict"] == "CLEAN"
    assert d["faults"]["recovery_s"] is not None and 0 <= d["faults"]["recovery_s"] <= 5.0
    assert v["status"] == "not_clean" and v["faults"]["verdict"] == "NOT CLEAN" and not v["ranked"]
    assert v["anomalies"] == {}  # the consistency suite did not run: the column is the consistency run's
    assert v["stress"]["verdict"] == "CLEAN" and v["faults"]["availability"] < 1.0
    faults_run = json.loads((tmp_path / "g" / "teams" / "volatile" / "team.json").read_text())["runs"]["faults"]
    assert faults_run["anomalies"].get("lost_entity", 0) > 0
    assert v["why"].startswith("faults: consistency:") and "lost_entity" in v["why"] and d["why"] is None
    assert (tmp_path / "g" / d["links"]["faults"]).is_file()
    html = (tmp_path / "g" / "leaderboard.html").read_text()
    assert f"{100 * d['faults']['availability']:.2f}%" in html


def _record(name, status, capacity=None, p99=None, digest="sha256:aa"):
    from wdmreplay.team_record import TEAM_SCHEMA, TeamRecord

    runs = {"stress": {"verdict": "CLEAN", "p50_ms": 1.0, "p99_ms": p99, "report": "stress-report.txt"}}
    if capacity is not None:
        runs["capacity"] = {"rate": capacity, "speed": capacity / 100, "outcome": "found", "verdict": "CLEAN"}
    return TeamRecord.from_dict({
        "schema": TEAM_SCHEMA, "name": name, "status": status, "error": None, "runs": runs,
        "traces": {"stress": digest}, "suites": ["stress", "capacity"], "tool": "wdm-replay 0.1.0",
        "machine": {"host": "h"}, "load": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "started": 1.0, "ended": 2.0, "target": "http://x"})


def test_rank_rule():
    from wdmreplay.grade import GradeConfig, build_leaderboard

    cfg = GradeConfig(Path("."), ("stress", "capacity"), {}, {})
    records = [_record("p99-only-fast", "ok", p99=5.0), _record("cap-low", "ok", capacity=100.0, p99=1.0),
               _record("unclear-fast", "inconclusive", capacity=900.0), _record("down", "unreachable"),
               _record("wrong-fast", "not_clean", capacity=5000.0), _record("cap-high", "ok", capacity=300.0, p99=50.0),
               _record("p99-only-slow", "ok", p99=9.0), _record("crashed", "error")]
    board = build_leaderboard(records, cfg)
    # measured capacity first (higher first), then p99 at the fixed rate (lower first); inconclusive after
    # every ok team; then NOT CLEAN, crashed, unreachable — whatever their figures
    assert [r.name for r in board.rows] == ["cap-high", "cap-low", "p99-only-fast", "p99-only-slow", "unclear-fast",
                                            "wrong-fast", "crashed", "down"]
    assert [r.rank for r in board.rows] == list(range(1, 9))
    assert [r.ranked for r in board.rows] == [True] * 5 + [False] * 3
    # the record round-trips through its JSON form; another version's record is not read (regraded)
    from wdmreplay.team_record import SuiteRun, TeamRecord

    assert TeamRecord.from_dict(json.loads(json.dumps(records[0].as_dict()))) == records[0]
    with pytest.raises(ValueError, match="unknown field"):
        SuiteRun.from_dict({"verdict": "CLEAN", "latency": 3})
    records[1] = _record("cap-low", "ok", capacity=100.0, p99=1.0, digest="sha256:bb")
    with pytest.raises(GradeError, match="cap-low were graded on different stress traces"):
        build_leaderboard(records, cfg)


def test_parallel_and_resume_after_a_crash(traces, shop_factory, tmp_path):
    a, b = shop_factory(), shop_factory(latency_ms=5)
    toml = tmp_path / "t.toml"
    toml.write_text(f'[teams.a]\nurl = "{a.url}"\n[teams.b]\nurl = "{b.url}"\n')
    out = tmp_path / "g"
    r = grade(toml, out, traces, "--suite", "stress", "--parallel", "2", *FAST)
    assert r.returncode == 0, r.stderr
    first = {n: json.loads((out / "teams" / n / "team.json").read_text()) for n in ("a", "b")}
    # both ran at once: their runs overlap in time
    assert first["a"]["started"] < first["b"]["ended"] and first["b"]["started"] < first["a"]["ended"]
    assert [t["name"] for t in json.loads((out / "leaderboard.json").read_text())["teams"]] == ["a", "b"]
    # the grader died while grading b: its directory has files but no team.json
    (out / "teams" / "b" / "team.json").unlink()
    (out / "teams" / "b" / "stray.tmp").write_text("half a run")
    r = grade(toml, out, traces, "--suite", "stress", *FAST)
    assert r.returncode == 0, r.stderr
    assert "a: already graded (ok), skipped" in r.stderr and "b: already graded" not in r.stderr
    assert json.loads((out / "teams" / "a" / "team.json").read_text()) == first["a"]
    again = json.loads((out / "teams" / "b" / "team.json").read_text())
    assert again["started"] > first["b"]["started"] and not (out / "teams" / "b" / "stray.tmp").exists()


def test_parallel_grading_stops_on_ctrl_c_with_the_runs_in_flight(shop, tmp_path):
    # With --parallel, the teams' replays run in threads, which signals never reach: Ctrl-C waited
    # until every team in flight had run all its suites (a 60 s stress run here; with capacity,
    # minutes). Now the replays in flight stop as Ctrl-C stops one, and are kept partial.
    import signal
    import time

    slow = tmp_path / "slow.wdmt"
    generate("stress", slow, seed=0, rate=2.0, duration=60.0)
    toml = tmp_path / "t.toml"
    toml.write_text(f'[teams.a]\nurl = "{shop.url}"\n[teams.b]\nurl = "{shop.url}"\n')
    out = tmp_path / "g"
    proc = subprocess.Popen([sys.executable, "-m", "wdmreplay", "grade", str(toml), "-d", str(out),
                             "--stress-trace", str(slow), "--suite", "stress", "--parallel", "2", "-q", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [out / "teams" / n / "stress.wdmr" for n in ("a", "b")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{r}.part").exists() for r in runs):  # both teams' replays under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)  # not the 60 s the runs would take
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"wdm-replay: error: interrupted with teams in flight; a rerun resumes: "
                                            f"graded teams are kept in {out}, the others are graded then")
    from wdmreplay.traces import load_results

    for r in runs:
        assert load_results(r).trailer_record.complete is False
    assert not (out / "teams" / "a" / "team.json").exists() and not (out / "leaderboard.json").exists()


def _processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds ``marker`` (read from /proc: no pgrep needed)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _grade_until(toml: Path, out: Path, traces: Path, marker: str, count: int, *extra: str):
    """Start grade; return it once ``count`` processes hold ``marker`` (the teams' commands are running)."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "wdmreplay", "grade", str(toml), "-d", str(out),
                             "--consistency-trace", str(traces / "consistency.wdmt"),
                             "--stress-trace", str(traces / "stress.wdmt"), "--suite", "stress", "-q", *extra, *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_processes_with(marker)) < count:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_ctrl_c_stops_the_teams_shell_commands_and_their_children(traces, shop, tmp_path, parallel):
    # A team's reset command runs in a process group of its own. Ctrl-C (or SIGTERM) used to leave it
    # running: with --parallel the pool's threads waited for it (up to its 600 s timeout), and
    # serially the shell was killed but what it started (here `sleep`) ran on, orphaned. Now the
    # group is stopped, the team is graded again on a rerun, and its `after` cleanup still runs.
    import signal

    marker = f"sleep 61.{os.getpid() % 1000:03d}{parallel}"
    toml = tmp_path / "t.toml"
    toml.write_text("".join(f'[teams.{n}]\nurl = "{shop.url}"\nreset = "{marker}; true"\n'
                            f'after = "touch after-$WDM_GRADE_TEAM"\n' for n in ("a", "b")))
    out = tmp_path / "g"
    proc = _grade_until(toml, out, traces, marker, 2 * int(parallel), "--parallel", parallel)  # a shell and its sleep each
    proc.send_signal(signal.SIGINT if parallel == "2" else signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)  # not the 61 s of the command
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("wdm-replay: error: interrupted")
    assert _processes_with(marker) == [], "the command's children were left running"
    started = ["a", "b"][:int(parallel)]
    assert sorted(p.name for p in tmp_path.glob("after-*")) == [f"after-{n}" for n in started]
    assert not any((out / "teams" / n / "team.json").exists() for n in ("a", "b"))
