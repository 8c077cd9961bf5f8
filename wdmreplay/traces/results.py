"""The results file: format ``wdm-results`` — what one replay recorded, loadable into numpy.

Format history (bump ``RESULTS_VERSION`` and add a line for every change a reader must know of):

- version 1: header {format, version, trace {path, digest, header}, target (urls.json shape),
  dialect, speed, concurrency, timeout, label, started (unix time), tool, host, shard, workers,
  ops [op names, index = op code], scenarios [names, index = code], outcomes, expects, columns
  [[name, numpy dtype]]}; then records, each a map with key ``t``:
  ``requests`` {n, cols {name: raw little-endian bytes}, args (bin: msgpack list of the resolved
  args of each row), errors [[row, text]]}, ``bindings`` {map {symbol: id}}, ``final``
  {items, users, orders, missing, settle}, ``event`` {at, kind, …}; trailer {trailer:
  "wdm-results", requests, complete, reason, wall}. Further header keys a reader may ignore:
  scenarios, final_read, settle, client (the HTTP client of the replayed requests, "lean" or
  "aiohttp"; absent in files written before the lean client, which used aiohttp), start_at
  (``--start-at``, unix time, or null) and clock (the host's clock offset record or null); the
  ``phase_start`` events' ``wall`` (unix time of that instant; absent in older files).
- version 2: the same header, records and trailer, each record inside its own checksummed frame
  (see :mod:`.stream` and ``docs/formats.md``) after a prologue {format, version}; the writer
  flushes every frame to the OS as it is written and works under ``<path>.part``, renamed to
  ``<path>`` by ``close``. A file that ends without a trailer (a killed writer) loads as a partial
  run up to its last whole frame (``Results.truncated_at``; the trailer is synthesized with
  ``complete: false, reason: "ended without a trailer at byte N"``); version 1 files cut short
  load the same way up to their last whole record. Readers read versions 1 and 2.
- version 2, with columns (additions a reader may find or not, so still version 2): a ``requests``
  record may carry ``argcols`` {k0, k1 (<i4 bytes), num (<i8 bytes), names [str], extra [[row,
  args]]} — its args as columns, see :func:`.argcols.encode_chunk` —; a ``final`` record may hold
  ``order_columns`` {ids, paid, user, total, nlines, item, qty, strings} (see :func:`encode_orders`)
  instead of ``orders``. Readers before this addition load such a file but see no orders.
  A ``final`` record may also carry ``bound_not_found`` {kind: [ids]}: the ids the run bound from a
  2xx create whose final read was answered 4xx (lost data); absent in older files.

Times are seconds since the run's start clock (``intended`` = when the schedule said to send,
``sent`` = when it was sent, ``done`` = when the response ended; ``sent``/``done`` are NaN for
skipped requests). Rows appear in completion order, not schedule order.
"""

from __future__ import annotations

import array
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import msgpack
import numpy as np

from ..operations import OP_NAMES
from .argcols import ArgColumns, ArgColumnsBuilder, LazyArgs, encode_chunk
from .stream import (FormatError, RecordReader, packer, part_path, prologue, refuse_inputs, remove_quietly,
                     write_frame)
from .trace import EXPECT_VALUES

RESULTS_FORMAT = "wdm-results"
RESULTS_VERSION = 2

# Outcome classes (codes are the index).
OUTCOMES = ("ok", "fail", "error", "timeout", "conn_error", "skipped")
OK, FAIL, ERROR, TIMEOUT, CONN_ERROR, SKIPPED = range(len(OUTCOMES))
INDETERMINATE = (ERROR, TIMEOUT, CONN_ERROR)  # the request may or may not have taken effect

EXPECTS = EXPECT_VALUES  # a step's expect, coded by its index (one definition, in the trace format)
EXPECT_CODES = {e: i for i, e in enumerate(EXPECTS)}

# Run event kinds (``EVENT_*``), defined once in :mod:`.records` beside the typed event; re-exported here.
from .records import (EVENT_FAULT, EVENT_FAULT_DO, EVENT_FAULT_SKIPPED, EVENT_FAULT_START, EVENT_FAULT_UNDO,  # noqa: E402
                      EVENT_FINAL_READ, EVENT_FINAL_READ_DONE, EVENT_INTERRUPT, EVENT_KINDS, EVENT_PHASE_END,
                      EVENT_PHASE_START, FAULT_ACTION_EVENTS, Event, FinalRecord, ResultsHeader, Trailer,
                      is_fault_event)


