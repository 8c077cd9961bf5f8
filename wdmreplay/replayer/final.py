"""Before the run, a streaming scan of the trace; after it, the final state of every entity it touched.

The scan (constant memory per session) finds which operations the trace uses — so a dialect that
lacks one is refused before anything is sent — and which entities it creates or references: ids
bound from create responses (by symbol), literal ids in arguments, and the ids ``"0".."n-1"``
that ``batch_init_*`` operations create. After the last phase those are read back with
``find_item`` / ``find_user`` / ``find_order`` with bounded concurrency.
"""

from __future__ import annotations

import array
import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..errors import ApiError
from ..operations import ENTITY_KINDS, FIND_OP, OPERATIONS, Dialect
from ..targets import Target
from ..traces.records import order_fields
from ..traces.results import INT64_BOUNDS, MAX_ERROR_TEXT
from ..traces.index import TraceIndex, read_index
from ..traces.stream import FormatError
from ..traces.keys import steps_problem
from ..traces.trace import TRACE_FORMAT, TRACE_VERSION, TraceReader
from .config import BATCH_SAMPLE_DEFAULT

if TYPE_CHECKING:
    import aiohttp

class IdSet:
    """A compact, growing collection of entity ids: decimal ids in a packed int64 array, others in a set.

    Only kept when the final read needs the ids; membership is settled (deduplicated) when read.
    """

    __slots__ = ("_nums", "_other")

    def __init__(self) -> None:
        self._nums = array.array("q")
        self._other: set[str] = set()

    def add(self, ident: str) -> None:
        """Add one id (as the replay bound it: a string)."""
        if ident.isdigit() and (ident == "0" or ident[0] != "0") and len(ident) < 19:
            self._nums.append(int(ident))
        else:
            self._other.add(ident)

    def update(self, ids: Iterable[str]) -> None:
        """Add several ids."""
        for i in ids:
            self.add(i)

    def ids(self) -> set[str]:
        """Every id, as strings."""
        return set(map(str, set(self._nums))) | self._other

    def __len__(self) -> int:
        return len(self._nums) + len(self._other)


def id_sets() -> dict[str, IdSet]:
    """One empty :class:`IdSet` per entity kind."""
    return {k: IdSet() for k in ENTITY_KINDS}


@dataclass
class TraceScan:
    """What a streaming pass over a trace found: operations used, entities touched, shared symbols."""

    ops: set[str] = field(default_factory=set)
    # Symbols referenced by a session other than the one that binds them (e.g. the consistency
    # workload's items and users, used in its checkout phase): only these outlive their session.
    shared: set[str] = field(default_factory=set)
    literals: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in ENTITY_KINDS})
    ranges: dict[str, int] = field(default_factory=lambda: {k: 0 for k in ENTITY_KINDS})
    sessions: int = 0
    requests: int = 0
    kept_requests: int = 0  # requests of the sessions this replay sends (its shard)

    @classmethod
    def of(cls, idx: TraceIndex, final_read: bool = True) -> TraceScan:
        """The scan a :class:`~wdmreplay.traces.index.TraceIndex` holds (no literal ids without ``final_read``)."""
        return cls(ops=idx.ops, shared=idx.shared,
                   literals=idx.literals if final_read else {k: set() for k in ENTITY_KINDS},
                   ranges=idx.ranges, sessions=idx.sessions, requests=idx.requests, kept_requests=idx.kept)

    def entities(self, bound: dict[str, IdSet]) -> dict[str, list[str]]:
        """Every id to read back, per kind, sorted (numeric ids numerically), given the ids the run bound."""
        out: dict[str, set[str]] = {k: set(v) for k, v in self.literals.items()}
        for kind, n in self.ranges.items():
            out[kind].update(str(i) for i in range(n))
        for kind, ids in bound.items():
            out[kind] |= ids.ids()
        return {k: sorted(v, key=_id_order) for k, v in out.items()}


BATCH_SAMPLE = BATCH_SAMPLE_DEFAULT  # batch_init entities the run did not touch, read back per kind (a seeded sample; named in .config)


