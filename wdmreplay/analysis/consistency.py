"""Consistency checker: history + final state → anomalies, in the spirit of Jepsen.

What a correct shop must end with is recomputed per entity from the recorded operations:

- item stock  = initial + Σ add_stock(2xx) − Σ subtract_stock(2xx) − Σ over PAID orders of qty
- user credit = initial + Σ add_funds(2xx) − Σ pay(2xx)          − Σ over PAID orders of total_cost

where *initial* is 0 for created entities and the batch_init value for batch-initialised ones, and an
order's contents come from the final snapshot. Using the final ``paid`` flag (rather than each
checkout's response) is what makes indeterminate checkouts (5xx, timeout, connection error) work:
either outcome is allowed, but the order's paid flag, its items' stock and its user's credit must
agree. Indeterminate add_stock / subtract_stock / add_funds / pay make the expected value a range.

Per-entity checks come first (each item, user, order); the global sums second (the trace header's
``expect`` and the original benchmark's four figures). When a value is off, which checkout caused
it is ambiguous if many orders touch one entity, so the *kind* is decided by the shape of the
discrepancy — its sign, whether unpaid or paid orders could explain it, and whether the entity saw
concurrent writes — which keeps every kind reliably detected (see ``docs/analysis.md``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..api import OP_CODES, WdmError
from ..traces.results import CONN_ERROR, ERROR, FAIL, INDETERMINATE, OK, SKIPPED, TIMEOUT, Results

# Anomaly kinds, in report order.
KINDS = ("lost_checkout", "phantom_checkout", "non_atomic_checkout", "oversell", "lost_update",
         "double_charge", "expectation_not_met")
KIND_MEANING = {
    "lost_checkout": "2xx checkout whose order is not paid, or paid order without its stock/credit effect",
    "phantom_checkout": "checkout answered 4xx (never 2xx or indeterminate) but its order is paid",
    "non_atomic_checkout": "checkout whose stock, credit and paid effects disagree (stock/credit moved, order unpaid)",
    "oversell": "stock or credit below zero, or more units sold than were ever there",
    "lost_update": "final stock/credit that no serial order of the successful operations explains",
    "double_charge": "credit reduced more than the paid orders and payments explain",
    "expectation_not_met": "an aggregate expectation of the trace header (checkout_ok, stock_total, credit_total) not met",
}
RECHECKOUT_POLICIES = ("refuse", "charge")

_OK, _FAIL, _INDET = 0, 1, 2
_CLASS = {OK: _OK, FAIL: _FAIL, ERROR: _INDET, TIMEOUT: _INDET, CONN_ERROR: _INDET}
# Operations whose effects the checker sums; and those read only to bound orders the final read missed.
_EFFECTS = ("add_stock", "subtract_stock", "add_funds", "pay", "checkout", "batch_init_stock",
            "batch_init_users", "cancel_payment")
_SHAPES = ("create_item", "create_order", "add_item")


class AnalysisError(WdmError):
    """Results that cannot be analysed as asked (no args loaded, unknown policy, …)."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One consistency anomaly: its kind, the entity, expected vs actual, and related orders."""

    kind: str
    entity: str  # "item" | "user" | "order" | "aggregate"
    id: str
    expected: Any  # int, [lo, hi] range, bool (paid) or None
    actual: Any
    detail: str
    orders: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"kind": self.kind, "entity": self.entity, "id": self.id, "expected": self.expected,
                "actual": self.actual, "detail": self.detail, "orders": list(self.orders)}


@dataclass
class _Ledger:
    """Known and uncertain effects of the recorded operations on one item's stock or user's credit."""

    add_ok: int = 0
    add_unc: int = 0  # indeterminate additions: anything from 0 to this may have happened
    sub_ok: int = 0
    sub_unc: int = 0
    unc: list = field(default_factory=list)  # each indeterminate delta (+add / -sub), all-or-nothing
    exact: bool = True  # False when the uncertain part is only bounded (orders whose state is unknown)
    writes: list = field(default_factory=list)  # (sent, done) of requests that may have written


