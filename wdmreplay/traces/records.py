"""Typed records of a results file: the header, the run's events, the final state and the trailer.

Built once at the edge: :func:`~.results.load_results` turns every header/event/final/trailer map
into one of these frozen records (``from_record``), applying the defaults for files written by
earlier versions in one place and raising :class:`~.stream.FormatError` with one line for a field
of the wrong type or a required field that is missing; every writer (the coordinator, the fault
runner, ``merge``) builds a record and writes its ``to_record()``. Code past the edge reads
attributes. ``to_record`` writes the keys in the order the writers always wrote them, so the bytes
on disk do not change; fields a reader does not know (from an older or newer writer) are kept in
``extra`` and written back after the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from .argcols import as_int
from .stream import FormatError

# Run event kinds: the ``kind`` of a results record ``{"t": "event", "at", "kind", ...}``. Defined here once;
# every writer (coordinator, fault runner, merge) and reader (analysis, live view) uses these names.
EVENT_PHASE_START = "phase_start"  # phase, name, wall (the coordinator's clock at the phase's start)
EVENT_PHASE_END = "phase_end"  # phase, name
EVENT_INTERRUPT = "interrupt"  # reason (Ctrl-C, SIGTERM, a second signal)
EVENT_FINAL_READ = "final_read"  # entities {kind: count}, quiesce, settle, why, sample (the final read begins)
EVENT_FINAL_READ_DONE = "final_read_done"  # snapshots, settled, reads, read_at
EVENT_FAULT_START = "fault_start"  # name, command, duration (a fault's do begins)
EVENT_FAULT_DO = "fault_do"  # name, end, exit, ok, timed_out, error, output, command
EVENT_FAULT_UNDO = "fault_undo"  # as fault_do, and early (the undo ran at once, on a signal)
EVENT_FAULT = "fault"  # name, end: the fault window (do's start to undo's end)
EVENT_FAULT_SKIPPED = "fault_skipped"  # name, scheduled, reason: not due before the last phase ended
EVENT_KINDS = (EVENT_PHASE_START, EVENT_PHASE_END, EVENT_INTERRUPT, EVENT_FINAL_READ, EVENT_FINAL_READ_DONE,
               EVENT_FAULT_START, EVENT_FAULT_DO, EVENT_FAULT_UNDO, EVENT_FAULT, EVENT_FAULT_SKIPPED)
FAULT_ACTION_EVENTS = {"do": EVENT_FAULT_DO, "undo": EVENT_FAULT_UNDO}  # a fault's action → its event kind


def is_fault_event(kind: Any) -> bool:
    """Whether an event kind is one of the fault runner's (``fault``, ``fault_start``, ``fault_do``, …)."""
    return str(kind).startswith(EVENT_FAULT)


_NUMBER = (int, float)
_TEXT = (str,)
_NONE = type(None)


def _checked(where: str, key: str, value: Any, kinds: tuple) -> Any:
    """``value`` when it is of one of ``kinds`` (bool is not a number), else a one-line FormatError."""
    if not (bool in kinds if isinstance(value, bool) else isinstance(value, kinds)):
        names = "/".join(sorted({"null" if k is _NONE else "map" if k is Mapping else k.__name__ for k in kinds}))
        raise FormatError(f"corrupt {where}: {key!r} is {type(value).__name__} {value!r:.40}, not {names}")
    return value


def _split(rec: Any, where: str, known: Iterable[str], skip: Iterable[str] = ()) -> tuple[dict, dict]:
    """A record's known fields (those present) and the rest (kept as ``extra``); FormatError if not a map."""
    if not isinstance(rec, Mapping):
        raise FormatError(f"corrupt {where}: a {type(rec).__name__}, not a map")
    names, drop = frozenset(known), frozenset(skip)
    got = {k: v for k, v in rec.items() if k in names}
    extra = {k: v for k, v in rec.items() if k not in names and k not in drop}
    return got, extra


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


