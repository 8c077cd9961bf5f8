"""The per-entity checkers: one order, item or user against its history, deciding and wording its anomaly.

:func:`check_order` (paid flag, lines, total), :func:`check_item` and :func:`check_user` (stock and
credit ranges, through :func:`check_entity`) read a :class:`CheckContext`; each yields at most one
anomaly, a primary kind decided by the shape of the discrepancy, other readings as ``tags`` (see
``docs/analysis.md``). The bounds come from :mod:`.rules` — the same functions the numpy screen
(:mod:`.screen`) uses. :func:`describe` adds the headline, arithmetic and candidate causes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..traces.results import INDETERMINATE
from . import rules
from .anomaly import Anomaly, fmt_range, id_key, one_anomaly
from .final_state import ENTITY_KINDS, FinalState, OrderState
from .history import History, Ledger, OrderLine, intervals, request_names
from .wording import EntityFacts, arithmetic, candidates, headline


def _overlapping(intervals: list) -> bool:
    """Whether any two (sent, done) intervals overlap — i.e. the entity saw concurrent writes."""
    if len(intervals) < 2:
        return False
    iv = sorted(intervals)
    end = iv[0][1]
    for s, d in iv[1:]:
        if s < end:
            return True
        end = max(end, d)
    return False


@dataclass(slots=True)
class Figures:
    """An item's stock or a user's credit, as the check sees it: what the history allows (``lo``..``hi``),
    what the 2xx answers alone imply, and what the final read returned. Summed over every entity (with
    :meth:`add`), the run's totals."""

    lo: int = 0
    hi: int = 0
    implied: int = 0
    final: int = 0

    def add(self, f: "Figures") -> None:
        self.lo += f.lo
        self.hi += f.hi
        self.implied += f.implied
        self.final += f.final


def zero_totals() -> dict[str, Figures]:
    """Running totals of the stock (items) and the credit (users), all zero."""
    return {"stock": Figures(), "credit": Figures()}


@dataclass
class CheckContext:
    """What every per-entity checker reads: the history, the final state, the policy and the order index."""

    hist: History
    fs: FinalState
    recheckout: str
    mult: dict = field(default_factory=dict)  # paid order -> (min, max) times its effect applies
    item_orders: dict = field(default_factory=lambda: defaultdict(list))  # item -> [(order, qty)]
    user_orders: dict = field(default_factory=lambda: defaultdict(list))  # user -> [order]
    short_items: set = field(default_factory=set)  # items with less stock than expected (checked before users)
    prices: dict = field(init=False)  # item -> price, each worked out on first use

    def __post_init__(self) -> None:
        self.prices = _Memo(self._price)

    def price(self, item: str) -> int | None:
        """An item's price: its batch_init price, its price as read back, or the one create_item price."""
        return self.prices[item]

    def _price(self, item: str) -> int | None:
        b = self.hist.batch_item(item)
        if b is not None:
            return b[1]
        if item in self.fs.items:
            return self.fs.items[item].price
        if len(self.hist.create_prices) == 1:
            return next(iter(self.hist.create_prices))
        return None


class _Memo(dict):
    """Key -> ``find(key)``, worked out on first use and kept."""

    def __init__(self, find: Callable[[str], Any]):
        super().__init__()
        self.find = find

    def __missing__(self, key: str) -> Any:
        value = self[key] = self.find(key)
        return value


def check_order(ctx: CheckContext, oid: str, o: OrderState) -> Anomaly | None:
    """An order against its checkouts (paid flag), its add_item/remove_item history and its prices."""
    rec = ctx.hist.orders.of(oid)
    lost, phantom = rules.checkout_disagrees(o.paid, rec.n_ok, rec.n_indet)
    found: list[Anomaly] = []
    if lost:
        found.append(Anomaly("lost_checkout", "order", oid, True, False,
                             f"{rec.n_ok} checkout(s) answered 2xx but the order is not paid", (oid,)))
    elif phantom:
        why = (f"{rec.n_fail} checkout(s) answered 4xx but the order is paid" if rec.n_fail
               else "order is paid but no checkout of it was sent")
        found.append(Anomaly("phantom_checkout", "order", oid, False, True, why, (oid,)))
    if not ctx.hist.batch_order(oid):
        found.extend(_check_lines(ctx, oid, o))
    total = _expected_total(ctx, o)
    if total is not None and total != o.total_cost:
        lines = ", ".join(f"{q} x {i} @ {ctx.price(i)}" for i, q in o.lines) or "no lines"
        found.append(Anomaly("wrong_total", "order", oid, total, o.total_cost,
                             f"total_cost {o.total_cost} but its lines cost {total} ({lines})", (oid,)))
    return one_anomaly(found)


