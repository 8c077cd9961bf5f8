"""What the recorded requests did, per entity: :class:`History`, built once by :func:`read_history`.

Per item and user a :class:`Ledger` of answered and all-or-nothing (indeterminate) effects; per order
its checkout answers (:class:`OrderCheckouts`) and per (order, item) line its add_item/remove_item
(:class:`OrderLine`) — as mappings over numpy columns, so no object is built per order until one is
asked for. The rules that turn these sums into bounds are in :mod:`.rules`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..operations import OP_CODES
from ..traces.argcols import IdTable, sorted_search
from ..traces.results import CONN_ERROR, ERROR, FAIL, INDETERMINATE, OK, SKIPPED, TIMEOUT, Results
from .final_state import as_int

# Outcome classes: answered 2xx, answered 4xx (taken as no effect), indeterminate (either may have happened).
_OK, _FAIL, _INDET = 0, 1, 2
_CLASS = {OK: _OK, FAIL: _FAIL, ERROR: _INDET, TIMEOUT: _INDET, CONN_ERROR: _INDET}


@dataclass
class Ledger:
    """Known and uncertain effects of the recorded operations on one item's stock or user's credit."""

    add_ok: int = 0
    add_unc: int = 0  # indeterminate additions: anything from 0 to this may have happened
    sub_ok: int = 0
    sub_unc: int = 0
    unc: list = field(default_factory=list)  # each indeterminate delta (+add / -sub), all-or-nothing
    exact: bool = True  # False when the uncertain part is only bounded (orders whose state is unknown)
    writes: list = field(default_factory=list)  # arrays of the rows of requests that may have written


@dataclass(slots=True)
class OrderCheckouts:
    """Checkout responses of one order and the (sent, done) interval of each."""

    n_ok: int = 0
    n_fail: int = 0
    n_indet: int = 0
    rows: Any = ()  # rows of its checkouts

    @property
    def attempted(self) -> bool:
        return self.n_ok + self.n_fail + self.n_indet > 0


class OrderLine:
    """What the requests did to one (order, item) line: definite and all-or-nothing unit deltas."""

    __slots__ = ("add_ok", "add_unc", "rem_ok", "rem_unc", "requests")

    def __init__(self) -> None:
        self.add_ok = 0
        self.add_unc: list[int] = []
        self.rem_ok = 0
        self.rem_unc = 0
        self.requests: list = []  # arrays of row numbers (named only when an anomaly is reported)


class EntityIds(IdTable):
    """The results' entity-id table (code -> id) and its inverse look-up."""


def _distinct_sorted(a: np.ndarray) -> np.ndarray:
    """The distinct values of the sorted array ``a`` (``np.unique`` without sorting again)."""
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def _runs(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct values, first index, length) of each run of equal values in the sorted array ``a``."""
    if not a.size:
        z = np.zeros(0, np.int64)
        return a, z, z
    first = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))
    return a[first], first, np.diff(np.append(first, a.size))


def take(values: np.ndarray, at: np.ndarray, default: int = 0) -> np.ndarray:
    """``values[at]``, ``default`` where ``at`` is -1."""
    if not values.size:
        return np.full(at.size, default, values.dtype)
    return np.where(at >= 0, values[np.maximum(at, 0)], default)


def positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The index of each of ``wanted`` in the sorted unique ``keys`` (-1 where absent)."""
    pos = sorted_search(keys, wanted)
    pos[pos >= keys.size] = 0
    hit = keys[pos] == wanted if keys.size else np.zeros(wanted.size, bool)
    return np.where(hit, pos, -1)