class MapView:
    """A typed record that also reads as the map it was before it was typed (``rec["ok"]``, ``rec ==
    {"ok": …}``): what callers outside the library may still compare it with. Its ``as_dict()`` is
    that map; the library reads the attributes."""

    __slots__ = ()

    def as_dict(self) -> dict:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MapView):
            return type(self) is type(other) and self.as_dict() == other.as_dict()
        return self.as_dict() == other if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


# --- header -------------------------------------------------------------------------------------


# The copied trace header's fields a reader of a results file uses, with the types a stored value may have.
_COPY_TYPES: dict[str, tuple] = {
    "workload": (str, _NONE), "seed": (int, _NONE), "requests": (int, _NONE), "duration": (*_NUMBER, _NONE),
    "params": (Mapping, _NONE), "scenarios": (list, _NONE), "expect": (Mapping, _NONE),
    "expect_range": (Mapping, _NONE), "benchmark": (str, _NONE), "exercises": (Mapping, _NONE),
}


@dataclass(frozen=True, slots=True)
class TraceHeaderCopy:
    """The replayed trace's header as a results header copies it, typed leniently.

    A run writes the trace's whole header (see :class:`~.trace.TraceHeader`), but a hand-made or
    older results file may hold a partial one that ``TraceHeader.from_record`` would refuse, so
    every field here is optional, with the default the analysis applied to an absent (or null)
    key: None for the identity and figures, an empty map or list for the rest. A value of the
    wrong type is a one-line :class:`FormatError`; keys not read here stay in ``extra``.
    """

    workload: str | None = None
    seed: int | None = None
    requests: int | None = None
    duration: float | None = None  # seconds of schedule at speed 1
    params: Mapping = field(default_factory=dict)  # the generator's options
    scenarios: tuple[str, ...] = ()
    expect: Mapping = field(default_factory=dict)  # {bound key: exact value}
    expect_range: Mapping = field(default_factory=dict)  # {bound key: [lo, hi]}
    benchmark: str | None = None  # the course benchmark's preset the consistency trace is exactly
    exercises: Mapping | None = None  # {bug class: count}; None: a trace that predates the count
    extra: Mapping = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: Any) -> "TraceHeaderCopy":
        where = "results header: trace header"
        got, extra = _split(rec, where, _COPY_TYPES)
        for key, kinds in _COPY_TYPES.items():
            if key in got:
                _checked(where, key, got[key], kinds)
        for key in ("params", "expect", "expect_range"):  # absent or null: empty, as the analysis always read them
            got[key] = got.setdefault(key, None) or {}
        got["scenarios"] = tuple(got.setdefault("scenarios", None) or ())
        return cls(**got, extra=extra)


@dataclass(frozen=True, slots=True)
class TraceRef:
    """The trace a run replayed, as its results header names it: path, digest, and the trace's own header.

    ``header`` is the map as stored (what ``to_record`` writes back); ``typed_header`` its typed view,
    built once here (what the analysis reads).
    """

    path: str | None = None
    digest: str | None = None
    header: Mapping = field(default_factory=dict)  # the trace file's header (the trace format's record)
    extra: Mapping = field(default_factory=dict)
    typed_header: TraceHeaderCopy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "typed_header", TraceHeaderCopy.from_record(self.header))

    @classmethod
    def from_record(cls, rec: Any) -> "TraceRef":
        got, extra = _split(rec, "results header: trace", ("path", "digest", "header"))
        for key in ("path", "digest"):
            _checked("results header: trace", key, got.setdefault(key, None), (str, _NONE))
        _checked("results header: trace", "header", got.setdefault("header", {}), (Mapping,))
        return cls(**got, extra=extra)

    def to_record(self) -> dict:
        return {"path": self.path, "digest": self.digest, "header": dict(self.header), **self.extra}