def _expected_total(ctx: CheckContext, o: OrderState) -> int | None:
    total = 0
    for item, qty in o.lines:
        p = ctx.price(item)
        if p is None:
            return None
        total += rules.order_total(qty, p)
    return total


def _check_lines(ctx: CheckContext, oid: str, o: OrderState) -> list[Anomaly]:
    """Each line's quantity against what the answered add_item/remove_item built (indeterminate: all-or-nothing)."""
    lines = ctx.hist.lines.of(oid)
    if len(lines) == len(o.lines) and all(
            (ln := lines.get(item)) is not None and not ln.add_unc
            and rules.line_range(ln.add_ok, 0, ln.rem_ok, ln.rem_unc) == (qty, qty) for item, qty in o.lines):
        return []  # the common case: every line exactly what its answered requests built
    have = o.quantities
    found = []
    for item in sorted(set(lines) | set(have)):
        ln = lines.get(item) or OrderLine()
        actual = have[item]
        lo, hi = rules.line_range(ln.add_ok, sum(ln.add_unc), ln.rem_ok, ln.rem_unc)
        if lo <= actual <= hi and not ln.add_unc:
            continue  # the common case: exactly what the answered requests built
        reqs = request_names(ctx.hist, ln.requests)
        if actual < lo or (lo <= actual <= hi and not (ln.rem_ok or ln.rem_unc)
                           and not rules.reachable(actual - lo, ln.add_unc, True)):
            found.append(Anomaly("lost_order_line", "order", oid, fmt_range(lo, hi), actual,
                                 f"item {item}: quantity {actual}, but its answered add_item/remove_item "
                                 f"requests built {fmt_range(lo, hi)}", (oid,), (), reqs))
        elif actual > hi:
            why = (f"item {item}: quantity {actual}, but its add_item requests add at most {hi}" if ln.requests
                   else f"item {item}: quantity {actual}, but no add_item of it was sent to this order")
            found.append(Anomaly("phantom_order_line", "order", oid, fmt_range(lo, hi), actual, why, (oid,), (), reqs))
    return found


def _recheckout_extra(ctx: CheckContext, related: list[tuple[str, int]]) -> int:
    """Units/credit that re-checkouts of already-paid orders would take if each charged again."""
    if ctx.recheckout != "refuse":
        return 0
    extra = 0
    for o, w in related:
        rec = ctx.hist.orders.of(o)
        if o in ctx.mult and rec.n_ok + rec.n_indet > 1:
            extra += w * (rec.n_ok + rec.n_indet - 1)
    return extra


RECHECKOUT_HINT = ("; the pattern of re-checkout charging again (an already-paid order checked out again took "
                   "effect, as the course template does): if that is the shop's policy, check with "
                   "--recheckout charge")