def plan_final_read(scan: TraceScan, bound: dict[str, IdSet], sample: int | None = BATCH_SAMPLE,
                    seed: int = 0) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """What the final read reads: every entity the history touched, plus a seeded sample of the rest.

    Touched: ids the run bound and literal ids in the trace's arguments. The rest are the
    ``batch_init`` ids ``"0".."n-1"`` no request named: at most ``sample`` of them per kind, drawn
    with ``random.Random(seed)`` (``None``: all; a trace of 300,000 batch entities once spent 105 s
    of a 136 s replay reading them back). Returns (ids per kind, sorted as :meth:`TraceScan.entities`
    sorts them; per sampled kind ``{"read", "of", "seed"}``).
    """
    touched: dict[str, set[str]] = {k: set(v) for k, v in scan.literals.items()}
    for kind, ids in bound.items():
        touched[kind] |= ids.ids()
    samples: dict[str, dict] = {}
    for kind, n in scan.ranges.items():
        if n <= 0:
            continue
        named = sum(1 for i in touched[kind] if i.isdigit() and int(i) < n and str(int(i)) == i)
        rest = n - named
        if sample is None or rest <= sample:
            touched[kind].update(str(i) for i in range(n))
            continue
        rng = random.Random(seed)
        drawn = (str(i) for i in rng.sample(range(n), min(n, sample + named)))
        picked = [i for i in drawn if i not in touched[kind]][:sample]
        touched[kind].update(picked)
        samples[kind] = {"read": len(picked), "of": rest, "seed": seed}
    return {k: sorted(v, key=_id_order) for k, v in touched.items()}, samples


def referenced_ids(orders: dict[str, dict]) -> dict[str, set[str]]:
    """The items and users that read-back orders name (a batch_init order's lines are the shop's choice)."""
    out: dict[str, set[str]] = {"item": set(), "user": set()}
    for o in orders.values():  # each of the shape _parse_order gives (every key present)
        out["item"].update(str(i) for i, _ in o["items"])
        if o["user_id"] not in (None, "None"):
            out["user"].add(str(o["user_id"]))
    return out


def sort_ids(ids: Iterable[str]) -> list[str]:
    """Ids sorted as the final read orders them (numeric ids numerically, then the others)."""
    return sorted(ids, key=_id_order)


def _id_order(x: str) -> tuple[int, int, str]:
    return (0, int(x), "") if x.isdigit() else (1, 0, x)


def scan_trace(path: str, keep: Callable[[int], bool] | None = None, *, final_read: bool = True,
               stored: bool = True) -> TraceScan:
    """What the replay needs of the whole trace: operations used, symbols shared across sessions, literal and batch ids.

    A trace written by this version stores it in its trailer (:mod:`wdmreplay.traces.index`); with
    ``stored`` and no ``keep``, that is read — every frame's checksum is still checked, but no session
    is decoded (the replay's coordinator decoded the whole trace once more than its workers before).
    Otherwise (older traces, ``--shard``) the trace is streamed once. ``keep`` (a session-id filter,
    for ``--shard``) limits the entities to this shard's sessions; the operations are always those of
    the whole trace. Memory is what the result holds: shared symbols (what later phases need) and,
    only with ``final_read``, literal ids.
    """
    if keep is None and stored:
        idx = read_index(path, TRACE_FORMAT, TRACE_VERSION)
        if idx is not None:
            return TraceScan.of(idx, final_read)
    idx = TraceIndex(final_read)
    with TraceReader(path) as r:
        for n, s in enumerate(r):
            sid = s["sid"]
            try:
                idx.add(sid, s["steps"], keep is None or keep(sid))
            except (KeyError, TypeError, AttributeError):  # the reader checks sessions, not each step
                # Named in the words of the replay's own reader (traces/wire.py).
                problem = steps_problem(s["steps"]) or "a step has values of the wrong types"
                raise FormatError(f"{path}: corrupt session record #{n}: {problem}") from None
            if idx.unknown:
                name, at = next(iter(idx.unknown.items()))
                raise ApiError(f"{path}: session {at} uses unknown operation {name!r}")
    return TraceScan.of(idx, final_read)


def check_dialect(scan: TraceScan, dialect: Dialect, path: str) -> None:
    """Refuse a trace whose operations the dialect cannot render, naming them (before anything is sent)."""
    missing = dialect.missing(scan.ops)
    if missing:
        raise ApiError(f"{path}: the trace uses operation(s) the {dialect.name} dialect lacks: "
                       f"{', '.join(missing)} (choose another --dialect or add --routes)")


