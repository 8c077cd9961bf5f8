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

The checker is a set of small per-entity checkers (:func:`check_order`, :func:`check_item`,
:func:`check_user`) over a :class:`History` (what the requests did) and the typed
:class:`~.final_state.FinalState`. Each entity yields at most one anomaly: a primary kind decided by
the shape of the discrepancy (its sign, whether unpaid or paid orders explain it, whether the
entity saw concurrent writes), other readings as ``tags`` (see ``docs/analysis.md``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from ..errors import WdmError
from ..operations import OP_CODES
from ..traces.argcols import IdTable, sorted_search
from ..traces.results import CONN_ERROR, ERROR, FAIL, INDETERMINATE, OK, SKIPPED, TIMEOUT, Results
from .final_state import ENTITY_KINDS, FinalState, OrderState, OrderTable, as_int, final_state
from .wording import EntityFacts, arithmetic, candidates, headline

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

_OK, _FAIL, _INDET = 0, 1, 2
_CLASS = {OK: _OK, FAIL: _FAIL, ERROR: _INDET, TIMEOUT: _INDET, CONN_ERROR: _INDET}
# Operations whose effects the checker sums.
_EFFECTS = ("add_stock", "subtract_stock", "add_funds", "pay", "checkout", "batch_init_stock",
            "batch_init_users", "batch_init_orders", "cancel_payment")
_SHAPES = ("create_item", "create_order", "add_item", "remove_item")
MAX_EXACT_UNCERTAIN = 12  # beyond this many uncertain deltas per entity, accept the whole range


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


@dataclass
class _Ledger:
    """Known and uncertain effects of the recorded operations on one item's stock or user's credit."""

    add_ok: int = 0
    add_unc: int = 0  # indeterminate additions: anything from 0 to this may have happened
    sub_ok: int = 0
    sub_unc: int = 0
    unc: list = field(default_factory=list)  # each indeterminate delta (+add / -sub), all-or-nothing
    exact: bool = True  # False when the uncertain part is only bounded (orders whose state is unknown)
    writes: list = field(default_factory=list)  # arrays of the rows of requests that may have written


@dataclass(slots=True)
class _Order:
    """Checkout responses of one order and the (sent, done) interval of each."""

    n_ok: int = 0
    n_fail: int = 0
    n_indet: int = 0
    rows: Any = ()  # rows of its checkouts

    @property
    def attempted(self) -> bool:
        return self.n_ok + self.n_fail + self.n_indet > 0


class _Line:
    """What the requests did to one (order, item) line: definite and all-or-nothing unit deltas."""

    __slots__ = ("add_ok", "add_unc", "rem_ok", "rem_unc", "requests")

    def __init__(self) -> None:
        self.add_ok = 0
        self.add_unc: list[int] = []
        self.rem_ok = 0
        self.rem_unc = 0
        self.requests: list = []  # arrays of row numbers (named only when an anomaly is reported)


class _Ids(IdTable):
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


def _take(values: np.ndarray, at: np.ndarray, default: int = 0) -> np.ndarray:
    """``values[at]``, ``default`` where ``at`` is -1."""
    if not values.size:
        return np.full(at.size, default, values.dtype)
    return np.where(at >= 0, values[np.maximum(at, 0)], default)


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The index of each of ``wanted`` in the sorted unique ``keys`` (-1 where absent)."""
    pos = sorted_search(keys, wanted)
    pos[pos >= keys.size] = 0
    hit = keys[pos] == wanted if keys.size else np.zeros(wanted.size, bool)
    return np.where(hit, pos, -1)


class _Checkouts(Mapping):
    """Order id -> :class:`_Order` (its checkouts), over the checkout rows grouped by order code."""

    def __init__(self, ids: _Ids, codes: np.ndarray, n_ok: np.ndarray, n_fail: np.ndarray, n_indet: np.ndarray,
                 rows: np.ndarray, starts: np.ndarray):
        self.ids, self.codes, self.n_ok, self.n_fail, self.n_indet = ids, codes, n_ok, n_fail, n_indet
        self.rows, self.starts = rows, starts

    @classmethod
    def empty(cls) -> "_Checkouts":
        z = np.zeros(0, np.int64)
        return cls(_Ids([]), z, z, z, z, z, np.zeros(1, np.int64))

    def _pos(self, oid: object) -> int:
        code = self.ids.code(oid) if isinstance(oid, str) else -1
        return int(_positions(self.codes, np.array([code]))[0]) if code >= 0 else -1

    def __getitem__(self, oid: str) -> _Order:
        k = self._pos(oid)
        if k < 0:
            raise KeyError(oid)
        return _Order(int(self.n_ok[k]), int(self.n_fail[k]), int(self.n_indet[k]),
                      self.rows[self.starts[k]:self.starts[k + 1]])

    def __contains__(self, oid: object) -> bool:
        return self._pos(oid) >= 0

    def __iter__(self) -> Iterator[str]:
        names = self.ids.names
        return (names[c] for c in self.codes.tolist())

    def __len__(self) -> int:
        return self.codes.size


class _Lines(Mapping):
    """Order id -> {item id -> :class:`_Line`}, over the add_item/remove_item rows grouped by (order, item).

    ``keys`` are ``order code * width + item code``, sorted; per key: the answered units added
    (``add_ok``), removals answered / indeterminate, the quantities of its indeterminate add_item
    (``unc[unc_start[k]:unc_start[k + 1]]``) and its rows (``rows[starts[k]:starts[k + 1]]``).
    """

    def __init__(self, ids: _Ids, width: int, keys: np.ndarray, add_ok: np.ndarray, rem_ok: np.ndarray,
                 rem_unc: np.ndarray, unc: np.ndarray, unc_start: np.ndarray, rows: np.ndarray, starts: np.ndarray):
        self.ids, self.width, self.keys, self.add_ok, self.rem_ok, self.rem_unc = ids, width, keys, add_ok, rem_ok, rem_unc
        self.unc, self.unc_start, self.rows, self.starts = unc, unc_start, rows, starts

    @classmethod
    def empty(cls) -> "_Lines":
        z = np.zeros(0, np.int64)
        return cls(_Ids([]), 1, z, z, z, z, z, np.zeros(1, np.int64), z, np.zeros(1, np.int64))

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

    def line(self, k: int) -> _Line:
        """The :class:`_Line` of key number ``k``."""
        ln = _Line()
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

    items: dict = field(default_factory=lambda: defaultdict(_Ledger))
    users: dict = field(default_factory=lambda: defaultdict(_Ledger))
    orders: _Checkouts = field(default_factory=_Checkouts.empty)  # order -> _Order
    lines: _Lines = field(default_factory=_Lines.empty)  # order -> item -> _Line
    ids: _Ids = field(default_factory=lambda: _Ids([]))  # the entity-id table of the args columns
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
        return int(co.n_ok[_positions(loaded, co.codes) >= 0].sum())

    @property
    def max_price(self) -> int:
        """The highest price any item was created with: bounds costs of unread items."""
        return max([*self.create_prices, *(p for _, _, p in self.batch_items), 0])

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


def _request_names(hist: "History", parts: list) -> tuple[str, ...]:
    """``"session S step K"`` of each row (``parts``: arrays of row numbers)."""
    rows = np.sort(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])) if parts else []
    sid, step = hist.cols["sid"], hist.cols["step"]
    return tuple(f"session {int(sid[r])} step {int(step[r])}" for r in rows)


def _intervals(hist: "History", parts: list) -> list[tuple[float, float]]:
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
    h = History(results.cols, ids=_Ids(results.argcols.names))
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


def _reachable(offset: int, deltas: list[int], exact: bool) -> bool:
    """Whether ``lo + offset`` is a sum of some subset of the uncertain deltas (each all-or-nothing).

    With re-checkout multiplicity ranges or too many uncertain operations, any value in the range is
    accepted.
    """
    if not exact or not deltas or len(deltas) > MAX_EXACT_UNCERTAIN:
        return True
    # Measured from lo, every subtraction not taken and every addition taken raises the value.
    sums = {0}
    for d in deltas:
        sums |= {x + abs(d) for x in sums}
    return offset in sums


def _fmt_range(lo: int, hi: int) -> Any:
    return lo if lo == hi else [lo, hi]


@dataclass
class ConsistencyResult:
    """What the checker found: anomalies, per-entity counts checked, checkout tallies, own figures."""

    anomalies: list[Anomaly]
    checked: dict[str, int]  # {"items", "users", "orders"} checked against the final state
    checkouts: dict[str, int]  # {"ok", "fail", "indeterminate", "skipped", "paid_orders"}
    # {"stock": {"history_allows": [lo, hi], "implied_by_2xx", "final"}, "credit": …}: what the recorded
    # history allows (every all-or-nothing reading of the unanswered requests), what the 2xx answers
    # alone imply, what was read back. Never called "expected": the trace's bounds are (bounds.py).
    totals: dict[str, Any]
    notes: list[str]
    final_state: bool
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped
    history: History | None = field(default=None, repr=False)
    final: FinalState | None = field(default=None, repr=False)


@dataclass
class _Context:
    """What every per-entity checker reads: the history, the final state, the policy and the order index."""

    hist: History
    fs: FinalState
    recheckout: str
    mult: dict = field(default_factory=dict)  # paid order -> (min, max) times its effect applies
    item_orders: dict = field(default_factory=lambda: defaultdict(list))  # item -> [(order, qty)]
    user_orders: dict = field(default_factory=lambda: defaultdict(list))  # user -> [order]
    short_items: set = field(default_factory=set)  # items with less stock than expected (checked before users)
    prices: dict = field(default_factory=dict)  # item -> price (memo of :meth:`price`)

    def price(self, item: str) -> int | None:
        """An item's price: its batch_init price, its price as read back, or the one create_item price."""
        p = self.prices.get(item, self)
        if p is self:
            p = self.prices[item] = self._price(item)
        return p

    def _price(self, item: str) -> int | None:
        b = self.hist.batch_item(item)
        if b is not None:
            return b[1]
        if item in self.fs.items:
            return self.fs.items[item].price
        if len(self.hist.create_prices) == 1:
            return next(iter(self.hist.create_prices))
        return None


def _one(candidates: list[Anomaly]) -> Anomaly | None:
    """One anomaly for one entity: the first candidate is primary, the others become its tags."""
    if not candidates:
        return None
    first, rest = candidates[0], candidates[1:]
    tags = tuple(dict.fromkeys(a.kind for a in rest if a.kind != first.kind))
    orders = tuple(dict.fromkeys(first.orders + tuple(o for a in rest for o in a.orders)))
    detail = first.detail + "".join(f"; also {a.kind}: {a.detail}" for a in rest)
    return Anomaly(first.kind, first.entity, first.id, first.expected, first.actual, detail, orders, tags,
                   first.requests + tuple(r for a in rest for r in a.requests))


def check_order(ctx: _Context, oid: str, o: OrderState) -> Anomaly | None:
    """An order against its checkouts (paid flag), its add_item/remove_item history and its prices."""
    rec = ctx.hist.orders.get(oid) or _Order()
    found: list[Anomaly] = []
    if rec.n_ok and not o.paid:
        found.append(Anomaly("lost_checkout", "order", oid, True, False,
                             f"{rec.n_ok} checkout(s) answered 2xx but the order is not paid", (oid,)))
    elif o.paid and rec.n_ok == 0 and rec.n_indet == 0:
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
    return _one(found)


def _expected_total(ctx: _Context, o: OrderState) -> int | None:
    total = 0
    for item, qty in o.lines:
        p = ctx.price(item)
        if p is None:
            return None
        total += qty * p
    return total


def _check_lines(ctx: _Context, oid: str, o: OrderState) -> list[Anomaly]:
    """Each line's quantity against what the answered add_item/remove_item built (indeterminate: all-or-nothing)."""
    lines = ctx.hist.lines.get(oid, {})
    if len(lines) == len(o.lines) and all(
            (ln := lines.get(item)) is not None and not ln.add_unc and not ln.rem_unc and not ln.rem_ok
            and ln.add_ok == qty >= 0 for item, qty in o.lines):
        return []  # the common case: every line exactly what its answered add_item requests built
    have = o.quantities
    found = []
    for item in sorted(set(lines) | set(have)):
        ln = lines.get(item) or _Line()
        actual = have.get(item, 0)
        lo = max(0, ln.add_ok - ln.rem_ok - ln.rem_unc)
        hi = max(0, ln.add_ok + sum(ln.add_unc) - ln.rem_ok)
        if lo <= actual <= hi and not ln.add_unc:
            continue  # the common case: exactly what the answered requests built
        reqs = _request_names(ctx.hist, ln.requests)
        if actual < lo or (lo <= actual <= hi and not (ln.rem_ok or ln.rem_unc)
                           and not _reachable(actual - lo, ln.add_unc, True)):
            found.append(Anomaly("lost_order_line", "order", oid, _fmt_range(lo, hi), actual,
                                 f"item {item}: quantity {actual}, but its answered add_item/remove_item "
                                 f"requests built {_fmt_range(lo, hi)}", (oid,), (), reqs))
        elif actual > hi:
            why = (f"item {item}: quantity {actual}, but its add_item requests add at most {hi}" if ln.requests
                   else f"item {item}: quantity {actual}, but no add_item of it was sent to this order")
            found.append(Anomaly("phantom_order_line", "order", oid, _fmt_range(lo, hi), actual, why, (oid,), (), reqs))
    return found


def _recheckout_extra(ctx: _Context, related: list[tuple[str, int]]) -> int:
    """Units/credit that re-checkouts of already-paid orders would take if each charged again."""
    if ctx.recheckout != "refuse":
        return 0
    extra = 0
    for o, w in related:
        rec = ctx.hist.orders.get(o)
        if o in ctx.mult and rec and rec.n_ok + rec.n_indet > 1:
            extra += w * (rec.n_ok + rec.n_indet - 1)
    return extra


RECHECKOUT_HINT = ("; the pattern of re-checkout charging again (an already-paid order checked out again took "
                   "effect, as the course template does): if that is the shop's policy, check with "
                   "--recheckout charge")


def check_entity(ctx: _Context, kind: str, eid: str, initial: int, led: _Ledger, actual: int,
                 related: list[tuple[str, int]]) -> tuple[Anomaly | None, int, int]:
    """One item's stock or user's credit against its expected range: (anomaly or None, lo, hi)."""
    mult, hist = ctx.mult, ctx.hist
    paid_lo = sum(w * mult[o][0] for o, w in related if o in mult)
    paid_hi = sum(w * mult[o][1] for o, w in related if o in mult)
    lo = initial + led.add_ok - led.sub_ok - led.sub_unc - paid_hi
    hi = initial + led.add_ok + led.add_unc - led.sub_ok - paid_lo
    value = "stock" if kind == "item" else "credit"
    rng = _fmt_range(lo, hi)
    paid = [(o, w) for o, w in related if o in mult]
    found: list[Anomaly] = []
    if actual < 0 or hi < 0:
        why = (f"{value} is {actual}, below zero" if actual < 0
               else f"the successful operations take more {value} than was ever there (at most {hi} left)")
        found.append(Anomaly("oversell", kind, eid, rng, actual, why, tuple(o for o, _ in paid)))
    if lo <= actual <= hi:
        exact = led.exact and all(mult[o][0] == mult[o][1] for o, _ in paid)
        if not _reachable(actual - lo, led.unc, exact):
            found.append(Anomaly("lost_update", kind, eid, rng, actual,
                                 f"{value} {actual} is within {lo}..{hi} but no all-or-nothing combination of "
                                 f"the indeterminate operations gives it"))
        return _one(found), lo, hi
    concurrent = _overlapping(_intervals(hist, led.writes + [hist.orders[o].rows for o, _ in related
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
    return _one(found), lo, hi


def _implied(ctx: _Context, led: _Ledger, initial: int, related: list[tuple[str, int]]) -> int:
    """What the 2xx responses alone imply for one entity."""
    taken = 0
    for o, w in related:
        rec = ctx.hist.orders.get(o)
        if rec and rec.n_ok:
            taken += w * (rec.n_ok if ctx.recheckout == "charge" else 1)
    return initial + led.add_ok - led.sub_ok - taken


def check_item(ctx: _Context, eid: str) -> tuple[Anomaly | None, tuple[int, int, int, int]]:
    """One item: its anomaly (or None) and (lo, hi, implied by 2xx, final) of its stock."""
    b = ctx.hist.batch_item(eid)
    initial = b[0] if b is not None else 0
    actual = ctx.fs.items[eid].stock
    related = ctx.item_orders.get(eid, [])
    led = ctx.hist.items.get(eid) or _Ledger()
    a, lo, hi = check_entity(ctx, "item", eid, initial, led, actual, related)
    return a, (lo, hi, _implied(ctx, led, initial, related), actual)


def check_user(ctx: _Context, eid: str) -> tuple[Anomaly | None, tuple[int, int, int, int]]:
    """One user: its anomaly (or None) and (lo, hi, implied by 2xx, final) of its credit."""
    initial = ctx.hist.batch_user(eid) or 0
    actual = ctx.fs.users[eid].credit
    related = [(o, ctx.fs.orders[o].total_cost) for o in ctx.user_orders.get(eid, [])]
    led = ctx.hist.users.get(eid) or _Ledger()
    if eid in ctx.hist.refunded:
        # A refund gives back at most what the user paid: the credit is bounded, not exact.
        led.add_unc += led.sub_ok + led.sub_unc + sum(w * ctx.mult[o][1] for o, w in related if o in ctx.mult)
        led.exact = False
    a, lo, hi = check_entity(ctx, "user", eid, initial, led, actual, related)
    return a, (lo, hi, _implied(ctx, led, initial, related), actual)


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
    fs = final_state(results.final)
    notes: list[str] = []
    if fs is None:
        notes.append("no final state recorded: per-entity consistency NOT checked (replay with final read)")
        return ConsistencyResult([], {"items": 0, "users": 0, "orders": 0}, dict(hist.checkouts, paid_orders=0),
                                 {}, notes, False, hist.undetermined, hist, None)
    for kind in ("item", "user", "order"):
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
        _bound_unknown_orders(unknown, hist, fs)

    ctx = _Context(hist, fs, recheckout)
    if screen:
        anomalies, totals, paid_orders = _screened(ctx, tab, ocode)
    else:
        anomalies, totals, paid_orders = _every_entity(ctx)
    anomalies.extend(lost_anomalies(ctx))
    anomalies = [describe(ctx, a) for a in anomalies]
    anomalies.sort(key=lambda a: (KINDS.index(a.kind), a.entity, _id_key(a.id)))
    totals_out = {name: {"history_allows": _fmt_range(t[0], t[1]), "implied_by_2xx": t[2], "final": t[3]}
                  for name, t in totals.items()}
    checked = {"items": len(fs.items), "users": len(fs.users), "orders": len(fs.orders)}
    return ConsistencyResult(anomalies, checked, dict(hist.checkouts, paid_orders=paid_orders), totals_out,
                             notes, True, hist.undetermined, hist, fs)


def _every_entity(ctx: _Context) -> tuple[list[Anomaly], dict, int]:
    """Every order, item and user through its per-entity checker: (anomalies, totals, paid orders)."""
    fs, hist = ctx.fs, ctx.hist
    anomalies: list[Anomaly] = []
    paid_orders = 0
    for oid in sorted(fs.orders, key=_id_key):
        o = fs.orders[oid]
        rec = hist.orders.get(oid) or _Order()
        for item, qty in o.lines:
            ctx.item_orders[item].append((oid, qty))
        if o.user is not None:
            ctx.user_orders[o.user].append(oid)
        if o.paid:
            paid_orders += 1
            ctx.mult[oid] = ((max(1, rec.n_ok), max(1, rec.n_ok + rec.n_indet)) if ctx.recheckout == "charge"
                             else (1, 1))
        a = check_order(ctx, oid, o)
        if a is not None:
            anomalies.append(a)
    totals = {"stock": [0, 0, 0, 0], "credit": [0, 0, 0, 0]}  # lo, hi, implied by 2xx, final
    for name, ids, checker in (("stock", fs.items, check_item), ("credit", fs.users, check_user)):
        for eid in sorted(ids, key=_id_key):
            a, figs = checker(ctx, eid)
            if a is not None:
                anomalies.append(a)
            totals[name] = [t + f for t, f in zip(totals[name], figs)]
    return anomalies, totals, paid_orders


class _Mult(Mapping):
    """Paid order id -> (min, max) times its checkout's effect applies (what ``_Context.mult`` holds)."""

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
    """Item -> [(order, quantity)] or user -> [order], in order-id order, from the order table on first use."""

    def __init__(self, tab: OrderTable, by_user: bool):
        self.tab, self.by_user = tab, by_user
        self._spans: dict | None = None

    def get(self, key: str, default: Any = None) -> Any:
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
            return default
        at = self._sorted[span[0]:span[1]]
        ids = tab.ids
        owners = sorted(zip(self._owner[at].tolist(), at.tolist()), key=lambda x: _id_key(ids[x[0]]))
        if self.by_user:
            return [ids[k] for k, _ in owners]
        qty = tab.line_qty
        return [(ids[k], int(qty[j])) for k, j in owners]


def _screened(ctx: _Context, tab: OrderTable, ocode: np.ndarray) -> tuple[list[Anomaly], dict, int]:
    """The checks of :func:`_every_entity` with numpy over all orders; the per-entity checkers run only
    on the orders, items and users whose figures the screen cannot clear."""
    hist, fs = ctx.hist, ctx.fs
    co = hist.orders
    pos = _positions(co.codes, ocode)
    n_ok, n_indet = _take(co.n_ok, pos), _take(co.n_indet, pos)
    paid = tab.paid
    charge = ctx.recheckout == "charge"
    if charge:
        mlo = np.where(paid, np.maximum(1, n_ok), 0)
        mhi = np.where(paid, np.maximum(1, n_ok + n_indet), 0)
    else:
        mlo = mhi = paid.astype(np.int64)
    ctx.mult = _Mult(fs.orders, mlo, mhi, paid)
    ctx.item_orders = _Related(tab, by_user=False)  # type: ignore[assignment]
    ctx.user_orders = _Related(tab, by_user=True)  # type: ignore[assignment]

    flagged = ((n_ok > 0) & ~paid) | (paid & (n_ok == 0) & (n_indet == 0))
    bad_lines = _lines_differ(hist, tab, ocode)
    if hist.batch_orders:
        for k in np.nonzero(bad_lines)[0].tolist():
            bad_lines[k] = not hist.batch_order(tab.ids[k])
    flagged |= bad_lines | _totals_differ(ctx, tab)
    anomalies: list[Anomaly] = []
    for k in np.nonzero(flagged)[0].tolist():
        a = check_order(ctx, tab.ids[k], tab.state(k))
        if a is not None:
            anomalies.append(a)

    # Per item (line quantities) and per user (order totals): what paid orders take, at least and at
    # most, what the 2xx checkouts alone imply, and whether a paid order's multiplicity is a range.
    taken = np.where(n_ok > 0, n_ok if charge else 1, 0)
    inexact = (mlo != mhi).astype(np.int64)
    lo_, q = tab.line_order, tab.line_qty
    per_item = [_sum_by(tab.line_item, q * m[lo_], len(tab.strings)) for m in (mlo, mhi, taken, inexact)]
    has_user = tab.user >= 0
    u, w = tab.user[has_user], tab.total[has_user]
    per_user = [_sum_by(u, w * m[has_user], len(tab.strings)) for m in (mlo, mhi, taken)]
    per_user.append(_sum_by(u, inexact[has_user], len(tab.strings)))
    where = dict(zip(tab.strings, range(len(tab.strings))))
    totals = {"stock": [0, 0, 0, 0], "credit": [0, 0, 0, 0]}  # lo, hi, implied by 2xx, final
    for name, ids, sums, checker in (("stock", fs.items, per_item, check_item),
                                     ("credit", fs.users, per_user, check_user)):
        t = totals[name]
        for eid in sorted(ids, key=_id_key):
            c = where.get(eid)
            paid_lo, paid_hi, took, inex = (0, 0, 0, 0) if c is None else (x[c] for x in sums)
            if name == "stock":
                b = hist.batch_item(eid)
                initial, led, actual = (b[0] if b is not None else 0), hist.items.get(eid), ids[eid].stock
            else:
                initial, led, actual = hist.batch_user(eid) or 0, hist.users.get(eid), ids[eid].credit
            led = led or _Ledger()
            lo = initial + led.add_ok - led.sub_ok - led.sub_unc - paid_hi
            hi = initial + led.add_ok + led.add_unc - led.sub_ok - paid_lo
            if (0 <= actual and 0 <= hi and lo <= actual <= hi and eid not in hist.refunded
                    and _reachable(actual - lo, led.unc, led.exact and not inex)):
                figs = (lo, hi, initial + led.add_ok - led.sub_ok - took, actual)
            else:
                a, figs = checker(ctx, eid)
                if a is not None:
                    anomalies.append(a)
            t[0] += figs[0]
            t[1] += figs[1]
            t[2] += figs[2]
            t[3] += figs[3]
    return anomalies, totals, int(np.count_nonzero(paid))


def _sum_by(codes: np.ndarray, values: np.ndarray, n: int) -> list[int]:
    """Exact integer sums of ``values`` per code (0..n-1), as Python ints."""
    out = np.zeros(n, np.int64)
    np.add.at(out, codes, values)
    return out.tolist()


def _lines_differ(hist: History, tab: OrderTable, ocode: np.ndarray) -> np.ndarray:
    """Per order: whether a line of it is outside what its add_item/remove_item built, or has an
    indeterminate add_item (all-or-nothing subsets are the per-order checker's to judge)."""
    ln, n = hist.lines, len(tab)
    w = ln.width
    unc_sum = np.zeros(ln.keys.size, np.int64)
    np.add.at(unc_sum, np.repeat(np.arange(ln.keys.size), ln.n_unc), ln.unc)
    h_lo = np.maximum(0, ln.add_ok - ln.rem_ok - ln.rem_unc)
    h_hi = np.maximum(0, ln.add_ok + unc_sum - ln.rem_ok)
    # Lines the final state shows, against their history (none: nothing may be there).
    icode = hist.ids.codes(tab.strings)
    f_order, f_item = ocode[tab.line_order], icode[tab.line_item] if tab.line_item.size else tab.line_item
    known = (f_order >= 0) & (f_item >= 0)
    at = np.where(known, _positions(ln.keys, np.where(known, f_order * w + f_item, -1)), -1)
    hit = at >= 0
    lo, hi = _take(h_lo, at), _take(h_hi, at)
    actual = tab.line_qty
    # Within the range, indeterminate add_item requests still need a subset that sums to the quantity
    # (when nothing was removed): clear here the one-request case; more go to the per-order checker.
    n_unc, removed = _take(ln.n_unc, at), _take(ln.rem_ok + ln.rem_unc, at) > 0
    subset = (n_unc == 0) | removed | (n_unc > MAX_EXACT_UNCERTAIN) | (
        (n_unc == 1) & ((actual == lo) | (actual - lo == _take(unc_sum, at))))
    bad_line = ~subset | (actual < lo) | (actual > hi)
    bad = np.bincount(tab.line_order[bad_line], minlength=n) > 0
    # Lines the history built that the final state does not show (quantity 0).
    shown = np.zeros(ln.keys.size, bool)
    shown[at[hit]] = True
    sorter = np.argsort(ocode, kind="stable")
    k = _positions(ocode[sorter], ln.keys // w)
    missing_bad = ~shown & (h_lo > 0) & (k >= 0)  # quantity 0 from lo 0: the empty subset
    bad[sorter[k[missing_bad]]] = True
    return bad


def _totals_differ(ctx: _Context, tab: OrderTable) -> np.ndarray:
    """Per order: whether its total_cost differs from Σ quantity × price (orders with an unpriced item: no)."""
    n = len(tab)
    price = np.zeros(len(tab.strings), np.int64)
    priced = np.zeros(len(tab.strings), bool)
    for c in np.unique(tab.line_item).tolist():
        p = ctx.price(tab.strings[c])
        if p is not None and abs(p) < 1 << 31:
            price[c], priced[c] = p, True
    item, q = tab.line_item, tab.line_qty
    unpriced = np.bincount(tab.line_order[~priced[item]], minlength=n) > 0
    expected = np.zeros(n, np.int64)
    np.add.at(expected, tab.line_order, np.where(priced[item], q * price[item], 0))
    # Figures beyond what int64 holds exactly go to the per-order checker (Python integers).
    huge = (np.abs(tab.total) >= 1 << 62) | (np.bincount(tab.line_order[np.abs(q) >= 1 << 31], minlength=n) > 0)
    return huge | (~unpriced & (expected != tab.total))


def _bound_unknown_orders(unknown: list[str], hist: History, fs: FinalState) -> None:
    """Widen the expected values touched by checked-out orders whose final state was not read.

    Such an order may or may not be paid: each of its items may have lost the units added to it
    (all-or-nothing), and its user — unknown, but one of the users who created more orders than the
    final state shows — may have paid its cost. Credit is then bounded, not checked exactly.
    """
    costs = []
    for oid in unknown:
        lines = {i: ln.add_ok + sum(ln.add_unc) for i, ln in hist.lines.get(oid, {}).items()}
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
        k = n - shown.get(user, 0)
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
        bound = fs.bound_not_found.get(kind, frozenset())
        ids = [i for i in fs.not_found(kind) if i in bound or batch[kind](i)]
        if ids:
            out[kind] = sorted(ids, key=_id_key)
    return out


def lost_anomalies(ctx: _Context) -> list[Anomaly]:
    """One ``lost_entity`` per acknowledged entity the final read answered "not found", with what it held."""
    out = []
    same: dict = {}  # (kind, initial) -> what an entity untouched since its creation lost (shared)
    for kind, ids in lost_ids(ctx.hist, ctx.fs).items():
        why = ctx.fs.not_found(kind)
        for eid in ids:
            said = why[eid][:80]
            if kind == "order":
                lines = ctx.hist.lines.get(eid, {})
                units = {i: ln.add_ok - ln.rem_ok for i, ln in lines.items() if ln.add_ok - ln.rem_ok > 0}
                rec = ctx.hist.orders.get(eid) or _Order()
                held = ", ".join(f"{q} x item {i}" for i, q in sorted(units.items())) or "no answered add_item"
                paid = "; its checkout was answered 2xx (paid)" if rec.n_ok else ""
                out.append(Anomaly("lost_entity", "order", eid, sum(units.values()), None,
                                   f"order created with a 2xx, read back {said!r}; it held {held}{paid}", (eid,)))
                continue
            f = entity_facts(ctx, kind, eid)
            value, expected = _value_name(kind), _fmt_range(f.lo, f.hi)
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


def entity_facts(ctx: _Context, kind: str, eid: str) -> EntityFacts:
    """What the history did to item ``eid``'s stock or user ``eid``'s credit, and what it saw (candidates)."""
    hist, fs = ctx.hist, ctx.fs
    if kind == "item":
        b = hist.batch_item(eid)
        initial, led = (b[0] if b is not None else 0), hist.items.get(eid)
        related = list(ctx.item_orders.get(eid, []) or [])
    else:
        initial, led = hist.batch_user(eid) or 0, hist.users.get(eid)
        related = [(o, fs.orders[o].total_cost) for o in (ctx.user_orders.get(eid, []) or []) if o in fs.orders]
    if led is None and not related:  # untouched since its batch_init or create: nothing more to gather
        return EntityFacts(kind, initial, 0, 0, 0, 0, 0, 0, 0)
    led = led or _Ledger()
    paid = [(o, w) for o, w in related if o in ctx.mult]
    writes = list(led.writes) + [hist.orders[o].rows for o, _ in related if o in hist.orders]
    orders = [o for o, _ in related]
    repeated = []
    for o in orders:
        lines = hist.lines.get(o, {})
        mine = [lines[eid]] if kind == "item" and eid in lines else list(lines.values()) if kind == "user" else []
        if any(sum(len(r) for r in ln.requests) > 1 for ln in mine):
            repeated.append(o)
    rechecked = tuple(o for o in orders if o in hist.orders and hist.orders[o].n_ok + hist.orders[o].n_indet > 1)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r in led.writes]) if led.writes else np.zeros(0, np.int64)
    unanswered = (int(np.count_nonzero(np.isin(hist.cols["outcome"][rows], INDETERMINATE)))
                  + sum(hist.orders[o].n_indet for o in orders if o in hist.orders))
    return EntityFacts(kind, initial, led.add_ok, led.sub_ok, led.add_unc, led.sub_unc, len(paid),
                       sum(w * ctx.mult[o][0] for o, w in paid), sum(w * ctx.mult[o][1] for o, w in paid),
                       _overlapping(_intervals(hist, writes)), tuple(repeated), rechecked, unanswered)


def _line_facts(ctx: _Context, a: Anomaly) -> tuple[str, ...]:
    """Candidate causes of an order's anomaly, from its add_item/checkout history."""
    hist = ctx.hist
    out = []
    lines = hist.lines.get(a.id, {})
    if _overlapping(_intervals(hist, [r for ln in lines.values() for r in ln.requests])):
        out.append("concurrent add_item/remove_item on this order overlapped in time (lines overwritten?)")
    rep = [i for i, ln in lines.items() if sum(len(r) for r in ln.requests) > 1]
    if rep:
        out.append(f"an item added in more than one add_item ({', '.join(sorted(rep)[:3])}): repeated items collapsed?")
    rec = hist.orders.get(a.id)
    if rec is not None and rec.n_ok + rec.n_indet > 1:
        out.append(f"checked out {rec.n_ok + rec.n_indet} times (a re-checkout?)")
    if rec is not None and rec.n_indet or any(ln.add_unc or ln.rem_unc for ln in lines.values()):
        out.append("requests on it got no answer (a half-applied request?)")
    return tuple(out) or ("none seen in its history: serial requests, each answered",)


def describe(ctx: _Context, a: Anomaly) -> Anomaly:
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


def _id_key(s: str) -> tuple:
    """Sort ids numerically when they are numbers, so "10" comes after "9"."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
