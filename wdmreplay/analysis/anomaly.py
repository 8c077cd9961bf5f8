"""The consistency anomaly: its record, the kinds in report order, and how one entity's findings combine.

What every part of the checker shares (:mod:`.history`, :mod:`.checkers`, :mod:`.screen`) and what the
reports read (``KINDS``, ``KIND_MEANING``); a new anomaly kind goes here (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import WdmError
from .wording import headline

# Anomaly kinds, in report order.
KINDS = ("lost_entity", "lost_checkout", "phantom_checkout", "non_atomic_checkout", "oversell", "lost_update",
         "double_charge", "lost_order_line", "phantom_order_line", "wrong_total", "expectation_not_met")
KIND_MEANING = {
    "lost_entity": "an item, user or order created with a 2xx (or batch_init) that the final read answered "
                   "\"not found\" (4xx): acknowledged data the shop lost, with the stock/credit/lines it held",
    "lost_checkout": "2xx checkout whose order is not paid, or paid order without its stock/credit effect",
    "phantom_checkout": "checkout answered 4xx (never 2xx or indeterminate) but its order is paid",
    "non_atomic_checkout": "checkout whose stock, credit and paid effects disagree (stock/credit moved, order unpaid)",
    "oversell": "stock or credit below zero, or more units sold than were ever there",
    "lost_update": "final stock/credit that no serial order of the successful operations explains",
    "double_charge": "credit reduced more than the paid orders and payments explain",
    "lost_order_line": "an order holds fewer units of an item than its answered add_item/remove_item built",
    "phantom_order_line": "an order holds more units of an item (or an item) than its add_item requests could add",
    "wrong_total": "an order's total_cost differs from the sum of quantity x price of its lines",
    "expectation_not_met": "an aggregate expectation or proven bound of the trace header (checkout_ok, "
                           "stock_total, credit_total) not met",
}
RECHECKOUT_POLICIES = ("refuse", "charge")


class AnalysisError(WdmError):
    """Results that cannot be analysed as asked (no args loaded, unknown policy, …)."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One consistency anomaly: its kind, the entity, expected vs actual, related orders and requests.

    ``tags`` are the other kinds the same discrepancy could also be read as (one cause, one anomaly);
    ``requests`` name the requests involved as ``"session S step K"``. ``headline`` is the fact in a
    person's words (≤ 120 characters), ``arithmetic`` the sum that proves it (one term per line),
    ``candidates`` behaviours in the entity's history that could cause it — never asserted
    (:mod:`.wording`).
    """

    kind: str
    entity: str  # "item" | "user" | "order" | "aggregate"
    id: str
    expected: Any  # int, [lo, hi] range, bool (paid) or None
    actual: Any
    detail: str
    orders: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    headline: str = ""
    arithmetic: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"kind": self.kind, "entity": self.entity, "id": self.id, "expected": self.expected,
                "actual": self.actual, "detail": self.detail, "orders": list(self.orders),
                "tags": list(self.tags), "requests": list(self.requests),
                "headline": self.headline or headline(self.kind, self.entity, self.id, self.expected, self.actual,
                                                      self.detail),
                "arithmetic": list(self.arithmetic), "candidates": list(self.candidates)}


def fmt_range(lo: int, hi: int) -> Any:
    """A range as the anomaly and the totals show it: the value when ``lo == hi``, else ``[lo, hi]``."""
    return lo if lo == hi else [lo, hi]


def one_anomaly(candidates: list[Anomaly]) -> Anomaly | None:
    """One anomaly for one entity: the first candidate is primary, the others become its tags."""
    if not candidates:
        return None
    first, rest = candidates[0], candidates[1:]
    tags = tuple(dict.fromkeys(a.kind for a in rest if a.kind != first.kind))
    orders = tuple(dict.fromkeys(first.orders + tuple(o for a in rest for o in a.orders)))
    detail = first.detail + "".join(f"; also {a.kind}: {a.detail}" for a in rest)
    return Anomaly(first.kind, first.entity, first.id, first.expected, first.actual, detail, orders, tags,
                   first.requests + tuple(r for a in rest for r in a.requests))


def id_key(s: str) -> tuple:
    """Sort ids numerically when they are numbers, so "10" comes after "9"."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