@dataclass
class _Order:
    n_ok: int = 0
    n_fail: int = 0
    n_indet: int = 0
    intervals: list = field(default_factory=list)

    @property
    def attempted(self) -> bool:
        return self.n_ok + self.n_fail + self.n_indet > 0


@dataclass
class ConsistencyResult:
    """What the checker found: anomalies, per-entity counts checked, checkout tallies, figures."""

    anomalies: list[Anomaly]
    checked: dict[str, int]  # {"items", "users", "orders"} checked against the final state
    checkouts: dict[str, int]  # {"ok", "fail", "indeterminate", "skipped", "paid_orders"}
    aggregates: list[dict]  # [{key, expected, actual, status, note}]
    benchmark: dict[str, int]  # the original benchmark's four figures
    totals: dict[str, Any]  # {"stock": {"expected": [lo, hi], "implied_by_2xx", "final"}, "credit": …}
    notes: list[str]
    final_state: bool
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped


def _sent_rows(results: Results, op_codes: list[int]) -> Iterator[tuple[int, int, list, tuple[float, float]]]:
    """(op code, outcome class, args, (sent, done)) of every sent row of the given operations.

    The selection and the column conversions are vectorized; only the selected rows are walked.
    """
    cols, args = results.cols, results.args
    rows = np.nonzero(np.isin(cols["op"], op_codes) & (cols["outcome"] != SKIPPED))[0]
    cls = [_CLASS[x] for x in cols["outcome"][rows].tolist()]
    for i, o, c, s, d in zip(rows.tolist(), cols["op"][rows].tolist(), cls, cols["sent"][rows].tolist(),
                             cols["done"][rows].tolist()):
        yield o, c, args[i] or [], (s, d)


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


MAX_EXACT_UNCERTAIN = 12  # beyond this many uncertain deltas per entity, accept the whole range


def _reachable(offset: int, deltas: list[int], exact: bool) -> bool:
    """Whether ``lo + offset`` is a sum of some subset of the uncertain deltas (each all-or-nothing).

    Only indeterminate add/subtract/add_funds/pay are checked exactly; with re-checkout multiplicity
    ranges or too many uncertain operations, any value in the range is accepted.
    """
    if not exact or not deltas or len(deltas) > MAX_EXACT_UNCERTAIN:
        return True
    # Measured from lo, every subtraction not taken and every addition taken raises the value.
    sums = {0}
    for d in deltas:
        sums |= {x + abs(d) for x in sums}
    return offset in sums


def _batch_value(batches: list[tuple[int, int]], entity_id: str) -> int | None:
    """The batch_init value of ``entity_id`` if a batch_init created it (the last one wins)."""
    if not entity_id.isdigit():
        return None
    k = int(entity_id)
    for n, value in reversed(batches):
        if k < n:
            return value
    return None


def _as_int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _fmt_range(lo: int, hi: int) -> Any:
    return lo if lo == hi else [lo, hi]


