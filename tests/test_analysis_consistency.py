"""Consistency checker on hand-built histories: every anomaly kind, indeterminate outcomes, policies."""

from __future__ import annotations

import pytest

from wdmreplay.analysis.report import render_check_text
from wdmreplay.analysis import AnalysisError, check_results
from synthetic import History
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
    h.set_final(items={"i1": (final_stock, 2)}, users={"u1": 10}, orders={"o1": (False, [O1], "u1", 2)})
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
    # one anomaly: the section's reason is the details' count line, printed once (no "why: 1 anomalies")
    text = render_check_text(rep)
    assert text.count("1 anomaly: oversell 1") == 1 and "anomalies" not in text.split("consistency (fail):")[1]


def test_concurrent_checkouts_oversold_and_lost_update(tmp_path):
    # Two overlapping 2xx checkouts of the last unit: both paid, stock 0 — one write was lost.
    h = populated(stock=1).req("create_order", ["u1"]).req("add_item", ["o2", "i1", 1])
    h.req("checkout", ["o1"], at=10.0, latency=0.5).req("checkout", ["o2"], at=10.1, latency=0.5)
    h.set_final(items={"i1": (0, 2)}, users={"u1": 6},
                orders={"o1": (True, [O1], "u1", 2), "o2": (True, [O1], "u1", 2)})
    rep = run(tmp_path, h)
    # One cause, one anomaly: the lost write is the primary reading, the oversold unit a tag
    # (oversell is primary only when the value went below zero).
    assert kinds(rep) == {"lost_update": 1}
    assert rep.anomalies[0].tags == ("oversell",)


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
    assert all(b.status == ("met" if ok else b.status) for b in rep.bounds)


def test_aggregates_not_evaluated_with_indeterminate_requests(tmp_path):
    h = populated(expect={"checkout_ok": 1}).req("checkout", ["o1"], "error")
    h.set_final(items={"i1": (5, 2)}, users={"u1": 10}, orders={"o1": (False, [O1], "u1", 2)},
                settle={"requested": 2.0, "settled": True, "snapshots": [{"at": 1.0, "end": 1.1}] * 2, "why": "agreed"})
    rep = run(tmp_path, h, min_availability=0.0)  # the unanswered checkout: availability's, not this test's
    assert rep.verdict.verdict == "CLEAN"
    assert rep.bounds[0].status == "not evaluated"
    strict = run(tmp_path, h, strict=True, min_availability=0.0)
    assert strict.verdict.verdict == "NOT CLEAN" and strict.verdict.decided_by == ("availability",)


def test_partial_run_is_never_clean(tmp_path):
    h = populated().req("checkout", ["o1"])
    h.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)})
    path = h.write(tmp_path / "r.wdmr", complete=False, reason="interrupted")
    rep = check_results(load_results(path, with_args=True))
    assert not rep.clean and not rep.anomalies
    assert rep.warnings[0].startswith("PARTIAL RUN (interrupted)")


def test_batch_init_entities(tmp_path):
    h = History()
    h.req("batch_init_stock", [3, 10, 2]).req("batch_init_users", [2, 100]).req("batch_init_orders", [2, 3, 2, 2])
    h.req("checkout", ["0"]).req("checkout", ["1"], "fail")
    h.set_final(items={"0": (10, 2), "1": (9, 2), "2": (9, 2)}, users={"0": 96, "1": 100},
                orders={"0": (True, [["1", 1], ["2", 1]], "0", 4), "1": (False, [["0", 1]], "1", 2)})
    rep = run(tmp_path, h)
    assert kinds(rep) == {}
    assert rep.consistency.checked == {"items": 3, "users": 2, "orders": 2}
    assert rep.consistency.totals["stock"] == {"history_allows": 28, "implied_by_2xx": 28, "final": 28}


def bench_history(final_first_stock: int, credits: list[int], ok: int, *, error: bool = False) -> History:
    """A consistency-workload run in the course benchmark's shape: 1 item x 2 units at price 1,
    3 users of credit 1, 3 one-unit orders; ``ok`` checkouts answered 2xx."""
    h = History(workload="consistency", expect={})
    h.trace_header["params"] = {"items": 1, "stock": 2, "price": 1, "users": 3, "credit": 1, "orders": 3}
    h.trace_header["benchmark"] = "course"  # what the generator writes for --preset course (a small stand-in)
    h.bindings = {"$item0": "i0"}
    h.req("create_item", [1]).req("add_stock", ["i0", 2])
    for u in range(3):
        h.req("create_user", []).req("add_funds", [f"u{u}", 1])
    for k in range(3):
        h.req("create_order", [f"u{k}"]).req("add_item", [f"o{k}", "i0", 1])
    for k in range(3):
        outcome = "error" if error and k == 2 else ("ok" if k < ok else "fail")
        h.req("checkout", [f"o{k}"], outcome, expect="any")
    h.set_final(items={"i0": (final_first_stock, 1)}, users={f"u{u}": c for u, c in enumerate(credits)},
                orders={f"o{k}": (k < ok, [["i0", 1]], f"u{k}", 1) for k in range(3)})
    return h


@pytest.mark.parametrize("stock, credits, ok, figures", [
    # N = 2 units; a correct run selling both: all zero.
    (0, [0, 0, 1], 2, (0, 0, 0, 0)),
    # One sale only, correct shop: the benchmark's formulas still show -1 / -1 / 1 / 1.
    (1, [0, 1, 1], 1, (-1, -1, 1, 1)),
    # Two 2xx but the stock never left and nobody was charged (lost checkouts).
    (2, [1, 1, 1], 2, (0, -2, 0, 2)),
])
def test_benchmark_figures_follow_its_formulas(tmp_path, stock, credits, ok, figures):
    b = run(tmp_path, bench_history(stock, credits, ok)).figures
    assert b.comparable, b.why
    assert (b.stock_logs, b.stock_db, b.payment_logs, b.payment_db) == figures


def test_benchmark_figures_not_comparable(tmp_path):
    b = run(tmp_path, bench_history(1, [0, 1, 1], 1, error=True)).figures
    assert not b.comparable and "indeterminate" in b.why
    other = run(tmp_path, populated().set_final(items={"i1": (5, 2)}, users={"u1": 10},
                                                orders={"o1": (False, [O1], "u1", 2)})).figures
    assert not other.comparable and other.stock_logs is None and "not the benchmark's workload" in other.why


def test_benchmark_figures_only_for_the_benchmarks_preset(tmp_path):
    # A consistency trace that is not --preset course/readme (e.g. a hot-user trace): no figures.
    h = bench_history(1, [0, 1, 1], 1)
    del h.trace_header["benchmark"]
    rep = run(tmp_path, h)
    b = rep.figures
    assert not b.comparable and b.stock_logs is None and b.payment_db is None and "--preset course" in b.why
    assert rep.as_dict()["consistency"]["benchmark"]["comparable"] is False
    assert "course benchmark figures: not comparable" in render_check_text(rep, verbose=True)


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
    rep = run(tmp_path, h)
    assert kinds(rep) == {"double_charge": 1}
    assert rep.anomalies[0].tags == ("oversell",)
