"""What a CLEAN verdict covers: the bug-class list, each trace's exercise counts, and verdicts that say so.

The counts are checked on hand-made sessions (table-driven) and on the workloads; the verdicts over
real HTTP against the reference shop, right and with ``--inject repeat-collapse`` (the checkout that
keeps one quantity per item id, as a real student shop did).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wdmreplay.analysis import check_results
from wdmreplay.bugclasses import BUG_CLASSES, NAMES, count_exercises, coverage_line, verdict_coverage
from wdmreplay.cli import cli
from wdmreplay.demo import demo_runs
from wdmreplay.workloads import generate, inspect_trace
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import TraceReader, TraceWriter, load_results


def st(op: str, args: list, bind: str | None = None, expect: str = "ok") -> dict:
    return {"op": op, "args": args, "bind": bind, "expect": expect, "think": 0.0, "scenario": "t"}


def sess(sid: int, phase: int, steps: list) -> dict:
    return {"sid": sid, "phase": phase, "at": 0.0, "steps": steps}


def _order(ns: str, qtys: list[int], same_item: bool = True) -> list[dict]:
    steps = [st("create_item", [2], f"{ns}i"), st("add_stock", [f"{ns}i", 10]), st("create_item", [2], f"{ns}j"),
             st("add_stock", [f"{ns}j", 10]), st("create_user", [], f"{ns}u"), st("add_funds", [f"{ns}u", 100]),
             st("create_order", [f"{ns}u"], f"{ns}o")]
    for k, q in enumerate(qtys):
        steps.append(st("add_item", [f"{ns}o", f"{ns}i" if same_item or k == 0 else f"{ns}j", q]))
    return steps


# --- the list --------------------------------------------------------------------------------------


def test_the_list_names_every_class_of_the_issue_once_with_its_behaviour() -> None:
    titles = [c.title for c in BUG_CLASSES]
    assert titles == ["oversell", "lost update of stock", "lost update of credit", "non-atomic checkout",
                      "double charge", "lost order line", "wrong total", "repeated item collapsed",
                      "re-checkout charging again", "paid flag not set", "phantom success", "lost acknowledged data",
                      "unavailability under faults"]
    assert len(set(NAMES)) == len(NAMES)
    assert [c.name for c in BUG_CLASSES if c.needs_fault] == ["lost_acknowledged_data", "unavailable_under_faults"]
    for c in BUG_CLASSES:
        assert c.behaviour and c.what and c.found_by, c.name


def test_every_class_is_in_docs_bug_classes() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "bug-classes.md").read_text()
    for c in BUG_CLASSES:
        assert f"`{c.name}`" in doc and c.title in doc, c.name
        if c.inject:
            assert f"--inject {c.inject}" in doc, c.name


def test_every_injected_bug_of_the_shop_has_its_class() -> None:
    from wdmreplay.shop import DURABLE_BUGS, INJECT_KINDS

    named = {c.inject for c in BUG_CLASSES if c.inject}
    assert set(INJECT_KINDS) | set(DURABLE_BUGS) == named


# --- counting, table-driven ------------------------------------------------------------------------

CASES = [
    # (what, sessions, phases, {class: count} that must hold; classes not named must be 0 unless in ANY_OK)
    ("one item added twice then checked out",
     [sess(0, 0, _order("$a.", [1, 2]) + [st("checkout", ["$a.o"])])], 1,
     {"repeated_item_collapsed": 1, "wrong_total": 1, "double_charge": 1, "paid_flag_not_set": 1}),
    ("two items once each: no repeat, no multi-unit line",
     [sess(0, 0, _order("$a.", [1, 1], same_item=False) + [st("checkout", ["$a.o"])])], 1,
     {"repeated_item_collapsed": 0, "wrong_total": 0, "double_charge": 1}),
    ("a repeated item never checked out exposes no collapse",
     [sess(0, 0, _order("$a.", [1, 1]))], 1, {"repeated_item_collapsed": 0, "wrong_total": 1}),
    ("a repeated item whose checkout must fail exposes no collapse",
     [sess(0, 0, _order("$a.", [1, 1]) + [st("checkout", ["$a.o"], expect="fail")])], 1,
     {"repeated_item_collapsed": 0, "phantom_success": 1, "non_atomic_checkout": 1}),
    ("two checkouts of one order",
     [sess(0, 0, _order("$a.", [1]) + [st("checkout", ["$a.o"]), st("checkout", ["$a.o"], expect="any")])], 1,
     {"recheckout_charged": 1, "double_charge": 2, "non_atomic_checkout": 1}),
    ("demand beyond stock", [sess(0, 0, [st("create_item", [1], "$i"), st("add_stock", ["$i", 3]),
                                         st("subtract_stock", ["$i", 3]), st("subtract_stock", ["$i", 1], expect="fail")])],
     1, {"oversell": 1, "phantom_success": 1}),
    ("add_item from two sessions of one phase on one order",
     [sess(0, 0, _order("$a.", [])), sess(1, 1, [st("add_item", ["$a.o", "$a.i", 1])]),
      sess(2, 1, [st("add_item", ["$a.o", "$a.i", 1])])], 2,
     {"lost_order_line": 1, "wrong_total": 1}),
    ("add_item twice from ONE session is not concurrent",
     [sess(0, 0, _order("$a.", [])), sess(1, 1, [st("add_item", ["$a.o", "$a.i", 1]), st("add_item", ["$a.o", "$a.j", 1])])],
     2, {"lost_order_line": 0}),
    ("sessions of different phases are not concurrent",
     [sess(0, 0, _order("$a.", [])), sess(1, 1, [st("add_item", ["$a.o", "$a.i", 1])]),
      sess(2, 2, [st("add_item", ["$a.o", "$a.j", 1])])], 3, {"lost_order_line": 0}),
    ("concurrent checkouts share an item's stock and a user's credit",
     [sess(0, 0, _order("$a.", []) + [st("create_order", ["$a.u"], "$a.p")]),
      sess(1, 1, [st("add_item", ["$a.o", "$a.i", 1])]), sess(2, 1, [st("add_item", ["$a.p", "$a.i", 1])]),
      sess(3, 2, [st("checkout", ["$a.o"], expect="any")]), sess(4, 2, [st("checkout", ["$a.p"], expect="any")])], 3,
     {"lost_update_stock": 1, "lost_update_credit": 1, "non_atomic_checkout": 2}),
]


@pytest.mark.parametrize("what, sessions, phases, want", CASES, ids=[c[0] for c in CASES])
def test_exercise_counts(what: str, sessions: list, phases: int, want: dict) -> None:
    got = count_exercises(sessions, phases)
    assert set(got) == set(NAMES)
    assert {k: got[k] for k in want} == want, got


def test_dialect_2023_adds_one_unit_whatever_the_step_says() -> None:
    s = [sess(0, 0, _order("$a.", [3]) + [st("checkout", ["$a.o"])])]
    assert count_exercises(s, 1)["wrong_total"] == 1
    assert count_exercises(s, 1, quantity_counts=False)["wrong_total"] == 0


# --- workloads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_default_stress_exercises_repeats_and_recheckouts_seed_only_does_not(tmp_path: Path, dialect: str) -> None:
    h = generate("stress", tmp_path / "d.wdmt", seed=5, sessions=40, dialect=dialect)
    assert h["exercises"]["repeated_item_collapsed"] >= 2 and h["exercises"]["recheckout_charged"] >= 2
    h = generate("stress", tmp_path / "s.wdmt", seed=5, sessions=40, dialect=dialect, seed_scenarios_only=True)
    assert h["exercises"]["repeated_item_collapsed"] == 0 and h["exercises"]["recheckout_charged"] == 0


def test_inspect_says_a_trace_without_repeated_items_does_not_exercise_them(tmp_path: Path) -> None:
    path = tmp_path / "seed6.wdmt"
    generate("stress", path, sessions=100, seed_scenarios_only=True)
    res = CliRunner().invoke(cli, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.strip().startswith("repeated item collapsed"))
    assert "NOT EXERCISED" in line and "added twice" in line
    assert "bug classes exercised: 7 of 13, 2 of them only when replayed with --faults" in res.output
    info = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    by = {c["name"]: c for c in info["exercises"]["classes"]}
    assert info["exercises"]["source"] == "header"
    assert by["repeated_item_collapsed"]["count"] == 0 and by["recheckout_charged"]["count"] == 0
    assert by["double_charge"]["count"] > 0


def test_inspect_computes_what_an_older_trace_exercises(tmp_path: Path) -> None:
    new = tmp_path / "new.wdmt"
    generate("stress", new, sessions=60, seed=2)
    old = tmp_path / "old.wdmt"
    with TraceReader(new) as r:  # the same sessions, written without the header's "exercises"
        h = r.header
        with TraceWriter(old, workload="stress", seed=2, params=h["params"], phases=["stress"],
                         scenarios=h["scenarios"], exercises=False) as w:
            for s in r:
                w.write_session(s["sid"], s["phase"], s["at"], s["steps"])
    with TraceReader(old) as r:
        assert "exercises" not in r.header
    a, b = inspect_trace(new).to_json()["exercises"], inspect_trace(old).to_json()["exercises"]
    assert (a["source"], b["source"]) == ("header", "computed")
    assert a["classes"] == b["classes"] and a["exercised"] == 10


def test_demo_suite_covers_every_class_that_needs_no_fault(tmp_path: Path) -> None:
    union: set[str] = set()
    for run in demo_runs(2.0, 20.0):  # the shortest demo the tests run
        h = generate(run.workload, tmp_path / f"{run.name}.wdmt", **run.options)
        union |= {k for k, n in h["exercises"].items() if n}
    assert union >= {c.name for c in BUG_CLASSES if not c.needs_fault}


# --- verdicts over HTTP ------------------------------------------------------------------------------


def _check(tmp_path: Path, shop, trace: Path, name: str):
    out = tmp_path / f"{name}.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=None, progress=False)
    return check_results(load_results(out, with_args=True))


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_repeat_collapse_is_not_clean_under_the_default_stress_trace(tmp_path, shop_factory, dialect) -> None:
    trace = tmp_path / "stress.wdmt"
    generate("stress", trace, seed=0, sessions=40, dialect=dialect)
    report = _check(tmp_path, shop_factory(inject="repeat-collapse"), trace, "bad")
    assert report.verdict.verdict == "NOT CLEAN"
    assert report.verdict.decided_by == ("consistency",)
    assert any(a.entity == "item" for a in report.anomalies)  # stock left that the paid orders took
    # the same trace without s7 cannot see it: what the coverage line warns of
    seed6 = tmp_path / "seed6.wdmt"
    generate("stress", seed6, seed=0, sessions=40, dialect=dialect, seed_scenarios_only=True)
    blind = _check(tmp_path, shop_factory(inject="repeat-collapse"), seed6, "blind")
    assert blind.verdict.verdict == "CLEAN"
    assert "repeated_item_collapsed" in blind.bug_classes.not_exercised
    assert "repeated_item_collapsed" in report.bug_classes.covered


def test_reference_shop_is_clean_under_the_default_stress_trace_over_10_seeds(tmp_path, shop) -> None:
    for seed in range(10):
        trace = tmp_path / f"s{seed}.wdmt"
        generate("stress", trace, seed=seed, sessions=30, dialect="2023" if seed % 2 else "2024")
        report = _check(tmp_path, shop, trace, f"s{seed}")
        assert report.verdict.verdict == "CLEAN", (seed, [a.as_dict() for a in report.anomalies])
        assert {"repeated_item_collapsed", "recheckout_charged"} <= set(report.bug_classes.covered)


def test_check_prints_the_coverage_line_after_the_verdict_and_json_lists_it(tmp_path, shop) -> None:
    trace = tmp_path / "t.wdmt"
    generate("stress", trace, seed=1, sessions=30, seed_scenarios_only=True)
    out = tmp_path / "t.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=None, progress=False)
    res = CliRunner().invoke(cli, ["check", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("verdict: CLEAN") and lines[-1] == lines[0]  # the verdict first and last
    assert lines[1].startswith("covered: 5 of 13 bug classes (not exercised: lost update of stock, ")
    assert "repeated item collapsed, re-checkout charging again" in lines[1]
    assert "need a fault run: lost acknowledged data, unavailability under faults" in lines[1]
    d = json.loads(CliRunner().invoke(cli, ["check", str(out), "--json"]).output)
    bc = d["bug_classes"]
    assert bc["stated"] and bc["classes"] == 13 and len(bc["covered"]) == 5
    assert set(bc["covered"]) | set(bc["not_exercised"]) | set(bc["needs_fault"]) == set(NAMES)
    assert bc["counts"]["repeated_item_collapsed"] == 0 and bc["counts"]["double_charge"] > 0


def test_coverage_of_a_trace_that_predates_it_is_not_stated() -> None:
    cov = verdict_coverage(None, faults=False)
    assert not cov.stated and cov.covered == ()
    assert coverage_line(cov).startswith("covered: not stated")
    full = verdict_coverage({n: 1 for n in NAMES}, faults=True)
    assert coverage_line(full) == "covered: 13 of 13 bug classes"
    unfaulted = verdict_coverage({n: 1 for n in NAMES}, faults=False)
    assert unfaulted.needs_fault == ("lost_acknowledged_data", "unavailable_under_faults")
    assert coverage_line(unfaulted) == ("covered: 11 of 13 bug classes (need a fault run: lost acknowledged "
                                                  "data, unavailability under faults)")


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_consistency_with_repeat_and_recheckout_orders_catches_repeat_collapse(tmp_path, shop_factory, dialect):
    plain = tmp_path / "course.wdmt"
    h = generate("consistency", plain, preset="course", users=200, orders=200, dialect=dialect)
    assert h["exercises"]["repeated_item_collapsed"] == 0
    trace = tmp_path / "extras.wdmt"
    h = generate("consistency", trace, preset="course", users=200, orders=200, repeat_orders=6,
                 recheckout_orders=4, dialect=dialect)
    assert (h["exercises"]["repeated_item_collapsed"], h["exercises"]["recheckout_charged"]) == (6, 4)
    assert h["benchmark"] is None and h["params"]["repeat_orders"] == 6
    assert h["expect_range"]["checkout_ok"] == [110, 114]  # 100 units + 6 + 4, and 4 more if charged again
    good = _check(tmp_path, shop_factory(), trace, "good")
    assert good.verdict.verdict == "CLEAN", [a.as_dict() for a in good.anomalies]
    assert {"repeated_item_collapsed", "recheckout_charged"} <= set(good.bug_classes.covered)
    assert _check(tmp_path, shop_factory(inject="repeat-collapse"), plain, "blind").verdict.verdict == "CLEAN"
    bad = _check(tmp_path, shop_factory(inject="repeat-collapse"), trace, "bad")
    assert bad.verdict.verdict == "NOT CLEAN"
    # the stock left over is on the repeat orders' own items, and only there
    extra_items = {b for s, b in load_results(tmp_path / "bad.wdmr").bindings.items() if s.startswith("$xitem")}
    flagged = {a.id for a in bad.anomalies if a.entity == "item"}
    assert flagged and flagged <= extra_items


def test_contention_still_catches_lost_lines_and_says_it_covered_them(tmp_path, shop_factory) -> None:
    trace = tmp_path / "contention.wdmt"
    generate("contention", trace, orders=2, adders=20, users=0)
    good = _check(tmp_path, shop_factory(), trace, "good")
    assert good.verdict.verdict == "CLEAN", [a.as_dict() for a in good.anomalies]
    assert "lost_order_line" in good.bug_classes.covered
    bad = _check(tmp_path, shop_factory(inject="lost-line"), trace, "bad")
    assert bad.verdict.verdict == "NOT CLEAN"
    assert bad.anomaly_counts["lost_order_line"] >= 1


def test_repeat_collapse_of_the_split_shop_saga_is_not_clean_either(tmp_path, shop_factory) -> None:
    # --split checks out as a saga over HTTP (stock legs, then payment): the bug sits in the legs it sends.
    trace = tmp_path / "stress.wdmt"
    generate("stress", trace, seed=1, sessions=25, repeat_share=0.2, recheckout_share=0.04)
    assert _check(tmp_path, shop_factory(split=True), trace, "good").verdict.verdict == "CLEAN"
    bad = _check(tmp_path, shop_factory(split=True, inject="repeat-collapse"), trace, "bad")
    assert bad.verdict.verdict == "NOT CLEAN" and bad.anomaly_counts["lost_checkout"] >= 1


def test_check_counts_an_older_trace_from_its_file_when_it_is_still_there(tmp_path, shop) -> None:
    new = tmp_path / "new.wdmt"
    generate("stress", new, sessions=30, seed=3)
    old = tmp_path / "old.wdmt"
    with TraceReader(new) as r:  # the same sessions, written as before the header's "exercises"
        h = r.header
        with TraceWriter(old, workload="stress", seed=3, params=h["params"], phases=["stress"],
                         scenarios=h["scenarios"], exercises=False) as w:
            for s in r:
                w.write_session(s["sid"], s["phase"], s["at"], s["steps"])
    out = tmp_path / "old.wdmr"
    replay_trace(str(old), str(out), target=shop.target, speed=None, progress=False)
    here = check_results(load_results(out, with_args=True)).bug_classes
    assert (here.stated, here.source) == (True, "trace file")
    assert here.counts == h["exercises"]
    old.write_bytes(old.read_bytes()[:-1] + b"\0")  # changed since the run: not the run's trace any more
    gone = check_results(load_results(out, with_args=True)).bug_classes
    assert (gone.stated, gone.source, gone.covered) == (False, None, ())
    res = CliRunner().invoke(cli, ["check", str(out)])
    assert res.output.splitlines()[1].startswith("covered: not stated")
