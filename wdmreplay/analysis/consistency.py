"""Consistency checker: history + final state → anomalies, in the spirit of Jepsen.

What a correct shop must end with is recomputed per entity from the recorded operations:

- item stock  = initial + Σ add_stock(2xx) − Σ subtract_stock(2xx) − Σ over PAID orders of qty
- user credit = initial + Σ add_funds(2xx) − Σ pay(2xx)          − Σ over PAID orders of total_cost
- order lines = Σ add_item(2xx) − Σ remove_item(2xx) per item; total_cost = Σ qty × price

where *initial* is 0 for created entities and the batch_init value for batch-initialised ones.
Using each order's final ``paid`` flag (rather than each checkout's response) is what makes
indeterminate checkouts (5xx, timeout, connection error) work: either outcome is allowed, but the
order's paid flag, its items' stock and its user's credit must agree. Indeterminate add_stock /
subtract_stock / add_funds / pay / add_item make the expected value a range of all-or-nothing sums.

The checker is a set of small per-entity checkers (:mod:`.checkers`: ``check_order``, ``check_item``,
``check_user``) over a :class:`~.history.History` (what the requests did, :mod:`.history`) and the typed
:class:`~.final_state.FinalState`, with a numpy screen (:mod:`.screen`) in front that clears what it can;
both take their bounds from :mod:`.rules`, where each rule is stated once. Each entity yields at
most one anomaly: a primary kind decided by the shape of the discrepancy (its sign, whether unpaid
or paid orders explain it, whether the entity saw concurrent writes), other readings as ``tags``
(see ``docs/analysis.md``). This module runs the check; :mod:`.anomaly` holds the record and kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..operations import ENTITY_KINDS
from ..traces.records import MapView
from ..traces.results import Results
from . import rules
from .anomaly import KIND_MEANING, KINDS, RECHECKOUT_POLICIES, AnalysisError, Anomaly, fmt_range, id_key
from .checkers import (CheckContext, Figures, bound_unknown_orders, check_item, check_order, check_user, describe,
                       entity_facts, lost_anomalies, lost_ids, zero_totals)
from .final_state import FinalState, final_state
from .history import History, read_history
from .screen import screened

__all__ = ["KINDS", "KIND_MEANING", "RECHECKOUT_POLICIES", "AnalysisError", "Anomaly", "Checked", "CheckoutTally",
           "ConsistencyResult", "History", "TotalFigures", "Totals", "check_consistency", "check_consistency_reference", "entity_facts", "lost_ids",
           "read_history"]


@dataclass(frozen=True, slots=True, eq=False)
class Checked(MapView):
    """How many items, users and orders of the final state were checked."""

    items: int = 0
    users: int = 0
    orders: int = 0

    def as_dict(self) -> dict:
        return {"items": self.items, "users": self.users, "orders": self.orders}


@dataclass(frozen=True, slots=True, eq=False)
class CheckoutTally(MapView):
    """The run's checkouts by outcome, and the orders the checker counts as paid."""

    ok: int
    fail: int
    indeterminate: int
    skipped: int
    paid_orders: int

    def as_dict(self) -> dict:
        return {"ok": self.ok, "fail": self.fail, "indeterminate": self.indeterminate, "skipped": self.skipped,
                "paid_orders": self.paid_orders}


@dataclass(frozen=True, slots=True, eq=False)
class TotalFigures(MapView):
    """One total (stock or credit) recomputed from the history: what the recorded history allows (every
    all-or-nothing reading of the unanswered requests: a number or ``[lo, hi]``), what the 2xx answers
    alone imply, what was read back. Never called "expected": the trace's bounds are (bounds.py)."""

    history_allows: Any
    implied_by_2xx: int
    final: int

    def as_dict(self) -> dict:
        return {"history_allows": self.history_allows, "implied_by_2xx": self.implied_by_2xx, "final": self.final}


@dataclass(frozen=True, slots=True, eq=False)
class Totals(MapView):
    """The stock and credit totals (both None: no final state, nothing recomputed)."""

    stock: TotalFigures | None = None
    credit: TotalFigures | None = None

    def named(self) -> list[tuple[str, TotalFigures]]:
        """The totals recomputed, by name ("stock", "credit")."""
        return [(n, t) for n, t in (("stock", self.stock), ("credit", self.credit)) if t is not None]

    def as_dict(self) -> dict:
        return {n: t.as_dict() for n, t in self.named()}


@dataclass
class ConsistencyResult:
    """What the checker found: anomalies, per-entity counts checked, checkout tallies, own figures."""

    anomalies: list[Anomaly]
    checked: Checked  # items, users, orders checked against the final state
    checkouts: CheckoutTally
    totals: Totals
    notes: list[str]
    final_state: bool
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped
    history: History | None = field(default=None, repr=False)
    final: FinalState | None = field(default=None, repr=False)


