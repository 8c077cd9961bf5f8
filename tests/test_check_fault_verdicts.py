"""One fault history, one verdict (issue 19 item 2), and availability of every request (item 5),
over real HTTP on 127.0.0.1.

The purpose-built ``faulty-stock`` shop answers 502 during a fault its schedule turns on and off,
and 400 "Item does not exist" to add_item (as the course template's order service does with a 502
from stock). Wrong answers inside the window or its recovery are counted apart and fail the run
only with ``--strict-faults``; replayed twice with different interleavings of the unanswered steps,
the verdict is the same. Outside any window, a contradiction fails the run even after an unanswered
step, when it does not depend on that step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fault_support import write_schedule
from replay_support import write_trace
from test_check_verdicts import cli_check
from verdict_shops import TinyShop

from wdmreplay.analysis import check_results
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import CONN_ERROR, ERROR, TIMEOUT

SESSIONS, SPACING, THINK = 24, 0.1, 0.03


def _trace(path: Path) -> Path:
    """Sessions every 0.1 s: create item, user, order first; then add stock and funds, two add_item, checkout."""
    sessions = []
    for i in range(SESSIONS):
        it, us, od = f"$s{i}.item", f"$s{i}.user", f"$s{i}.order"
        sessions.append((i * SPACING, [
            step("create_item", [2], bind=it), step("create_user", [], bind=us, think=THINK),
            step("create_order", [us], bind=od, think=THINK), step("add_stock", [it, 5], think=THINK),
            step("add_funds", [us, 20], think=THINK), step("add_item", [od, it, 1], think=THINK),
            step("add_item", [od, it, 1], think=THINK), step("checkout", [od], think=THINK)]))
    write_trace(path, [sessions])
    return path


def _post(url: str) -> list[str]:
    code = f"import urllib.request as u; u.urlopen(u.Request({url!r}, data=b'', method='POST'), timeout=5).read()"
    return [sys.executable, "-c", code]


def _replay(tmp_path: Path, name: str, speed: float) -> Path:
    trace = _trace(tmp_path / "t.wdmt")
    out = tmp_path / f"{name}.wdmr"
    with TinyShop("faulty-stock") as shop:
        sched = write_schedule(tmp_path / f"{name}.json", [{"name": "stock-down", "at": 0.9, "for": 0.5,
                                                            "do": _post(shop.url + "/_admin/fault/on"),
                                                            "undo": _post(shop.url + "/_admin/fault/off")}])
        summary = replay_trace(str(trace), str(out), target=shop.url, speed=speed, timeout=5.0, faults=str(sched),
                               settle=0.5)
    assert summary.complete and summary.faults.failures == (), summary
    return out


def _unanswered(path: Path) -> set[tuple[int, int]]:
    r = load_results(path)
    c = r.cols
    rows = np.nonzero(np.isin(c["outcome"], (ERROR, TIMEOUT, CONN_ERROR)))[0]
    return {(int(c["sid"][k]), int(c["step"][k])) for k in rows}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    return _replay(tmp, "fast", 1.0), _replay(tmp, "slow", 0.75)


def test_one_fault_history_gives_one_verdict_whatever_the_interleaving(two_runs):
    a, b = two_runs
    # different interleavings: other steps fell in the window and went unanswered
    assert _unanswered(a) and _unanswered(b) and _unanswered(a) != _unanswered(b)
    reps = [check_results(load_results(p, with_args=True)) for p in (a, b)]
    for rep in reps:
        assert rep.expectations.during_faults > 0, rep.expectations.by_category
        assert rep.expectations.mismatches == 0
        assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    strict = [check_results(load_results(p, with_args=True), strict_faults=True) for p in (a, b)]
    for rep in strict:
        assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("correctness",), rep.verdict.reasons()
        assert any("wrong answer(s) during faults" in r for r in rep.verdict.reasons())


def test_wrong_answers_during_faults_are_listed_with_examples(two_runs, capsys):
    a, _ = two_runs
    code, text = cli_check(a, capsys)
    assert code == 0 and "wrong answers during faults (counted apart; --strict-faults fails on them)" in text
    assert "wrong answers during a fault window or its recovery (counted apart)" in text
    assert "Item does not exist" in text
    code, text = cli_check(a, capsys, "--strict-faults")
    assert code == 1 and "verdict: NOT CLEAN" in text
    code, js = cli_check(a, capsys, "--json")
    d = json.loads(js)
    groups = [g for g in d["expectations"]["groups"] if g["category"] == "during_fault"]
    assert d["expectations"]["during_faults"] > 0 and groups and groups[0]["examples"]
    assert d["strict_faults"] is False


def test_outside_a_window_an_independent_contradiction_fails_even_after_an_unanswered_step(tmp_path, capsys):
    # No fault declared. Session 0: add_stock gets a 502, then add_item a 400 "Item does not
    # exist" for the item created with a 2xx: it depends on nothing unanswered (the stock of an item
    # never decides whether it exists), so it is a contradiction. Session 1: its checkout gets a 502,
    # then add_item a 400 on the same order — which may be paid by then: proves nothing.
    trace = tmp_path / "flaky.wdmt"
    sessions = []
    for i, unanswered in enumerate(("add_stock", "checkout")):
        it, us, od = f"$s{i}.item", f"$s{i}.user", f"$s{i}.order"
        mid = step("add_stock", [it, 5]) if unanswered == "add_stock" else step("checkout", [od])
        sessions.append((0.0, [step("create_item", [2], bind=it), step("create_user", [], bind=us),
                               step("create_order", [us], bind=od), mid, step("add_item", [od, it, 1])]))
    write_trace(trace, [sessions])
    out = tmp_path / "flaky.wdmr"
    with TinyShop("flaky-stock") as shop:
        replay_trace(str(trace), str(out), target=shop.url, speed=None, timeout=5.0, settle=0.3)
    rep = check_results(load_results(out, with_args=True))
    bc = rep.expectations.by_category
    assert (bc["unexpected_fail"], bc["after_indeterminate"], bc["indeterminate"]) == (1, 1, 2), bc
    (g,) = [g for g in rep.expectations.groups if g.category == "unexpected_fail"]
    assert g.op == "add_item" and [(e.sid, e.step, e.error) for e in g.examples] == [(0, 4, "Item does not exist")]
    (a,) = [g for g in rep.expectations.groups if g.category == "after_indeterminate"]
    assert [(e.sid, e.step) for e in a.examples] == [(1, 4)]
    assert rep.verdict.verdict == "NOT CLEAN" and "correctness" in rep.verdict.decided_by
    text = cli_check(out, capsys)[1]
    assert "FAIL          correctness   1 of " in text and "1 refused where the trace expects acceptance: add_item" in text


def test_availability_counts_every_request_whatever_it_expects(tmp_path, capsys):
    # Checkouts whose steps expect `any` (as a recorded trace's do) and that all answer 500: `any`
    # widens which answers are correct, it never makes a 500 an answer. NOT CLEAN by availability.
    trace = tmp_path / "any.wdmt"
    p0 = [(0.0, [step("create_item", [3], bind=f"$s{i}.item"), step("add_stock", [f"$s{i}.item", 10]),
                 step("create_user", [], bind=f"$s{i}.user"), step("add_funds", [f"$s{i}.user", 100])]) for i in range(4)]
    p1 = [(0.0, [step("create_order", [f"$s{i}.user"], bind=f"$s{4 + i}.order"),
                 step("add_item", [f"$s{4 + i}.order", f"$s{i}.item", 1]),
                 step("checkout", [f"$s{4 + i}.order"], expect="any")]) for i in range(4)]
    write_trace(trace, [p0, p1])
    for mode in ("checkout-500", "correct"):
        out = tmp_path / f"{mode}.wdmr"
        with TinyShop(mode) as shop:
            replay_trace(str(trace), str(out), target=shop.url, speed=None, timeout=5.0, settle=0.3)
        rep = check_results(load_results(out, with_args=True))
        co = next(a for a in rep.availability.ops if a.op == "checkout")
        assert co.counted == 4 and rep.availability.basis == "all"
        if mode == "correct":
            assert co.answered == 4 and rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
            continue
        assert co.answered == 0 and co.error == 4
        assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("availability",), rep.verdict.reasons()
        code, text = cli_check(out, capsys)
        assert code == 1 and "unavailable: checkout 0/4 answered (0.0%): 4 5xx < 99%" in text