# Header keys in the order the writer writes them; None-valued keys of _HEADER_OPTIONAL are not written.
_HEADER_TYPES: dict[str, tuple] = {
    "format": (str,), "version": (int,), "ops": (list,), "outcomes": (list,), "expects": (list,), "columns": (list,),
    "trace": (Mapping,), "target": (Mapping, str, _NONE), "dialect": (str, _NONE), "speed": (*_NUMBER, _NONE),
    "concurrency": (int, _NONE), "timeout": (*_NUMBER, _NONE), "label": (str, _NONE),
    "started": (*_NUMBER, _NONE), "tool": (str, _NONE), "host": (str, _NONE), "shard": (str, _NONE),
    "workers": (int, _NONE), "final_read": (bool, _NONE), "settle": (*_NUMBER, _NONE), "client": (str, _NONE),
    "start_at": (*_NUMBER, _NONE), "scenarios": (list, _NONE), "clock": (Mapping, _NONE), "faults": (list, _NONE),
    "merged": (Mapping, _NONE),
}
_HEADER_OPTIONAL = frozenset(("faults", "merged"))


@dataclass(frozen=True, slots=True)
class ResultsHeader:
    """A results file's header: the format's fixed keys, the trace, the target and the run's fields.

    Fields absent in older files read as None (``client`` None: a file written before the lean client,
    which replayed with aiohttp; ``clock``/``start_at`` None: before distributed starts). ``faults``
    is the fault schedule as written (None without one), ``merged`` what ``merge`` records of its
    shards (None for a run's own file).
    """

    format: str
    version: int
    ops: list
    outcomes: list
    expects: list
    columns: list
    trace: TraceRef
    target: Any = None  # urls.json shape (a map), or an older file's base URL
    dialect: str | None = None
    speed: float | None = None
    concurrency: int | None = None
    timeout: float | None = None
    label: str | None = None
    started: float | None = None
    tool: str | None = None
    host: str | None = None
    shard: str | None = None  # "i/N", None when not a shard
    workers: int | None = None
    final_read: bool | None = None
    settle: float | None = None
    client: str | None = None
    start_at: float | None = None
    scenarios: list | None = None
    clock: Mapping | None = None
    faults: list | None = None
    merged: Mapping | None = None
    extra: Mapping = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: Any) -> "ResultsHeader":
        got, extra = _split(rec, "results header", _HEADER_TYPES)
        for key, kinds in _HEADER_TYPES.items():
            if key in got:
                _checked("results header", key, got[key], kinds)
        if isinstance(got.get("target"), Mapping):  # the services' base URLs, by name
            for name, url in got["target"].items():
                _checked("results header: target", str(name), url, (str, _NONE))
        got.setdefault("format", "")
        got.setdefault("version", 0)
        for key in ("ops", "outcomes", "expects", "columns"):
            got.setdefault(key, [])
        got["trace"] = TraceRef.from_record(got.setdefault("trace", {}))
        return cls(**got, extra=extra)

    def to_record(self) -> dict:
        out: dict[str, Any] = {}
        for key in _HEADER_TYPES:
            value = getattr(self, key)
            if value is None and key in _HEADER_OPTIONAL:
                continue
            out[key] = value.to_record() if isinstance(value, TraceRef) else value
        out.update(self.extra)
        return out

    def replace(self, **changes: Any) -> "ResultsHeader":
        """A copy with ``changes``."""
        return replace(self, **changes)

    @property
    def trace_header(self) -> TraceHeaderCopy:
        """The replayed trace's own header, typed (every field at its default when the results header names none)."""
        return self.trace.typed_header


# --- events -------------------------------------------------------------------------------------