def check_consistency(results: Results, *, recheckout: str = "refuse") -> ConsistencyResult:
    """Recompute every order's lines and total, item's stock and user's credit; compare with the final state.

    ``results`` must be loaded with ``with_args=True``. ``recheckout`` is the policy for checking out
    an already-paid order: ``refuse`` (counted once; further 2xx must be no-ops) or ``charge`` (every
    checkout that took effect charges again, as the course template does).

    Every entity is screened with numpy (paid flags, lines, totals, expected ranges over all orders
    at once); only those the screen cannot clear go to the per-entity checkers, which decide and
    word the anomaly — so the result is exactly :func:`check_consistency_reference`'s.
    """
    return _check_consistency(results, recheckout, screen=True)


def check_consistency_reference(results: Results, *, recheckout: str = "refuse") -> ConsistencyResult:
    """The same check as :func:`check_consistency`, running the per-entity checkers on every order, item
    and user (no numpy screen): the straightforward reference the fast path is tested against
    (``tests/test_check_fast_path.py``); ``check`` does not use it.
    """
    return _check_consistency(results, recheckout, screen=False)


def _check_consistency(results: Results, recheckout: str, *, screen: bool) -> ConsistencyResult:
    if recheckout not in RECHECKOUT_POLICIES:
        raise AnalysisError(f"unknown re-checkout policy {recheckout!r}; choose refuse or charge")
    if results.argcols is None:
        raise AnalysisError(f"{results.path}: the consistency check needs the request args (load with with_args=True)")
    hist = read_history(results)
    fs = final_state(results.final_record)  # typed once per run (cached on the Results)
    notes: list[str] = []
    if fs is None:
        notes.append("no final state recorded: per-entity consistency NOT checked (replay with final read)")
        return ConsistencyResult([], Checked(), _tally(hist, 0), Totals(), notes, False, hist.undetermined, hist, None)
    for kind in ENTITY_KINDS:
        if fs.unanswered_count(kind):
            notes.append(f"{fs.unanswered_count(kind)} {kind}(s) could not be read back; they are not checked")
    tab = fs.orders.table
    co = hist.orders
    ocode = hist.ids.codes(tab.ids)  # each final-state order's code in the history (-1: no request named it)
    attempted = (co.n_ok + co.n_indet) > 0
    unknown = sorted(hist.ids.names[c] for c in co.codes[attempted & ~np.isin(co.codes, ocode)].tolist())
    if unknown:
        notes.append(f"{len(unknown)} checked-out order(s) missing from the final state: their effects "
                     f"are bounded from the recorded add_item requests")
        bound_unknown_orders(unknown, hist, fs)

    ctx = CheckContext(hist, fs, recheckout)
    if screen:
        anomalies, totals, paid_orders = screened(ctx, tab, ocode)
    else:
        anomalies, totals, paid_orders = _every_entity(ctx)
    anomalies.extend(lost_anomalies(ctx))
    anomalies = [describe(ctx, a) for a in anomalies]
    anomalies.sort(key=lambda a: (KINDS.index(a.kind), a.entity, id_key(a.id)))
    totals_out = Totals(*(TotalFigures(fmt_range(t.lo, t.hi), t.implied, t.final)
                          for t in (totals["stock"], totals["credit"])))
    checked = Checked(len(fs.items), len(fs.users), len(fs.orders))
    return ConsistencyResult(anomalies, checked, _tally(hist, paid_orders), totals_out, notes, True,
                             hist.undetermined, hist, fs)


def _tally(hist: History, paid_orders: int) -> CheckoutTally:
    co = hist.checkouts
    return CheckoutTally(co["ok"], co["fail"], co["indeterminate"], co["skipped"], paid_orders)


def _every_entity(ctx: CheckContext) -> tuple[list[Anomaly], dict[str, Figures], int]:
    """Every order, item and user through its per-entity checker: (anomalies, totals, paid orders)."""
    fs, hist = ctx.fs, ctx.hist
    anomalies: list[Anomaly] = []
    paid_orders = 0
    for oid in sorted(fs.orders, key=id_key):
        o = fs.orders[oid]
        rec = hist.orders.of(oid)
        for item, qty in o.lines:
            ctx.item_orders[item].append((oid, qty))
        if o.user is not None:
            ctx.user_orders[o.user].append(oid)
        if o.paid:
            paid_orders += 1
            ctx.mult[oid] = rules.multiplicity(True, rec.n_ok, rec.n_indet, ctx.recheckout == "charge")
        a = check_order(ctx, oid, o)
        if a is not None:
            anomalies.append(a)
    totals = zero_totals()
    for name, ids, checker in (("stock", fs.items, check_item), ("credit", fs.users, check_user)):
        for eid in sorted(ids, key=id_key):
            a, figs = checker(ctx, eid)
            if a is not None:
                anomalies.append(a)
            totals[name].add(figs)
    return anomalies, totals, paid_orders


