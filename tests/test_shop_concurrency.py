"""The shop under concurrent checkouts, and each --inject bug producing its documented anomaly."""

from __future__ import annotations

import time

import pytest

from shop_http import ShopClient, fire

MODES = [pytest.param(False, id="one-port"), pytest.param(True, id="split")]
PRICE, STOCK, CREDIT, N = 3, 50, 5, 200


def _contended_checkouts(shop):
    """200 orders of one unit of one item (stock 50), one user each with credit for one; fire all."""
    c = ShopClient(shop.target)
    item = c.item(PRICE, stock=STOCK)
    users = [r["user_id"] for r in _json(fire(shop.target, [("create_user", [])] * N))]
    fire(shop.target, [("add_funds", [u, CREDIT]) for u in users])
    orders = [r["order_id"] for r in _json(fire(shop.target, [("create_order", [u]) for u in users]))]
    assert all(s == 200 for s, _ in fire(shop.target, [("add_item", [o, item, 1]) for o in orders]))
    results = fire(shop.target, [("checkout", [o]) for o in orders])
    snap = shop.snapshot()
    ok = sum(1 for s, _ in results if s == 200)
    assert all(s in (200, 400) for s, _ in results), {s for s, _ in results}
    stock = snap["items"][item]["stock"]
    credit = sum(snap["users"][u]["credit"] for u in users)
    paid = sum(1 for o in orders if snap["orders"][o]["paid"])
    charged_users = sum(1 for u in users if snap["users"][u]["credit"] != CREDIT)
    return ok, stock, credit, paid, charged_users


def _json(results):
    import json

    assert all(s == 200 for s, _ in results), results[:3]
    return [json.loads(b) for _, b in results]


@pytest.mark.parametrize("split", MODES)
def test_200_concurrent_checkouts_of_50_units(shop_factory, split):
    ok, stock, credit, paid, charged_users = _contended_checkouts(shop_factory(split=split))
    assert ok == STOCK
    assert stock == 0
    assert paid == STOCK
    assert credit == N * CREDIT - STOCK * PRICE  # charged exactly 50 times
    assert charged_users == STOCK


@pytest.mark.parametrize("split", MODES)
def test_lost_update_injection_shows_the_race(shop_factory, split):
    ok, stock, credit, paid, charged_users = _contended_checkouts(shop_factory(split=split, inject="lost-update"))
    consistent = ok == STOCK and stock == 0 and stock == STOCK - ok and credit == N * CREDIT - ok * PRICE
    assert not consistent, (ok, stock, credit)
    assert ok > STOCK  # more checkouts succeeded than there were units
    assert stock > STOCK - ok  # and the stock does not show them all


@pytest.mark.parametrize("split", MODES)
def test_credit_contention_with_compensation(shop_factory, split):
    """One user can afford 10 of 60 concurrent checkouts of distinct items: exactly 10 succeed and
    every refused checkout gives its stock back (the split order service compensates over HTTP)."""
    s = shop_factory(split=split)
    c = ShopClient(s.target)
    user = c.user(10 * 4)
    items = [c.item(4, stock=1) for _ in range(60)]
    orders = [c.order(user, (i, 1)) for i in items]
    results = fire(s.target, [("checkout", [o]) for o in orders])
    ok = [o for o, (st, _) in zip(orders, results) if st == 200]
    snap = s.snapshot()
    assert len(ok) == 10
    assert snap["users"][user]["credit"] == 0
    for o, i in zip(orders, items):
        paid = snap["orders"][o]["paid"]
        assert paid == (o in ok)
        assert snap["items"][i]["stock"] == (0 if paid else 1)


@pytest.mark.parametrize("split", MODES)
def test_same_order_checked_out_concurrently_pays_once(shop_factory, split):
    s = shop_factory(split=split)
    c = ShopClient(s.target)
    item, user = c.item(2, stock=100), c.user(1000)
    order = c.order(user, (item, 3))
    results = fire(s.target, [("checkout", [order])] * 30)
    assert sorted(st for st, _ in results) == [200] + [400] * 29
    assert (c.stock(item), c.credit(user)) == (97, 994)


@pytest.mark.parametrize("split", MODES)
def test_oversell_injection_lets_stock_go_negative(shop_factory, split):
    s = shop_factory(split=split, inject="oversell")
    c = ShopClient(s.target)
    item, user = c.item(1, stock=2), c.user(100)
    for _ in range(3):
        c.ok("checkout", c.order(user, (item, 1)))
    assert c.stock(item) == -1
    c.ok("subtract_stock", item, 5)
    assert c.stock(item) == -6
    assert c.credit(user) == 97  # credit is still guarded
    c.fails("pay", user, "o", 1000)


@pytest.mark.parametrize("split", MODES)
def test_no_rollback_injection_keeps_stock_of_a_failed_checkout(shop_factory, split):
    s = shop_factory(split=split, inject="no-rollback")
    c = ShopClient(s.target)
    a, b, user = c.item(5, stock=4), c.item(1, stock=4), c.user(6)
    order = c.order(user, (a, 1), (b, 2))  # costs 7, user has 6
    assert "credit" in c.fails("checkout", order)
    assert (c.stock(a), c.stock(b), c.credit(user)) == (3, 2, 6)  # stock gone, nothing paid
    assert c.ok("find_order", order)["paid"] is False
    short = c.order(user, (b, 3))  # out of stock: still nothing taken
    c.fails("checkout", short)
    assert c.stock(b) == 2


