"""The final-state record: what the replay's final read returned, as typed, frozen records.

Built once from the results file's ``final`` record (a msgpack map, see ``traces/results.py``) so
every checker reads attributes instead of looking keys up in maps. The *settle contract* (written by the
replayer's final read, read here): ``settle`` is ``None`` (one snapshot, no settling asked) or
``{"requested": S, "settled": bool, "snapshots": [{"at", "end"}, …], "why": str}``; files written
before the contract carry ``{"requested", "settled", "seconds", "reads"}``, read the same way.
``quiesce`` (how long the final read waited for abandoned requests to land) is informational.

A read that failed is in ``missing`` ({kind: {id: why}}); ``why`` starts with ``HTTP 4xx`` when the
shop *answered* "not found" (a definite answer; after a merge it is prefixed ``shard i/N: ``), and
with ``HTTP 5xx``, ``timeout`` or ``connection error`` when it did not answer. ``bound_not_found``
({kind: [ids]}, written since lost data became an anomaly) lists the ids answered 4xx that the run
bound from a 2xx create; in older files it is absent (None here) and such reads stay unread.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from ..operations import ENTITY_KINDS  # re-exported for the checkers (one definition, in operations)
from ..traces.argcols import IdTable, as_int  # as_int: one definition; re-exported for the checkers
from ..traces.stream import FormatError
from ..traces.records import FinalRecord, ItemState, Settle, UserState, order_fields  # re-exported for the checkers


@dataclass(frozen=True, slots=True)
class OrderState:
    """One order as read back: paid flag, lines (item → quantity, repeated lines summed), user, total."""

    paid: bool
    lines: tuple[tuple[str, int], ...]
    user: str | None
    total_cost: int

    @property
    def quantities(self) -> Counter[str]:
        """Item id → quantity in the order (0 for an item the order does not hold)."""
        return Counter(dict(self.lines))


@dataclass(frozen=True, slots=True)
class OrderTable:
    """Every order as read back, as columns (what the vectorized checks read; no object per order).

    Order ``k`` is ``ids[k]``: ``paid[k]``, ``user[k]`` (a code into ``strings``, -1 for none),
    ``total[k]``; its lines are ``line_item[start[k]:start[k + 1]]`` (codes into ``strings``) with
    ``line_qty`` — repeated items summed, sorted by item id, as :class:`OrderState` holds them.
    """

    ids: list
    paid: np.ndarray  # bool
    user: np.ndarray  # int64 code into strings, -1 = no user
    total: np.ndarray  # int64
    start: np.ndarray  # int64, len(ids) + 1
    line_item: np.ndarray  # int64 code into strings
    line_qty: np.ndarray  # int64
    strings: list  # user and item ids

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def line_order(self) -> np.ndarray:
        """The order index of each line."""
        return np.repeat(np.arange(len(self.ids), dtype=np.int64), np.diff(self.start))

    def state(self, k: int) -> OrderState:
        """Order ``k`` as a typed record."""
        s, e, names = int(self.start[k]), int(self.start[k + 1]), self.strings
        lines = tuple((names[i], q) for i, q in zip(self.line_item[s:e].tolist(), self.line_qty[s:e].tolist()))
        u = int(self.user[k])
        return OrderState(bool(self.paid[k]), lines, None if u < 0 else names[u], int(self.total[k]))


class OrderStates(Mapping):
    """Order id → :class:`OrderState`, each built on first use from an :class:`OrderTable`."""

    def __init__(self, table: OrderTable):
        self.table = table
        self._ids = IdTable(table.ids)

    def position(self, oid: str) -> int | None:
        """The index of order ``oid`` in the table (None when it was not read back)."""
        k = self._ids.code(oid)
        return None if k < 0 else k

    def __getitem__(self, oid: str) -> OrderState:
        k = self.position(oid)
        if k is None:
            raise KeyError(oid)
        return self.table.state(k)

    def __contains__(self, oid: object) -> bool:
        return isinstance(oid, str) and self.position(oid) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.ids)

    def __len__(self) -> int:
        return len(self.table.ids)


def order_table(orders: Mapping) -> OrderTable:
    """The :class:`OrderTable` of a final record's ``orders`` map (id → order map as read back).

    A map stored as columns (:class:`~..traces.results.OrderColumns`) is turned into the table with
    numpy only; any other mapping is read order by order, with the rules of :class:`OrderState`.
    """
    cols = getattr(orders, "columns", None)
    if cols is not None:
        return _table_from_columns(cols)
    if not all(k.__class__ is str for k in orders):
        orders = {str(k): v for k, v in orders.items()}  # as read: the last of equal ids wins
    ids: list[str] = []
    paid: list[bool] = []
    users: list[int] = []
    totals: list[int] = []
    counts: list[int] = []
    items: list[int] = []
    qtys: list[int] = []
    index: dict[str, int] = {}
    code = index.setdefault
    for k, v in orders.items():
        o = _order(v)
        ids.append(k)
        paid.append(o.paid)
        users.append(-1 if o.user is None else code(o.user, len(index)))
        totals.append(o.total_cost)
        counts.append(len(o.lines))
        for item, q in o.lines:
            items.append(code(item, len(index)))
            qtys.append(q)
    start = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    try:
        return OrderTable(ids, np.array(paid, bool), np.array(users, np.int64), np.array(totals, np.int64), start,
                          np.array(items, np.int64), np.array(qtys, np.int64), list(index))
    except OverflowError:  # the replayer reads such an answer as unreadable; an older or hand-made file may hold one
        raise FormatError("corrupt final state: an order's total_cost or line quantity is outside the signed "
                          "64-bit range") from None


def _table_from_columns(c: Any) -> OrderTable:
    """Normalize stored order columns: repeated items of an order summed, lines sorted by item id."""
    n = len(c.ids)
    strings = c.strings
    rank = np.empty(len(strings), np.int64)
    rank[np.array(sorted(range(len(strings)), key=strings.__getitem__), np.int64)] = np.arange(len(strings))
    line_order = np.repeat(np.arange(n, dtype=np.int64), c.nlines.astype(np.int64))
    key = line_order * max(len(strings), 1) + rank[c.line_item] if c.line_item.size else line_order
    if key.size and bool(np.all(key[1:] > key[:-1])):  # the usual case: items listed once, in id order
        uniq, inv = key, np.arange(key.size)
    else:
        uniq, inv = np.unique(key, return_inverse=True)
    qty = np.zeros(uniq.size, np.int64)
    np.add.at(qty, inv.reshape(-1), c.line_qty)
    first = np.zeros(uniq.size, np.int64)
    first[inv.reshape(-1)[::-1]] = np.arange(key.size, dtype=np.int64)[::-1]  # a line of each (order, item)
    items = c.line_item[first].astype(np.int64) if uniq.size else np.empty(0, np.int64)
    start = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(line_order[first], minlength=n) if uniq.size else np.zeros(n, np.int64), out=start[1:])
    return OrderTable(list(c.ids), c.paid.astype(bool), c.user.astype(np.int64), c.total.astype(np.int64), start,
                      items, qty, list(strings))


@dataclass(frozen=True, slots=True)
class FinalState:
    """Every entity the final read returned, those it could not read (kind → {id: why}), and settling.

    ``missing`` and ``answered_4xx`` hold every entity kind of :data:`ENTITY_KINDS` (empty when none):
    :func:`final_state` completes them once. ``bound_not_found`` holds the kinds as stored.
    """

    items: Mapping[str, ItemState]
    users: Mapping[str, UserState]
    orders: OrderStates  # a Mapping id -> OrderState over the columns of ``orders.table``
    missing: Mapping[str, Mapping[str, str]]
    settle: Settle | None
    quiesce: Any = None
    bound_not_found: Mapping[str, frozenset] | None = None  # None: a file written before the record had it
    answered_4xx: Mapping[str, Mapping[str, str]] | None = None  # kind -> {id: why} of missing answered 4xx
    stopped: tuple[str, ...] = ()  # why the final read's circuit breaker stopped reading (empty: it did not)

    def not_found(self, kind: str) -> Mapping[str, str]:
        """The ids of ``kind`` whose read the shop answered with a 4xx (a definite "not found"): id -> why."""
        if self.answered_4xx is not None:
            return self.answered_4xx[kind]
        return {i: w for i, w in self.missing[kind].items() if answered_not_found(w)}

    def unanswered_count(self, kind: str) -> int:
        """How many entities of ``kind`` got no answer to their read (5xx, timeout, connection error, bad body)."""
        return self.missing_count(kind) - len(self.not_found(kind))

    def missing_count(self, kind: str) -> int:
        """How many entities of ``kind`` ("item", "user", "order") could not be read back."""
        return len(self.missing[kind])

    def section(self, kind: str) -> Mapping[str, Any]:
        """The entities of ``kind`` ("item", "user", "order") read back: id -> state."""
        return {"item": self.items, "user": self.users, "order": self.orders}[kind]

    def read_count(self, kind: str) -> int:
        """How many entities of ``kind`` were read back."""
        return len(self.section(kind))


_NOT_FOUND = re.compile(r"^(?:shard [^:]*: )?HTTP 4\d\d\b")


def answered_not_found(why: str) -> bool:
    """Whether a final-read failure text is the shop's 4xx answer (not a 5xx, timeout or connection error)."""
    return bool(_NOT_FOUND.match(why))


def _order(v: Any) -> OrderState:
    paid, lines, user, total = order_fields(v)
    q: Counter[str] = Counter()
    for line in lines:
        try:
            item = str(line[0])
            q[item] += as_int(line[1], 1)
        except (IndexError, TypeError):
            continue
    return OrderState(bool(paid), tuple(sorted(q.items())), None if user is None else str(user), as_int(total))


def final_state(record: FinalRecord | Mapping | None) -> FinalState | None:
    """The typed final state of a run's final record (a :class:`FinalRecord`, or the map as stored; None: none)."""
    if record is None:
        return None
    if not isinstance(record, FinalRecord):
        record = FinalRecord.from_record(record)
    orders = OrderStates(order_table(record.orders))
    # Every entity kind present (the record holds only the kinds with a failed read): readers index by kind.
    missing = {**{k: {} for k in ENTITY_KINDS}, **record.missing}
    bound = None if record.bound_not_found is None else {k: frozenset(v) for k, v in record.bound_not_found.items()}
    answered = {k: {i: w for i, w in v.items() if answered_not_found(w)} for k, v in missing.items()}
    return FinalState(record.items, record.users, orders, missing, record.settling, record.quiesce, bound,
                      answered, record.stopped_why)
