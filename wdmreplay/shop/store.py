"""The reference shop's in-memory state: items, users, orders, and request counters.

Every method here is synchronous and does all of its checks before any write, so a call made from
the event loop is atomic: nothing else runs between the check and the update. The HTTP layer
(:mod:`wdmreplay.shop.app`) decides which calls to combine and where (on purpose, for
``--inject``) to yield between a read and a write.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

from ..terms import named
from ..bugclasses import INJECT_KINDS  # deliberate, documented bugs the shop can be started with (docs/shop.md)

# Path integers: plain decimal digits, bounded so every total stays a 64-bit value.
MAX_AMOUNT = 10**15 - 1
MAX_VALUE = 2**62  # ceiling for any stock, credit or total_cost the shop will hold
MAX_BATCH = 2_000_000
_INT = re.compile(r"[0-9]{1,15}")


class Refused(Exception):
    """A request the shop refuses: answered 400 with this message, and nothing changed."""


def parse_amount(name: str, raw: str) -> int:
    """The non-negative integer in path segment ``raw``; :class:`Refused` if it is not one."""
    if not _INT.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise Refused(f"{name} must be a non-negative integer below {MAX_AMOUNT + 1}, got {shown!r}")
    return int(raw)


def _capped(name: str, value: int) -> int:
    if value > MAX_VALUE:
        raise Refused(f"{name} would exceed {MAX_VALUE}")
    return value


def _shown(entity: str, entity_id: str) -> str:
    """The entity in a refusal's words: "item-3" (the id says what it is) or "item x", cut at 40 characters."""
    return named(entity, entity_id if len(entity_id) <= 40 else entity_id[:40] + "...")


def _found(table: dict[str, Any], entity: str, entity_id: str) -> Any:
    """``table``'s ``entity_id``; :class:`Refused` ("item-3 not found") when it has none."""
    found = table.get(entity_id)
    if found is None:
        raise Refused(f"{_shown(entity, entity_id)} not found")
    return found


class Item:
    """A stock item: units in stock and unit price."""

    __slots__ = ("stock", "price")

    def __init__(self, stock: int, price: int):
        self.stock = stock
        self.price = price


class User:
    """A payment account: its credit."""

    __slots__ = ("credit",)

    def __init__(self, credit: int):
        self.credit = credit


class Payment:
    """What a user paid for one order (the 2023 dialect's ``/payment/pay/{user}/{order}/{amount}``), and
    whether a checkout paid it (such a payment cannot be cancelled on its own)."""

    __slots__ = ("amount", "by_checkout")

    def __init__(self, amount: int, by_checkout: bool):
        self.amount = amount
        self.by_checkout = by_checkout


class Order:
    """An order: its user, its lines ``[item_id, qty]``, the running total and whether it is paid."""

    __slots__ = ("user_id", "items", "total_cost", "paid", "prices")

    def __init__(self, user_id: str, items: list[list[Any]] | None = None, total_cost: int = 0,
                 prices: dict[str, int] | None = None):
        self.user_id = user_id
        self.items: list[list[Any]] = items if items is not None else []
        self.total_cost = total_cost
        self.paid = False
        # Unit price of each item when it was added, so remove_item needs no call to stock.
        self.prices: dict[str, int] = prices if prices is not None else {}

    def needs(self) -> dict[str, int]:
        """Units required per item id (repeated lines summed), in first-seen order."""
        need: Counter[str] = Counter()
        for item_id, qty in self.items:
            need[item_id] += qty
        return need

    def as_json(self, order_id: str) -> dict[str, Any]:
        """The find_order response body."""
        return {
            "order_id": order_id,
            "paid": self.paid,
            "items": [[i, q] for i, q in self.items],
            "user_id": self.user_id,
            "total_cost": self.total_cost,
        }


