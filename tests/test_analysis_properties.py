"""Property tests of the consistency checker against a tiny correct shop model (hypothesis).

Random histories are run through an all-or-nothing model of the shop — indeterminate requests
(5xx, timeout) take effect or not at random — and the model's final state must be judged clean.
Then one corruption of the final state (a stock or credit value off by k, a paid flag flipped)
must be judged unclean.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdmreplay.analysis import check_results
from synthetic import History
from wdmreplay.traces import load_results

OPS = st.one_of(
    st.tuples(st.just("add_stock"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("subtract_stock"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("add_funds"), st.integers(0, 2), st.integers(1, 9)),
    st.tuples(st.just("pay"), st.integers(0, 2), st.integers(1, 9)),
    st.tuples(st.just("checkout"), st.integers(0, 3), st.just(0)),
)
# Per request: answered normally, or indeterminate and (not) applied.
FATES = st.sampled_from(["normal", "normal", "normal", "error-applied", "error-lost", "timeout-applied"])


@st.composite
def histories(draw):
    prices = draw(st.lists(st.integers(1, 5), min_size=3, max_size=3))
    stock = draw(st.lists(st.integers(0, 6), min_size=3, max_size=3))
    credit = draw(st.lists(st.integers(0, 20), min_size=3, max_size=3))
    orders = [(draw(st.integers(0, 2)), draw(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 2)),
                                                       min_size=1, max_size=2))) for _ in range(4)]
    ops = draw(st.lists(st.tuples(OPS, FATES), max_size=25))
    return prices, stock, credit, orders, ops


def simulate(data) -> tuple[History, dict, set]:
    """Run the history through a correct all-or-nothing shop; return it, the final state, and the
    entities touched by indeterminate requests (whose values are ranges, not exact)."""
    prices, stock0, credit0, orders, ops = data
    h = History()
    stock = {f"i{k}": 0 for k in range(3)}
    credit = {f"u{k}": 0 for k in range(3)}
    for k in range(3):
        h.req("create_item", [prices[k]]).req("add_stock", [f"i{k}", stock0[k]])
        stock[f"i{k}"] = stock0[k]
        h.req("create_user", []).req("add_funds", [f"u{k}", credit0[k]])
        credit[f"u{k}"] = credit0[k]
    lines = {}
    for n, (user, items) in enumerate(orders):
        oid = f"o{n}"
        h.req("create_order", [f"u{user}"])
        lines[oid] = {}
        for item, qty in items:
            h.req("add_item", [oid, f"i{item}", qty])
            lines[oid][f"i{item}"] = lines[oid].get(f"i{item}", 0) + qty
    paid = {oid: False for oid in lines}
    owner = {f"o{n}": f"u{user}" for n, (user, _) in enumerate(orders)}
    cost = {oid: sum(q * prices[int(i[1:])] for i, q in ls.items()) for oid, ls in lines.items()}
    uncertain = set()
    for (op, k, amount), fate in ops:
        if op == "checkout":
            oid = f"o{k}"
            can = (not paid[oid] and all(stock[i] >= q for i, q in lines[oid].items())
                   and credit[owner[oid]] >= cost[oid])
            args = [oid]
        else:
            eid = f"i{k}" if op in ("add_stock", "subtract_stock") else f"u{k}"
            table = stock if eid[0] == "i" else credit
            can = op in ("add_stock", "add_funds") or table[eid] >= amount
            args = [eid, amount] if op != "pay" else [eid, "o9", amount]
        applied = can and (fate == "normal" or fate.endswith("applied"))
        if applied:
            if op == "checkout":
                for i, q in lines[oid].items():
                    stock[i] -= q
                credit[owner[oid]] -= cost[oid]
                paid[oid] = True
            else:
                table[eid] += amount if op in ("add_stock", "add_funds") else -amount
        if fate == "normal":
            h.req(op, args, "ok" if can else "fail")
        else:
            h.req(op, args, fate.split("-")[0])
            if op != "checkout":
                uncertain.add(eid)
    final = {"items": {i: (s, prices[int(i[1:])]) for i, s in stock.items()}, "users": dict(credit),
             "orders": {o: (paid[o], [[i, q] for i, q in lines[o].items()], owner[o], cost[o]) for o in lines}}
    return h, final, uncertain


def verdict(tmp_path, h: History, final: dict):
    h.set_final(**final)
    return check_results(load_results(h.write(tmp_path / "p.wdmr"), with_args=True))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(histories())
def test_correct_all_or_nothing_shop_is_clean(tmp_path, data):
    h, final, _ = simulate(data)
    rep = verdict(tmp_path, h, final)
    assert not rep.anomalies, [a.as_dict() for a in rep.anomalies]


@SETTINGS
@given(histories(), st.sampled_from(["items", "users"]), st.integers(0, 2), st.integers(-3, 3).filter(bool))
def test_a_corrupted_value_is_caught(tmp_path, data, kind, k, delta):
    h, final, uncertain = simulate(data)
    eid = ("i" if kind == "items" else "u") + str(k)
    if eid in uncertain:
        return  # a range: some corruptions are another valid outcome
    if kind == "items":
        s, p = final["items"][eid]
        final["items"][eid] = (s + delta, p)
    else:
        final["users"][eid] += delta
    assert verdict(tmp_path, h, final).anomalies


@SETTINGS
@given(histories(), st.integers(0, 3))
def test_a_flipped_paid_flag_is_caught(tmp_path, data, n):
    h, final, _ = simulate(data)
    oid = f"o{n}"
    paid, lines, user, cost = final["orders"][oid]
    final["orders"][oid] = (not paid, lines, user, cost)
    assert verdict(tmp_path, h, final).anomalies


@pytest.mark.parametrize("n", [0])
def test_model_sanity(tmp_path, n):
    data = ([2, 3, 4], [5, 5, 5], [20, 20, 20], [(0, [(0, 1)]), (1, [(1, 2)]), (2, [(2, 1)]), (0, [(0, 1)])],
            [(("checkout", 0, 0), "normal"), (("checkout", 0, 0), "normal"), (("pay", 1, 5), "error-applied")])
    h, final, uncertain = simulate(data)
    assert final["orders"]["o0"][0] is True and final["users"]["u0"] == 18 and uncertain == {"u1"}
    assert not verdict(tmp_path, h, final).anomalies
