"""The numpy screen: every order, item and user at once, with the bounds of :mod:`.rules`.

:func:`screened` computes each order's checkout/paid agreement, line ranges and total, and each
item's and user's range, over columns; it clears what those rules prove right and hands the rest to
the per-entity checkers (:mod:`.checkers`), which decide and word the anomaly. Figures that int64
may not hold exactly, and all-or-nothing subsets of more than one indeterminate request, are never
cleared here: the checkers (Python integers, :func:`.rules.reachable`) judge them. So the result is
exactly the per-entity reference's (``tests/test_check_fast_path.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from . import rules
from .anomaly import Anomaly, id_key
from .checkers import CheckContext, Figures, check_item, check_order, check_user, zero_totals
from .final_state import OrderTable
from .history import History, Ledger, positions, take


class _Mult(Mapping):
    """Paid order id -> (min, max) times its checkout's effect applies (what ``CheckContext.mult`` holds)."""

    def __init__(self, orders: Any, lo: np.ndarray, hi: np.ndarray, paid: np.ndarray):
        self.orders, self.lo, self.hi, self.paid = orders, lo, hi, paid

    def _k(self, oid: object) -> int | None:
        k = self.orders.position(oid) if isinstance(oid, str) else None
        return k if k is not None and self.paid[k] else None

    def __getitem__(self, oid: str) -> tuple[int, int]:
        k = self._k(oid)
        if k is None:
            raise KeyError(oid)
        return int(self.lo[k]), int(self.hi[k])

    def __contains__(self, oid: object) -> bool:
        return self._k(oid) is not None

    def __iter__(self) -> Iterator[str]:
        ids = self.orders.table.ids
        return (ids[k] for k in np.nonzero(self.paid)[0].tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self.paid))


class _Related:
    """Item -> [(order, quantity)] or user -> [order] (none: empty), in order-id order, from the order
    table on first use."""

    def __init__(self, tab: OrderTable, by_user: bool):
        self.tab, self.by_user = tab, by_user
        self._spans: dict | None = None

    def __getitem__(self, key: str) -> list:
        tab = self.tab
        if self._spans is None:
            codes = tab.user if self.by_user else tab.line_item
            self._owner = np.arange(len(tab), dtype=np.int64) if self.by_user else tab.line_order
            self._sorted = np.argsort(codes, kind="stable")
            uniq, first, counts = np.unique(codes[self._sorted], return_index=True, return_counts=True)
            self._spans = {tab.strings[c]: (f, f + n) for c, f, n in zip(uniq.tolist(), first.tolist(), counts.tolist())
                           if c >= 0}
        span = self._spans.get(key)
        if span is None:
            return []
        at = self._sorted[span[0]:span[1]]
        ids = tab.ids
        owners = sorted(zip(self._owner[at].tolist(), at.tolist()), key=lambda x: id_key(ids[x[0]]))
        if self.by_user:
            return [ids[k] for k, _ in owners]
        qty = tab.line_qty
        return [(ids[k], int(qty[j])) for k, j in owners]


def screened(ctx: CheckContext, tab: OrderTable, ocode: np.ndarray) -> tuple[list[Anomaly], dict[str, Figures], int]:
    """The checks of every order, item and user with numpy over all orders; the per-entity checkers run
    only on those whose figures the screen cannot clear: (anomalies, totals, paid orders)."""
    hist, fs = ctx.hist, ctx.fs
    co = hist.orders
    pos = positions(co.codes, ocode)
    n_ok, n_indet = take(co.n_ok, pos), take(co.n_indet, pos)
    paid = tab.paid
    charge = ctx.recheckout == "charge"
    mlo, mhi = rules.multiplicity(paid, n_ok, n_indet, charge)
    ctx.mult = _Mult(fs.orders, mlo, mhi, paid)
    ctx.item_orders = _Related(tab, by_user=False)  # type: ignore[assignment]
    ctx.user_orders = _Related(tab, by_user=True)  # type: ignore[assignment]

    lost, phantom = rules.checkout_disagrees(paid, n_ok, n_indet)
    bad_lines = _lines_differ(hist, tab, ocode)
    if hist.batch_orders:
        for k in np.nonzero(bad_lines)[0].tolist():
            bad_lines[k] = not hist.batch_order(tab.ids[k])
    flagged = lost | phantom | bad_lines | _totals_differ(ctx, tab)
    anomalies: list[Anomaly] = []
    for k in np.nonzero(flagged)[0].tolist():
        a = check_order(ctx, tab.ids[k], tab.state(k))
        if a is not None:
            anomalies.append(a)
    totals = zero_totals()
    where = dict(zip(tab.strings, range(len(tab.strings))))
    for name, ids, sums, checker in (("stock", fs.items, _per_item(tab, mlo, mhi, n_ok, charge), check_item),
                                     ("credit", fs.users, _per_user(tab, mlo, mhi, n_ok, charge), check_user)):
        t = totals[name]
        for eid in sorted(ids, key=id_key):
            c = where.get(eid)
            paid_lo, paid_hi, took, inex, size = (0, 0, 0, 0, 0.0) if c is None else (x[c] for x in sums)
            figs = None
            if size < rules.INT64_EXACT:  # else the sums may have wrapped: the checker sums in Python
                figs = _clear_entity(ctx, name, eid, paid_lo, paid_hi, took, inex)
            if figs is None:
                a, figs = checker(ctx, eid)
                if a is not None:
                    anomalies.append(a)
            t.add(figs)
    return anomalies, totals, int(np.count_nonzero(paid))