def check_consistency(results: Results, *, recheckout: str = "refuse") -> ConsistencyResult:
    """Recompute every item's stock and user's credit from the history and compare with the final state.

    ``results`` must be loaded with ``with_args=True``. ``recheckout`` is the policy for checking out
    an already-paid order: ``refuse`` (counted once; further 2xx must be no-ops) or ``charge`` (every
    checkout that took effect charges again, as the course template does).
    """
    if recheckout not in RECHECKOUT_POLICIES:
        raise AnalysisError(f"unknown re-checkout policy {recheckout!r}; choose refuse or charge")
    if results.args is None:
        raise AnalysisError(f"{results.path}: the consistency check needs the request args (load with with_args=True)")
    cols = results.cols
    notes: list[str] = []
    items: dict[str, _Ledger] = defaultdict(_Ledger)
    users: dict[str, _Ledger] = defaultdict(_Ledger)
    orders: dict[str, _Order] = defaultdict(_Order)
    created_orders: Counter = Counter()  # user -> orders created with a 2xx
    max_price = 0  # the highest price any item was created with: bounds costs of unread items
    refunded: set[str] = set()  # users with a (possibly) successful cancel_payment
    added_lines: dict[str, Counter] = defaultdict(Counter)  # order -> item -> units added (2xx or indeterminate)
    batch_items: list[tuple[int, int]] = []
    batch_users: list[tuple[int, int]] = []
    n_checkout = {"ok": 0, "fail": 0, "indeterminate": 0, "skipped": 0}

    code = {name: OP_CODES[name] for name in _EFFECTS + _SHAPES}
    op, outcome = cols["op"], cols["outcome"]
    is_checkout = op == code["checkout"]
    n_checkout["skipped"] = int(np.count_nonzero(is_checkout & (outcome == SKIPPED)))
    undetermined = int(np.count_nonzero(np.isin(outcome, (*INDETERMINATE, SKIPPED))))
    for o, cls, a, interval in _sent_rows(results, [code[n] for n in _EFFECTS]):
        if o == code["checkout"]:
            rec = orders[str(a[0])]
            if cls == _OK:
                rec.n_ok += 1
            elif cls == _FAIL:
                rec.n_fail += 1
            else:
                rec.n_indet += 1
            rec.intervals.append(interval)
            continue
        if cls == _FAIL:
            continue  # a 4xx of a simple operation is taken as no effect
        if o == code["cancel_payment"]:
            refunded.add(str(a[0]))  # 2023 dialect: a refund of unknown amount
            continue
        if o == code["batch_init_stock"]:
            batch_items.append((_as_int(a[0]), _as_int(a[1])))
            max_price = max(max_price, _as_int(a[2]))
            continue
        if o == code["batch_init_users"]:
            batch_users.append((_as_int(a[0]), _as_int(a[1])))
            continue
        ledger = items[str(a[0])] if o in (code["add_stock"], code["subtract_stock"]) else users[str(a[0])]
        amount = _as_int(a[-1])
        adds = o in (code["add_stock"], code["add_funds"])
        if cls == _OK:
            if adds:
                ledger.add_ok += amount
            else:
                ledger.sub_ok += amount
        elif adds:
            ledger.add_unc += amount
            ledger.unc.append(amount)
        else:
            ledger.sub_unc += amount
            ledger.unc.append(-amount)
        ledger.writes.append(interval)
    for rec in orders.values():
        n_checkout["ok"] += rec.n_ok
        n_checkout["fail"] += rec.n_fail
        n_checkout["indeterminate"] += rec.n_indet

    final = results.final
    if final is None:
        notes.append("no final state recorded: per-entity consistency NOT checked (replay with final read)")
        return ConsistencyResult([], {"items": 0, "users": 0, "orders": 0}, dict(n_checkout, paid_orders=0),
                                 [], {}, {}, notes, False, undetermined)
    f_items: dict = final.get("items") or {}
    f_users: dict = final.get("users") or {}
    f_orders: dict = final.get("orders") or {}
    missing = final.get("missing") or {}
    for kind in ("item", "user", "order"):
        if missing.get(kind):
            notes.append(f"{len(missing[kind])} {kind}(s) could not be read back; they are not checked")
    unknown_orders = sorted(o for o in orders if o not in f_orders and orders[o].n_ok + orders[o].n_indet)
    if unknown_orders:
        notes.append(f"{len(unknown_orders)} checked-out order(s) missing from the final state: their effects "
                     f"are bounded from the recorded add_item requests")
        # Only now are the shapes of orders needed: who created them, what was added, at what price.
        for o, cls, a, _ in _sent_rows(results, [code[n] for n in _SHAPES]):
            if cls == _FAIL:
                continue
            if o == code["create_item"]:
                max_price = max(max_price, _as_int(a[0]))
            elif o == code["create_order"]:
                if cls == _OK:
                    created_orders[str(a[0])] += 1
            else:
                added_lines[str(a[0])][str(a[1])] += _as_int(a[2], 1) if len(a) > 2 else 1
        _bound_unknown_orders(unknown_orders, orders, added_lines, created_orders, f_items, f_orders, items, users,
                              max_price)

    anomalies: list[Anomaly] = []
    # Multiplicity range of each paid order's effect under the re-checkout policy.
    mult: dict[str, tuple[int, int]] = {}
    item_orders: dict[str, list[tuple[str, int]]] = defaultdict(list)
    user_orders: dict[str, list[str]] = defaultdict(list)
    paid_orders = 0
    for oid in sorted(f_orders):
        o = f_orders[oid]
        rec = orders.get(oid) or _Order()
        paid = bool(o.get("paid"))
        for entry in o.get("items") or []:
            item_orders[str(entry[0])].append((oid, _as_int(entry[1], 1)))
        if o.get("user_id") is not None:
            user_orders[str(o["user_id"])].append(oid)
        if paid:
            paid_orders += 1
            if recheckout == "charge":
                mult[oid] = (max(1, rec.n_ok), max(1, rec.n_ok + rec.n_indet))
            else:
                mult[oid] = (1, 1)
        # Order-level checks: the paid flag against the checkout responses.
        if rec.n_ok and not paid:
            anomalies.append(Anomaly("lost_checkout", "order", oid, True, False,
                                     f"{rec.n_ok} checkout(s) answered 2xx but the order is not paid", (oid,)))
        elif paid and rec.n_ok == 0 and rec.n_indet == 0:
            why = (f"{rec.n_fail} checkout(s) answered 4xx but the order is paid" if rec.n_fail
                   else "order is paid but no checkout of it was sent")
            anomalies.append(Anomaly("phantom_checkout", "order", oid, False, True, why, (oid,)))

    def order_cost(oid: str) -> int:
        return _as_int(f_orders[oid].get("total_cost"))

    def unpaid_attempted(oid: str) -> bool:
        return not f_orders[oid].get("paid") and oid in orders and orders[oid].attempted

    def entity_check(kind: str, eid: str, initial: int, led: _Ledger, actual: int,
                     related: list[tuple[str, int]]) -> tuple[int, int]:
        """Compare one entity with its expected range; append anomalies; return the range."""
        paid_lo = sum(w * mult[o][0] for o, w in related if o in mult)
        paid_hi = sum(w * mult[o][1] for o, w in related if o in mult)
        lo = initial + led.add_ok - led.sub_ok - led.sub_unc - paid_hi
        hi = initial + led.add_ok + led.add_unc - led.sub_ok - paid_lo
        value = "stock" if kind == "item" else "credit"
        if actual < 0 or hi < 0:
            why = (f"{value} is {actual}, below zero" if actual < 0
                   else f"the successful operations take more {value} than was ever there (at most {hi} left)")
            anomalies.append(Anomaly("oversell", kind, eid, _fmt_range(lo, hi), actual, why,
                                     tuple(o for o, _ in related if o in mult)))
        if lo <= actual <= hi:
            exact = led.exact and all(mult[o][0] == mult[o][1] for o, _ in related if o in mult)
            if not _reachable(actual - lo, led.unc, exact):
                anomalies.append(Anomaly(
                    "lost_update", kind, eid, _fmt_range(lo, hi), actual,
                    f"{value} {actual} is within {lo}..{hi} but no all-or-nothing combination of the "
                    f"indeterminate operations gives it", ()))
            return lo, hi
        # Out of range: how it is off decides the kind; concurrent writes point to a lost update.
        concurrent = _overlapping(led.writes + [iv for o, _ in related if o in orders for iv in orders[o].intervals])
        unpaid = [(o, w) for o, w in related if unpaid_attempted(o)]
        paid = [(o, w) for o, w in related if o in mult]
        if actual < lo:
            deficit = lo - actual
            if kind == "item":
                short_items.add(eid)
            elif paid:
                # Missing credit could be an extra charge of a paid order or a charge of an unpaid one:
                # the stock side decides — an unpaid order that also lost stock half-happened.
                unpaid = [(o, w) for o, w in unpaid
                          if any(str(line[0]) in short_items for line in f_orders[o].get("items") or [])]
            if unpaid and sum(w for _, w in unpaid) >= deficit:
                anomalies.append(Anomaly(
                    "non_atomic_checkout", kind, eid, _fmt_range(lo, hi), actual,
                    f"{value} {deficit} lower than expected: taken by checkout(s) whose order is not paid",
                    tuple(o for o, _ in unpaid)))
            elif actual < 0 and kind == "item":
                pass  # already reported as oversell; negative credit may still be an extra charge, below
            elif kind == "user" and (paid or not concurrent):
                anomalies.append(Anomaly("double_charge", kind, eid, _fmt_range(lo, hi), actual,
                                         f"credit {deficit} lower than the paid orders and payments explain",
                                         tuple(o for o, _ in paid)))
            else:
                anomalies.append(Anomaly("lost_update", kind, eid, _fmt_range(lo, hi), actual,
                                         f"{value} {deficit} lower than any serial order of the successful operations gives",
                                         ()))
        else:
            excess = actual - hi
            if not concurrent and paid and sum(w for _, w in paid) >= excess:
                any_ok = any(orders[o].n_ok for o, _ in paid if o in orders)
                anomalies.append(Anomaly(
                    "lost_checkout" if any_ok else "non_atomic_checkout", kind, eid, _fmt_range(lo, hi), actual,
                    f"{value} {excess} higher than expected: paid order(s) without their {value} effect",
                    tuple(o for o, _ in paid)))
            else:
                anomalies.append(Anomaly("lost_update", kind, eid, _fmt_range(lo, hi), actual,
                                         f"{value} {excess} higher than any serial order of the successful operations gives"
                                         + (" (concurrent writes)" if concurrent else ""),
                                         tuple(o for o, _ in paid)))
        return lo, hi

    short_items: set[str] = set()  # items with less stock than expected (checked before users)
    totals = {"stock": [0, 0, 0, 0], "credit": [0, 0, 0, 0]}  # lo, hi, implied by 2xx, final

    def implied(led: _Ledger, initial: int, related: list[tuple[str, int]]) -> int:
        """What the 2xx responses alone imply (the original benchmark's 'logs' view)."""
        taken = 0
        for o, w in related:
            rec = orders.get(o)
            if rec and rec.n_ok:
                taken += w * (rec.n_ok if recheckout == "charge" else 1)
        return initial + led.add_ok - led.sub_ok - taken

    for kind, final_of, ledgers, batches, key, total in (
            ("item", f_items, items, batch_items, "stock", totals["stock"]),
            ("user", f_users, users, batch_users, "credit", totals["credit"])):
        for eid in sorted(final_of):
            initial = _batch_value(batches, eid) or 0
            actual = _as_int(final_of[eid].get(key))
            related = (item_orders.get(eid, []) if kind == "item"
                       else [(o, order_cost(o)) for o in user_orders.get(eid, [])])
            led = ledgers.get(eid) or _Ledger()
            if kind == "user" and eid in refunded:
                # A refund gives back at most what the user paid: the credit is bounded, not exact.
                led.add_unc += led.sub_ok + led.sub_unc + sum(w * mult[o][1] for o, w in related if o in mult)
                led.exact = False
            lo, hi = entity_check(kind, eid, initial, led, actual, related)
            total[0] += lo
            total[1] += hi
            total[2] += implied(led, initial, related)
            total[3] += actual

    # Global sums second: the trace header's aggregate expectations.
    header_expect = ((results.header.get("trace") or {}).get("header") or {}).get("expect") or {}
    actual_aggr = {"checkout_ok": n_checkout["ok"], "stock_total": totals["stock"][3],
                   "credit_total": totals["credit"][3]}
    aggregates = []
    for key in ("checkout_ok", "stock_total", "credit_total"):
        if key not in header_expect:
            continue
        exp, act = header_expect[key], actual_aggr[key]
        if not results.complete:
            status, note = "not evaluated", "partial run"
        elif undetermined:
            status, note = "not evaluated", f"{undetermined} indeterminate or skipped request(s) leave it undetermined"
        else:
            status, note = ("met" if exp == act else "unmet"), ""
        aggregates.append({"key": key, "expected": exp, "actual": act, "status": status, "note": note})
        if status == "unmet":
            anomalies.append(Anomaly("expectation_not_met", "aggregate", key, exp, act,
                                     f"trace expects {key} = {exp}, run has {act}"))

    def distance(value: int, lo: int, hi: int) -> int:
        return lo - value if value < lo else value - hi if value > hi else 0

    def expected_range(key: str, lo: int, hi: int) -> tuple[int, int]:
        return (header_expect[key], header_expect[key]) if key in header_expect else (lo, hi)

    s_lo, s_hi = expected_range("stock_total", *totals["stock"][:2])
    c_lo, c_hi = expected_range("credit_total", *totals["credit"][:2])
    benchmark = {
        "stock_inconsistencies_logs": distance(totals["stock"][2], s_lo, s_hi),
        "stock_inconsistencies_db": distance(totals["stock"][3], s_lo, s_hi),
        "payment_inconsistencies_logs": distance(totals["credit"][2], c_lo, c_hi),
        "payment_inconsistencies_db": distance(totals["credit"][3], c_lo, c_hi),
    }
    totals_out = {
        name: {"expected": _fmt_range(*expected_range(key, t[0], t[1])), "implied_by_2xx": t[2], "final": t[3]}
        for name, key, t in (("stock", "stock_total", totals["stock"]), ("credit", "credit_total", totals["credit"]))
    }
    anomalies.sort(key=lambda a: (KINDS.index(a.kind), a.entity, _id_key(a.id)))
    checked = {"items": len(f_items), "users": len(f_users), "orders": len(f_orders)}
    return ConsistencyResult(anomalies, checked, dict(n_checkout, paid_orders=paid_orders), aggregates,
                             benchmark, totals_out, notes, True, undetermined)


