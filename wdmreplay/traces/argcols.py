"""Request args as columns: entity ids interned into integer codes, amounts as integers.

What the consistency checker reads of every row's resolved args, built chunk by chunk while a
results file loads (each chunk's args are decoded, turned into columns, and freed), so millions of
rows never sit in memory as Python lists. Per row (index = row number):

- ``k0``: code of ``str(a[0])`` — the order of checkout / add_item / remove_item, the item of
  add_stock / subtract_stock, the user of add_funds / pay / create_order / cancel_payment;
- ``k1``: code of ``str(a[1])`` (``""`` when absent) — the item of add_item / remove_item;
- ``num``: the integer the operation carries — ``as_int(a[-1])`` for add_stock / subtract_stock /
  add_funds / pay, ``as_int(a[2], 1)`` (1 when absent) for add_item, ``as_int(a[0])`` for create_item;

where ``a`` is the row's args, or ``[None]`` when it has none. ``names[code]`` is the string of a
code (one table per file). Rows of other operations hold -1 / 0; the rare batch_init_* rows keep
their args as lists in ``extra`` (row → args). :class:`LazyArgs` keeps the packed bytes and decodes
per-row lists only when a caller asks for them.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from itertools import count, repeat
from operator import eq, itemgetter
from typing import Any, Callable, Iterator, Sequence

import msgpack
import numpy as np

from ..operations import OP_CODES

# Operations whose args become columns, and what ``num`` holds for them.
_LEDGER_OPS = ("add_stock", "subtract_stock", "add_funds", "pay")
_K0_OPS = ("checkout", "add_item", "remove_item", "create_order", "cancel_payment", *_LEDGER_OPS)
_K1_OPS = ("add_item", "remove_item")
EXTRA_OPS = ("batch_init_stock", "batch_init_users", "batch_init_orders")


def as_int(v: Any, default: int = 0) -> int:
    """``v`` as an int, or ``default`` when it is not a number (the checkers use it too)."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True, slots=True)
class ArgColumns:
    """The args the checker needs, as columns over all rows (see the module docstring)."""

    k0: np.ndarray  # int32 code per row, -1 when not extracted
    k1: np.ndarray  # int32 code per row, -1 when not extracted
    num: np.ndarray  # int64 per row
    names: list  # code -> string
    extra: dict  # row -> args list, for batch_init_* rows


_COLUMN_OPS = {OP_CODES[n]: n for n in (*_K0_OPS, "create_item", *EXTRA_OPS) if n in OP_CODES}
# What a row of each operation yields (see _row_loop): 0 extra, 1 create_item, 2 k0 only,
# 3 add_item, 4 remove_item, 5 k0 and an amount.
_ROW_KIND = {c: (0 if n in EXTRA_OPS else 1 if n == "create_item" else 3 if n == "add_item" else
                 4 if n == "remove_item" else 5 if n in _LEDGER_OPS else 2) for c, n in _COLUMN_OPS.items()}


# The kind of row of each op code (-1: no arg columns), for the chunk-at-once path.
_KIND_OF = np.full(256, -1, np.int8)
for _c, _k in _ROW_KIND.items():
    _KIND_OF[_c] = _k
_FIRST, _SECOND, _THIRD, _LAST = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(-1)
_STR = {str}


def _ints(values: list) -> np.ndarray:
    """``values`` as int64, each ``int(v)``, as the loop makes them; TypeError for a value that is no integer.

    ``array('q')`` takes exactly the values with ``__index__`` (int, bool, ...), whose ``int()`` it
    stores, and refuses the rest (a float, a string, None: the loop's ``as_int`` cases) without a
    type test per value; OverflowError beyond 64 bits, as ``np.array`` raises in the loop.
    """
    return np.frombuffer(array.array("q", values), np.int64)


