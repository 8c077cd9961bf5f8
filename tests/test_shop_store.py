"""The shop's store without HTTP: integer parsing and the all-or-nothing rules, table-driven."""

from __future__ import annotations

import pytest

from wdmreplay.shop.store import MAX_VALUE, Order, OrderStore, PaymentStore, Refused, StockStore, parse_amount


@pytest.mark.parametrize("raw, value", [("0", 0), ("7", 7), ("007", 7), ("999999999999999", 10**15 - 1)])
def test_parse_amount_accepts_plain_digits(raw, value):
    assert parse_amount("amount", raw) == value


@pytest.mark.parametrize("raw", ["", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "\u0661", "\uff11",
                                 "1000000000000000", "9" * 40, "NaN", "a" * 100])
def test_parse_amount_refuses_everything_else_with_a_short_message(raw):
    with pytest.raises(Refused, match="amount must be a non-negative integer") as e:
        parse_amount("amount", raw)
    assert len(str(e.value)) < 120


def test_refusals_change_nothing():
    stock, pay = StockStore(), PaymentStore()
    item, user = stock.create(3), pay.create()
    stock.add(item, 2)
    pay.add_funds(user, 5)
    for call in (lambda: stock.subtract(item, 3), lambda: stock.add("nope", 1), lambda: pay.pay(user, 6),
                 lambda: pay.cancel(user, "o"), lambda: stock.add(item, MAX_VALUE)):
        with pytest.raises(Refused):
            call()
    assert (stock.items[item].stock, pay.users[user].credit) == (2, 5)


def test_oversell_and_double_charge_flags():
    stock, pay = StockStore(oversell=True), PaymentStore(double_charge=True)
    item, user = stock.create(1), pay.create()
    assert stock.subtract(item, 4) == -4
    pay.add_funds(user, 10)
    assert pay.pay(user, 3) == 7  # a plain payment: once
    assert pay.pay(user, 7, "o1", by_checkout=True) == -7  # a checkout's: twice, past zero
    p = pay.payments[(user, "o1")]
    assert (p.amount, p.by_checkout) == (14, True)
    with pytest.raises(Refused, match="paid by checkout"):
        pay.cancel(user, "o1")


def test_order_lines_totals_and_remove_item():
    orders = OrderStore()
    o = orders.create("u")
    orders.add_item(o, "a", 2, 5)
    orders.add_item(o, "b", 1, 7)
    orders.add_item(o, "a", 1, 5)
    order = orders.orders[o]
    assert order.needs() == {"a": 3, "b": 1} and order.total_cost == 22
    orders.remove_item(o, "a")
    assert order.items == [["a", 2], ["b", 1]] and order.total_cost == 17
    with pytest.raises(Refused, match="has no item"):
        orders.remove_item(o, "c")
    order.paid = True
    with pytest.raises(Refused, match="already paid"):
        orders.add_item(o, "a", 1, 5)
    assert order.total_cost == 17


def test_batch_init_orders_is_seeded():
    a, b = OrderStore(seed=3), OrderStore(seed=3)
    a.batch_init(50, 10, 5, 2)
    b.batch_init(50, 10, 5, 2)
    assert a.snapshot() == b.snapshot()
    assert all(len(o.items) == 2 and o.total_cost == 4 for o in a.orders.values())
    assert isinstance(a.orders["0"], Order)
