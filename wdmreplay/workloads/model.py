"""A small model of the shop's semantics, used while generating to decide each step's ``expect``.

The model holds what a correct shop would hold for the entities a trace creates — item stock and
price, user credit, order contents and paid flag — keyed by the trace's symbols. Each operation
method applies the operation's effect (if it succeeds) and returns ``"ok"`` or ``"fail"``, the
outcome a correct shop must give when nothing else touches these entities concurrently. Generators
use it only where that holds (a stress session's entities are private to it); where concurrency
decides, they write ``"any"`` instead of asking the model.

Semantics are API.md's: items start with stock 0, users with credit 0, orders empty and unpaid;
checkout is all-or-nothing; checking out a paid order is a policy question, so it is ``"any"``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OK, FAIL, ANY = "ok", "fail", "any"


@dataclass(slots=True)
class ModelOrder:
    """An order as a correct shop holds it: its user, {item symbol: quantity}, whether it is paid."""

    user: str
    items: Counter[str] = field(default_factory=Counter)
    paid: bool = False


class ShopModel:
    """Expected state of the items, users and orders one trace (or one session) creates."""

    __slots__ = ("stock", "price", "credit", "orders")

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.price: dict[str, int] = {}
        self.credit: dict[str, int] = {}
        self.orders: dict[str, ModelOrder] = {}

    # --- stock ------------------------------------------------------------------------------
    def create_item(self, item: str, price: int) -> str:
        """Create ``item`` at ``price`` with stock 0."""
        if price < 0:
            return FAIL
        self.stock[item] = 0
        self.price[item] = price
        return OK

    def add_stock(self, item: str, amount: int) -> str:
        """Add ``amount`` units to ``item``."""
        if item not in self.stock or amount < 0:
            return FAIL
        self.stock[item] += amount
        return OK

    def subtract_stock(self, item: str, amount: int) -> str:
        """Remove ``amount`` units; fails if stock would go below zero."""
        if item not in self.stock or amount < 0 or self.stock[item] < amount:
            return FAIL
        self.stock[item] -= amount
        return OK

    def find_item(self, item: str) -> str:
        """Read ``item``."""
        return OK if item in self.stock else FAIL

    # --- payment ----------------------------------------------------------------------------
    def create_user(self, user: str) -> str:
        """Create ``user`` with credit 0."""
        self.credit[user] = 0
        return OK

    def add_funds(self, user: str, amount: int) -> str:
        """Add ``amount`` to ``user``'s credit."""
        if user not in self.credit or amount < 0:
            return FAIL
        self.credit[user] += amount
        return OK

    def find_user(self, user: str) -> str:
        """Read ``user``."""
        return OK if user in self.credit else FAIL

    # --- orders -----------------------------------------------------------------------------
    def create_order(self, order: str, user: str) -> str:
        """Create an empty unpaid ``order`` for ``user``."""
        if user not in self.credit:
            return FAIL
        self.orders[order] = ModelOrder(user)
        return OK

    def add_item(self, order: str, item: str, quantity: int = 1) -> str:
        """Add ``quantity`` of ``item`` to ``order``."""
        o = self.orders.get(order)
        if o is None or item not in self.stock or quantity < 1:
            return FAIL
        o.items[item] += quantity
        return OK

    def remove_item(self, order: str, item: str) -> str:
        """Remove ``item`` (every unit of it) from ``order``; fails if the order lacks it."""
        o = self.orders.get(order)
        if o is None or item not in o.items:
            return FAIL
        del o.items[item]
        return OK

    def find_order(self, order: str) -> str:
        """Read ``order``."""
        return OK if order in self.orders else FAIL

    def total_cost(self, order: str) -> int:
        """Σ quantity × price over ``order``'s items."""
        price = self.price
        return sum(q * price[i] for i, q in self.orders[order].items.items())

    def checkout(self, order: str) -> str:
        """Pay ``order`` all-or-nothing: stock of every item and the user's credit, or nothing."""
        o = self.orders.get(order)
        if o is None:
            return FAIL
        if o.paid:
            return ANY  # re-checkout of a paid order: shop policy decides
        user, items = o.user, o.items
        stock = self.stock
        if any(stock[i] < q for i, q in items.items()):
            return FAIL
        cost = self.total_cost(order)
        if self.credit[user] < cost:
            return FAIL
        for i, q in items.items():
            stock[i] -= q
        self.credit[user] -= cost
        o.paid = True
        return OK