# Each kind's fields, in the order its writer writes them; None-valued fields of _EVENT_OPTIONAL are not
# written (``wall``: absent in files written before merge aligned shards; ``early``: the undo's only).
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    EVENT_PHASE_START: ("phase", "name", "wall"),
    EVENT_PHASE_END: ("phase", "name"),
    EVENT_INTERRUPT: ("reason",),
    EVENT_FINAL_READ: ("entities", "quiesce", "settle", "why", "sample"),
    EVENT_FINAL_READ_DONE: ("snapshots", "settled", "reads", "read_at"),
    EVENT_FAULT_START: ("name", "command", "duration"),
    EVENT_FAULT_DO: ("name", "end", "exit", "ok", "timed_out", "error", "output", "command"),
    EVENT_FAULT_UNDO: ("name", "end", "exit", "ok", "timed_out", "error", "output", "command", "early"),
    EVENT_FAULT: ("name", "end"),
    EVENT_FAULT_SKIPPED: ("name", "scheduled", "reason"),
}
_EVENT_REQUIRED: dict[str, tuple[str, ...]] = {
    EVENT_FAULT_START: ("name",),
    EVENT_FAULT_DO: ("name",), EVENT_FAULT_UNDO: ("name",), EVENT_FAULT: ("name",),  # no end: open to the run's end
    EVENT_FAULT_SKIPPED: ("name",),
}
_EVENT_TYPES: dict[str, tuple] = {
    "phase": (int, _NONE), "name": (str, *_NUMBER, _NONE), "wall": (*_NUMBER, _NONE), "reason": (str, _NONE),
    "entities": (Mapping, _NONE), "quiesce": (Mapping, _NONE), "settle": (*_NUMBER, _NONE), "why": (str, _NONE),
    "sample": (Mapping, _NONE), "snapshots": (int, _NONE), "settled": (bool, _NONE), "reads": (int, _NONE),
    "read_at": (*_NUMBER, _NONE), "command": (str, _NONE), "duration": (*_NUMBER, _NONE),
    "end": (*_NUMBER, _NONE), "exit": (int, _NONE), "ok": (bool, _NONE), "timed_out": (bool, _NONE),
    "error": (str, _NONE), "output": (str, _NONE), "early": (bool, _NONE), "scheduled": (*_NUMBER, _NONE),
    "shard": (str, _NONE),
}
_EVENT_OPTIONAL = frozenset(("wall", "early"))


@dataclass(frozen=True, slots=True)
class Event:
    """One run event: ``at`` seconds on the run's clock, its ``kind`` (an ``EVENT_*`` name) and its fields.

    Each kind writes the fields listed in ``_EVENT_FIELDS`` (see the ``EVENT_*`` names); the others
    are None. ``shard`` is set on the events of a merged file (the shard that wrote it). Fields of a
    kind this version does not know, and unknown kinds' fields, are kept in ``extra``.
    """

    at: float
    kind: str
    phase: int | None = None
    name: str | None = None  # a fault's name, or a phase's (a trace may name its phases by number)
    wall: float | None = None
    reason: str | None = None
    entities: Mapping | None = None
    quiesce: Mapping | None = None
    settle: float | None = None
    why: str | None = None
    sample: Mapping | None = None
    snapshots: int | None = None
    settled: bool | None = None
    reads: int | None = None
    read_at: float | None = None
    command: str | None = None
    duration: float | None = None
    end: float | None = None
    exit: int | None = None
    ok: bool | None = None
    timed_out: bool | None = None
    error: str | None = None
    output: str | None = None
    early: bool | None = None
    scheduled: float | None = None
    shard: str | None = None
    extra: Mapping = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: Any) -> "Event":
        if not isinstance(rec, Mapping):
            raise FormatError(f"corrupt event record: a {type(rec).__name__}, not a map")
        kind = _checked("event record", "kind", rec["kind"] if "kind" in rec else None, (str,))
        where = f"{kind} event"
        at = _checked(where, "at", rec["at"] if "at" in rec else None, _NUMBER)
        names = (*_EVENT_FIELDS.get(kind, ()), "shard")
        got, extra = _split(rec, where, names, ("t", "at", "kind"))
        for key in _EVENT_REQUIRED.get(kind, ()):
            if key not in got:
                raise FormatError(f"corrupt {where} at {at}: no {key!r} (fields: {', '.join(map(str, rec))})")
        for key, value in got.items():
            _checked(where, key, value, _EVENT_TYPES[key])
        return cls(float(at), kind, **got, extra=extra)

    @classmethod
    def of(cls, at: float, kind: str, **fields_: Any) -> "Event":
        """An event built by a writer (checked as a reader would check it)."""
        return cls.from_record({"at": at, "kind": kind, **fields_})

    def payload(self) -> dict:
        """The event's fields as written, without ``t``, ``at`` and ``kind``."""
        out = {}
        for key in _EVENT_FIELDS.get(self.kind, ()):
            value = getattr(self, key)
            if value is None and key in _EVENT_OPTIONAL:
                continue
            out[key] = value
        out.update(self.extra)
        if self.shard is not None:
            out["shard"] = self.shard
        return out

    def to_record(self) -> dict:
        return {"t": "event", "at": self.at, "kind": self.kind, **self.payload()}

    def replace(self, **changes: Any) -> "Event":
        """A copy with ``changes``."""
        return replace(self, **changes)