def _clear_entity(ctx: CheckContext, name: str, eid: str, paid_lo: int, paid_hi: int, took: int,
                  inexact: int) -> Figures | None:
    """The figures of an item's stock or user's credit that the rules prove right,
    or None when the per-entity checker must judge it (out of range, oversold, refunded, a subset)."""
    hist = ctx.hist
    if name == "stock":
        b = hist.batch_item(eid)
        initial, led, actual = (b[0] if b is not None else 0), hist.ledger("item", eid), ctx.fs.items[eid].stock
    else:
        initial, led, actual = hist.batch_user(eid) or 0, hist.ledger("user", eid), ctx.fs.users[eid].credit
    led = led or Ledger()
    lo, hi = rules.entity_range(initial, led.add_ok, led.add_unc, led.sub_ok, led.sub_unc, paid_lo, paid_hi)
    if (rules.oversold(actual, hi) or not lo <= actual <= hi or eid in hist.refunded
            or not rules.reachable(actual - lo, led.unc, led.exact and not inexact)):
        return None
    return Figures(lo, hi, rules.implied_value(initial, led.add_ok, led.sub_ok, took), actual)


def _per_item(tab: OrderTable, mlo: np.ndarray, mhi: np.ndarray, n_ok: np.ndarray, charge: bool) -> list[list]:
    """Per item code (line quantities): what paid orders take at least and at most, what the 2xx checkouts
    alone imply, how many paid orders' multiplicity is a range, and the magnitude of those sums (float)."""
    lo_, q, n = tab.line_order, tab.line_qty, len(tab.strings)
    taken = rules.implied_takes(n_ok, charge)
    inexact = (mlo != mhi).astype(np.int64)
    sums = [_sum_by(tab.line_item, q * m[lo_], n) for m in (mlo, mhi, taken, inexact)]
    return sums + [_size_by(tab.line_item, q, np.maximum(mhi, taken)[lo_], n)]


def _per_user(tab: OrderTable, mlo: np.ndarray, mhi: np.ndarray, n_ok: np.ndarray, charge: bool) -> list[list]:
    """Per user code (order totals): as :func:`_per_item`."""
    has_user = tab.user >= 0
    u, w, n = tab.user[has_user], tab.total[has_user], len(tab.strings)
    taken = rules.implied_takes(n_ok, charge)
    inexact = (mlo != mhi).astype(np.int64)
    sums = [_sum_by(u, w * m[has_user], n) for m in (mlo, mhi, taken)] + [_sum_by(u, inexact[has_user], n)]
    return sums + [_size_by(u, w, np.maximum(mhi, taken)[has_user], n)]


def _sum_by(codes: np.ndarray, values: np.ndarray, n: int) -> list[int]:
    """Integer sums of ``values`` per code (0..n-1), as Python ints (exact while :func:`_size_by` < 2**62)."""
    out = np.zeros(n, np.int64)
    np.add.at(out, codes, values)
    return out.tolist()