class _Checkouts(Mapping):
    """Order id -> :class:`OrderCheckouts` (its checkouts), over the checkout rows grouped by order code."""

    def __init__(self, ids: EntityIds, codes: np.ndarray, n_ok: np.ndarray, n_fail: np.ndarray, n_indet: np.ndarray,
                 rows: np.ndarray, starts: np.ndarray):
        self.ids, self.codes, self.n_ok, self.n_fail, self.n_indet = ids, codes, n_ok, n_fail, n_indet
        self.rows, self.starts = rows, starts

    @classmethod
    def empty(cls) -> "_Checkouts":
        z = np.zeros(0, np.int64)
        return cls(EntityIds([]), z, z, z, z, z, np.zeros(1, np.int64))

    def _pos(self, oid: object) -> int:
        code = self.ids.code(oid) if isinstance(oid, str) else -1
        return int(positions(self.codes, np.array([code]))[0]) if code >= 0 else -1

    def _at(self, k: int) -> OrderCheckouts:
        return OrderCheckouts(int(self.n_ok[k]), int(self.n_fail[k]), int(self.n_indet[k]),
                              self.rows[self.starts[k]:self.starts[k + 1]])

    def __getitem__(self, oid: str) -> OrderCheckouts:
        k = self._pos(oid)
        if k < 0:
            raise KeyError(oid)
        return self._at(k)

    def of(self, oid: str) -> OrderCheckouts:
        """The checkouts of order ``oid`` (none sent: every count 0)."""
        k = self._pos(oid)
        return OrderCheckouts() if k < 0 else self._at(k)

    def __contains__(self, oid: object) -> bool:
        return self._pos(oid) >= 0

    def __iter__(self) -> Iterator[str]:
        names = self.ids.names
        return (names[c] for c in self.codes.tolist())

    def __len__(self) -> int:
        return self.codes.size