# --- final state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemState:
    """One item as read back: stock and price."""

    stock: int
    price: int

    def to_record(self) -> dict:
        return {"stock": self.stock, "price": self.price}


@dataclass(frozen=True, slots=True)
class UserState:
    """One user as read back: credit."""

    credit: int

    def to_record(self) -> dict:
        return {"credit": self.credit}


@dataclass(frozen=True, slots=True)
class Settle:
    """How the final read settled: asked for ``requested`` seconds; ``settled`` when two snapshots agreed."""

    requested: float
    settled: bool
    snapshots: int
    why: str

    @classmethod
    def from_record(cls, rec: Any) -> "Settle | None":
        """From a final record's ``settle`` map (any version: snapshots list, or the older seconds/reads)."""
        if not isinstance(rec, Mapping):
            return None
        got, _ = _split(rec, "final state: settle", ("requested", "settled", "snapshots", "reads", "why"))
        snaps = got.pop("snapshots", None)
        n = len(snaps) if isinstance(snaps, (list, tuple)) else as_int(got.pop("reads", 1), 1)
        try:
            requested = float(got.pop("requested", 0.0) or 0.0)
        except (TypeError, ValueError):
            requested = 0.0
        return cls(requested, bool(got.pop("settled", False)), n, str(got.pop("why", "") or ""))


@dataclass(frozen=True, slots=True, eq=False)
class ReadStop(MapView):
    """The final record's ``stopped``: why the final read's circuit breaker stopped reading, what it left unread.

    Written as ``{"why": [reason, …], "not_read": {kind: n}}``; the record is kept whole in ``record``
    (what :meth:`to_record` gives back). A hand-made ``why`` of one string reads as one reason.
    """

    why: tuple[str, ...]
    not_read: Mapping[str, int]  # entities not read back, by kind (keyed by entity kind: data)
    record: Mapping

    @classmethod
    def from_record(cls, rec: Any) -> "ReadStop":
        where = "final state: stopped"
        got, _ = _split(rec, where, ("why", "not_read"))
        why = _checked(where, "why", got.setdefault("why", None), (list, tuple, str, _NONE)) or ()
        not_read = _checked(where, "not_read", got.setdefault("not_read", None), (Mapping, _NONE)) or {}
        return cls(tuple(map(str, why)) if isinstance(why, (list, tuple)) else (str(why),), dict(not_read), rec)

    def to_record(self) -> dict:
        """The section as stored."""
        return dict(self.record)

    as_dict = to_record


_SECTION_KINDS = {"items": "item", "users": "user", "orders": "order"}
_FINAL_KEYS = ("items", "users", "orders", "missing", "bound_not_found", "settle", "quiesce", "read_at", "shards",
               "stopped")