# Request columns: name, numpy dtype, array.array typecode (for the writer's per-request appends).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sid", "<u4", "I"),
    ("step", "<u2", "H"),
    ("phase", "<u2", "H"),
    ("op", "<u1", "B"),
    ("scenario", "<u2", "H"),
    ("expect", "<u1", "B"),
    ("outcome", "<u1", "B"),
    ("status", "<u2", "H"),
    ("intended", "<f8", "d"),
    ("sent", "<f8", "d"),
    ("done", "<f8", "d"),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)

# One request row packed as a record (no padding): what a replay worker appends per request. One
# ``struct`` call per row costs about half of one ``array.append`` per column; :func:`row_columns`
# turns a buffer of such rows into the columns a chunk carries.
ROW = struct.Struct("<" + "".join(code for _, _, code in COLUMNS))
ROW_DTYPE = np.dtype([(name, dtype) for name, dtype, _ in COLUMNS])
pack_row = ROW.pack
assert ROW.size == ROW_DTYPE.itemsize, "the row record and its numpy view must agree"


def row_columns(rows: bytes | bytearray) -> dict[str, bytes]:
    """Rows packed by :data:`ROW` (concatenated) as columns: name → little-endian bytes."""
    table = np.frombuffer(rows, dtype=ROW_DTYPE)
    return {name: table[name].tobytes() for name in COLUMN_NAMES}

MAX_ERROR_TEXT = 200  # characters of a non-2xx body or exception kept per request


def requests_record(cols: Mapping[str, Any], args: list | bytes | None = None, errors: Iterable[tuple[int, str]] = (),
                    pack: Any = None) -> bytes:
    """One ``requests`` record of rows, packed (a frame's payload): what :meth:`ResultsWriter.write_requests` writes.

    ``cols`` maps every column name to an array.array/ndarray/bytes; ``args`` is the list of each
    row's resolved args (lists or tuples; packed bytes are decoded for the arg columns). A replay
    worker calls this on its own rows, so the process that writes the file only copies the bytes.
    """
    return requests_record_at(cols, args, errors, pack)[0]


def _bin_head(size: int) -> int:
    """How many bytes msgpack puts before a bin of ``size`` bytes (bin 8, 16 or 32)."""
    return 2 if size < 0x100 else 3 if size < 0x10000 else 5


def requests_record_at(cols: Mapping[str, Any], args: list | bytes | None = None,
                       errors: Iterable[tuple[int, str]] = (), pack: Any = None) -> tuple[bytes, tuple[int, ...]]:
    """:func:`requests_record` and where each column's bytes start in it (in :data:`COLUMNS` order).

    What a replay worker sends: the record alone, of which the coordinator's tally reads the
    columns in place (:meth:`~wdmreplay.replayer.messages.Chunk.columns`) — no second copy of them
    pickled, sent and unpickled beside it.
    """
    raw = {name: bytes(cols[name]) if not isinstance(cols[name], np.ndarray) else cols[name].astype(dt).tobytes()
           for name, dt, _ in COLUMNS}
    n = len(raw["sid"]) // 4
    pack = pack or packer()
    rec = {"t": "requests", "n": n, "cols": raw, "args": b"",
           "errors": [[int(r), str(t)[:MAX_ERROR_TEXT]] for r, t in errors]}
    if args is not None:
        packed = isinstance(args, bytes)
        decoded = msgpack.unpackb(args, raw=False, strict_map_key=False) if packed else args
        rec["args"] = args if packed else pack.pack(args)
        if isinstance(decoded, (list, tuple)) and len(decoded) == n:  # else the loader decodes the args (as before)
            rec["argcols"] = encode_chunk(np.frombuffer(raw["op"], "<u1"), decoded)
    # The columns are packed first after "t" and "n", each as its name and a bin, in COLUMNS order.
    pos = len(pack.pack_map_header(len(rec))) + _RECORD_HEAD + len(pack.pack(n)) + _COLS_HEAD
    at = []
    for name, b in raw.items():
        pos += _NAME_LEN[name] + _bin_head(len(b))
        at.append(pos)
        pos += len(b)
    return pack.pack(rec), tuple(at)


