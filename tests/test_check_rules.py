"""Each consistency rule is stated once (``analysis/rules.py``), and both checking paths use it.

- The figures both paths report are the shared functions' figures, and replacing one rule by a
  different one changes what the numpy screen (:func:`check_consistency`) AND the per-entity
  reference (:func:`check_consistency_reference`) report, identically: no path keeps its own copy.
- Over real HTTP: an order whose item costs 2**31 and a shop that reports its total as an int32
  (wrapped) — the screen used to clear such orders unchecked (a price of 2**31 or more counted as
  "unpriced"), so ``check`` said CLEAN; it says NOT CLEAN now, with the reference's anomaly, and a
  correct shop given the same trace stays CLEAN.
- On random histories with figures around 2**31 .. 2**61 (where int64 sums can wrap), both paths agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from replay_support import run_cli, write_trace
from synthetic import History
from verdict_shops import TinyShop

from wdmreplay.analysis import check_results, rules
from wdmreplay.analysis.consistency import check_consistency, check_consistency_reference
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results, step


def _both(r) -> tuple[list[dict], list[dict], dict, dict]:
    fast, ref = check_consistency(r), check_consistency_reference(r)
    return [a.as_dict() for a in fast.anomalies], [a.as_dict() for a in ref.anomalies], fast.totals, ref.totals


def _clean_run(tmp_path: Path):
    """Item i1: 5 added, 1 more indeterminate; order o1 (2 x i1 at 2, 1 more indeterminate) paid by u1 (20
    added): a correct shop, where neither indeterminate request took effect."""
    h = (History().req("add_stock", ["i1", 5]).req("add_stock", ["i1", 1], "timeout").req("add_funds", ["u1", 20])
         .req("create_order", ["u1"]).req("add_item", ["o1", "i1", 2]).req("add_item", ["o1", "i1", 1], "timeout")
         .req("checkout", ["o1"]))
    h.set_final(items={"i1": (3, 2)}, users={"u1": 16}, orders={"o1": (True, [["i1", 2]], "u1", 4)})
    return load_results(h.write(tmp_path / "r.wdmr"), with_args=True)


def test_both_paths_report_the_shared_rules_figures(tmp_path):
    r = _clean_run(tmp_path)
    fast, ref, fast_totals, ref_totals = _both(r)
    assert fast == ref == [] and fast_totals == ref_totals
    paid_lo, paid_hi = rules.multiplicity(True, 1, 0, False)
    assert (paid_lo, paid_hi) == (1, 1)
    stock = rules.entity_range(0, 5, 1, 0, 0, 2 * paid_lo, 2 * paid_hi)
    credit = rules.entity_range(0, 20, 0, 0, 0, 4 * paid_lo, 4 * paid_hi)
    assert stock == (3, 4) and credit == (16, 16)
    assert fast_totals["stock"]["history_allows"] == list(stock)
    assert fast_totals["credit"]["history_allows"] == credit[0]
    assert fast_totals["stock"]["implied_by_2xx"] == rules.implied_value(0, 5, 0, 2 * rules.implied_takes(1, False))


def _shifted(fn):
    return lambda *a: tuple(x + 1 for x in fn(*a))


# Each rule replaced by a different statement of it, and what both paths must then report.
CHANGED = {
    "entity_range": (_shifted(rules.entity_range), {("lost_update", "item", "i1"), ("double_charge", "user", "u1")}),
    "line_range": (_shifted(rules.line_range), {("lost_order_line", "order", "o1")}),
    "multiplicity": (lambda paid, ok, indet, charge: (2 * paid, 2 * paid),
                     {("lost_checkout", "item", "i1"), ("lost_checkout", "user", "u1")}),
    "checkout_disagrees": (lambda paid, ok, indet: (paid == 1, paid == 1), {("lost_checkout", "order", "o1")}),
    "order_total": (lambda q, p: q * p + 1, {("wrong_total", "order", "o1")}),
    "oversold": (lambda actual, hi: actual >= 0, {("oversell", "item", "i1"), ("oversell", "user", "u1")}),
    "reachable": (lambda offset, deltas, exact: False, {("lost_update", "item", "i1"), ("lost_update", "user", "u1"),
                                                        ("lost_order_line", "order", "o1")}),
    "implied_takes": (lambda n_ok, charge: 0 * n_ok, set()),
}


@pytest.mark.parametrize("rule", sorted(CHANGED))
def test_a_changed_rule_changes_both_paths(tmp_path, monkeypatch, rule):
    r = _clean_run(tmp_path)
    before = _both(r)
    replacement, found = CHANGED[rule]
    monkeypatch.setattr(rules, rule, replacement)
    fast, ref, fast_totals, ref_totals = after = _both(r)
    assert fast == ref and fast_totals == ref_totals, "the screen and the per-entity checkers disagree"
    assert after != before, f"changing rules.{rule} changed nothing: a path keeps its own copy of it"
    assert {(a["kind"], a["entity"], a["id"]) for a in fast} == found
    if rule == "implied_takes":
        assert fast_totals["stock"]["implied_by_2xx"] == 5 and fast_totals["credit"]["implied_by_2xx"] == 20


BIG = 1 << 31


def big_price_trace(path: Path) -> Path:
    """An item priced 2**31 (stock 1), a user with 2**31 credit, and one order of that item (not checked out:
    its total is the only figure the int32 shop gets wrong)."""
    write_trace(path, [
        [(0.0, [step("create_item", [BIG], bind="$s0.item", scenario="populate"),
                step("add_stock", ["$s0.item", 1], scenario="populate"),
                step("create_user", [], bind="$s0.user", scenario="populate"),
                step("add_funds", ["$s0.user", BIG], scenario="populate")])],
        [(0.0, [step("create_order", ["$s0.user"], bind="$s1.order", scenario="orders"),
                step("add_item", ["$s1.order", "$s0.item", 1], scenario="orders")])]])
    return path


@pytest.mark.parametrize("mode, verdict, code", [("correct", "CLEAN", 0), ("int32-total", "NOT CLEAN", 1)])
def test_total_of_a_price_over_int32_is_checked(tmp_path, capsys, mode, verdict, code):
    trace = big_price_trace(tmp_path / "big.wdmt")
    out = tmp_path / f"{mode}.wdmr"
    with TinyShop(mode) as shop:
        replay_trace(str(trace), str(out), target=shop.url, timeout=5.0, concurrency=2)
    r = load_results(out, with_args=True)
    rep = check_results(r)
    assert rep.verdict.verdict == verdict, rep.verdict.reasons()
    fast, ref, fast_totals, ref_totals = _both(r)
    assert fast == ref and fast_totals == ref_totals
    if mode == "correct":
        assert not rep.anomalies and rep.consistency.checked == {"items": 1, "users": 1, "orders": 1}
    else:
        found = [(a.kind, a.entity, a.expected, a.actual) for a in rep.anomalies]
        assert found == [("wrong_total", "order", BIG, -BIG)]
    assert run_cli(capsys, "check", str(out))[0] == code


ITEMS, ORDERS = ["i1", "i2"], ["o1", "o2"]
FIGURE = st.sampled_from([1, 3, BIG, 1 << 33, 1 << 61])


@st.composite
def big_runs(draw):
    """Requests with figures where int64 sums can wrap, a correct final state, and a few faults."""
    price = {i: draw(FIGURE) for i in ITEMS}
    stock, credit, orders = {i: 0 for i in ITEMS}, 0, {o: {} for o in ORDERS}
    paid = set()
    h = History()
    for _ in range(draw(st.integers(0, 12))):
        op = draw(st.sampled_from(["add_stock", "add_funds", "add_item", "checkout"]))
        outcome = draw(st.sampled_from(["ok", "ok", "fail", "timeout"]))
        took = outcome == "ok" or (outcome == "timeout" and draw(st.booleans()))
        if op == "add_stock":
            i, n = draw(st.sampled_from(ITEMS)), draw(FIGURE)
            h.req(op, [i, n], outcome)
            stock[i] += n if took else 0
        elif op == "add_funds":
            n = draw(FIGURE)
            h.req(op, ["u1", n], outcome)
            credit += n if took else 0
        elif op == "add_item":
            o, i, q = draw(st.sampled_from(ORDERS)), draw(st.sampled_from(ITEMS)), draw(FIGURE)
            h.req(op, [o, i, q], outcome)
            if took and o not in paid:
                orders[o][i] = orders[o].get(i, 0) + q
        else:
            o = draw(st.sampled_from(ORDERS))
            h.req(op, [o], outcome)
            if took and o not in paid:
                paid.add(o)
                stock = {i: s - orders[o].get(i, 0) for i, s in stock.items()}
                credit -= sum(q * price[i] for i, q in orders[o].items())
    final = {o: [o in paid, [[i, q] for i, q in lines.items()], "u1", sum(q * price[i] for i, q in lines.items())]
             for o, lines in orders.items()}
    for fault in draw(st.lists(st.sampled_from(["total", "stock", "credit", "paid", "qty"]), max_size=2)):
        o = draw(st.sampled_from(ORDERS))
        if fault == "total":
            final[o][3] += draw(st.sampled_from([-1, 1, BIG]))
        elif fault == "stock":
            stock["i1"] += draw(st.sampled_from([-1, 1]))
        elif fault == "credit":
            credit += draw(st.sampled_from([-1, BIG]))
        elif fault == "paid":
            final[o][0] = not final[o][0]
        elif final[o][1]:
            final[o][1][0][1] += 1
    figures = [*stock.values(), credit, *(f[3] for f in final.values()), *(q for f in final.values() for _, q in f[1])]
    assume(all(abs(x) < 1 << 63 for x in figures))  # what a results file can hold
    h.set_final(items={i: (stock[i], price[i]) for i in ITEMS}, users={"u1": credit},
                orders={o: tuple(f) for o, f in final.items()})
    return h


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(big_runs())
def test_paths_agree_on_figures_beyond_int32(tmp_path, h):
    try:
        path = h.write(tmp_path / "r.wdmr")
    except OverflowError:  # a request figure beyond what the args columns hold
        assume(False)
    r = load_results(path, with_args=True)
    for policy in ("refuse", "charge"):
        fast, ref = check_consistency(r, recheckout=policy), check_consistency_reference(r, recheckout=policy)
        assert [a.as_dict() for a in fast.anomalies] == [a.as_dict() for a in ref.anomalies]
        assert fast.totals == ref.totals