def _chunk_columns(op: np.ndarray, args: list) -> tuple | None:
    """(k0, k1, num, extra, names) as :func:`_row_loop` makes them, a chunk at a time in C; None when a row needs the loop.

    ``names`` are the chunk's distinct ids in order of first appearance (the loop's ``index``).
    The rows a replay writes (string ids, int amounts, every row with the args its operation
    takes) go through C iterators and numpy instead of one interpreted loop iteration per row; any
    other row (batch_init_*, missing or empty args, a float, a bool, a nested value, ...) sends the
    whole chunk to the loop, which is the definition.
    """
    n = op.size
    if len(args) != n:
        return None
    kinds = _KIND_OF[op]
    if n < 2 or (kinds == 0).any():  # batch_init_* rows keep their args in ``extra``: the loop's case
        return None
    # The rows grouped by kind (stable: in row order within a kind), so that each kind's args are
    # one slice: picked out by one C call instead of a pass over every row per kind.
    order = np.argsort(kinds, kind="stable")
    ends = np.cumsum(np.bincount(kinds + 1, minlength=7)).tolist()  # kind k's rows: [ends[k], ends[k + 1])
    try:
        grouped = itemgetter(*order.tolist())(args)
        at = ends[2]  # k0: kinds 2-5; k1: kinds 3-4
        a0 = list(map(_FIRST, grouped[at:]))
        ids = a0 + list(map(_SECOND, grouped[ends[3]:ends[5]]))
        m = len(ids)
        # One dict operation per id: each id's code is where it first occurs in ``ids``.
        first_at: dict = {}
        tmp = np.fromiter(map(first_at.setdefault, ids, count()), np.int64, m)
        price = list(map(_FIRST, grouped[ends[1]:ends[2]]))
        qty = list(map(_THIRD, grouped[ends[3]:ends[4]]))  # an add_item without a quantity: the loop's case
        amount = list(map(_LAST, grouped[ends[5]:]))
        num = np.zeros(n, np.int64)
        num[order[ends[1]:ends[2]]] = _ints(price)
        num[order[ends[3]:ends[4]]] = _ints(qty)
        num[order[ends[5]:]] = _ints(amount)
    except Exception:  # noqa: BLE001 — whatever failed (a short row, an amount beyond 64 bits), the loop decides
        return None
    # Dense codes in order of first appearance, as the loop hands them out (row by row, each row's
    # k0 before its k1): the distinct ids ranked by the first row (and place) each occurs in.
    rows0, rows1 = order[at:], order[ends[3]:ends[5]]
    first = np.full(m, 2 * n, np.int64)
    np.minimum.at(first, tmp, np.concatenate((2 * rows0, 2 * rows1 + 1)))
    distinct = np.flatnonzero(first < 2 * n)
    distinct = distinct[np.argsort(first[distinct])]
    names = list(map(ids.__getitem__, distinct.tolist()))
    if not set(map(type, names)) <= _STR:  # the loop's str() of a non-string id (an int) is its case
        return None
    rank = np.empty(m, np.int32)
    rank[distinct] = np.arange(distinct.size, dtype=np.int32)
    codes = rank[tmp]
    k0 = np.full(n, -1, "<i4")
    k1 = np.full(n, -1, "<i4")
    k0[rows0] = codes[: len(a0)]
    k1[rows1] = codes[len(a0):]
    return k0, k1, num, [], names