class OutOfRange(ValueError):
    """A number in an answer that no signed 64-bit column holds."""


def _int64(v: Any) -> int:
    """``v`` as an int the results file and the checker can hold (signed 64 bits), else ValueError: an answer
    such as a stock of 2**70 is read as unreadable, like one that is not a number."""
    n = int(v)
    if not INT64_BOUNDS[0] <= n < INT64_BOUNDS[1]:
        raise OutOfRange(f"{n} is outside the signed 64-bit range")
    return n


def _parse_item(d: Any) -> dict:
    return {"stock": _int64(d["stock"]), "price": _int64(d["price"])}


def _parse_user(d: Any) -> dict:
    return {"credit": _int64(d["credit"])}


def _parse_order(d: Any) -> dict:
    if not isinstance(d, Mapping):
        raise TypeError(f"an order is a {type(d).__name__}")
    paid = d["paid"]  # required; the other fields read as an absent one in a stored order (order_fields)
    _, lines, user, total = order_fields(d)
    items: Counter[str] = Counter()
    for entry in lines:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            iid, qty = str(entry[0]), _int64(entry[1])
        else:  # some systems list an item id once per unit
            iid, qty = str(entry), 1
        items[iid] = _int64(items[iid] + qty)
    if isinstance(paid, str):
        paid = paid.lower() == "true"
    return {"paid": bool(paid), "items": [[k, v] for k, v in items.items()],
            "user_id": str(user), "total_cost": _int64(total or 0)}


_PARSERS = {"item": _parse_item, "user": _parse_user, "order": _parse_order}
_SECTION = {"item": "items", "user": "users", "order": "orders"}
READ_ATTEMPTS = 3  # a final-state read failing with 5xx, a timeout or a connection error is retried twice
READ_BACKOFF = 0.05  # seconds before the first retry; doubled before the next
# The circuit breaker: after this many reads in a row against one service failed of one kind
# (refused, reset, timeout: every attempt), with no answer from it in between, a snapshot stops
# reading that service. An answer of any status (a 4xx, a 5xx) resets the count: the shop is there.
# Counting whole reads (each READ_ATTEMPTS attempts), not attempts, keeps a shop that answers slowly
# or drops a request or two now and then (at any concurrency) from ever getting there.
BREAKER_FAILURES = 8
# How an entity the breaker left unread is marked in ``missing`` (then its reason, from stop_reason).
STOPPED_PREFIX = "not read: "


def failure_kind(exc: BaseException) -> str | None:
    """The breaker's kind of a failed read attempt: ``"timeout"``, ``"connection refused"``,
    ``"connection reset"``; None for a failure that says nothing about the shop being there."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    import aiohttp  # start-up cost: the coordinator imports this module, and only the final read needs aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return "connection reset"
    return None


def stop_reason(failures: int, kind: str) -> str:
    """The one line saying why a snapshot stopped reading (written per entity and in the output)."""
    return (f"final read stopped after {failures} connection failures in a row ({kind}, {READ_ATTEMPTS} attempts "
            f"each): the shop is not answering")


class Breaker:
    """Consecutive failed reads of one kind against one service, with no answer in between."""

    __slots__ = ("limit", "run", "kind", "tripped")

    def __init__(self, limit: int) -> None:
        self.limit, self.run, self.kind, self.tripped = limit, 0, None, None  # tripped: the reason

    def answered(self) -> None:
        """The service answered (any HTTP status): the run of failures is over."""
        if self.tripped is None:
            self.run, self.kind = 0, None

    def failed(self, kind: str | None) -> None:
        """A read failed (every attempt) with ``kind`` last (None: a failure the breaker does not count)."""
        if kind is None or self.tripped is not None:
            return
        self.run = self.run + 1 if kind == self.kind else 1
        self.kind = kind
        if self.run >= self.limit:
            self.tripped = stop_reason(self.run, kind)


class ReadCounter:
    """How many entities a snapshot in progress has read so far (for a progress display)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


