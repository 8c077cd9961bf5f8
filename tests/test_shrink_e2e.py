"""``wdm-replay shrink`` end to end: real HTTP on 127.0.0.1 against the reference shop with an injected bug.

Small source traces and small budgets keep each shrink to seconds. The command runs as a user runs
it (``sys.executable -m wdmreplay``); the shop runs in a thread of the test process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay_support import closed_port
from wdmreplay.analysis import check_results
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.shrink import shrink_run
from wdmreplay.traces import load_results, read_header, trace_digest

WDM = [sys.executable, "-m", "wdmreplay"]


def _run(args, cwd, timeout=120):
    return subprocess.run([*WDM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _racy_checkouts(path: Path, seed: int = 1) -> None:
    """Six concurrent checkouts of one item with 2 units: a lost update shows on the item."""
    generate("consistency", path, seed=seed, items=1, stock=2, users=4, credit=2, orders=6)


def _source_run(shop, tmp_path: Path, trace: Path, kind: str, tries: int = 3) -> Path:
    """A replay of ``trace`` that is NOT CLEAN with an anomaly of ``kind`` (races may need a retry)."""
    out = tmp_path / "run.wdmr"
    for _ in range(tries):
        replay_trace(str(trace), str(out), target=shop.target, speed=None)
        rep = check_results(load_results(out, with_args=True))
        if rep.anomaly_counts[kind]:
            return out
    raise AssertionError(f"the source run never showed {kind}")


def _anomalies_after_replay(shop, trace: Path, out: Path, tries: int = 5) -> list:
    """The check reports of up to ``tries`` replays of ``trace``, until one is NOT CLEAN."""
    reports = []
    for _ in range(tries):
        replay_trace(str(trace), str(out), target=shop.target, speed=None)
        reports.append(check_results(load_results(out, with_args=True)))
        if not reports[-1].clean:
            break
    return reports


def test_lost_update_shrinks_to_a_trace_that_is_not_clean(shop_factory, tmp_path):
    shop = shop_factory(inject="lost-update")
    trace = tmp_path / "c.wdmt"
    _racy_checkouts(trace)
    run = _source_run(shop, tmp_path, trace, "lost_update")
    p = _run(["shrink", str(run), "--url", shop.url, "--runs", "3", "--budget", "60", "-o", "min.wdmt"], tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith("shrink: lost_update on item $item0")
    assert out[1].startswith("  before: 17 sessions, 28 requests")
    after_requests = int(out[2].split(",")[1].split()[0])
    assert 1 < after_requests <= 20
    assert out[3].startswith("  replays: ") and "wall time" in out[3]
    assert out[4].startswith("  reproduction rate: ") and "/3 fresh replays" in out[4]
    script = [line for line in out if line.startswith("  s")]
    assert len(script) == after_requests and sum("checkout($order" in line for line in script) >= 2
    assert "shrink: closure:" in p.stderr  # progress lines on a non-TTY stderr

    h = read_header(tmp_path / "min.wdmt")
    info = h["shrink"]
    assert info["finding"]["kind"] == "lost_update" and info["finding"]["role"] == "$item0"
    assert info["source"]["trace_digest"] == trace_digest(trace) and info["source"]["run"] == str(run)
    assert info["reproduction"]["runs"] == 3 and 0 <= info["reproduction"]["hits"] <= 3
    assert h["requests"] == after_requests and h["expect"] == {} and h["workload"] == "shrunk"

    insp = _run(["inspect", "min.wdmt"], tmp_path)
    assert insp.returncode == 0 and f"{after_requests}" in insp.stdout
    assert f"shrunk   reproduces lost_update on item $item0 in {info['reproduction']['hits']}/3 fresh replays; " \
           f"from {run} (28 requests)" in insp.stdout
    reports = _anomalies_after_replay(shop, tmp_path / "min.wdmt", tmp_path / "again.wdmr")
    last = reports[-1]
    assert last.verdict.verdict == "NOT CLEAN", [r.verdict.reasons() for r in reports]
    binds = {v: k for k, v in load_results(tmp_path / "again.wdmr").bindings.items()}
    assert any(a.kind == "lost_update" and binds.get(a.id) == "$item0" for a in last.anomalies)
    chk = _run(["check", "again.wdmr"], tmp_path)
    assert chk.returncode == 1 and "NOT CLEAN" in chk.stdout


def test_lost_line_shrinks_to_two_racing_add_items(shop_factory, tmp_path):
    shop = shop_factory(inject="lost-line")
    trace = tmp_path / "k.wdmt"
    generate("contention", trace, seed=1, orders=2, adders=6, users=0, items_per_order=2)
    run = _source_run(shop, tmp_path, trace, "lost_order_line")
    res = shrink_run(str(run), str(tmp_path / "min.wdmt"), target=shop.target, runs=3, budget=60,
                     notify=lambda _: None)
    assert res.finding.kind == "lost_order_line" and res.finding.entity == "order"
    assert res.before == (read_header(trace)["sessions"], read_header(trace)["requests"])
    assert res.after[1] <= 20 and res.after[1] < res.before[1] and res.stopped is None
    assert res.hits is not None and res.replays > res.runs
    add_items = [line for line in res.script if "add_item(" in line]
    assert len(add_items) >= 2  # a lost line needs two concurrent add_item of one order
    reports = _anomalies_after_replay(shop, tmp_path / "min.wdmt", tmp_path / "again.wdmr")
    assert reports[-1].anomaly_counts["lost_order_line"] == 1


def test_clean_run_exits_3_with_one_line(shop, tmp_path):
    trace = tmp_path / "c.wdmt"
    _racy_checkouts(trace)
    replay_trace(str(trace), str(tmp_path / "run.wdmr"), target=shop.target, speed=None)
    p = _run(["shrink", "run.wdmr", "--url", shop.url, "-o", "min.wdmt"], tmp_path)
    assert p.returncode == 3 and p.stdout == ""
    assert p.stderr == "wdm-replay: error: run.wdmr: CLEAN: there is no finding to reproduce\n"
    assert not (tmp_path / "min.wdmt").exists()


def test_run_without_final_state_exits_3(shop_factory, tmp_path):
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=1, users=3, credit=5, orders=3)
    replay_trace(str(trace), str(tmp_path / "run.wdmr"), target=shop.target, speed=None, final_read=False)
    p = _run(["shrink", "run.wdmr", "--url", shop.url], tmp_path)
    assert p.returncode == 3 and p.stderr.count("\n") == 1 and "no final state" in p.stderr


def test_finding_that_never_recurs_exits_3_saying_how_often_it_was_tried(shop_factory, tmp_path):
    buggy, correct = shop_factory(inject="oversell"), shop_factory()
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=1, users=3, credit=5, orders=3)
    run = _source_run(buggy, tmp_path, trace, "oversell")
    p = _run(["shrink", str(run), "--url", correct.url, "--runs", "2", "-o", "min.wdmt"], tmp_path)
    assert p.returncode == 3, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("wdm-replay: error: oversell on item $item0")
    # the closure drops the user without an order; the component is the closure again (not replayed twice)
    assert line.endswith("never reproduced: 4 replays at --speed max (2 per distinct cut: closure, whole)")
    assert not (tmp_path / "min.wdmt").exists()
    # the same against a shop that answers every request 500: the line says the shop answered nothing
    from replay_support import TinyTarget

    with TinyTarget(lambda method, path: (500, b"internal error", 0)) as dead:
        p = _run(["shrink", str(run), "--url", dead.url, "--runs", "2", "-o", "min.wdmt"], tmp_path)
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert "never reproduced: 4 replays" in line and line.endswith(
        "; the shop answered none of the requests of any replay (5xx, timeouts, connection errors or answers "
        "that are not the API's): is it the shop of the run, and up?")
    assert not (tmp_path / "min.wdmt").exists()


def test_bad_input_exits_2_with_one_line(shop_factory, tmp_path):
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=1, users=3, credit=5, orders=3)
    run = _source_run(shop, tmp_path, trace, "oversell")
    other = tmp_path / "other.wdmt"
    generate("consistency", other, seed=2, items=1, stock=1, users=3, credit=5, orders=3)
    (tmp_path / "garbage.wdmr").write_bytes(b"\x00not a results file")
    cases = [
        (["shrink", "missing.wdmr"], "missing.wdmr"),
        (["shrink", "garbage.wdmr"], "garbage.wdmr"),
        (["shrink", "c.wdmt"], "c.wdmt"),
        (["shrink", "run.wdmr", "--anomaly", "sold-twice"], "unknown kind 'sold_twice'"),
        (["shrink", "run.wdmr", "--trace", "other.wdmt"], "not the trace run.wdmr replayed"),
        (["shrink", "run.wdmr", "--runs", "0"], "--runs"),
        (["shrink", "run.wdmr", "--budget", "nan"], "--budget"),
        (["shrink", "run.wdmr", "-o", "run.wdmr"], "is one of the inputs"),
        (["shrink", "run.wdmr", "-o", "no/such/dir/m.wdmt"], "directory does not exist"),
        (["shrink", "run.wdmr", "--url", shop.url, "--urls", "u.json"], "either --urls or --url"),
        (["shrink", "run.wdmr", "-q", "--url", f"http://127.0.0.1:{closed_port()}"], "cannot reach target"),
    ]
    for args, needle in cases:
        p = _run(args, tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("wdm-replay: error:") and needle in p.stderr, args
        assert "Traceback" not in p.stderr
    trace.rename(tmp_path / "moved.wdmt")
    p = _run(["shrink", "run.wdmr", "--url", shop.url], tmp_path)
    assert p.returncode == 2 and "give it with --trace" in p.stderr
    assert run.exists() and (tmp_path / "moved.wdmt").exists()  # nothing recorded is lost


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (a directory no file can be made in)")
def test_an_output_directory_that_refuses_files_fails_before_any_replay(shop_factory, tmp_path):
    # /proc exists (so "directory does not exist" does not apply) but refuses a new file: the
    # minimal trace could not be written, so no replay may be spent on it.
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=1, users=3, credit=5, orders=3)
    _source_run(shop, tmp_path, trace, "oversell")
    p = _run(["shrink", "run.wdmr", "--url", shop.url, "-q", "--runs", "1", "--before-each", "touch replayed",
              "-o", "/proc/wdm-shrink-test.wdmt"], tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("wdm-replay: error: /proc/wdm-shrink-test.wdmt: cannot write here"), p.stderr
    assert not (tmp_path / "replayed").exists()  # refused before the first replay


def test_before_each_runs_before_every_replay_and_a_failing_one_stops(shop_factory, tmp_path):
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=1, users=3, credit=5, orders=3)
    run = _source_run(shop, tmp_path, trace, "oversell")
    log = tmp_path / "before.log"
    p = _run(["shrink", str(run), "--url", shop.url, "--runs", "2", "--budget", "60", "-q", "-o", "min.wdmt",
              "--before-each", f"echo $WDM_SHRINK_REPLAY >> {log}"], tmp_path)
    assert p.returncode == 0, p.stderr
    replays = int(p.stdout.splitlines()[3].split("replays: ")[1].split()[0])
    assert log.read_text().split() == [str(i) for i in range(1, replays + 1)]
    bad = _run(["shrink", str(run), "--url", shop.url, "-o", "min2.wdmt", "-q", "--before-each", "exit 7"], tmp_path)
    assert bad.returncode == 2 and "--before-each exited 7 before replay 1" in bad.stderr
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "min2.wdmt").exists()


def test_ctrl_c_keeps_the_best_trace_so_far(shop_factory, tmp_path):
    shop = shop_factory(inject="lost-update")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=8, stock=3, users=20, credit=2, orders=60)
    run = _source_run(shop, tmp_path, trace, "lost_update")
    # Once the sessions stage has found a smaller trace, every later replay first waits in its
    # --before-each: the Ctrl-C then lands while the search still runs, however fast the machine (a
    # fixed pause before it let a quick search finish first, exit 0).
    slow = tmp_path / "slow"
    proc = subprocess.Popen([*WDM, "shrink", str(run), "--url", shop.url, "--runs", "5", "-o", "min.wdmt",
                             "--before-each", f"test -f {slow} && sleep 5 || true"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if line.startswith("shrink: sessions:") or not line:
            break
    assert seen[-1].startswith("shrink: sessions:"), seen
    slow.touch()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    h = read_header(tmp_path / "min.wdmt")
    assert h["shrink"]["stopped"] == "interrupted" and h["shrink"]["reproduction"]["hits"] is None
    assert h["shrink"]["finding"]["kind"] == "lost_update"
    assert 0 < h["requests"] <= read_header(trace)["requests"]
    assert "stopped early: interrupted" in out and "not measured (interrupted)" in out
    # stderr ends with one line saying so, as for every command stopped by a signal (it had none)
    assert err.strip().splitlines()[-1] == ("wdm-replay: interrupted; the smallest trace found so far is in "
                                            "min.wdmt (reproduction rate not measured)")


def test_budget_ends_the_search_early_and_writes_the_best_so_far(shop_factory, tmp_path):
    shop = shop_factory(inject="lost-update")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=8, stock=3, users=20, credit=2, orders=60)
    run = _source_run(shop, tmp_path, trace, "lost_update")
    p = _run(["shrink", str(run), "--url", shop.url, "--runs", "2", "--budget", "4", "-q", "-o", "min.wdmt"], tmp_path)
    if p.returncode == 3:  # the closure did not reproduce in the few replays 4 s allow: said so, nothing written
        assert "not reproduced before the search stopped (budget)" in p.stderr
        assert not (tmp_path / "min.wdmt").exists()
        return
    assert p.returncode == 0, p.stderr
    h = read_header(tmp_path / "min.wdmt")["shrink"]
    assert h["stopped"] == "budget" and "stopped early: budget" in p.stdout
    assert h["reproduction"]["runs"] == 2 and h["reproduction"]["hits"] is not None
    assert read_header(tmp_path / "min.wdmt")["requests"] < read_header(trace)["requests"]


def test_many_orders_on_one_item_go_order_by_order_after_the_items_stock(shop_factory, tmp_path):
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=1, stock=20, users=30, credit=2, orders=40)
    run = _source_run(shop, tmp_path, trace, "oversell")
    res = shrink_run(str(run), str(tmp_path / "min.wdmt"), target=shop.target, runs=2, budget=60,
                     notify=lambda _: None)
    spent = dict(res.replays_by_pass)
    assert spent["role amounts"] >= 1 and spent["orders"] >= 1  # the passes of a big cut ran
    assert res.after[1] <= 8 and res.stopped is None, res.script
    script = "\n".join(res.script)
    assert "add_stock($item0, 20)" not in script  # its 20 units would take 21 checkouts to oversell
    assert sum("checkout(" in line for line in res.script) >= 1


def test_anomaly_option_picks_the_entity_by_symbol_or_id(shop_factory, tmp_path):
    shop = shop_factory(inject="oversell")
    trace = tmp_path / "c.wdmt"
    generate("consistency", trace, seed=1, items=2, stock=10, users=40, credit=2, orders=40)
    run = _source_run(shop, tmp_path, trace, "oversell")
    binds = load_results(run).bindings
    p = _run(["shrink", str(run), "--url", shop.url, "--anomaly", "oversell:item1", "--runs", "2", "-q",
              "-o", "min.wdmt"], tmp_path)
    if p.returncode == 3:  # $item1 was not oversold in this run: said so, with the kinds it has
        assert "no oversell on item1 anomaly in this run" in p.stderr
        return
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"shrink: oversell on item $item1 ({binds['$item1']} in the source run)")
    p = _run(["shrink", str(run), "--url", shop.url, "--anomaly", f"oversell:{binds['$item0']}", "--runs", "2",
              "-q", "-o", "min0.wdmt"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert read_header(tmp_path / "min0.wdmt")["shrink"]["finding"]["role"] == "$item0"
    p = _run(["shrink", str(run), "--url", shop.url, "--anomaly", "wrong_total"], tmp_path)
    assert p.returncode == 3 and "no wrong_total anomaly in this run (it has: oversell)" in p.stderr