def _row_loop(op: np.ndarray, args: list | None, index: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(k0, k1, num, extra) of one chunk of rows, one row at a time, for every kind of row: the definition.

    Codes are dense, into ``index`` (each id's code is its order of first appearance); ``extra`` lists
    (row, args) of the batch_init_* rows. :func:`encode_chunk` takes the chunk path
    (:func:`_chunk_columns`) when it can, this loop otherwise.
    """
    ops = op.tolist()
    n = len(ops)
    k0, k1, num = [-1] * n, [-1] * n, [0] * n
    extra: list = []
    # The common cases inline (a str id, an int amount, an id seen before): the calls to str(),
    # as_int() and setdefault() they replace were most of the cost per row. Both callers pass one
    # args entry per row.
    get = index.get
    kinds = _ROW_KIND.get
    for i, c, a in zip(range(n), ops, repeat(None) if args is None else args):
        kind = kinds(c)
        if kind is None:
            continue
        if not a:
            a = [None]
        if kind == 0:  # batch_init_*
            extra.append((i, a))
            continue
        v = a[0]
        if kind == 1:  # create_item
            num[i] = v if v.__class__ is int else as_int(v, 0)
            continue
        if v.__class__ is not str:
            v = str(v)
        k = get(v)
        if k is None:
            k = index[v] = len(index)
        k0[i] = k
        if kind == 5:  # add_stock, subtract_stock, add_funds, pay
            v = a[-1]
            num[i] = v if v.__class__ is int else as_int(v, 0)
        elif kind == 3 or kind == 4:  # add_item, remove_item
            v = a[1] if len(a) > 1 else ""
            if v.__class__ is not str:
                v = str(v)
            k = get(v)
            if k is None:
                k = index[v] = len(index)
            k1[i] = k
            if kind == 3:
                if len(a) > 2:
                    v = a[2]
                    num[i] = v if v.__class__ is int else as_int(v, 1)
                else:
                    num[i] = 1
    return np.array(k0, "<i4"), np.array(k1, "<i4"), np.array(num, np.int64), extra


def encode_chunk(op: np.ndarray, args: list | None, *, as_bytes: bool = True) -> dict:
    """One chunk's args as columns, as a results file stores them next to the packed args.

    ``{"k0", "k1": little-endian int32 bytes (codes into ``names``, -1 for none), "num": int64
    bytes, "names": [str] (this chunk's ids, in order of first appearance), "extra": [[row, args]]
    (batch_init_* rows)}`` — what :meth:`ArgColumnsBuilder.add_encoded` loads without per-row Python.
    """
    fast = None if args is None else _chunk_columns(op, args)
    if fast is not None:  # the chunk's names come with it: no id → code map to build
        k0, k1, num, extra, names = fast
    else:
        index: dict[str, int] = {}
        k0, k1, num, extra = _row_loop(op, args, index)
        names = list(index)
    if not as_bytes:  # for ArgColumnsBuilder.add: the same columns, not serialized
        return {"k0": k0, "k1": k1, "num": num, "names": names, "extra": extra}
    return {"k0": k0.tobytes(), "k1": k1.tobytes(), "num": num.astype("<i8").tobytes(),
            "names": names, "extra": [[r, a] for r, a in extra]}


def sorted_search(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, wanted)``, faster for many needles: they are searched in sorted order
    (neighbouring searches touch the same memory), then put back in place."""
    if wanted.size < 4096:
        return np.searchsorted(keys, wanted)
    order = np.argsort(wanted)
    out = np.empty(wanted.size, np.intp)
    out[order] = np.searchsorted(keys, wanted[order])
    return out


class IdTable:
    """Ids by code (``names``) and the inverse look-up, by 64-bit hash and binary search.

    A dict of millions of ids costs a cache miss per look-up on this kind of machine; sorted hashes
    are searched with numpy, and every hit is confirmed by comparing the strings, so a hash
    collision can never join two different ids (the table then falls back to a dict).
    """

    def __init__(self, names: list):
        self.names = names
        self._h: np.ndarray | None = None
        self._code: np.ndarray | None = None
        self._dict: dict | None = None

    def _prepare(self) -> None:
        h = np.fromiter(map(hash, self.names), np.int64, len(self.names))
        order = np.argsort(h, kind="stable")
        self._h, self._code = h[order], order
        if h.size > 1 and not np.all(np.diff(self._h)):  # two ids with one hash: exact look-ups instead
            self._dict = dict(zip(self.names, range(len(self.names))))

    def codes(self, ids: list) -> np.ndarray:
        """The code of each of ``ids`` (-1 for an id not in the table)."""
        if self._h is None:
            self._prepare()
        if self._dict is not None:
            return np.fromiter(map(self._dict.get, ids, repeat(-1)), np.int64, len(ids))
        out = np.full(len(ids), -1, np.int64)
        if not self._h.size or not len(ids):
            return out
        h = np.fromiter(map(hash, ids), np.int64, len(ids))
        pos = sorted_search(self._h, h)
        pos[pos >= self._h.size] = 0
        at = np.nonzero(self._h[pos] == h)[0]
        cand = self._code[pos[at]]
        names = self.names
        same = np.fromiter(map(eq, map(names.__getitem__, cand.tolist()), map(ids.__getitem__, at.tolist())),
                           bool, at.size)
        out[at[same]] = cand[same]
        return out

    def code(self, ident: Any) -> int:
        """The code of one id (-1 when absent)."""
        try:
            return int(self.codes([ident])[0])
        except TypeError:  # an unhashable key is no id
            return -1


def dedup(names: list) -> tuple[list, np.ndarray]:
    """(distinct names in order of first appearance, the code of each of ``names`` among them).

    Sorted 64-bit hashes, confirmed by string comparison (a collision falls back to a dict): no
    per-name dictionary look-up in a table of millions.
    """
    n = len(names)
    if not n:
        return [], np.empty(0, np.int32)
    h = np.fromiter(map(hash, names), np.int64, n)
    uniq, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    rep = first[inv]
    if not all(map(eq, map(names.__getitem__, rep.tolist()), names)):  # a hash collision: exact and slow
        index: dict = {}
        codes = np.fromiter(map(index.setdefault, names, count()), np.int64, n)
        sparse = np.fromiter(index.values(), np.int64, len(index))
        return list(index), np.searchsorted(sparse, codes).astype(np.int32)
    # Codes in order of first appearance (deterministic whatever the hash seed).
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(uniq.size, np.int32)
    rank[by_first] = np.arange(uniq.size, dtype=np.int32)
    return list(map(names.__getitem__, first[by_first].tolist())), rank[inv]


class ArgColumnsBuilder:
    """Accumulates :class:`ArgColumns` chunk by chunk (one string table for the whole file).

    Every chunk is reduced to its own table of distinct ids first (:func:`encode_chunk`, or as the
    file stores it); :meth:`build` joins the chunks' tables with :func:`dedup` and remaps every
    row's code with one numpy take.
    """

    def __init__(self) -> None:
        self._names: list = []
        self._k0: list[np.ndarray] = []
        self._k1: list[np.ndarray] = []
        self._num: list[np.ndarray] = []
        self._extra: dict[int, list] = {}
        self._rows = 0

    def add(self, op: np.ndarray, args: list | None) -> None:
        """One chunk: its op column and its decoded args (None: the chunk stored no args)."""
        self._add(encode_chunk(op, args, as_bytes=False), op.size)

    def add_encoded(self, enc: dict, n: int) -> None:
        """One chunk stored as columns by :func:`encode_chunk` (its codes index its own ``names``).

        Raises ValueError when the columns do not match ``n`` rows.
        """
        self._add({"k0": np.frombuffer(enc["k0"], "<i4"), "k1": np.frombuffer(enc["k1"], "<i4"),
                   "num": np.frombuffer(enc["num"], "<i8"), "names": enc["names"], "extra": enc.get("extra") or ()}, n)

    def _add(self, enc: dict, n: int) -> None:
        k0, k1, num, names = enc["k0"], enc["k1"], enc["num"], enc["names"]
        if k0.size != n or k1.size != n or num.size != n or not isinstance(names, list):
            raise ValueError("argcols")
        if not set(map(type, names)) <= {str}:
            raise ValueError("argcols names")
        if n and (int(max(k0.max(), k1.max())) >= len(names) or int(min(k0.min(), k1.min())) < -1):
            raise ValueError("argcols codes")
        base = len(self._names)
        self._names.extend(names)
        for row, a in enc["extra"]:
            self._extra[self._rows + int(row)] = a
        dt = np.int32 if base + len(names) < 1 << 31 else np.int64
        self._k0.append(np.where(k0 >= 0, k0 + dt(base), dt(-1)).astype(dt, copy=False))
        self._k1.append(np.where(k1 >= 0, k1 + dt(base), dt(-1)).astype(dt, copy=False))
        self._num.append(num.astype(np.int64, copy=False))
        self._rows += n

    def build(self) -> ArgColumns:
        """The columns of every chunk added so far."""
        def cat(parts: list, dt: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dt)
        names, codes = dedup(self._names)
        self._names = []
        remap = np.append(codes, np.int32(-1))  # index -1 stays -1
        k0 = remap[cat(self._k0, np.int64)]
        self._k0 = []
        k1 = remap[cat(self._k1, np.int64)]
        self._k1 = []
        return ArgColumns(k0, k1, cat(self._num, np.int64), names, self._extra)


class LazyArgs(Sequence):
    """Each row's resolved args (a list, or None), decoded from the packed chunks on first use.

    Behaves as a read-only list of the rows' args; ``len`` does not decode. ``chunks`` may be a
    callable that reads the packed chunks again (from the file: nothing is held until then).
    """

    def __init__(self, chunks: list[tuple[bytes, int]] | Callable[[], list[tuple[bytes, int]]], n: int | None = None):
        # (packed args of the chunk or b"", rows) per chunk, or what reads them again from the file
        self._chunks = chunks
        self._n = sum(k for _, k in chunks) if n is None else n  # type: ignore[union-attr]
        self._list: list | None = None

    def _rows(self) -> list:
        if self._list is None:
            chunks = self._chunks() if callable(self._chunks) else self._chunks
            out: list = []
            for b, n in chunks:
                out.extend(msgpack.unpackb(b, raw=False, strict_map_key=False) if b else [None] * n)
            self._list = out
            self._chunks = []
        return self._list

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        return self._rows()[i]

    def __iter__(self) -> Iterator:
        return iter(self._rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyArgs):
            other = other._rows()
        return self._rows() == other

    def __repr__(self) -> str:
        return f"LazyArgs({self._n} rows)"