def _size_by(codes: np.ndarray, values: np.ndarray, times: np.ndarray, n: int) -> list[float]:
    """Per code, Σ |value| × times in floating point: how large the int64 sums of the same products get."""
    out = np.zeros(n, np.float64)
    np.add.at(out, codes, np.abs(values.astype(np.float64)) * times.astype(np.float64))
    return out.tolist()


def _lines_differ(hist: History, tab: OrderTable, ocode: np.ndarray) -> np.ndarray:
    """Per order: whether a line of it is outside what its add_item/remove_item built, or has an
    indeterminate add_item (all-or-nothing subsets are the per-order checker's to judge)."""
    ln, n = hist.lines, len(tab)
    w = ln.width
    unc_sum = np.zeros(ln.keys.size, np.int64)  # per line, the units of its indeterminate add_item
    np.add.at(unc_sum, np.repeat(np.arange(ln.keys.size), ln.n_unc), ln.unc)
    h_lo, h_hi = rules.line_range(ln.add_ok, unc_sum, ln.rem_ok, ln.rem_unc)
    # Lines the final state shows, against their history (none: nothing may be there).
    icode = hist.ids.codes(tab.strings)
    f_order, f_item = ocode[tab.line_order], icode[tab.line_item] if tab.line_item.size else tab.line_item
    known = (f_order >= 0) & (f_item >= 0)
    at = np.where(known, positions(ln.keys, np.where(known, f_order * w + f_item, -1)), -1)
    hit = at >= 0
    lo, hi = take(h_lo, at), take(h_hi, at)
    actual = tab.line_qty
    bad_line = (actual < lo) | (actual > hi)
    # Within the range, indeterminate add_item requests still need a subset that sums to the quantity
    # (when nothing was removed): :func:`.rules.reachable` judges each such line (few: one per
    # indeterminate add_item at most), as the per-order checker does.
    subset = ~bad_line & (take(ln.n_unc, at) > 0) & ~(take(ln.rem_ok + ln.rem_unc, at) > 0)
    for j in np.nonzero(subset)[0].tolist():
        k = int(at[j])
        deltas = ln.unc[ln.unc_start[k]:ln.unc_start[k + 1]].tolist()
        bad_line[j] = not rules.reachable(int(actual[j] - lo[j]), deltas, True)
    bad = np.bincount(tab.line_order[bad_line], minlength=n) > 0
    # Lines the history built that the final state does not show (quantity 0).
    shown = np.zeros(ln.keys.size, bool)
    shown[at[hit]] = True
    sorter = np.argsort(ocode, kind="stable")
    k = positions(ocode[sorter], ln.keys // w)
    missing_bad = ~shown & (h_lo > 0) & (k >= 0)  # quantity 0 from lo 0: the empty subset
    bad[sorter[k[missing_bad]]] = True
    return bad


def _totals_differ(ctx: CheckContext, tab: OrderTable) -> np.ndarray:
    """Per order: whether its total_cost may differ from Σ quantity × price (:func:`.rules.order_total`).

    Orders with an unpriced item: no (the checker does not judge them either). Orders whose figures
    int64 may not hold exactly (a price, a line's cost, the sum or the total near 2**62): yes, so the
    checker judges them in Python integers.
    """
    n, m = len(tab), len(tab.strings)
    price = np.zeros(m, np.int64)
    priced = np.zeros(m, bool)
    big = np.zeros(m, bool)
    for c in np.unique(tab.line_item).tolist():
        p = ctx.price(tab.strings[c])
        if p is not None:
            if abs(p) < rules.INT64_EXACT:
                price[c], priced[c] = p, True
            else:
                big[c] = True
    item, q, order = tab.line_item, tab.line_qty, tab.line_order
    unpriced = np.bincount(order[~priced[item] & ~big[item]], minlength=n) > 0
    size = np.zeros(n, np.float64)
    np.add.at(size, order, np.abs(q.astype(np.float64)) * np.abs(price[item].astype(np.float64)))
    huge = ((np.abs(tab.total.astype(np.float64)) >= rules.INT64_EXACT) | (size >= rules.INT64_EXACT)
            | (np.bincount(order[big[item]], minlength=n) > 0))
    expected = np.zeros(n, np.int64)
    np.add.at(expected, order, np.where(priced[item], rules.order_total(q, price[item]), 0))
    return huge | (~unpriced & (expected != tab.total))