def check_entity(ctx: CheckContext, kind: str, eid: str, initial: int, led: Ledger, actual: int,
                 related: list[tuple[str, int]]) -> tuple[Anomaly | None, int, int]:
    """One item's stock or user's credit against its expected range: (anomaly or None, lo, hi)."""
    mult, hist = ctx.mult, ctx.hist
    paid_lo = sum(w * mult[o][0] for o, w in related if o in mult)
    paid_hi = sum(w * mult[o][1] for o, w in related if o in mult)
    lo, hi = rules.entity_range(initial, led.add_ok, led.add_unc, led.sub_ok, led.sub_unc, paid_lo, paid_hi)
    value = "stock" if kind == "item" else "credit"
    rng = fmt_range(lo, hi)
    paid = [(o, w) for o, w in related if o in mult]
    found: list[Anomaly] = []
    if rules.oversold(actual, hi):
        why = (f"{value} is {actual}, below zero" if actual < 0
               else f"the successful operations take more {value} than was ever there (at most {hi} left)")
        found.append(Anomaly("oversell", kind, eid, rng, actual, why, tuple(o for o, _ in paid)))
    if lo <= actual <= hi:
        exact = led.exact and all(mult[o][0] == mult[o][1] for o, _ in paid)
        if not rules.reachable(actual - lo, led.unc, exact):
            found.append(Anomaly("lost_update", kind, eid, rng, actual,
                                 f"{value} {actual} is within {lo}..{hi} but no all-or-nothing combination of "
                                 f"the indeterminate operations gives it"))
        return one_anomaly(found), lo, hi
    concurrent = _overlapping(intervals(hist, led.writes + [hist.orders[o].rows for o, _ in related
                                                             if o in hist.orders]))
    unpaid = [(o, w) for o, w in related
              if o in ctx.fs.orders and not ctx.fs.orders[o].paid and o in hist.orders and hist.orders[o].attempted]
    if actual < lo:
        deficit = lo - actual
        hint = RECHECKOUT_HINT if 0 < deficit <= _recheckout_extra(ctx, related) else ""
        if kind == "item":
            ctx.short_items.add(eid)
        elif paid:
            # Missing credit could be an extra charge of a paid order or a charge of an unpaid one:
            # the stock side decides — an unpaid order that also lost stock half-happened.
            unpaid = [(o, w) for o, w in unpaid if any(i in ctx.short_items for i, _ in ctx.fs.orders[o].lines)]
        if unpaid and sum(w for _, w in unpaid) >= deficit:
            found.insert(0, Anomaly("non_atomic_checkout", kind, eid, rng, actual,
                                    f"{value} {deficit} lower than expected: taken by checkout(s) whose order is "
                                    f"not paid", tuple(o for o, _ in unpaid)))
        elif kind == "user" and (paid or not concurrent or hint):
            found.insert(0, Anomaly("double_charge", kind, eid, rng, actual,
                                    f"credit {deficit} lower than the paid orders and payments explain" + hint,
                                    tuple(o for o, _ in paid)))
        elif not (actual < 0 and kind == "item"):  # a negative stock is the oversell already found
            found.append(Anomaly("lost_update", kind, eid, rng, actual,
                                 f"{value} {deficit} lower than any serial order of the successful operations "
                                 f"gives" + hint))
    else:
        excess = actual - hi
        if not concurrent and paid and sum(w for _, w in paid) >= excess:
            any_ok = any(hist.orders[o].n_ok for o, _ in paid if o in hist.orders)
            found.append(Anomaly("lost_checkout" if any_ok else "non_atomic_checkout", kind, eid, rng, actual,
                                 f"{value} {excess} higher than expected: paid order(s) without their {value} effect",
                                 tuple(o for o, _ in paid)))
        else:
            found.append(Anomaly("lost_update", kind, eid, rng, actual,
                                 f"{value} {excess} higher than any serial order of the successful operations gives",
                                 tuple(o for o, _ in paid)))
    if found and found[0].kind == "oversell" and actual >= 0:
        # Not below zero: how the extra units went (a lost write, a paid order without its effect) is
        # the cause; "more sold than there was" stays as a tag.
        found.append(found.pop(0))
    return one_anomaly(found), lo, hi


def _implied(ctx: CheckContext, led: Ledger, initial: int, related: list[tuple[str, int]]) -> int:
    """What the 2xx responses alone imply for one entity."""
    charge = ctx.recheckout == "charge"
    taken = sum(w * rules.implied_takes(ctx.hist.orders.of(o).n_ok, charge) for o, w in related)
    return rules.implied_value(initial, led.add_ok, led.sub_ok, taken)


def check_item(ctx: CheckContext, eid: str) -> tuple[Anomaly | None, Figures]:
    """One item: its anomaly (or None) and the figures of its stock."""
    b = ctx.hist.batch_item(eid)
    initial = b[0] if b is not None else 0
    actual = ctx.fs.items[eid].stock
    related = ctx.item_orders[eid]
    led = ctx.hist.ledger("item", eid) or Ledger()
    a, lo, hi = check_entity(ctx, "item", eid, initial, led, actual, related)
    return a, Figures(lo, hi, _implied(ctx, led, initial, related), actual)