_P = packer()
_RECORD_HEAD = sum(len(_P.pack(k)) for k in ("t", "requests", "n"))
_COLS_HEAD = len(_P.pack("cols")) + len(_P.pack_map_header(len(COLUMNS)))
_NAME_LEN = {name: len(_P.pack(name)) for name in COLUMN_NAMES}
COLUMN_SIZES = tuple((name, np.dtype(dt).itemsize) for name, dt, _ in COLUMNS)


def bindings_record(mapping: Mapping[str, str], pack: Any = None) -> bytes:
    """One ``bindings`` record (symbol → real id), packed: what :meth:`ResultsWriter.write_bindings` writes.

    A replay worker packs its own bindings: sent as bytes, they cost neither process a pickling of
    every symbol and id, and the coordinator neither rebuilds the map nor packs it again.
    """
    return (pack or packer()).pack({"t": "bindings", "map": dict(mapping)})


def send_window(sent: np.ndarray, done: np.ndarray, outcome: np.ndarray) -> tuple[float, float] | None:
    """The run's send window: (first send, last answer) over the trace's requests that were sent.

    The one definition of a run's time span, shared by the replay summary, ``report`` and
    ``compare``: skipped (never sent) requests and the final read are outside it. Windows of parts
    of a run (chunks, workers, shards) combine by min of starts and max of ends. None when no
    request was sent.
    """
    mask = outcome != SKIPPED
    if not mask.any():
        return None
    if mask.all():  # every request was sent (a replay's usual chunk): no masked copies
        return float(np.min(sent)), float(np.max(done))
    return float(np.min(sent[mask])), float(np.max(done[mask]))