@dataclass(frozen=True, slots=True)
class FinalRecord:
    """The final read's record: each entity read back, those it could not read, and how the read ran.

    ``items``/``users`` are typed snapshots; ``orders`` is the orders as stored (a
    :class:`~.results.StoredOrders` over columns, or an id → order map of an older or other shape;
    :func:`~..analysis.final_state.order_table` types them). ``missing`` is kind → {id: why};
    ``bound_not_found`` kind → ids (None: written before lost data was recorded); ``settle`` and
    ``quiesce`` as written (see :attr:`settling`), ``read_at`` the last snapshot's start on the run's
    clock, ``shards`` what a merged file records of its shards' reads. ``stopped`` (None: the read
    was not cut short, or an older file) is a :class:`ReadStop` when the final read's circuit breaker
    stopped reading a shop that no longer answered.
    """

    items: Mapping[str, ItemState]
    users: Mapping[str, UserState]
    orders: Mapping[str, Any]
    missing: Mapping[str, Mapping[str, str]]
    bound_not_found: Mapping[str, tuple[str, ...]] | None = None
    settle: Mapping | None = None
    quiesce: Mapping | None = None
    read_at: float | None = None
    shards: list | None = None
    extra: Mapping = field(default_factory=dict)
    stopped: ReadStop | None = None

    @classmethod
    def from_record(cls, rec: Any) -> "FinalRecord":
        got, extra = _split(rec, "final state", _FINAL_KEYS, ("t",))
        where = "final state"
        for key in ("items", "users", "orders", "missing"):
            _checked(where, key, got.setdefault(key, {}), (Mapping, _NONE))
        items = _snapshots(got["items"] or {}, ItemState, ("stock", "price"))
        users = _snapshots(got["users"] or {}, UserState, ("credit",))
        missing = {}
        for k, v in (got["missing"] or {}).items():
            if v:  # keyed by entity kind; older hand-made records by section ("items"): read as the kind
                kind = str(k)[:-1] if str(k) in _SECTION_KINDS else str(k)
                missing[kind] = {str(i): str(w) for i, w in _checked(where, f"missing.{k}", v, (Mapping,)).items()}
        bnf = got.pop("bound_not_found", None)
        bound = None
        if isinstance(bnf, Mapping):
            bound = {str(k): tuple(map(str, _checked(where, f"bound_not_found.{k}", v, (list, tuple, _NONE)) or ()))
                     for k, v in bnf.items()}
        for key, kinds in (("settle", (Mapping, _NONE)), ("quiesce", (Mapping, _NONE)),
                           ("read_at", (*_NUMBER, _NONE)), ("shards", (list, _NONE)), ("stopped", (Mapping, _NONE))):
            _checked(where, key, got.setdefault(key, None), kinds)
        stopped = None if got["stopped"] is None else ReadStop.from_record(got["stopped"])
        return cls(items, users, got["orders"] or {}, missing, bound, got["settle"], got["quiesce"],
                   _float(got["read_at"]), got["shards"], extra, stopped)

    def missing_of(self, kind: str) -> Mapping[str, str]:
        """The ids of entity ``kind`` ("item", "user", "order") the read could not read back: id -> why."""
        return self.missing.get(kind, {})

    def bound_not_found_of(self, kind: str) -> tuple[str, ...]:
        """The ids of entity ``kind`` bound from a 2xx create whose read was answered 4xx (empty for older files)."""
        return () if self.bound_not_found is None else self.bound_not_found.get(kind, ())

    def section(self, kind: str) -> Mapping[str, Any]:
        """The snapshots of entity ``kind`` ("item", "user", "order") read back: id -> snapshot."""
        return {"item": self.items, "user": self.users, "order": self.orders}[kind]

    def to_record(self) -> dict:
        """The record as the writer writes it (``orders`` as given: the writer stores them as columns)."""
        out: dict[str, Any] = {"items": {k: v.to_record() for k, v in self.items.items()},
                               "users": {k: v.to_record() for k, v in self.users.items()},
                               "orders": self.orders, "missing": {k: dict(v) for k, v in self.missing.items()}}
        if self.bound_not_found is not None:
            out["bound_not_found"] = {k: list(v) for k, v in self.bound_not_found.items()}
        out["settle"] = None if self.settle is None else dict(self.settle)
        for key in ("quiesce", "read_at", "shards", "stopped"):  # a run's record has quiesce and read_at; a merged one no quiesce
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_record() if isinstance(value, ReadStop) else value
        out.update(self.extra)
        return out

    @property
    def stopped_why(self) -> tuple[str, ...]:
        """Why the final read's circuit breaker stopped reading (empty: it did not, or an older file)."""
        return () if self.stopped is None else self.stopped.why

    @property
    def settling(self) -> Settle | None:
        """How the read settled, typed (None: one snapshot, no settling asked)."""
        return Settle.from_record(self.settle)

    def replace(self, **changes: Any) -> "FinalRecord":
        """A copy with ``changes``."""
        return replace(self, **changes)