@pytest.mark.parametrize("split", MODES)
def test_double_charge_injection_charges_twice(shop_factory, split):
    s = shop_factory(split=split, inject="double-charge")
    c = ShopClient(s.target)
    item, user = c.item(4, stock=5), c.user(100)
    c.ok("checkout", c.order(user, (item, 2)))
    assert (c.stock(item), c.credit(user)) == (3, 84)  # 8 charged twice
    poor = c.user(4)
    c.ok("checkout", c.order(poor, (item, 1)))  # affordable once, charged twice anyway
    assert c.credit(poor) == -4
    c.ok("pay", user, "x", 1)  # a plain payment is charged once
    assert c.credit(user) == 83


@pytest.mark.parametrize("split", MODES)
def test_correct_shop_has_none_of_the_injected_anomalies(shop_factory, split):
    s = shop_factory(split=split)
    c = ShopClient(s.target)
    item, user = c.item(4, stock=2), c.user(10)
    c.ok("checkout", c.order(user, (item, 2)))
    assert (c.stock(item), c.credit(user)) == (0, 2)  # charged once
    c.fails("checkout", c.order(user, (item, 1)))  # no oversell
    c.ok("add_stock", item, 1)
    c.fails("checkout", c.order(user, (item, 1)))  # credit 2 < 4: refused
    assert c.stock(item) == 1  # and rolled back


def test_error_rate_answers_500_without_effect_and_is_seeded(shop_factory):
    def run(seed):
        s = shop_factory(error_rate=0.5, seed=seed)
        c = ShopClient(s.target)
        while True:  # the create itself may be failed by injection
            status, body = c.call("create_item", 1)
            if status == 200:
                break
            assert status == 500
        import json

        item = json.loads(body)["item_id"]
        statuses = [c.call("add_stock", item, 1)[0] for _ in range(100)]
        assert set(statuses) == {200, 500}
        snap = s.snapshot()
        assert snap["items"][item]["stock"] == statuses.count(200)
        assert len(snap["items"]) == 1
        return statuses

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_error_rate_one_fails_everything(shop_factory):
    s = shop_factory(error_rate=1.0)
    c = ShopClient(s.target)
    assert [c.call("create_user")[0] for _ in range(5)] == [500] * 5
    assert s.snapshot()["users"] == {}
    assert s.stats()["by_op"] == {"create_user": 5}


def test_latency_is_added_per_request(shop_factory):
    s = shop_factory(latency_ms=60)
    c = ShopClient(s.target)
    c.call("create_user")
    t = time.perf_counter()
    c.call("create_user")
    assert time.perf_counter() - t >= 0.055


@pytest.mark.parametrize("split", MODES)
def test_concurrent_mixed_load_conserves_stock_and_credit(shop_factory, split):
    """Checkouts (some repeated), stock and credit writes all at once: every final value must be
    exactly what the 2xx answers account for, and each paid order charged once."""
    import random

    rng = random.Random(42)
    s = shop_factory(split=split)
    c = ShopClient(s.target)
    items = [c.item(p, stock=20) for p in (1, 2, 3, 4, 5)]
    users = [c.user(30) for _ in range(10)]
    orders = {}
    for _ in range(80):
        lines = [(rng.choice(items), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        orders[c.order(rng.choice(users), *lines)] = lines
    calls = [("checkout", [o]) for o in orders] + [("checkout", [rng.choice(list(orders))]) for _ in range(20)]
    for _ in range(100):
        kind = rng.choice(["add_stock", "subtract_stock", "add_funds", "pay"])
        target = rng.choice(items if kind.endswith("stock") else users)
        calls.append((kind, [target, None, rng.randint(1, 6)] if kind == "pay" else [target, rng.randint(1, 6)]))
    rng.shuffle(calls)
    results = fire(s.target, calls)
    assert {st for st, _ in results} <= {200, 400}

    stock = {i: 20 for i in items}
    credit = {u: 30 for u in users}
    ok_checkouts: dict[str, int] = {}
    for (op, args), (status, _) in zip(calls, results):
        if status != 200:
            continue
        if op == "checkout":
            ok_checkouts[args[0]] = ok_checkouts.get(args[0], 0) + 1
        elif op == "add_stock":
            stock[args[0]] += args[1]
        elif op == "subtract_stock":
            stock[args[0]] -= args[1]
        elif op == "add_funds":
            credit[args[0]] += args[1]
        else:
            credit[args[0]] -= args[2]
    snap = s.snapshot()
    assert set(ok_checkouts.values()) <= {1}  # no order paid twice
    for o, lines in orders.items():
        assert snap["orders"][o]["paid"] == (o in ok_checkouts)
        if o in ok_checkouts:
            for i, q in lines:
                stock[i] -= q
            credit[snap["orders"][o]["user_id"]] -= snap["orders"][o]["total_cost"]
    assert 10 < len(ok_checkouts) < 80  # contention really happened both ways
    assert {i: snap["items"][i]["stock"] for i in items} == stock
    assert {u: snap["users"][u]["credit"] for u in users} == credit
    assert min(stock.values()) >= 0 and min(credit.values()) >= 0