def check_user(ctx: CheckContext, eid: str) -> tuple[Anomaly | None, Figures]:
    """One user: its anomaly (or None) and the figures of its credit."""
    initial = ctx.hist.batch_user(eid) or 0
    actual = ctx.fs.users[eid].credit
    related = [(o, ctx.fs.orders[o].total_cost) for o in ctx.user_orders[eid]]
    led = ctx.hist.ledger("user", eid) or Ledger()
    if eid in ctx.hist.refunded:
        # A refund gives back at most what the user paid: the credit is bounded, not exact.
        led.add_unc += led.sub_ok + led.sub_unc + sum(w * ctx.mult[o][1] for o, w in related if o in ctx.mult)
        led.exact = False
    a, lo, hi = check_entity(ctx, "user", eid, initial, led, actual, related)
    return a, Figures(lo, hi, _implied(ctx, led, initial, related), actual)


def bound_unknown_orders(unknown: list[str], hist: History, fs: FinalState) -> None:
    """Widen the expected values touched by checked-out orders whose final state was not read.

    Such an order may or may not be paid: each of its items may have lost the units added to it
    (all-or-nothing), and its user — unknown, but one of the users who created more orders than the
    final state shows — may have paid its cost. Credit is then bounded, not checked exactly.
    """
    costs = []
    for oid in unknown:
        lines = {i: ln.add_ok + sum(ln.add_unc) for i, ln in hist.lines.of(oid).items()}
        for item, qty in lines.items():
            led = hist.items[item]
            led.sub_unc += qty
            led.unc.append(-qty)
            led.writes.append(hist.orders[oid].rows)
        costs.append(sum(q * (fs.items[i].price if i in fs.items else hist.max_price) for i, q in lines.items()))
    costs.sort(reverse=True)
    tab = fs.orders.table
    users, n = np.unique(tab.user, return_counts=True)
    shown = Counter({(tab.strings[u] if u >= 0 else None): c for u, c in zip(users.tolist(), n.tolist())})
    for user, n in hist.created_orders.items():
        k = n - shown[user]
        if k > 0:
            led = hist.users[user]
            led.sub_unc += sum(costs[:k])
            led.exact = False


def lost_ids(hist: History, fs: FinalState) -> dict[str, list[str]]:
    """Per kind, the entities the shop acknowledged (a 2xx create, or a 2xx batch_init range) and the
    final read found gone (answered 4xx): ``lost_entity``. Empty for files without ``bound_not_found``
    (written before it), whose 4xx reads stay "not read back"."""
    if fs.bound_not_found is None:
        return {}
    batch = {"item": lambda i: hist.batch_item(i) is not None, "user": lambda i: hist.batch_user(i) is not None,
             "order": hist.batch_order}
    out = {}
    for kind in ENTITY_KINDS:
        bound = fs.bound_not_found.get(kind, frozenset())  # the kinds as stored
        ids = [i for i in fs.not_found(kind) if i in bound or batch[kind](i)]
        if ids:
            out[kind] = sorted(ids, key=id_key)
    return out


def lost_anomalies(ctx: CheckContext) -> list[Anomaly]:
    """One ``lost_entity`` per acknowledged entity the final read answered "not found", with what it held."""
    out = []
    same: dict = {}  # (kind, initial) -> what an entity untouched since its creation lost (shared)
    for kind, ids in lost_ids(ctx.hist, ctx.fs).items():
        why = ctx.fs.not_found(kind)
        for eid in ids:
            said = why[eid][:80]
            if kind == "order":
                lines = ctx.hist.lines.of(eid)
                units = {i: ln.add_ok - ln.rem_ok for i, ln in lines.items() if ln.add_ok - ln.rem_ok > 0}
                rec = ctx.hist.orders.of(eid)
                held = ", ".join(f"{q} x item {i}" for i, q in sorted(units.items())) or "no answered add_item"
                paid = "; its checkout was answered 2xx (paid)" if rec.n_ok else ""
                out.append(Anomaly("lost_entity", "order", eid, sum(units.values()), None,
                                   f"order created with a 2xx, read back {said!r}; it held {held}{paid}", (eid,)))
                continue
            f = entity_facts(ctx, kind, eid)
            value, expected = _value_name(kind), fmt_range(f.lo, f.hi)
            detail = f"{kind} created with a 2xx, read back {said!r}; its acknowledged {value} was {expected}"
            # described here, once: a store restarted empty can lose hundreds of thousands of entities
            plain = f == EntityFacts(kind, f.initial, 0, 0, 0, 0, 0, 0, 0)
            key = (kind, f.initial) if plain else None
            if key is None or key not in same:
                told = arithmetic(f, None), candidates(f)
                if key is not None:
                    same[key] = told
            else:
                told = same[key]
            out.append(Anomaly("lost_entity", kind, eid, expected, None, detail, f.repeated, (), (),
                               headline("lost_entity", kind, eid, expected, None, detail), *told))
    return out