_ORDER_FIELDS = ("paid", "items", "user_id", "total_cost")


def order_fields(snapshot: Any) -> tuple[Any, list, Any, Any]:
    """An order snapshot's (paid, lines, user id, total cost) as stored: absent fields read as
    (False, [], None, 0) — an order map of an older or another system's shape (other fields kept in the map)."""
    got, _ = _split(snapshot, "final state: order", _ORDER_FIELDS)
    lines = got.setdefault("items", []) or []
    return got.setdefault("paid", False), lines, got.setdefault("user_id", None), got.setdefault("total_cost", 0)


def _snapshots(section: Mapping, cls: type, keys: tuple[str, ...]) -> dict[str, Any]:
    """Id -> typed snapshot (``cls`` of ``keys``, each as an int); a field a snapshot lacks reads as 0."""
    try:  # the final read's shape: every field present (one pass, no per-field checks)
        if len(keys) == 2:
            a, b = keys
            return {k if k.__class__ is str else str(k): cls(as_int(v[a]), as_int(v[b])) for k, v in section.items()}
        (a,) = keys
        return {k if k.__class__ is str else str(k): cls(as_int(v[a])) for k, v in section.items()}
    except (KeyError, TypeError, IndexError):  # an older or hand-made record: fields absent, or not a map
        out = {}
        for k, v in section.items():
            if not isinstance(v, Mapping):
                raise FormatError(f"corrupt final state: an entity snapshot is a {type(v).__name__}, not a map") from None
            got, _ = _split(v, "final state: snapshot", keys)
            out[str(k)] = cls(*(as_int(got.setdefault(key, 0)) for key in keys))
        return out


# --- trailer ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trailer:
    """How the run ended: rows written, whether it was complete, why not, its wall time in seconds.

    ``truncated_at``: the byte offset where a file without a trailer ended (its writer was killed);
    such a file's trailer is made up by the reader (``complete`` False).
    """

    requests: int
    complete: bool
    reason: str | None = None
    wall: float | None = None
    truncated_at: int | None = None
    extra: Mapping = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: Any) -> "Trailer":
        got, extra = _split(rec, "trailer", ("requests", "complete", "reason", "wall", "truncated_at"), ("trailer",))
        for key, kinds in (("requests", (int,)), ("complete", (bool,))):
            if key not in got:
                raise FormatError(f"corrupt trailer: no {key!r}")
            _checked("trailer", key, got[key], kinds)
        for key, kinds in (("reason", (str, _NONE)), ("wall", (*_NUMBER, _NONE)), ("truncated_at", (int, _NONE))):
            _checked("trailer", key, got.setdefault(key, None), kinds)
        return cls(got["requests"], got["complete"], got["reason"], _float(got["wall"]), got["truncated_at"], extra)

    def to_record(self, fmt: str) -> dict:
        out = {"trailer": fmt, "requests": self.requests, "complete": self.complete, "reason": self.reason,
               "wall": self.wall}
        if self.truncated_at is not None:
            out["truncated_at"] = self.truncated_at
        out.update(self.extra)
        return out

