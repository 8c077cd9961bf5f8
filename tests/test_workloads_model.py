"""The shop model, the stress scenarios step for step, and the consistency workload's bounds."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from wdmreplay.workloads import ShopModel, generate
from wdmreplay.workloads.consistency import checkout_bounds
from wdmreplay.workloads.stress import SCENARIOS, STEPS_PER_SCENARIO
from wdmreplay.traces import TraceReader

# --- model -------------------------------------------------------------------------------------


def test_model_semantics_table() -> None:
    m = ShopModel()
    table = [
        (m.create_item, ("$i", 3), "ok"),
        (m.subtract_stock, ("$i", 1), "fail"),  # stock starts at 0
        (m.add_stock, ("$i", 5), "ok"),
        (m.subtract_stock, ("$i", 5), "ok"),
        (m.add_stock, ("$i", 2), "ok"),
        (m.add_stock, ("$nope", 2), "fail"),
        (m.create_user, ("$u",), "ok"),
        (m.add_funds, ("$u", 5), "ok"),
        (m.create_order, ("$o", "$u"), "ok"),
        (m.create_order, ("$o2", "$nobody"), "fail"),
        (m.add_item, ("$o", "$i", 2), "ok"),
        (m.remove_item, ("$o", "$i"), "ok"),
        (m.remove_item, ("$o", "$i"), "fail"),  # no longer in the order
        (m.add_item, ("$o", "$i", 2), "ok"),
        (m.checkout, ("$o",), "fail"),  # cost 6 > credit 5: nothing changes
        (m.add_funds, ("$u", 1), "ok"),
        (m.add_stock, ("$i", 0), "ok"),
        (m.checkout, ("$o",), "ok"),
        (m.checkout, ("$o",), "any"),  # already paid: shop policy
        (m.find_item, ("$i",), "ok"),
        (m.find_order, ("$x",), "fail"),
    ]
    for k, (fn, args, want) in enumerate(table):
        assert fn(*args) == want, (k, fn.__name__, args)
    assert m.stock["$i"] == 0 and m.credit["$u"] == 0 and m.orders["$o"].paid is True


def test_checkout_is_all_or_nothing_in_the_model() -> None:
    m = ShopModel()
    m.create_item("$a", 1), m.create_item("$b", 1), m.add_stock("$a", 1)
    m.create_user("$u"), m.add_funds("$u", 10), m.create_order("$o", "$u")
    m.add_item("$o", "$a", 1), m.add_item("$o", "$b", 1)
    assert m.checkout("$o") == "fail"
    assert (m.stock, m.credit["$u"], m.orders["$o"].paid) == ({"$a": 1, "$b": 0}, 10, False)


# --- stress scenarios, step for step ------------------------------------------------------------

EXPECTED_OPS = {
    "s1_admin_stock": ["create_item", "add_stock"],
    "s2_checkout_one": ["create_item", "add_stock", "create_user", "add_funds", "create_order", "add_item",
                        "checkout"],
    "s3_checkout_two": ["create_item", "add_stock", "create_item", "add_stock", "create_user", "add_funds",
                        "create_order", "add_item", "add_item", "checkout"],
    "s4_remove_readd": ["create_item", "add_stock", "create_user", "add_funds", "create_order", "add_item",
                        "remove_item", "add_item", "checkout"],
    "s5_fail_no_stock": ["create_item", "add_stock", "create_item", "add_stock", "create_user", "add_funds",
                         "create_order", "add_item", "add_item", "find_item", "subtract_stock", "checkout"],
    "s6_fail_no_credit": ["create_item", "add_stock", "create_user", "create_order", "add_item", "checkout"],
    "s7_repeat_item": ["create_item", "add_stock", "create_user", "add_funds", "create_order", "add_item",
                       "add_item", "checkout"],
    "s8_checkout_twice": ["create_item", "add_stock", "create_user", "add_funds", "create_order", "add_item",
                          "checkout", "checkout"],
}
CHECKOUT_EXPECT = {"s2_checkout_one": ["ok"], "s3_checkout_two": ["ok"], "s4_remove_readd": ["ok"],
                   "s5_fail_no_stock": ["fail"], "s6_fail_no_credit": ["fail"], "s7_repeat_item": ["ok"],
                   "s8_checkout_twice": ["ok", "any"]}


def test_scenarios_step_for_step(tmp_path: Path) -> None:
    path = tmp_path / "s.wdmt"
    h = generate("stress", path, dialect="2023", sessions=600, seed=8)
    seen = set()
    checkouts_ok = 0
    with TraceReader(path) as r:
        for s in r:
            steps = s["steps"]
            sc = steps[0]["scenario"]
            seen.add(sc)
            assert all(st["scenario"] == sc for st in steps)
            assert [st["op"] for st in steps] == EXPECTED_OPS[sc]
            assert len(steps) == STEPS_PER_SCENARIO[SCENARIOS.index(sc)]
            ns = f"$s{s['sid']}."
            assert all(st["bind"] is None or st["bind"].startswith(ns) for st in steps)
            for st in steps:
                if st["op"] == "create_item":
                    assert 1 <= st["args"][0] <= 10
                elif st["op"] == "add_stock":
                    assert 100 <= st["args"][1] <= 1000
                elif st["op"] == "add_funds":
                    assert 10000 <= st["args"][1] <= 100000
                elif st["op"] == "add_item":
                    assert st["args"][2] == 1
            assert {st["expect"] for st in steps if st["op"] != "checkout"} == {"ok"}
            checkouts = [st["expect"] for st in steps if st["op"] == "checkout"]
            assert checkouts == CHECKOUT_EXPECT.get(sc, [])
            checkouts_ok += checkouts[:1] == ["ok"]
            if sc == "s7_repeat_item":  # one item, twice (one unit each: dialect 2023 has no quantity)
                adds = [st["args"] for st in steps if st["op"] == "add_item"]
                assert adds == [[ns + "order", ns + "item0", 1]] * 2
            if sc == "s5_fail_no_stock":
                added = [st["args"][1] for st in steps if st["op"] == "add_stock"][1]
                sub = [st for st in steps if st["op"] == "subtract_stock"][0]
                assert sub["args"] == [ns + "item1", added]
    assert seen == set(SCENARIOS)
    # a shop that charges re-checkouts again may succeed once more per s8 run: a range, not a figure
    n_s8 = h["exercises"]["recheckout_charged"]
    assert n_s8 > 0 and h["expect_range"]["checkout_ok"] == [checkouts_ok, checkouts_ok + n_s8]
    assert "checkout_ok" not in h["expect"]


def test_poor_users_make_checkouts_expected_to_fail(tmp_path: Path) -> None:
    # With funds 1..1 and prices 5..9 the model, not the scenario name, decides: every checkout fails.
    path = tmp_path / "p.wdmt"
    h = generate("stress", path, sessions=200, funds_range="1,1", price_range="5,9")
    with TraceReader(path) as r:
        assert {st["expect"] for s in r for st in s["steps"] if st["op"] == "checkout"} == {"fail"}
    assert h["expect"]["checkout_ok"] == 0  # s8 re-checkouts of unpaid orders are determined too


def test_s7_adds_one_then_two_units_under_2024(tmp_path: Path) -> None:
    path = tmp_path / "r.wdmt"
    generate("stress", path, sessions=100, seed=4, repeat_share=0.5, recheckout_share=0)
    with TraceReader(path) as r:
        runs = [s["steps"] for s in r if s["steps"][0]["scenario"] == "s7_repeat_item"]
    assert len(runs) == 50
    for steps in runs:
        adds = [st["args"] for st in steps if st["op"] == "add_item"]
        assert [a[2] for a in adds] == [1, 2] and adds[0][:2] == adds[1][:2]


def test_stress_expect_totals_follow_the_model(tmp_path: Path) -> None:
    path = tmp_path / "t.wdmt"
    h = generate("stress", path, dialect="2023", sessions=400, seed=1, seed_scenarios_only=True)
    stock = credit = ok = 0
    with TraceReader(path) as r:
        for s in r:
            m = ShopModel()
            for st in s["steps"]:
                assert getattr(m, st["op"])(*([st["bind"]] if st["bind"] else []), *st["args"]) == st["expect"]
            stock += sum(m.stock.values())
            credit += sum(m.credit.values())
            ok += sum(o.paid for o in m.orders.values())
    assert h["expect"] == {"checkout_ok": ok, "stock_total": stock, "credit_total": credit}


# --- consistency bounds: brute force over every serial order ----------------------------------

def _outcomes(stock: int, price: int, credit: int, items: list[int], users: list[int]):
    """Every (count, per-order results) over all serial orders of the checkouts."""
    results = set()
    for perm in itertools.permutations(range(len(items))):
        s: dict[int, int] = {}
        c: dict[int, int] = {}
        won = [False] * len(items)
        for k in perm:
            i, u = items[k], users[k]
            if s.get(i, stock) >= 1 and c.get(u, credit) >= price:
                s[i] = s.get(i, stock) - 1
                c[u] = c.get(u, credit) - price
                won[k] = True
        results.add(tuple(won))
    return results


@pytest.mark.parametrize("case", range(150))
def test_checkout_bounds_hold_for_every_interleaving(case: int) -> None:
    rng = random.Random(case)
    n = rng.randint(1, 6)
    n_items, n_users = rng.randint(1, 4), rng.randint(1, 4)
    stock, price = rng.randint(0, 3), rng.randint(1, 3)
    credit = rng.randint(0, 7)
    items = [rng.randrange(n_items) for _ in range(n)]
    users = [rng.randrange(n_users) for _ in range(n)]
    lo, hi, expects = checkout_bounds(stock, price, credit, items, users)
    outcomes = _outcomes(stock, price, credit, items, users)
    counts = {sum(w) for w in outcomes}
    assert lo <= min(counts) and max(counts) <= hi
    if lo == hi:
        assert counts == {lo}
    for k, e in enumerate(expects):
        got = {w[k] for w in outcomes}
        if e == "ok":
            assert got == {True}
        elif e == "fail":
            assert got == {False}


def test_consistency_defaults_are_not_always_determined() -> None:
    # A user with orders on two items may spend their one credit on the contested one, leaving the
    # other unsold: 1 checkout instead of 2. No aggregate can be promised then.
    lo, hi, expects = checkout_bounds(1, 1, 1, order_item=[0, 0, 1], order_user=[0, 1, 1])
    assert (lo, hi) == (1, 2) and expects == ["any", "any", "any"]
    assert _outcomes(1, 1, 1, [0, 0, 1], [0, 1, 1]) == {(False, True, False), (True, False, True)}


def test_consistency_expect_when_determined(tmp_path: Path) -> None:
    # Plenty of credit: only stock limits, so each item sells min(stock, demand).
    h = generate("consistency", tmp_path / "c.wdmt", items=10, stock=2, price=3, users=5, credit=10_000,
                 orders=60, seed=4)
    assert h["expect"] == {"checkout_ok": 20, "stock_total": 0, "credit_total": 5 * 10_000 - 60}
    assert h["expect_range"]["checkout_ok"] == [20, 20]
    # The seed's defaults: at most 100 (one per unit of stock); determined only for some seeds.
    h = generate("consistency", tmp_path / "d.wdmt", seed=1)
    lo, hi = h["expect_range"]["checkout_ok"]
    assert lo <= 100 == hi
    if lo < hi:
        assert h["expect"] == {}
    else:
        assert h["expect"] == {"checkout_ok": 100, "stock_total": 0, "credit_total": 900}