def _value_name(kind: str) -> str:
    return "stock" if kind == "item" else "credit"


def entity_facts(ctx: CheckContext, kind: str, eid: str) -> EntityFacts:
    """What the history did to item ``eid``'s stock or user ``eid``'s credit, and what it saw (candidates)."""
    hist, fs = ctx.hist, ctx.fs
    if kind == "item":
        b = hist.batch_item(eid)
        initial, led = (b[0] if b is not None else 0), hist.ledger(kind, eid)
        related = list(ctx.item_orders[eid])
    else:
        initial, led = hist.batch_user(eid) or 0, hist.ledger(kind, eid)
        related = [(o, fs.orders[o].total_cost) for o in ctx.user_orders[eid] if o in fs.orders]
    if led is None and not related:  # untouched since its batch_init or create: nothing more to gather
        return EntityFacts(kind, initial, 0, 0, 0, 0, 0, 0, 0)
    led = led or Ledger()
    paid = [(o, w) for o, w in related if o in ctx.mult]
    writes = list(led.writes) + [hist.orders[o].rows for o, _ in related if o in hist.orders]
    orders = [o for o, _ in related]
    repeated = []
    for o in orders:
        lines = hist.lines.of(o)
        mine = [lines[eid]] if kind == "item" and eid in lines else list(lines.values()) if kind == "user" else []
        if any(sum(len(r) for r in ln.requests) > 1 for ln in mine):
            repeated.append(o)
    rechecked = tuple(o for o in orders if o in hist.orders and hist.orders[o].n_ok + hist.orders[o].n_indet > 1)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r in led.writes]) if led.writes else np.zeros(0, np.int64)
    unanswered = (int(np.count_nonzero(np.isin(hist.cols["outcome"][rows], INDETERMINATE)))
                  + sum(hist.orders[o].n_indet for o in orders if o in hist.orders))
    return EntityFacts(kind, initial, led.add_ok, led.sub_ok, led.add_unc, led.sub_unc, len(paid),
                       sum(w * ctx.mult[o][0] for o, w in paid), sum(w * ctx.mult[o][1] for o, w in paid),
                       _overlapping(intervals(hist, writes)), tuple(repeated), rechecked, unanswered)


def _line_facts(ctx: CheckContext, a: Anomaly) -> tuple[str, ...]:
    """Candidate causes of an order's anomaly, from its add_item/checkout history."""
    hist = ctx.hist
    out = []
    lines = hist.lines.of(a.id)
    if _overlapping(intervals(hist, [r for ln in lines.values() for r in ln.requests])):
        out.append("concurrent add_item/remove_item on this order overlapped in time (lines overwritten?)")
    rep = [i for i, ln in lines.items() if sum(len(r) for r in ln.requests) > 1]
    if rep:
        out.append(f"an item added in more than one add_item ({', '.join(sorted(rep)[:3])}): repeated items collapsed?")
    rec = hist.orders.of(a.id)
    if rec.n_ok + rec.n_indet > 1:
        out.append(f"checked out {rec.n_ok + rec.n_indet} times (a re-checkout?)")
    if rec.n_indet or any(ln.add_unc or ln.rem_unc for ln in lines.values()):
        out.append("requests on it got no answer (a half-applied request?)")
    return tuple(out) or ("none seen in its history: serial requests, each answered",)


def describe(ctx: CheckContext, a: Anomaly) -> Anomaly:
    """``a`` with its headline, arithmetic and candidate causes filled in (:mod:`.wording`)."""
    if a.headline:
        return a  # described where it was found (lost_entity)
    head = headline(a.kind, a.entity, a.id, a.expected, a.actual, a.detail)
    if a.entity in ("item", "user"):
        f = entity_facts(ctx, a.entity, a.id)
        return replace(a, headline=head, arithmetic=arithmetic(f, a.actual), candidates=candidates(f))
    if a.entity == "order":
        return replace(a, headline=head, arithmetic=(a.detail,), candidates=_line_facts(ctx, a))
    return replace(a, headline=head)

