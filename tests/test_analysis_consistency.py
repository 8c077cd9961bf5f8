"""Consistency checker on hand-built histories: every anomaly kind, indeterminate outcomes, policies."""

from __future__ import annotations

import pytest

from wdmreplay.analysis import AnalysisError, check_results
from wdmreplay.analysis.synthetic import History
from wdmreplay.traces import load_results


def populated(expect: dict | None = None, stock: int = 5, funds: int = 10) -> History:
    """Item i1 (price 2) with ``stock`` units, user u1 with ``funds`` credit, order o1 = [i1 x1]."""
    h = History(scenarios=["populate", "checkout"], expect=expect)
    h.req("create_item", [2], scenario="populate").req("add_stock", ["i1", stock], scenario="populate")
    h.req("create_user", [], scenario="populate").req("add_funds", ["u1", funds], scenario="populate")
    h.req("create_order", ["u1"], scenario="populate").req("add_item", ["o1", "i1", 1], scenario="populate")
    return h


def run(tmp_path, h: History, **kw):
    return check_results(load_results(h.write(tmp_path / "r.wdmr"), with_args=True), **kw)


def kinds(report) -> dict[str, int]:
    return {k: v for k, v in report.anomaly_counts.items() if v}


O1 = ["i1", 1]


@pytest.mark.parametrize("outcome, stock, credit, paid, expected", [
    # clean, both ways
    ("ok", 4, 8, True, {}),
    ("fail", 5, 10, False, {}),
    # 2xx but not paid, nothing moved
    ("ok", 5, 10, False, {"lost_checkout": 1}),
    # 2xx, paid, but the stock never left (sequential: no concurrency to blame)
    ("ok", 5, 8, True, {"lost_checkout": 1}),
    # 4xx but paid (all effects applied)
    ("fail", 4, 8, True, {"phantom_checkout": 1}),
    # 4xx, unpaid, but the stock was kept (no-rollback)
    ("fail", 4, 10, False, {"non_atomic_checkout": 1}),
    # 4xx, unpaid, but the credit was charged
    ("fail", 5, 8, False, {"non_atomic_checkout": 1}),
    # 2xx, paid, charged twice
    ("ok", 4, 6, True, {"double_charge": 1}),
])
def test_single_checkout_shapes(tmp_path, outcome, stock, credit, paid, expected):
    h = populated().req("checkout", ["o1"], outcome, scenario="checkout")
    h.set_final(items={"i1": (stock, 2)}, users={"u1": credit}, orders={"o1": (paid, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == expected
    assert rep.clean == (not expected)


def test_anomaly_names_entities_and_expected_vs_actual(tmp_path):
    h = populated().req("checkout", ["o1"], "fail")
    h.set_final(items={"i1": (4, 2)}, users={"u1": 10}, orders={"o1": (False, [O1], "u1", 2)})
    (a,) = run(tmp_path, h).anomalies
    assert (a.kind, a.entity, a.id, a.expected, a.actual, a.orders) == ("non_atomic_checkout", "item", "i1", 5, 4, ("o1",))


@pytest.mark.parametrize("outcome", ["error", "timeout", "conn_error"])
@pytest.mark.parametrize("stock, credit, paid, expected", [
    (4, 8, True, {}),  # took effect, all of it
    (5, 10, False, {}),  # took no effect at all
    (5, 8, True, {"non_atomic_checkout": 1}),  # paid and charged, stock never taken
    (5, 8, False, {"non_atomic_checkout": 1}),  # charged, not paid
    (4, 10, True, {"non_atomic_checkout": 1}),  # paid and stock taken, never charged
])
def test_indeterminate_checkout_either_outcome_if_atomic(tmp_path, outcome, stock, credit, paid, expected):
    h = populated().req("checkout", ["o1"], outcome)
    h.set_final(items={"i1": (stock, 2)}, users={"u1": credit}, orders={"o1": (paid, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == expected
    assert rep.consistency.checkouts["indeterminate"] == 1


@pytest.mark.parametrize("final_stock, expected", [(5, {}), (8, {}), (6, {"lost_update": 1}), (9, {"lost_update": 1})])
def test_indeterminate_add_stock_makes_a_range(tmp_path, final_stock, expected):
    h = populated().req("add_stock", ["i1", 3], "error")
    h.set_final(items={"i1": (final_stock, 2)}, users={"u1": 10}, orders={"o1": (False, [O1], "u1", 0)})
    assert kinds(run(tmp_path, h)) == expected


@pytest.mark.parametrize("op, entity, final, expected", [
    ("subtract_stock", "i1", {"items": 5, "users": 10}, {}),
    ("subtract_stock", "i1", {"items": 2, "users": 10}, {}),
    ("pay", "u1", {"items": 5, "users": 7}, {}),
    ("pay", "u1", {"items": 5, "users": 6}, {"double_charge": 1}),
])
def test_indeterminate_subtract_and_pay(tmp_path, op, entity, final, expected):
    h = populated().req(op, [entity, 3] if op == "subtract_stock" else [entity, "o1", 3], "timeout")
    h.set_final(items={"i1": (final["items"], 2)}, users={"u1": final["users"]},
                orders={"o1": (False, [O1], "u1", 2)})
    assert kinds(run(tmp_path, h)) == expected


def test_oversell_negative_stock(tmp_path):
    h = populated(stock=1).req("create_order", ["u1"]).req("add_item", ["o2", "i1", 1])
    h.req("checkout", ["o1"]).req("checkout", ["o2"])
    h.set_final(items={"i1": (-1, 2)}, users={"u1": 6},
                orders={"o1": (True, [O1], "u1", 2), "o2": (True, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == {"oversell": 1}
    assert rep.anomalies[0].actual == -1


def test_concurrent_checkouts_oversold_and_lost_update(tmp_path):
    # Two overlapping 2xx checkouts of the last unit: both paid, stock 0 — one write was lost.
    h = populated(stock=1).req("create_order", ["u1"]).req("add_item", ["o2", "i1", 1])
    h.req("checkout", ["o1"], at=10.0, latency=0.5).req("checkout", ["o2"], at=10.1, latency=0.5)
    h.set_final(items={"i1": (0, 2)}, users={"u1": 6},
                orders={"o1": (True, [O1], "u1", 2), "o2": (True, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == {"oversell": 1, "lost_update": 1}


def test_concurrent_add_funds_lost_update(tmp_path):
    h = History()
    h.req("create_user", []).req("add_funds", ["u1", 5], at=1.0, latency=0.2).req("add_funds", ["u1", 5], at=1.1, latency=0.2)
    h.set_final(users={"u1": 5})
    assert kinds(run(tmp_path, h)) == {"lost_update": 1}


def test_negative_credit_is_oversell(tmp_path):
    h = History().req("create_user", []).req("pay", ["u1", "o9", 3])
    h.set_final(users={"u1": -3})
    assert kinds(run(tmp_path, h)) == {"oversell": 1}


@pytest.mark.parametrize("policy, credit, expected", [
    ("refuse", 8, {}), ("refuse", 6, {"double_charge": 1}),
    ("charge", 6, {}), ("charge", 8, {"lost_checkout": 2}),
])
def test_recheckout_policy(tmp_path, policy, credit, expected):
    h = populated(stock=5).req("checkout", ["o1"]).req("checkout", ["o1"])
    stock = 4 if policy == "refuse" or credit == 8 else 3
    h.set_final(items={"i1": (stock, 2)}, users={"u1": credit}, orders={"o1": (True, [O1], "u1", 2)})
    assert kinds(run(tmp_path, h, recheckout=policy)) == expected


def test_unknown_policy_is_refused(tmp_path):
    h = populated().set_final()
    with pytest.raises(AnalysisError, match="policy"):
        run(tmp_path, h, recheckout="maybe")


def test_needs_args(tmp_path):
    path = populated().set_final().write(tmp_path / "r.wdmr")
    with pytest.raises(AnalysisError, match="with_args"):
        check_results(load_results(path))


@pytest.mark.parametrize("expect, ok", [
    ({"checkout_ok": 1, "stock_total": 4, "credit_total": 8}, True),
    ({"checkout_ok": 2}, False),
    ({"stock_total": 3}, False),
    ({"credit_total": 9}, False),
])
def test_aggregate_expectations(tmp_path, expect, ok):
    h = populated(expect=expect).req("checkout", ["o1"])
    h.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert rep.clean == ok
    assert kinds(rep) == ({} if ok else {"expectation_not_met": 1})
    assert all(a["status"] == ("met" if ok else a["status"]) for a in rep.consistency.aggregates)


def test_aggregates_not_evaluated_with_indeterminate_requests(tmp_path):
    h = populated(expect={"checkout_ok": 1}).req("checkout", ["o1"], "error")
    h.set_final(items={"i1": (5, 2)}, users={"u1": 10}, orders={"o1": (False, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    assert rep.clean
    assert rep.consistency.aggregates[0]["status"] == "not evaluated"
    assert not run(tmp_path, h, strict=True).clean


def test_partial_run_is_never_clean(tmp_path):
    h = populated().req("checkout", ["o1"])
    h.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)})
    path = h.write(tmp_path / "r.wdmr", complete=False, reason="interrupted")
    rep = check_results(load_results(path, with_args=True))
    assert not rep.clean and not rep.anomalies
    assert rep.warnings[0].startswith("PARTIAL RUN (interrupted)")


def test_batch_init_entities(tmp_path):
    h = History()
    h.req("batch_init_stock", [3, 10, 2]).req("batch_init_users", [2, 100])
    h.req("checkout", ["0"]).req("checkout", ["1"], "fail")
    h.set_final(items={"0": (10, 2), "1": (9, 2), "2": (9, 2)}, users={"0": 96, "1": 100},
                orders={"0": (True, [["1", 1], ["2", 1]], "0", 4), "1": (False, [["0", 1]], "1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == {}
    assert rep.consistency.checked == {"items": 3, "users": 2, "orders": 2}
    assert rep.consistency.totals["stock"] == {"expected": 28, "implied_by_2xx": 28, "final": 28}


def test_benchmark_figures(tmp_path):
    # Logs say one checkout succeeded; the database shows the stock taken twice and credit never charged.
    h = populated(expect={"checkout_ok": 1, "stock_total": 4, "credit_total": 8}).req("checkout", ["o1"])
    h.set_final(items={"i1": (3, 2)}, users={"u1": 10}, orders={"o1": (True, [O1], "u1", 2)})
    b = run(tmp_path, h).consistency.benchmark
    assert b == {"stock_inconsistencies_logs": 0, "stock_inconsistencies_db": 1,
                 "payment_inconsistencies_logs": 0, "payment_inconsistencies_db": 2}


def test_missing_final_state_is_said(tmp_path):
    h = populated().req("checkout", ["o1"])
    rep = run(tmp_path, h)
    assert not rep.consistency.final_state
    assert any("NOT checked" in w for w in rep.warnings)


def test_missing_credit_with_a_paid_and_an_unpaid_order(tmp_path):
    # u1 paid o1 and was refused o2 (cost 2 each); credit 2 short. If o2's item kept its stock, the
    # missing credit is an extra charge; if o2's item lost a unit too, o2 half-happened.
    def hist(stock2: int) -> History:
        h = populated().req("create_item", [2]).req("add_stock", ["i2", 5])
        h.req("create_order", ["u1"]).req("add_item", ["o2", "i2", 1])
        h.req("checkout", ["o1"]).req("checkout", ["o2"], "fail")
        return h.set_final(items={"i1": (4, 2), "i2": (stock2, 2)}, users={"u1": 6},
                           orders={"o1": (True, [O1], "u1", 2), "o2": (False, [["i2", 1]], "u1", 2)})

    assert kinds(run(tmp_path, hist(5))) == {"double_charge": 1}
    assert kinds(run(tmp_path, hist(4))) == {"non_atomic_checkout": 2}


@pytest.mark.parametrize("stock, credit, expected", [
    (4, 8, {}), (5, 10, {}),  # the unread order was paid, or not: both fine
    (3, 8, {"lost_update": 1}),  # more stock gone than that order could take
])
def test_checked_out_order_missing_from_final_state_is_bounded(tmp_path, stock, credit, expected):
    h = populated().req("checkout", ["o1"])
    h.set_final(items={"i1": (stock, 2)}, users={"u1": credit}, missing={"order": {"o1": "HTTP 500"}})
    rep = run(tmp_path, h)
    assert kinds(rep) == expected
    assert any("bounded" in w for w in rep.warnings)


def test_cancel_payment_bounds_the_refund(tmp_path):
    # 2023 dialect: a cancelled payment gives back at most what was paid.
    h = History().req("create_user", []).req("add_funds", ["u1", 10]).req("pay", ["u1", "o1", 4])
    h.req("cancel_payment", ["u1", "o1"])
    for credit, expected in ((6, {}), (10, {}), (11, {"lost_update": 1})):
        h.set_final(users={"u1": credit})
        assert kinds(run(tmp_path, h)) == expected


def test_double_charge_into_negative_credit_is_both(tmp_path):
    h = populated(funds=2).req("checkout", ["o1"])
    h.set_final(items={"i1": (4, 2)}, users={"u1": -2}, orders={"o1": (True, [O1], "u1", 2)})
    assert kinds(run(tmp_path, h)) == {"oversell": 1, "double_charge": 1}