def _bound_unknown_orders(unknown: list[str], orders: dict, added_lines: dict, created_orders: Counter,
                          f_items: dict, f_orders: dict, items: dict, users: dict, max_price: int) -> None:
    """Widen the expected values touched by checked-out orders whose final state was not read.

    Such an order may or may not be paid: each of its items may have lost the units added to it
    (all-or-nothing), and its user — unknown, but one of the users who created more orders than the
    final state shows — may have paid its cost. Credit is then bounded, not checked exactly.
    """
    costs = []
    for oid in unknown:
        lines = added_lines.get(oid, {})
        for item, qty in lines.items():
            led = items[item]
            led.sub_unc += qty
            led.unc.append(-qty)
            led.writes.extend(orders[oid].intervals)
        costs.append(sum(q * (_as_int(f_items[i].get("price")) if i in f_items else max_price)
                         for i, q in lines.items()))
    costs.sort(reverse=True)
    shown = Counter(str(o.get("user_id")) for o in f_orders.values())
    for user, n in created_orders.items():
        k = n - shown.get(user, 0)
        if k > 0:
            led = users[user]
            led.sub_unc += sum(costs[:k])
            led.exact = False


def _id_key(s: str) -> tuple:
    """Sort ids numerically when they are numbers, so "10" comes after "9"."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