def bad_answers(outcome: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Mask of the rows answered with what a correct shop never sends — a 2xx without the API's JSON,
    a 1xx or 3xx: the ``error`` outcome without a 5xx status ("bad answer" in the summary and the check)."""
    return (outcome == ERROR) & (status < 500)


def run_rate(sent_requests: int, window: tuple[float, float] | None) -> float | None:
    """Requests per second over a :func:`send_window` (None when nothing was sent or no time passed)."""
    if window is None or not window[1] > window[0]:
        return None
    return sent_requests / (window[1] - window[0])


def results_header(**fields: Any) -> dict:
    """A results header with the format's fixed keys filled in; ``fields`` adds the run's own."""
    h = {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION,
        "ops": list(OP_NAMES), "outcomes": list(OUTCOMES), "expects": list(EXPECTS),
        "columns": [[name, dtype] for name, dtype, _ in COLUMNS],
    }
    h.update(fields)
    return h


class ResultsWriter:
    """Appends records to a results file as the run goes; :meth:`close` writes the trailer.

    The file is written as ``<path>.part`` and renamed to ``path`` by :meth:`close`. Every record
    is a checksummed frame handed to the OS as soon as it is written, so a killed writer leaves a
    ``.part`` file that loads as a partial run holding every record written; an orderly stop —
    including Ctrl-C — always ends with a trailer saying whether the run was complete. ``inputs``
    are the files the run reads (the trace): an output that is one of them is refused before
    anything is written.
    """

    def __init__(self, path: str | Path, header: Mapping | ResultsHeader, *, inputs: Iterable[str | Path] = ()):
        self.path = str(path)
        self.part_path = part_path(self.path)
        refuse_inputs(self.path, inputs)
        self._pack = packer()
        try:
            self._f = open(self.part_path, "wb")
        except OSError as e:
            raise FormatError(f"{self.part_path}: cannot write: {e.strerror}") from None
        self.requests = 0
        self.closed = False
        self._f.write(prologue(RESULTS_FORMAT, RESULTS_VERSION))
        self._write(header.to_record() if isinstance(header, ResultsHeader) else header)

    def _write(self, obj: Any) -> None:
        write_frame(self._f, self._pack.pack(obj))
        self._f.flush()

    def write_requests(self, cols: Mapping[str, Any], args: list | bytes | None = None,
                       errors: Iterable[tuple[int, str]] = ()) -> None:
        """One chunk of rows: ``cols`` maps every column name to an array.array/ndarray/bytes.

        ``args`` may come already packed (bytes from :func:`~.stream.packer`).
        """
        self.write_packed_requests(cols, requests_record(cols, args, errors, self._pack))

    def write_packed_requests(self, cols: Mapping[str, Any], record: bytes) -> None:
        """One chunk already packed by :func:`requests_record` (a replay worker packs its own): written as is.

        ``cols`` are that chunk's columns (counted here; what a tap on the writer reads): the
        coordinator of a replay neither decodes nor re-encodes its workers' rows.
        """
        write_frame(self._f, record)
        self._f.flush()
        sid = cols["sid"]
        self.requests += len(sid) if isinstance(sid, (np.ndarray, array.array)) else len(sid) // 4

    def write_bindings(self, mapping: Mapping[str, str]) -> None:
        """Symbol → real id, for symbols bound in this run (may be written in several parts)."""
        if mapping:
            self.write_packed_bindings(bindings_record(mapping, self._pack))

    def write_packed_bindings(self, record: bytes) -> None:
        """A ``bindings`` record already packed by :func:`bindings_record` (a replay worker packs its own)."""
        write_frame(self._f, record)
        self._f.flush()

    def write_final(self, final: Mapping[str, Any] | FinalRecord) -> None:
        """The final-state snapshot: a :class:`FinalRecord` (or its record: {items {id: {stock, price}}, …}).

        Orders of the shape the final read records (``{paid, items [[item, qty]], user_id, total_cost}``)
        are stored as columns (``order_columns``, see :func:`encode_orders`); any other shape as a map.
        """
        if isinstance(final, FinalRecord):
            final = final.to_record()
        orders = final["orders"] if "orders" in final else None
        cols = encode_orders(orders) if isinstance(orders, Mapping) else None
        if cols is None:
            self._write({"t": "final", **final})
        else:
            self._write({"t": "final", **{k: v for k, v in final.items() if k != "orders"}, "order_columns": cols})

    def write_event(self, at: float, kind: str, **info: Any) -> None:
        """A run event (phase start/end, interrupt, settle, …) at ``at`` seconds."""
        self._write({"t": "event", "at": at, "kind": kind, **info})

    def write_event_record(self, event: Event) -> None:
        """A typed run event (what the coordinator, the fault runner and ``merge`` write)."""
        self._write(event.to_record())

    def abort(self) -> None:
        """Close and delete the ``.part`` file, leaving whatever is at ``path`` untouched.

        For a writer whose half-written output is worth nothing (``merge``: the shards are still
        there); a run's writer closes instead, keeping what it recorded.
        """
        if self.closed:
            return
        self.closed = True
        self._f.close()
        remove_quietly(self.part_path)

    def close(self, *, complete: bool, wall: float, reason: str | None = None) -> None:
        """Write the trailer, close, and rename the file into place; ``complete=False`` marks a partial run."""
        if self.closed:
            return
        self.closed = True
        try:
            self._write(Trailer(self.requests, complete, reason, wall).to_record(RESULTS_FORMAT))
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self.part_path, self.path)
        except OSError as e:
            raise FormatError(f"{self.path}: cannot write: {e.strerror}") from None


_ORDER_KEYS = frozenset(("paid", "items", "user_id", "total_cost"))
INT64_BOUNDS = (-(1 << 63), 1 << 63)  # [lo, hi): what a signed 64-bit column holds (orders' columns, the final read)


def encode_orders(orders: Mapping[str, Any]) -> dict | None:
    """The final state's orders as columns, or None when one of them is not of the final read's shape.

    ``{"ids": [order id], "paid": u1 bytes, "user": <i4 bytes (code into strings, -1: null),
    "total": <i8 bytes, "nlines": <u4 bytes (lines per order), "item": <i4 bytes (codes into strings),
    "qty": <i8 bytes, "strings": [user and item ids]}`` — lines as stored, in order; what
    :class:`StoredOrders` turns back into the same maps.
    """
    ids: list[str] = []
    paid, users, totals, nlines, items, qtys = (array.array(t) for t in ("B", "i", "q", "I", "i", "q"))
    index: dict[str, int] = {}
    code = index.setdefault
    lo, hi = INT64_BOUNDS
    for oid, v in orders.items():
        if oid.__class__ is not str or v.__class__ is not dict or v.keys() != _ORDER_KEYS:
            return None
        p, lines, u, t = v["paid"], v["items"], v["user_id"], v["total_cost"]
        if p.__class__ is not bool or t.__class__ is not int or not lo <= t < hi or lines.__class__ is not list:
            return None
        if u is not None and u.__class__ is not str:
            return None
        for line in lines:
            if (line.__class__ is not list or len(line) != 2 or line[0].__class__ is not str
                    or line[1].__class__ is not int or not lo <= line[1] < hi):
                return None
            items.append(code(line[0], len(index)))
            qtys.append(line[1])
        ids.append(oid)
        paid.append(p)
        users.append(-1 if u is None else code(u, len(index)))
        totals.append(t)
        nlines.append(len(lines))
    le = np.little_endian
    return {"ids": ids, "strings": list(index),
            **{k: (a.tobytes() if le or a.itemsize == 1 else _swapped(a))
               for k, a in (("paid", paid), ("user", users), ("total", totals), ("nlines", nlines), ("item", items),
                            ("qty", qtys))}}


def _swapped(a: array.array) -> bytes:
    b = array.array(a.typecode, a)
    b.byteswap()
    return b.tobytes()


@dataclass(frozen=True, slots=True)
class OrderColumns:
    """The orders of a final record stored as columns (see :func:`encode_orders`), as numpy arrays."""

    ids: list
    paid: np.ndarray  # bool
    user: np.ndarray  # int32 code into strings, -1 = null
    total: np.ndarray  # int64
    nlines: np.ndarray  # uint32
    line_item: np.ndarray  # int32 code into strings
    line_qty: np.ndarray  # int64
    strings: list

    @classmethod
    def decode(cls, rec: Mapping) -> "OrderColumns":
        """From the stored record; ValueError when its parts do not fit together."""
        ids, strings = rec["ids"], rec["strings"]
        paid = np.frombuffer(rec["paid"], "<u1")
        user, total = np.frombuffer(rec["user"], "<i4"), np.frombuffer(rec["total"], "<i8")
        nlines = np.frombuffer(rec["nlines"], "<u4")
        item, qty = np.frombuffer(rec["item"], "<i4"), np.frombuffer(rec["qty"], "<i8")
        n = len(ids)
        if not (isinstance(ids, list) and isinstance(strings, list) and paid.size == user.size == total.size
                == nlines.size == n and item.size == qty.size == int(nlines.sum())):
            raise ValueError("order columns")
        for codes in (user, item):
            if codes.size and (int(codes.max()) >= len(strings) or int(codes.min()) < -1):
                raise ValueError("order columns codes")
        return cls(ids, paid.astype(bool), user, total, nlines, item, qty, strings)


class StoredOrders(Mapping):
    """A final record's ``orders`` read from columns: order id -> the order's map, built on first use.

    ``columns`` (:class:`OrderColumns`) is what the checker reads without building any map.
    """

    def __init__(self, columns: OrderColumns):
        self.columns = columns
        self._pos: dict[str, int] | None = None
        self._start: np.ndarray | None = None

    def _k(self, oid: object) -> int | None:
        if self._pos is None:
            self._pos = dict(zip(self.columns.ids, range(len(self.columns.ids))))
            self._start = np.concatenate(([0], np.cumsum(self.columns.nlines, dtype=np.int64)))
        return self._pos.get(oid) if isinstance(oid, str) else None

    def __getitem__(self, oid: str) -> dict:
        k = self._k(oid)
        if k is None:
            raise KeyError(oid)
        c, s = self.columns, self._start
        names = c.strings
        lines = [[names[i], q] for i, q in zip(c.line_item[s[k]:s[k + 1]].tolist(), c.line_qty[s[k]:s[k + 1]].tolist())]
        u = int(c.user[k])
        return {"paid": bool(c.paid[k]), "items": lines, "user_id": None if u < 0 else names[u],
                "total_cost": int(c.total[k])}

    def __contains__(self, oid: object) -> bool:
        return self._k(oid) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns.ids)

    def __len__(self) -> int:
        return len(self.columns.ids)

    def __repr__(self) -> str:
        return f"StoredOrders({len(self)} orders)"


@dataclass
class Results:
    """A loaded results file: request columns as numpy arrays, plus bindings, final state, events.

    ``header``, ``final``, ``events`` and ``trailer`` are the records as stored (maps: the JSON edge,
    what a test or a tool may still poke at); the library reads their typed records
    (:attr:`header_record`, :attr:`final_record`, :attr:`event_records`, :attr:`trailer_record`),
    built and checked once — the header, events and trailer by :func:`load_results`, the final
    record (its cost grows with the entities read back) on first use — and built again only when a
    stored map is replaced (not when one is changed in place).
    """

    path: str
    header: dict
    cols: dict[str, np.ndarray]
    errors: dict[int, str]
    bindings: dict[str, str]
    final: dict | None
    events: list[dict]
    trailer: dict
    args: Sequence | None = field(default=None, repr=False)  # per row (decoded on first use), when loaded with_args
    truncated_at: int | None = None  # byte offset where a file without a trailer ended (a killed writer)
    argcols: ArgColumns | None = field(default=None, repr=False)  # the args as columns, when loaded with_args
    _typed: dict = field(default_factory=dict, repr=False, compare=False)  # stored map's name -> (map, its record)

    def error_text(self, row: int) -> str:
        """The error text recorded for request ``row`` ("" when it has none)."""
        return self.errors.get(row, "")

    def _record(self, name: str, build: Any) -> Any:
        raw = getattr(self, name)
        if name not in self._typed or self._typed[name][0] is not raw:
            try:
                self._typed[name] = (raw, build(raw))
            except FormatError as e:
                raise FormatError(f"{self.path}: {e}") from None
        return self._typed[name][1]

    @property
    def header_record(self) -> ResultsHeader:
        """The header, typed."""
        return self._record("header", ResultsHeader.from_record)

    @property
    def event_records(self) -> tuple[Event, ...]:
        """The run's events in file order, typed."""
        return self._record("events", lambda evs: tuple(Event.from_record(e) for e in evs))

    @property
    def final_record(self) -> FinalRecord | None:
        """The final state, typed (None when the run has none)."""
        return self._record("final", lambda f: None if f is None else FinalRecord.from_record(f))

    @property
    def trailer_record(self) -> Trailer:
        """The trailer, typed (made up for a file without one: ``complete`` False)."""
        return self._record("trailer", Trailer.from_record)

    @property
    def n(self) -> int:
        """Number of request rows."""
        return len(self.cols["sid"])

    @property
    def complete(self) -> bool:
        """Whether the run finished (False after an interrupt, or for a file without a trailer)."""
        return self.trailer_record.complete

    @property
    def label(self) -> str:
        """The build label given at replay time (or the file name)."""
        return self.header_record.label or Path(self.path).name


def _reread_args(path: str, counts: list[int]) -> list[tuple[bytes, int]]:
    """The packed args of each request chunk, read again from the file (what :class:`LazyArgs` decodes).

    Loading keeps no packed args (a quarter of the memory of a big run); a caller that asks for
    per-row args (``merge``, tests) reads them here. The file must not have changed since.
    """
    out: list[tuple[bytes, int]] = []
    with RecordReader(path, RESULTS_FORMAT, RESULTS_VERSION, partial_ok=True) as r:
        for rec in r:
            if rec["t"] == "requests" and len(out) < len(counts):
                out.append((rec["args"] or b"", rec["n"]))
    if [n for _, n in out] != counts:
        raise FormatError(f"{path}: changed since it was loaded (its request chunks differ); load it again")
    return out


def load_results(path: str | Path, *, with_args: bool = False) -> Results:
    """Load a results file; columns are concatenated without a per-row Python loop.

    ``with_args`` also reads every row's resolved arguments (needed by the consistency checker,
    not by latency statistics): as columns (:attr:`Results.argcols`, built chunk by chunk without
    keeping per-row Python objects) and as :attr:`Results.args`, per-row lists read again from the
    file and decoded on first use.
    A file without a trailer (its writer was killed) loads up to its last whole record as a partial
    run: ``complete`` False, ``truncated_at`` the byte offset where it ended, and a trailer ``{complete: false, reason: "ended without a trailer at byte N", …}``.
    Raises :class:`FormatError` for anything corrupt.
    """
    dtypes = {name: np.dtype(dt) for name, dt, _ in COLUMNS}
    parts: dict[str, list[bytes]] = {name: [] for name in dtypes}
    errors: dict[int, str] = {}
    bindings: dict[str, str] = {}
    arg_chunks: list[tuple[bytes, int]] | None = [] if with_args else None
    argcols = ArgColumnsBuilder() if with_args else None
    final = None
    events: list[dict] = []
    rows = 0
    with RecordReader(path, RESULTS_FORMAT, RESULTS_VERSION, partial_ok=True) as r:
        for rec in r:
            if "t" not in rec:  # every body record of every version says its type
                raise FormatError(f"{path}: corrupt record after row {rows}: no 't' (keys: {', '.join(map(str, rec))})")
            t = rec["t"]
            if t == "requests":
                try:
                    n = rec["n"]
                    for name, dt in dtypes.items():
                        b = rec["cols"][name]
                        if len(b) != n * dt.itemsize:
                            raise ValueError(name)
                        parts[name].append(b)
                    for row, text in rec["errors"]:
                        errors[rows + row] = text
                    if arg_chunks is not None and "argcols" in rec and rec["args"]:
                        argcols.add_encoded(rec["argcols"], n)  # columns as written: no per-row decoding
                        arg_chunks.append((b"", n))
                    elif arg_chunks is not None:
                        packed = rec["args"]
                        chunk_args = msgpack.unpackb(packed, raw=False, strict_map_key=False) if packed else None
                        if chunk_args is not None and (not isinstance(chunk_args, list) or len(chunk_args) != n):
                            raise ValueError("args")
                        argcols.add(np.frombuffer(rec["cols"]["op"], dtype=dtypes["op"]), chunk_args)
                        arg_chunks.append((b"", n))
                        del chunk_args
                except (KeyError, TypeError, ValueError, msgpack.UnpackException) as e:
                    raise FormatError(f"{path}: corrupt request chunk at row {rows}: {e}") from None
                rows += n
            elif t == "bindings":
                if "map" not in rec or not isinstance(rec["map"], dict):
                    raise FormatError(f"{path}: corrupt bindings record after row {rows}")
                bindings.update(rec["map"])
            elif t == "final":
                if "order_columns" in rec:
                    try:
                        rec["orders"] = StoredOrders(OrderColumns.decode(rec.pop("order_columns")))
                    except (KeyError, TypeError, ValueError) as e:
                        raise FormatError(f"{path}: corrupt final-state order columns: {e}") from None
                final = rec
            elif t == "event":
                events.append(rec)
        trailer = r.trailer
        truncated_at = r.truncated_at
        header = r.header
    if trailer is None:
        trailer = {"trailer": RESULTS_FORMAT, "requests": rows, "complete": False, "wall": None,
                   "reason": f"ended without a trailer at byte {truncated_at}", "truncated_at": truncated_at}
    try:
        typed = {"header": (header, ResultsHeader.from_record(header)), "trailer": (trailer, Trailer.from_record(trailer)),
                 "events": (events, tuple(Event.from_record(e) for e in events))}
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
    if typed["trailer"][1].requests != rows:
        raise FormatError(f"{path}: corrupt: {rows} request rows, trailer says {typed['trailer'][1].requests}")
    cols = {}
    for name in list(parts):  # each column's chunks are freed once joined: peak memory one column over the columns
        p = parts.pop(name)
        cols[name] = np.frombuffer(b"".join(p), dtype=dtypes[name]) if p else np.empty(0, dtypes[name])
        del p
    where = os.path.abspath(path)  # read again from here, whatever the working directory then
    args = None if arg_chunks is None else LazyArgs(lambda: _reread_args(where, [n for _, n in arg_chunks]), rows)
    return Results(str(path), header, cols, errors, bindings, final, events, trailer, args, truncated_at,
                   None if argcols is None else argcols.build(), typed)