async def read_state(client: aiohttp.ClientSession, target: Target, dialect: Dialect,
                     entities: dict[str, list[str]], concurrency: int,
                     counter: ReadCounter | None = None,
                     breaker: int = BREAKER_FAILURES) -> tuple[dict, dict, int]:
    """One snapshot: ``({"items": {...}, "users": {...}, "orders": {...}}, missing, reads)``.

    ``counter.n`` (when given) counts the entities read so far, answered or not. ``breaker``
    consecutive failed reads of one kind against one service (see :class:`Breaker`) stop the
    reads of that service: its remaining entities are in ``missing`` as
    ``STOPPED_PREFIX + reason`` (see :func:`stopped_of`).
    """
    import aiohttp  # start-up cost: the coordinator imports this module, and only the final read needs aiohttp

    state: dict[str, dict] = {"items": {}, "users": {}, "orders": {}}
    missing: dict[str, dict[str, str]] = {k: {} for k in ENTITY_KINDS}
    work: list[tuple[str, str, str, Breaker]] = []
    breakers: dict[str, Breaker] = {}
    for kind in ENTITY_KINDS:
        ids = entities.get(kind, [])
        find = FIND_OP[kind]
        if not dialect.supports(find):
            for i in ids:
                missing[kind][i] = f"dialect {dialect.name} has no {find}"
            continue
        r = dialect.route(find)
        base = target.base(OPERATIONS[find].service)
        br = breakers.setdefault(base, Breaker(breaker))
        for i in ids:
            work.append((kind, i, base + r.fmt.format(i), br))
    it = iter(work)
    reads = 0

    async def reader() -> None:
        nonlocal reads
        for kind, ident, url, br in it:
            method = dialect.route(FIND_OP[kind]).method
            failure = kind_of = None
            for attempt in range(READ_ATTEMPTS):
                if br.tripped is not None:
                    failure = STOPPED_PREFIX + br.tripped
                    break
                if attempt:
                    # A flaky target (5xx, timeout, reset) gets a short pause and another try: a
                    # read has no side effect, and one lost read would leave a hole in the snapshot.
                    await asyncio.sleep(READ_BACKOFF * 2 ** (attempt - 1))
                reads += 1
                status, body, failure, kind_of = 0, b"", None, None
                try:
                    async with client.request(method, url, allow_redirects=False) as resp:
                        status = resp.status
                        body = await resp.read()
                except asyncio.TimeoutError as e:
                    failure, kind_of = "timeout", failure_kind(e)
                except (aiohttp.ClientError, OSError, ValueError) as e:
                    failure = f"connection error: {e.__class__.__name__}: {e}"[:MAX_ERROR_TEXT]
                    kind_of = failure_kind(e)
                else:
                    br.answered()
                if failure is None and not 200 <= status < 300:
                    text = body[:MAX_ERROR_TEXT].decode("utf-8", "replace")
                    failure = f"HTTP {status}: {text}"[:MAX_ERROR_TEXT]
                    if 400 <= status < 500:  # the target's answer (e.g. 404): not worth retrying
                        break
                if failure is None:
                    break
            if counter is not None:
                counter.n += 1
            if kind_of is not None:  # every attempt failed, the last one without an answer
                br.failed(kind_of)
            if failure is not None:
                missing[kind][ident] = failure
                continue
            try:
                state[_SECTION[kind]][ident] = _PARSERS[kind](json.loads(body))
            except OutOfRange as e:
                missing[kind][ident] = f"unreadable response: a number {e}"[:MAX_ERROR_TEXT]
            except (ValueError, KeyError, TypeError, AttributeError):
                text = body[:MAX_ERROR_TEXT].decode("utf-8", "replace")
                missing[kind][ident] = f"unreadable response: {text}"[:MAX_ERROR_TEXT]

    n = max(1, min(concurrency, len(work)))
    await asyncio.gather(*(reader() for _ in range(n)))
    return state, {k: v for k, v in missing.items() if v}, reads


def stopped_of(missing: Mapping[str, Mapping[str, str]]) -> dict | None:
    """The final record's ``stopped``: why the breaker stopped the read and what it left unread.

    ``{"why": [reason, …], "not_read": {kind: n}}`` (reasons sorted, one per distinct stop), or
    None when the breaker did not trip. Derived from the ``STOPPED_PREFIX`` marks in ``missing``.
    """
    why: set[str] = set()
    not_read: Counter[str] = Counter()
    for kind, failures in missing.items():
        for f in failures.values():
            if f.startswith(STOPPED_PREFIX):
                why.add(f[len(STOPPED_PREFIX):])
                not_read[kind] += 1
    return {"why": sorted(why), "not_read": dict(not_read)} if why else None


