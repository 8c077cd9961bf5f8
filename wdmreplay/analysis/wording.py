"""What an anomaly says to a person: a one-line headline, the arithmetic, and candidate causes.

Computed from the anomaly and the facts of its entity's history (:class:`EntityFacts`, gathered by
the consistency checker); renderers only print these fields. A headline states the fact that is
impossible, in units ("oversold 8 units of item 3"), at most :data:`MAX_HEADLINE` characters; the
arithmetic is the sum that proves it, one term per line; ``candidates`` are behaviours seen in
the entity's history that could cause it (concurrent writes, repeated items, re-checkouts,
unanswered requests) — listed, never asserted: a checker knows *what* is impossible, not *why*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..terms import named, plural

MAX_HEADLINE = 120
# What a lost entity held, per entity kind (operations.ENTITY_KINDS; a test keeps them the same).
UNIT = {"item": "units of stock", "user": "credit", "order": "units in its lines"}


@dataclass(frozen=True, slots=True)
class EntityFacts:
    """What the recorded history did to one item's stock or user's credit (for the arithmetic)."""

    kind: str  # "item" | "user"
    initial: int
    add_ok: int
    sub_ok: int
    add_unc: int
    sub_unc: int
    paid_orders: int
    paid_lo: int
    paid_hi: int
    concurrent: bool = False
    repeated: tuple[str, ...] = ()  # orders that got one item in more than one add_item
    rechecked: tuple[str, ...] = ()  # orders checked out more than once
    unanswered: int = 0  # requests on it that got no answer

    @property
    def lo(self) -> int:
        return self.initial + self.add_ok - self.sub_ok - self.sub_unc - self.paid_hi

    @property
    def hi(self) -> int:
        return self.initial + self.add_ok + self.add_unc - self.sub_ok - self.paid_lo


def _span(v: Any) -> tuple[Any, Any]:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return v[0], v[1]
    return v, v


def _fmt(lo: Any, hi: Any) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_HEADLINE else text[:MAX_HEADLINE - 1] + "…"


def _value(kind: str) -> str:
    return "stock" if kind == "item" else "credit"


def headline(kind: str, entity: str, eid: str, expected: Any, actual: Any, detail: str) -> str:
    """The anomaly's fact in a person's words, ≤ :data:`MAX_HEADLINE` characters."""
    lo, hi = _span(expected)
    value = _value(entity)
    if kind == "lost_entity":
        held = f", holding {_fmt(lo, hi)} {UNIT[entity]}" if lo is not None else ""
        return _cut(f"{named(entity, eid)} lost: created with a 2xx{held}, now read back as not found")
    if entity in ("item", "user") and isinstance(actual, int) and isinstance(lo, int) and isinstance(hi, int):
        if entity == "item" and (actual < 0 or hi < 0):
            # what a person calls it, whichever kind is primary (a stock of 0 after 2xx answers that
            # sold 8 units more than there were is a lost_update tagged oversell)
            n = -min(actual, hi)
            return _cut(f"oversold {plural(n, 'unit')} of {named('item', eid)} (stock {actual})")
        if actual < 0 or hi < 0:
            return _cut(f"{named('user', eid)} spent {-min(actual, hi)} more credit than it ever had (credit {actual})")
        if kind in ("non_atomic_checkout", "lost_checkout") and actual < lo:
            return _cut(f"{value} of {named(entity, eid)} is {lo - actual} lower: taken by checkout(s) whose order is not paid")
        if kind in ("non_atomic_checkout", "lost_checkout") and actual > hi:
            return _cut(f"{value} of {named(entity, eid)} is {actual - hi} higher: paid order(s) without their {value} effect")
        if actual > hi:
            what = "higher than any serial order of the acknowledged operations allows"
            return _cut(f"{value} of {named(entity, eid)} is {actual - hi} {what}")
        if actual < lo:
            if kind == "double_charge":
                return _cut(f"{named('user', eid)} charged {lo - actual} more than its paid orders and payments explain")
            what = "lower than any serial order of the acknowledged operations allows"
            return _cut(f"{value} of {named(entity, eid)} is {lo - actual} {what}")
        return _cut(f"{value} {actual} of {named(entity, eid)}: no all-or-nothing mix of the unanswered operations gives it")
    if kind == "lost_checkout" and entity == "order":
        return _cut(f"{named('order', eid)} is not paid although its checkout was answered 2xx")
    if kind == "phantom_checkout":
        return _cut(f"{named('order', eid)} is paid although " + ("its checkout was refused (4xx)" if "4xx" in detail
                                                         else "no checkout of it was sent"))
    if kind == "wrong_total":
        return _cut(f"{named('order', eid)} has total_cost {actual} but its lines cost {expected}")
    if kind in ("lost_order_line", "phantom_order_line"):
        item = detail.split(":", 1)[0].replace("item ", "") if detail.startswith("item ") else "?"
        verb = "fewer" if kind == "lost_order_line" else "more"
        return _cut(f"{named('order', eid)} holds {actual} of {named('item', item)}: {verb} than its answered add_item built ({_fmt(lo, hi)})")
    if kind == "expectation_not_met":
        return _cut(f"{eid} is {actual}, outside the trace bound {_fmt(lo, hi)}")
    return _cut(f"{kind.replace('_', ' ')} on {named(entity, eid)}: {detail}")


def arithmetic(f: EntityFacts, actual: Any) -> tuple[str, ...]:
    """The sum behind a stock/credit anomaly, one term per line."""
    value = _value(f.kind)
    lines = [f"initial {value} {f.initial}",
             f"+ {f.add_ok} added by answered {'add_stock' if f.kind == 'item' else 'add_funds'}",
             f"- {f.sub_ok} taken by answered {'subtract_stock' if f.kind == 'item' else 'pay'}",
             f"- {_fmt(f.paid_lo, f.paid_hi)} taken by {f.paid_orders} paid order(s)"]
    if f.add_unc or f.sub_unc:
        lines.append(f"uncertain: +{f.add_unc} / -{f.sub_unc} (unanswered requests, orders not read back) "
                     f"may each have happened or not")
    lines.append(f"= {_fmt(f.lo, f.hi)} allowed; read back: {'not found' if actual is None else actual}")
    return tuple(lines)


def candidates(f: EntityFacts) -> tuple[str, ...]:
    """Behaviours in the entity's history that could explain the anomaly (possible causes, not asserted)."""
    out = []
    if f.concurrent:
        out.append("concurrent writes to it overlapped in time (a lost update under concurrency?)")
    if f.repeated:
        out.append(f"{len(f.repeated)} order(s) got one item in more than one add_item (repeated items collapsed?): "
                   + ", ".join(f.repeated[:3]))
    if f.rechecked:
        out.append(f"{len(f.rechecked)} order(s) checked out more than once (a re-checkout charging again?): "
                   + ", ".join(f.rechecked[:3]))
    if f.unanswered:
        out.append(f"{f.unanswered} request(s) on it got no answer (a half-applied request?)")
    if not out:
        out.append("none seen in its history: serial requests, each answered")
    return tuple(out)