class IdSource:
    """Fresh ids for created entities; prefixed so they never collide with batch_init's "0".."n-1"."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.n = 0

    def next(self) -> str:
        """The next unused id."""
        self.n += 1
        return f"{self.prefix}{self.n}"


class StockStore:
    """The stock service's state."""

    def __init__(self, oversell: bool = False):
        self.oversell = oversell
        self.items: dict[str, Item] = {}
        self.ids = IdSource("item-")

    def find(self, item_id: str) -> Item:
        """The item ``item_id``; :class:`Refused` if unknown."""
        return _found(self.items, "item", item_id)

    def create(self, price: int) -> str:
        """Create an item with stock 0; its id."""
        item_id = self.ids.next()
        self.items[item_id] = Item(0, price)
        return item_id

    def touched(self, item_id: str) -> None:
        """Note that ``item_id`` was changed outside this store's methods (a durable store persists it)."""

    def add(self, item_id: str, amount: int) -> int:
        """Add ``amount`` units; the new stock."""
        item = self.find(item_id)
        item.stock = _capped("stock", item.stock + amount)
        return item.stock

    def check_subtract(self, item_id: str, amount: int) -> Item:
        """The item, if ``amount`` units can be taken from it (always, with ``oversell``)."""
        item = self.find(item_id)
        if item.stock < amount and not self.oversell:
            raise Refused(f"{_shown('item', item_id)}: not enough stock ({item.stock} < {amount})")
        return item

    def subtract(self, item_id: str, amount: int) -> int:
        """Take ``amount`` units; the new stock. Refused if stock would go below 0."""
        item = self.check_subtract(item_id, amount)
        item.stock -= amount
        return item.stock

    def batch_init(self, n: int, stock: int, price: int) -> None:
        """Create items "0".."n-1" with ``stock`` units at ``price`` each (replacing same-id items)."""
        if n > MAX_BATCH:
            raise Refused(f"n must be at most {MAX_BATCH}")
        self.items.update((str(i), Item(stock, price)) for i in range(n))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every item as ``{id: {"stock", "price"}}``."""
        return {k: {"stock": v.stock, "price": v.price} for k, v in self.items.items()}


class PaymentStore:
    """The payment service's state: credits, and the 2023 dialect's per-order payments."""

    def __init__(self, double_charge: bool = False) -> None:
        self.double_charge = double_charge
        self.users: dict[str, User] = {}
        # (user_id, order_id) -> [amount, made_by_checkout]
        self.payments: dict[tuple[str, str], Payment] = {}  # by (user, order)
        self.ids = IdSource("user-")

    def find(self, user_id: str) -> User:
        """The user ``user_id``; :class:`Refused` if unknown."""
        return _found(self.users, "user", user_id)

    def create(self) -> str:
        """Create a user with credit 0; its id."""
        user_id = self.ids.next()
        self.users[user_id] = User(0)
        return user_id

    def touched(self, user_id: str) -> None:
        """Note that ``user_id`` was changed outside this store's methods (a durable store persists it)."""

    def add_funds(self, user_id: str, amount: int) -> int:
        """Add ``amount`` credit; the new credit."""
        user = self.find(user_id)
        user.credit = _capped("credit", user.credit + amount)
        return user.credit

    def check_pay(self, user_id: str, amount: int) -> User:
        """The user, if ``amount`` can be charged without the credit going below 0."""
        user = self.find(user_id)
        if user.credit < amount:
            raise Refused(f"{_shown('user', user_id)}: not enough credit ({user.credit} < {amount})")
        return user

    def record(self, user_id: str, order_id: str | None, amount: int, by_checkout: bool) -> None:
        """Remember a payment for ``order_id`` (so status and cancel can find it)."""
        if order_id is not None:
            rec = self.payments.setdefault((user_id, order_id), Payment(0, by_checkout))
            rec.amount += amount
            rec.by_checkout = rec.by_checkout or by_checkout

    def pay(self, user_id: str, amount: int, order_id: str | None = None, by_checkout: bool = False) -> int:
        """Charge ``amount``; the new credit. Refused if credit would go below 0.

        With ``double_charge`` (an injected bug) a checkout's payment is taken twice, even when the
        second charge drives the credit negative.
        """
        user = self.check_pay(user_id, amount)
        charged = 2 * amount if self.double_charge and by_checkout else amount
        user.credit -= charged
        self.record(user_id, order_id, charged, by_checkout)
        return user.credit

    def cancel(self, user_id: str, order_id: str) -> int:
        """Refund the payment made with ``pay`` for ``order_id``; the new credit."""
        user = self.find(user_id)
        rec = self.payments.get((user_id, order_id))
        if rec is None:
            raise Refused(f"no payment by {_shown('user', user_id)} for {_shown('order', order_id)}")
        if rec.by_checkout:
            # Refunding a checkout here would leave the order paid without its charge.
            raise Refused(f"{_shown('order', order_id)} was paid by checkout; its payment cannot be cancelled")
        user.credit = _capped("credit", user.credit + rec.amount)
        del self.payments[(user_id, order_id)]
        return user.credit

    def status(self, user_id: str, order_id: str) -> bool:
        """Whether a payment by ``user_id`` for ``order_id`` is on record."""
        self.find(user_id)
        return (user_id, order_id) in self.payments

    def batch_init(self, n: int, credit: int) -> None:
        """Create users "0".."n-1" with ``credit`` each (replacing same-id users)."""
        if n > MAX_BATCH:
            raise Refused(f"n must be at most {MAX_BATCH}")
        self.users.update((str(i), User(credit)) for i in range(n))

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every user as ``{id: {"credit"}}``."""
        return {k: {"credit": v.credit} for k, v in self.users.items()}


class OrderStore:
    """The order service's state."""

    # The injected repeat-collapse bug (set by the shop): a checkout keeps one quantity per item id,
    # the last line's, so adding 1 then 2 units of an item charges for 3 and takes 2.
    collapse_repeats = False

    def __init__(self, seed: int = 0, wrong_total: bool = False):
        self.wrong_total = wrong_total
        self.orders: dict[str, Order] = {}
        self.ids = IdSource("order-")
        self.rng = random.Random(seed)  # which items batch_init puts in each order

    def find(self, order_id: str) -> Order:
        """The order ``order_id``; :class:`Refused` if unknown."""
        return _found(self.orders, "order", order_id)

    def get_unpaid(self, order_id: str) -> Order:
        """The order, if it is not paid yet (a paid order is frozen)."""
        order = self.find(order_id)
        if order.paid:
            raise Refused(f"{_shown('order', order_id)} is already paid")
        return order

    def create(self, user_id: str) -> str:
        """Create an empty unpaid order for ``user_id``; its id."""
        order_id = self.ids.next()
        self.orders[order_id] = Order(user_id)
        return order_id

    def add_item(self, order_id: str, item_id: str, qty: int, price: int) -> None:
        """Append a line of ``qty`` units at ``price``; refused on a paid order.

        With ``wrong_total`` (an injected bug) the total counts each distinct item's unit price
        once, ignoring the quantity and repeated lines: it ends below Σ qty × price.
        """
        order = self.get_unpaid(order_id)
        if self.wrong_total:
            cost = 0 if item_id in order.prices else price
        else:
            cost = qty * price
        total = _capped("total_cost", order.total_cost + cost)
        order.items.append([item_id, qty])
        order.total_cost = total
        order.prices[item_id] = price

    def needs(self, order: Order) -> dict[str, int]:
        """Units a checkout of ``order`` takes per item id (the last line's only, with repeat-collapse)."""
        if self.collapse_repeats:
            return {item_id: qty for item_id, qty in order.items}
        return order.needs()

    def mark_paid(self, order_id: str) -> None:
        """Mark the order paid (the last step of a checkout)."""
        self.orders[order_id].paid = True

    def remove_item(self, order_id: str, item_id: str) -> None:
        """Remove one unit of ``item_id`` (from its last line); refused if absent or paid."""
        order = self.get_unpaid(order_id)
        for idx in range(len(order.items) - 1, -1, -1):
            line = order.items[idx]
            if line[0] == item_id and line[1] > 0:
                break
        else:
            raise Refused(f"{_shown('order', order_id)} has no {_shown('item', item_id)}")
        price = order.prices[item_id]  # add_item set it
        line[1] -= 1
        if line[1] == 0:
            del order.items[idx]
        order.total_cost = max(0, order.total_cost - price)

    def remove(self, order_id: str) -> None:
        """Delete an unpaid order."""
        self.get_unpaid(order_id)
        del self.orders[order_id]

    def batch_init(self, n: int, n_items: int, n_users: int, item_price: int) -> None:
        """Create orders "0".."n-1", each of 2 random items (qty 1) of a random user."""
        if n > MAX_BATCH:
            raise Refused(f"n must be at most {MAX_BATCH}")
        if n and (n_items < 1 or n_users < 1):
            raise Refused("n_items and n_users must be at least 1")
        rnd = self.rng.randrange
        cost = _capped("total_cost", 2 * item_price)
        self.orders.update(
            (str(i), _batch_order(str(rnd(n_users)), str(rnd(n_items)), str(rnd(n_items)), item_price, cost))
            for i in range(n)
        )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every order as ``{id: find_order body without order_id}``."""
        out = {}
        for k, o in self.orders.items():
            d = o.as_json(k)
            del d["order_id"]
            out[k] = d
        return out


def _batch_order(user_id: str, a: str, b: str, price: int, cost: int) -> Order:
    return Order(user_id, [[a, 1], [b, 1]], cost, {a: price, b: price})


class Stats:
    """Counters of API requests received, by operation name."""

    def __init__(self) -> None:
        self.by_op: Counter[str] = Counter()

    def count(self, op_name: str) -> None:
        """Count one request for ``op_name``."""
        self.by_op[op_name] += 1

    def as_json(self) -> dict[str, Any]:
        """``{"requests": total, "by_op": {op: n}}``."""
        return {"requests": sum(self.by_op.values()), "by_op": dict(self.by_op)}

    def clear(self) -> None:
        """Reset every counter to zero."""
        self.by_op.clear()