# --- when the final read may start and how it settles: pure functions, no clock ---------------


def answered_any(state: dict, missing: dict) -> bool:
    """Whether a snapshot got any answer from the shop: an entity read, or a 4xx for one (not found)."""
    return (any(state[section] for section in _SECTION.values())
            or any(f.startswith("HTTP 4") for failures in missing.values() for f in failures.values()))

QUIESCE_GRACE = 1.0  # seconds an abandoned request gets beyond --timeout to land on the shop
DEFAULT_SETTLE = 2.0  # seconds of settle when the run had indeterminate requests and --settle was not given
SETTLE_FIRST_GAP = 0.1  # seconds between the first two snapshots; doubled before each further one


def quiesce_until(last_abandoned: float | None, timeout: float, grace: float = QUIESCE_GRACE) -> float | None:
    """When (run clock) the last abandoned request has surely landed: abandoned + ``timeout`` + ``grace``.

    An abandoned request (timed out, or cut off by an interrupt) may still be running on the shop;
    a final read before it lands would see half of its effect. None when nothing was abandoned.
    """
    if last_abandoned is None or last_abandoned != last_abandoned:  # None or NaN
        return None
    return last_abandoned + timeout + grace


def settle_plan(requested: float | None, indeterminate: int) -> tuple[float, str | None]:
    """The settle a final read does: (seconds, why) — why is ``"--settle"``, ``"indeterminate requests"`` or None.

    ``requested`` None (not given): :data:`DEFAULT_SETTLE` when the run had indeterminate requests,
    else none. A given value is what the user asked for (``0`` with indeterminate requests is
    recorded as an unsettled single snapshot; ``0`` without any is the same as not asking).
    """
    if requested is not None and (requested > 0 or indeterminate > 0):
        return float(requested), "--settle"
    if indeterminate > 0:
        return DEFAULT_SETTLE, "indeterminate requests"
    return 0.0, None


def next_snapshot_at(window_start: float, settle: float, last_end: float, taken: int,
                     first_gap: float = SETTLE_FIRST_GAP) -> float | None:
    """When the next snapshot starts, after ``taken`` snapshots (the last ending at ``last_end``); None = stop.

    ``window_start`` is when the first snapshot may start (``taken == 0``), and afterwards when the
    first one *ended*: the settle window (``settle`` seconds) is counted from there, so a first read
    longer than ``--settle`` still leaves the window whole. A second snapshot is always taken (there
    is nothing to compare without one), ``min(first_gap, settle)`` after the first; further ones are
    spaced by a growing gap (``first_gap`` doubled: 0.2, 0.4 … s), never back to back, and none
    starts after ``window_start + settle``.
    """
    if taken < 1:
        return window_start
    if taken == 1:
        return last_end + min(first_gap, settle)
    at = last_end + first_gap * 2 ** (taken - 1)
    return at if at <= window_start + settle else None


def settle_record(settle: float, why: str | None, settled: bool,
                  snapshots: list[tuple[float, float]]) -> dict | None:
    """The final record's ``settle`` value (None when one snapshot was all that was asked for)."""
    if why is None:
        return None
    return {"requested": settle, "settled": settled,
            "snapshots": [{"at": a, "end": e} for a, e in snapshots], "why": why}


def bound_not_found(missing: dict[str, dict[str, str]], bound: dict[str, IdSet] | None) -> dict[str, list[str]]:
    """Per kind, the ids whose final read was answered 4xx ("not found") although this run bound them.

    Bound means a create answered 2xx with the id: the shop acknowledged the entity, so a definite
    "not found" is lost data (``lost_entity``), not a read that failed. Written as the final
    record's ``bound_not_found`` (absent in older files: their 4xx reads stay "not read back").
    """
    out: dict[str, list[str]] = {}
    for kind, why in missing.items():
        answered = [i for i, w in why.items() if w.startswith("HTTP 4")]
        if answered and bound is not None and kind in bound:
            ids = bound[kind].ids()
            hit = sorted((i for i in answered if i in ids), key=_id_order)
            if hit:
                out[kind] = hit
    return out


def entity_count(entities: dict[str, Iterable[str]]) -> int:
    """How many entities a final read covers."""
    return sum(len(list(v)) for v in entities.values())