class _Lines(Mapping):
    """Order id -> {item id -> :class:`OrderLine`}, over the add_item/remove_item rows grouped by (order, item).

    ``keys`` are ``order code * width + item code``, sorted; per key: the answered units added
    (``add_ok``), removals answered / indeterminate, the quantities of its indeterminate add_item
    (``unc[unc_start[k]:unc_start[k + 1]]``) and its rows (``rows[starts[k]:starts[k + 1]]``).
    """

    def __init__(self, ids: EntityIds, width: int, keys: np.ndarray, add_ok: np.ndarray, rem_ok: np.ndarray,
                 rem_unc: np.ndarray, unc: np.ndarray, unc_start: np.ndarray, rows: np.ndarray, starts: np.ndarray):
        self.ids, self.width, self.keys, self.add_ok, self.rem_ok, self.rem_unc = ids, width, keys, add_ok, rem_ok, rem_unc
        self.unc, self.unc_start, self.rows, self.starts = unc, unc_start, rows, starts

    @classmethod
    def empty(cls) -> "_Lines":
        z = np.zeros(0, np.int64)
        return cls(EntityIds([]), 1, z, z, z, z, z, np.zeros(1, np.int64), z, np.zeros(1, np.int64))

    @property
    def n_unc(self) -> np.ndarray:
        """Per key, how many of its add_item requests were indeterminate."""
        return np.diff(self.unc_start)

    def _span(self, oid: object) -> tuple[int, int]:
        code = self.ids.code(oid) if isinstance(oid, str) else -1
        if code < 0:
            return 0, 0
        lo, hi = np.searchsorted(self.keys, [code * self.width, (code + 1) * self.width]).tolist()
        return lo, hi

    def line(self, k: int) -> OrderLine:
        """The :class:`OrderLine` of key number ``k``."""
        ln = OrderLine()
        ln.add_ok, ln.rem_ok, ln.rem_unc = int(self.add_ok[k]), int(self.rem_ok[k]), int(self.rem_unc[k])
        ln.add_unc = self.unc[self.unc_start[k]:self.unc_start[k + 1]].tolist()
        ln.requests = [self.rows[self.starts[k]:self.starts[k + 1]]]
        return ln

    def __getitem__(self, oid: str) -> dict:
        lo, hi = self._span(oid)
        if lo == hi:
            raise KeyError(oid)
        names, w = self.ids.names, self.width
        return {names[int(self.keys[k]) % w]: self.line(k) for k in range(lo, hi)}

    def of(self, oid: str) -> dict:
        """Item id -> :class:`OrderLine` of order ``oid`` (no add_item/remove_item sent to it: empty)."""
        return self[oid] if oid in self else {}

    def __contains__(self, oid: object) -> bool:
        lo, hi = self._span(oid)
        return hi > lo

    def __iter__(self) -> Iterator[str]:
        names = self.ids.names
        return (names[c] for c in _distinct_sorted(self.keys // self.width).tolist())

    def __len__(self) -> int:
        return int(_distinct_sorted(self.keys // self.width).size)


@dataclass
class History:
    """What the recorded requests did, per entity (built once by :func:`read_history`).

    ``orders`` and ``lines`` are mappings over columns (no object per order until one is asked for).
    """

    cols: Any = None  # the results' columns: sent/done of writes, sid/step to name requests

    items: dict = field(default_factory=lambda: defaultdict(Ledger))
    users: dict = field(default_factory=lambda: defaultdict(Ledger))
    orders: _Checkouts = field(default_factory=_Checkouts.empty)  # order -> OrderCheckouts
    lines: _Lines = field(default_factory=_Lines.empty)  # order -> item -> OrderLine
    ids: EntityIds = field(default_factory=lambda: EntityIds([]))  # the entity-id table of the args columns
    created_orders: Counter = field(default_factory=Counter)  # user -> orders created with a 2xx
    create_prices: set = field(default_factory=set)  # prices create_item was called with (2xx or indeterminate)
    refunded: set = field(default_factory=set)  # users with a (possibly) successful cancel_payment
    batch_items: list = field(default_factory=list)  # (n, stock, price) of batch_init_stock
    batch_users: list = field(default_factory=list)  # (n, credit)
    batch_orders: list = field(default_factory=list)  # (n, item_price)
    checkouts: dict = field(default_factory=lambda: {"ok": 0, "fail": 0, "indeterminate": 0, "skipped": 0})
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped

    def checkout_ok_loaded(self) -> int:
        """2xx checkouts of orders with an answered add_item of a positive quantity (what holds their items)."""
        ln = self.lines
        loaded = _distinct_sorted(ln.keys[ln.add_ok > 0] // ln.width)  # keys are sorted, so are their orders
        co = self.orders
        return int(co.n_ok[positions(loaded, co.codes) >= 0].sum())

    @property
    def max_price(self) -> int:
        """The highest price any item was created with: bounds costs of unread items."""
        return max([*self.create_prices, *(p for _, _, p in self.batch_items), 0])

    def ledger(self, kind: str, eid: str) -> Ledger | None:
        """The :class:`Ledger` of item (``kind`` "item") or user ``eid``; None when no request changed it."""
        return (self.items if kind == "item" else self.users).get(eid)

    def batch_item(self, eid: str) -> tuple[int, int] | None:
        """(stock, price) of ``eid`` if a batch_init created it (the last one wins)."""
        return _batch_value(self.batch_items, eid)

    def batch_user(self, eid: str) -> int | None:
        """The batch_init credit of ``eid`` if a batch_init created it."""
        v = _batch_value(self.batch_users, eid)
        return None if v is None else v[0]

    def batch_order(self, eid: str) -> bool:
        """Whether ``eid`` is an order a batch_init_orders may have created (server-chosen lines)."""
        return _batch_value(self.batch_orders, eid) is not None


def _batch_value(batches: list[tuple], entity_id: str) -> tuple | None:
    if not batches or not entity_id.isdigit():
        return None
    k = int(entity_id)
    for b in reversed(batches):
        if k < b[0]:
            return b[1:]
    return None


def request_names(hist: "History", parts: list) -> tuple[str, ...]:
    """``"session S step K"`` of each row (``parts``: arrays of row numbers)."""
    rows = np.sort(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])) if parts else []
    sid, step = hist.cols["sid"], hist.cols["step"]
    return tuple(f"session {int(sid[r])} step {int(step[r])}" for r in rows)


def intervals(hist: "History", parts: list) -> list[tuple[float, float]]:
    """(sent, done) of the rows in ``parts`` (arrays of row numbers)."""
    if not parts:
        return []
    rows = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    return list(zip(hist.cols["sent"][rows].tolist(), hist.cols["done"][rows].tolist()))


class _Rows:
    """The sent rows of one operation, their outcome classes and arg columns, grouped by a key."""

    def __init__(self, results: Results, cls_all: np.ndarray, name: str):
        c, ac = results.cols, results.argcols
        self.rows = np.nonzero((c["op"] == OP_CODES[name]) & (c["outcome"] != SKIPPED))[0]
        self.cls = cls_all[self.rows]
        self.k0, self.k1, self.num = ac.k0[self.rows], ac.k1[self.rows], ac.num[self.rows]
        self.names = ac.names

    def group(self, keys: np.ndarray, keep: np.ndarray) -> tuple[list, np.ndarray, np.ndarray, list[int]]:
        """(unique key codes, inverse of the kept rows, kept rows sorted by key, start of each key's run)."""
        kept = np.nonzero(keep)[0]
        k = keys[kept]
        order = np.argsort(k, kind="stable")
        uniq, first, counts = _runs(k[order])
        inv = np.empty(k.size, np.int64)
        inv[order] = np.repeat(np.arange(uniq.size), counts)
        return uniq.tolist(), inv, self.rows[kept][order], np.append(first, k.size).tolist()

    def sums(self, inv: np.ndarray, n: int, mask: np.ndarray, weights: np.ndarray | None = None) -> list[int]:
        """Per key, the count (or sum of ``weights``) of the kept rows in ``mask``."""
        if weights is None:
            return np.bincount(inv[mask], minlength=n).tolist()
        out = np.zeros(n, np.int64)
        np.add.at(out, inv[mask], weights[mask])  # exact integer sums (bincount's weights are floats)
        return out.tolist()


def read_history(results: Results) -> History:
    """Sum what every sent request did to each item, user and order.

    Works on the results' arg columns (:attr:`~..traces.results.Results.argcols`: entity ids as
    integer codes, amounts as integers): rows are selected, grouped by entity code and summed per
    operation with numpy, so Python loops run over entities, not rows; only indeterminate rows
    (all-or-nothing deltas) and batch_init rows are walked one by one.
    """
    h = History(results.cols, ids=EntityIds(results.argcols.names))
    cols = results.cols
    op, outcome = cols["op"], cols["outcome"]
    cls_all = np.full(256, -1, dtype=np.int8)
    for code, k in _CLASS.items():
        cls_all[code] = k
    cls_all = cls_all[outcome]
    h.checkouts["skipped"] = int(np.count_nonzero((op == OP_CODES["checkout"]) & (outcome == SKIPPED)))
    h.undetermined = int(np.count_nonzero(np.isin(outcome, (*INDETERMINATE, SKIPPED))))
    _read_checkouts(h, _Rows(results, cls_all, "checkout"))
    for name in ("add_stock", "subtract_stock", "add_funds", "pay"):
        _read_ledger(h, _Rows(results, cls_all, name), name)
    _read_lines(h, _Rows(results, cls_all, "add_item"), _Rows(results, cls_all, "remove_item"))
    r = _Rows(results, cls_all, "create_item")
    h.create_prices.update(np.unique(r.num[r.cls != _FAIL]).tolist())  # a 4xx is taken as no effect
    r = _Rows(results, cls_all, "create_order")
    codes, counts = np.unique(r.k0[r.cls == _OK], return_counts=True)
    for code, k in zip(codes.tolist(), counts.tolist()):
        h.created_orders[r.names[code]] += k
    r = _Rows(results, cls_all, "cancel_payment")
    h.refunded.update(r.names[c] for c in np.unique(r.k0[r.cls != _FAIL]).tolist())  # 2023: refund of unknown amount
    extra = results.argcols.extra
    for name in ("batch_init_stock", "batch_init_users", "batch_init_orders"):
        r = _Rows(results, cls_all, name)
        for row in r.rows[r.cls != _FAIL].tolist():
            a = extra[row]
            if name == "batch_init_stock":
                h.batch_items.append((as_int(a[0]), as_int(a[1]), as_int(a[2] if len(a) > 2 else 0)))
            elif name == "batch_init_users":
                h.batch_users.append((as_int(a[0]), as_int(a[1] if len(a) > 1 else 0)))
            else:
                h.batch_orders.append((as_int(a[0]), as_int(a[-1])))
    return h


def _read_checkouts(h: History, r: _Rows) -> None:
    order = np.argsort(r.k0, kind="stable")
    codes, first, counts = _runs(r.k0[order])
    inv = np.repeat(np.arange(codes.size), counts)
    cls = r.cls[order]
    n_ok, n_fail, n_indet = (np.bincount(inv[cls == k], minlength=codes.size).astype(np.int64)
                             for k in (_OK, _FAIL, _INDET))
    starts = np.append(first, order.size).astype(np.int64)
    h.orders = _Checkouts(h.ids, codes.astype(np.int64), n_ok, n_fail, n_indet, r.rows[order], starts)
    h.checkouts["ok"] += int(np.count_nonzero(r.cls == _OK))
    h.checkouts["fail"] += int(np.count_nonzero(r.cls == _FAIL))
    h.checkouts["indeterminate"] += int(np.count_nonzero(r.cls == _INDET))


def _read_ledger(h: History, r: _Rows, name: str) -> None:
    """Book the answered and indeterminate add_stock / subtract_stock / add_funds / pay of each entity."""
    ledgers = h.items if name in ("add_stock", "subtract_stock") else h.users
    adds = name in ("add_stock", "add_funds")
    amount = r.num
    wrote = r.cls != _FAIL
    uniq, inv, srt, starts = r.group(r.k0, wrote)
    ok = r.cls[wrote] == _OK
    total = r.sums(inv, len(uniq), ok, amount[wrote])
    names = r.names
    for k, code in enumerate(uniq):
        led = ledgers[names[code]]
        if adds:
            led.add_ok += total[k]
        else:
            led.sub_ok += total[k]
        led.writes.append(srt[starts[k]:starts[k + 1]])
    for k in np.nonzero(r.cls == _INDET)[0].tolist():
        led, am = ledgers[names[r.k0[k]]], int(amount[k])
        if adds:
            led.add_unc += am
            led.unc.append(am)
        else:
            led.sub_unc += am
            led.unc.append(-am)


def _read_lines(h: History, add: _Rows, rem: _Rows) -> None:
    """Book each (order, item) line's answered and indeterminate add_item / remove_item (4xx: no effect)."""
    width = len(h.ids.names) + 1
    is_add = np.concatenate((np.ones(add.rows.size, bool), np.zeros(rem.rows.size, bool)))
    cls = np.concatenate((add.cls, rem.cls))
    keep = cls != _FAIL
    keys = (np.concatenate((add.k0, rem.k0)).astype(np.int64) * width + np.concatenate((add.k1, rem.k1)))[keep]
    qty = np.concatenate((add.num, np.ones(rem.rows.size, np.int64)))[keep]
    rows = np.concatenate((add.rows, rem.rows))[keep]
    is_add, cls = is_add[keep], cls[keep]
    order = np.argsort(keys, kind="stable")
    keys, qty, rows, is_add, cls = keys[order], qty[order], rows[order], is_add[order], cls[order]
    uniq, first, counts = _runs(keys)
    inv = np.repeat(np.arange(uniq.size), counts)
    add_ok = np.zeros(uniq.size, np.int64)
    m = is_add & (cls == _OK)
    np.add.at(add_ok, inv[m], qty[m])  # exact integer sums
    rem_ok = np.bincount(inv[~is_add & (cls == _OK)], minlength=uniq.size).astype(np.int64)
    rem_unc = np.bincount(inv[~is_add & (cls == _INDET)], minlength=uniq.size).astype(np.int64)
    m = is_add & (cls == _INDET)
    unc_start = np.zeros(uniq.size + 1, np.int64)
    np.cumsum(np.bincount(inv[m], minlength=uniq.size), out=unc_start[1:])
    h.lines = _Lines(h.ids, width, uniq.astype(np.int64), add_ok, rem_ok, rem_unc, qty[m], unc_start, rows,
                     np.append(first, keys.size).astype(np.int64))


