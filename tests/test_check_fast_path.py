"""The vectorized consistency check gives exactly the anomalies of the per-entity reference.

:func:`check_consistency` screens every order, item and user with numpy and runs the per-entity
checkers only on what the screen cannot clear; :func:`check_consistency_reference` runs them on
everything. On random small histories and final states — indeterminate requests applied or not,
lost and phantom order lines, repeated lines, wrong totals, flipped paid flags, re-checkouts,
refunds, batch_init entities, orders missing from the final read, ids like "01" next to "1" — both
must return the same anomalies (kind, entity, id, expected, actual, detail, orders, tags,
requests, in the same order), totals, checkout tallies and notes, under both re-checkout policies.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdmreplay.analysis.consistency import check_consistency, check_consistency_reference
from wdmreplay.analysis.final_state import _order, final_state
from synthetic import History
from wdmreplay.traces import load_results

ITEMS = ["i1", "i2", "3", "03"]
USERS = ["u1", "u2", "7"]
ORDERS = ["o1", "o2", "1", "01", "2"]
OUTCOME = st.sampled_from(["ok", "ok", "ok", "ok", "fail", "error", "timeout", "conn_error", "skipped"])
REQUEST = st.one_of(
    st.tuples(st.just("add_stock"), st.tuples(st.sampled_from(ITEMS), st.integers(1, 6))),
    st.tuples(st.just("subtract_stock"), st.tuples(st.sampled_from(ITEMS), st.integers(1, 4))),
    st.tuples(st.just("add_funds"), st.tuples(st.sampled_from(USERS), st.integers(1, 30))),
    st.tuples(st.just("pay"), st.tuples(st.sampled_from(USERS), st.sampled_from(ORDERS), st.integers(1, 9))),
    st.tuples(st.just("add_item"), st.tuples(st.sampled_from(ORDERS), st.sampled_from(ITEMS), st.integers(1, 3))),
    st.tuples(st.just("add_item"), st.tuples(st.sampled_from(ORDERS), st.sampled_from(ITEMS))),
    st.tuples(st.just("remove_item"), st.tuples(st.sampled_from(ORDERS), st.sampled_from(ITEMS))),
    st.tuples(st.just("checkout"), st.tuples(st.sampled_from(ORDERS))),
    st.tuples(st.just("checkout"), st.tuples(st.sampled_from(ORDERS))),
    st.tuples(st.just("create_order"), st.tuples(st.sampled_from(USERS))),
    st.tuples(st.just("create_item"), st.tuples(st.integers(1, 3))),
    st.tuples(st.just("cancel_payment"), st.tuples(st.sampled_from(USERS), st.sampled_from(ORDERS))),
    st.tuples(st.just("batch_init_stock"), st.tuples(st.integers(1, 4), st.integers(0, 9), st.integers(1, 3))),
    st.tuples(st.just("batch_init_users"), st.tuples(st.integers(1, 8), st.integers(0, 40))),
    st.tuples(st.just("batch_init_orders"), st.tuples(st.integers(1, 3), st.integers(0, 3), st.integers(1, 3))),
)
# What may be wrong with the final state after an all-or-nothing model of the requests.
FAULTS = st.lists(st.sampled_from(["stock", "credit", "lose_line", "phantom_line", "qty", "total", "paid",
                                   "drop_order", "negative", "repeat_line", "no_user", "unpay", "unpay", "total"]), max_size=3)


def _model(requests, applied) -> tuple[dict, dict, dict]:
    """The final state of a correct shop: stock, credit and orders after the requests that took effect."""
    stock = {i: 0 for i in ITEMS}
    price = {i: 1 + k % 3 for k, i in enumerate(ITEMS)}
    credit = {u: 0 for u in USERS}
    orders: dict[str, dict] = {}
    for (op, args, outcome), apply in zip(requests, applied):
        took = outcome == "ok" or (outcome in ("error", "timeout", "conn_error") and apply)
        if not took:
            continue
        if op == "add_stock":
            stock[args[0]] += args[1]
        elif op == "subtract_stock":
            stock[args[0]] -= args[1]
        elif op == "add_funds":
            credit[args[0]] += args[1]
        elif op == "pay":
            credit[args[0]] -= args[2]
        elif op in ("add_item", "remove_item"):
            o = orders.setdefault(args[0], {"paid": False, "lines": {}, "user": None})
            qty = (args[2] if len(args) > 2 else 1) if op == "add_item" else -1
            o["lines"][args[1]] = max(0, o["lines"].get(args[1], 0) + qty)
        elif op == "checkout":
            o = orders.setdefault(args[0], {"paid": False, "lines": {}, "user": None})
            if not o["paid"]:
                o["paid"] = True
                for i, q in o["lines"].items():
                    stock[i] -= q
                    credit[USERS[0]] -= q * price[i]
    return ({i: (stock[i], price[i]) for i in ITEMS}, credit,
            {oid: (o["paid"], [[i, q] for i, q in o["lines"].items() if q], USERS[0],
                   sum(q * price[i] for i, q in o["lines"].items())) for oid, o in orders.items()})


@st.composite
def runs(draw):
    requests = [(op, args, draw(OUTCOME)) for op, args in draw(st.lists(REQUEST, max_size=40))]
    applied = draw(st.lists(st.booleans(), min_size=len(requests), max_size=len(requests)))
    items, users, orders = _model(requests, applied)
    for fault in draw(FAULTS):
        if fault == "stock":
            i = draw(st.sampled_from(ITEMS))
            items[i] = (items[i][0] + draw(st.sampled_from([-2, -1, 1, 3])), items[i][1])
        elif fault == "credit":
            u = draw(st.sampled_from(USERS))
            users[u] += draw(st.sampled_from([-5, -1, 1, 4]))
        elif fault == "negative":
            items[ITEMS[0]] = (-1, items[ITEMS[0]][1])
        elif fault == "unpay":
            paid = sorted(oid for oid, o in orders.items() if o[0])
            if paid:
                oid = draw(st.sampled_from(paid))
                orders[oid] = (False, *orders[oid][1:])
        elif orders:
            oid = draw(st.sampled_from(sorted(orders)))
            paid, lines, user, total = orders[oid]
            if fault == "lose_line" and lines:
                lines = lines[1:]
            elif fault == "phantom_line":
                lines = lines + [[draw(st.sampled_from(ITEMS)), draw(st.integers(1, 2))]]
            elif fault == "repeat_line" and lines:
                lines = lines + [list(lines[0])]
            elif fault == "qty" and lines:
                lines = [[lines[0][0], lines[0][1] + draw(st.sampled_from([-1, 1]))]] + lines[1:]
            elif fault == "total":
                total += draw(st.sampled_from([-2, 1]))
            elif fault == "paid":
                paid = not paid
            elif fault == "no_user":
                user = None
            if fault == "drop_order":
                del orders[oid]
            else:
                orders[oid] = (paid, lines, user, total)
    return requests, items, users, orders


def _same(fast, ref) -> None:
    assert [a.as_dict() for a in fast.anomalies] == [a.as_dict() for a in ref.anomalies]
    assert fast.totals == ref.totals
    assert fast.checkouts == ref.checkouts
    assert fast.notes == ref.notes and fast.checked == ref.checked


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs())
def test_fast_path_equals_per_entity_reference(tmp_path, run):
    requests, items, users, orders = run
    h = History()
    for op, args, outcome in requests:
        h.req(op, list(args), outcome)
    h.set_final(items=items, users=users, orders=orders)
    r = load_results(h.write(tmp_path / "r.wdmr"), with_args=True)
    for policy in ("refuse", "charge"):
        _same(check_consistency(r, recheckout=policy), check_consistency_reference(r, recheckout=policy))
    hist = check_consistency(r).history
    assert hist.checkout_ok_loaded() == sum(rec.n_ok for oid, rec in hist.orders.items()  # as check.py summed it
                                            if any(ln.add_ok > 0 for ln in hist.lines.get(oid, {}).values()))
    fs = final_state(r.final)
    assert {oid: fs.orders[oid] for oid in fs.orders} == {str(k): _order(v) for k, v in r.final["orders"].items()}


def test_fast_path_finds_what_the_reference_finds(tmp_path):
    """A fixed history with one anomaly of each order kind and an oversold item: both paths, same list."""
    h = (History().req("add_stock", ["i1", 1]).req("add_funds", ["u1", 50])
         .req("add_item", ["o1", "i1", 2]).req("add_item", ["o2", "i1", 1]).req("checkout", ["o1"])
         .req("add_item", ["o3", "i1", 1]).req("checkout", ["o3"], "fail")
         .req("add_item", ["o4", "i2", 3], "timeout"))
    h.set_final(items={"i1": (-1, 1)}, users={"u1": 48},
                orders={"o1": (True, [["i1", 2]], "u1", 2), "o2": (False, [], "u1", 0),
                        "o3": (True, [["i1", 1]], "u1", 5), "o4": (False, [["i2", 1]], "u1", 1)})
    r = load_results(h.write(tmp_path / "r.wdmr"), with_args=True)
    fast, ref = check_consistency(r), check_consistency_reference(r)
    _same(fast, ref)
    kinds = {(a.kind, a.id) for a in fast.anomalies}
    assert ("lost_order_line", "o2") in kinds and ("phantom_checkout", "o3") in kinds
    assert ("lost_order_line", "o4") in kinds  # 1 of an all-or-nothing 3: no subset of the indeterminate adds
    assert any(a.kind == "oversell" and a.id == "i1" for a in fast.anomalies)


def _history_with(rows, items, orders, users=None) -> History:
    h = History()
    for op, args, outcome in rows:
        h.req(op, args, outcome)
    h.set_final(items=items, users=users or {}, orders=orders)
    return h


SCREENED_ALONE = {
    # An item within its range that no all-or-nothing subset of its indeterminate add_stock explains.
    "subset": ([("add_stock", ["i1", 5], "ok"), ("add_stock", ["i1", 3], "timeout"), ("add_stock", ["i1", 4], "error")],
               {"i1": (6, 1)}, {}, ("lost_update", "i1")),
    # Order lines off while the total matches the lines as read (only the line screen can see it).
    "lost_line": ([("add_item", ["o1", "i1", 2], "ok")], {"i1": (0, 1)}, {"o1": (False, [["i1", 1]], "u1", 1)},
                  ("lost_order_line", "o1")),
    "phantom_line": ([("add_item", ["o1", "i1", 1], "ok")], {"i1": (0, 1)}, {"o1": (False, [["i1", 2]], "u1", 2)},
                     ("phantom_order_line", "o1")),
    "line_without_history": ([("add_item", ["o1", "i1", 1], "ok")], {"i1": (0, 1), "i2": (0, 1)},
                             {"o1": (False, [["i1", 1], ["i2", 1]], "u1", 2)}, ("phantom_order_line", "o1")),
    "line_missing": ([("add_item", ["o1", "i1", 1], "ok"), ("add_item", ["o1", "i2", 1], "ok")],
                     {"i1": (0, 1), "i2": (0, 1)}, {"o1": (False, [["i1", 1]], "u1", 1)}, ("lost_order_line", "o1")),
    "one_indeterminate_add": ([("add_item", ["o1", "i1", 3], "timeout")], {"i1": (0, 1)},
                              {"o1": (False, [["i1", 1]], "u1", 1)}, ("lost_order_line", "o1")),
    # A refunded user's credit is only bounded (no anomaly here), and its figures are the widened range.
    "refund": ([("add_funds", ["u2", 20], "ok"), ("pay", ["u2", "o1", 5], "ok"), ("cancel_payment", ["u2", "o1"], "ok")],
               {}, {}, None, {"u2": 15}),
}


@pytest.mark.parametrize("case", sorted(SCREENED_ALONE))
def test_each_screen_condition_alone(tmp_path, case):
    """Discrepancies only one of the screen's conditions can see: found, and worded as the reference words them."""
    rows, items, orders, expected, *users = SCREENED_ALONE[case]
    r = load_results(_history_with(rows, items, orders, *users).write(tmp_path / "r.wdmr"), with_args=True)
    fast = check_consistency(r)
    _same(fast, check_consistency_reference(r))
    if expected is None:
        assert not fast.anomalies and fast.totals["credit"]["history_allows"] == [15, 20]
    else:
        assert any(a.kind == expected[0] and a.id == expected[1] for a in fast.anomalies), fast.anomalies
