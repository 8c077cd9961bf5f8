"""Captured exchanges → a replayable trace: operations, symbols, sessions, phases, schedule (pure).

The capture proxy (:mod:`.capture`) hands over one :class:`Exchange` per forwarded request; nothing
here touches the network or a clock. :func:`build_trace` turns them into a :class:`CapturedTrace`
and :func:`write_captured` writes it in the current trace format. The rules (docs/record.md):

- **Operations.** Each request's method and path is matched to an operation of the detected dialect
  (the one of ``2024`` / ``2023`` that matches more requests; a tie goes to 2024) or of the one
  forced. A request that matches nothing, or carries a query string, is *refused*: not in the trace,
  counted and listed (``unmatched``) in the header.
- **Expectations.** 2xx → ``ok``, 4xx → ``fail``, anything else (5xx, no answer) → ``any``. The
  mutating steps of a session that may interact with another session of its phase (see
  :func:`_interacting`) become ``any``: their outcome depends on how concurrent sessions
  interleave, which replay need not repeat.
- **Symbols.** An id returned by a create answer becomes the symbol ``$r<seq>.<kind>`` (bound by
  that step); an argument equal to it in a request sent after that answer arrived refers to the
  symbol. ``batch_init`` ids (``"0"``…``"n-1"``) stay literal, as the shop defines them on replay too;
  a ``batch_init``'s answer closes a phase so everything sent after it replays after it.
- **Sessions.** Requests of one client connection within one phase form a session; sessions of a
  phase joined by a symbol (one creates an id another uses) are merged into one, ordered by send
  time. So at any replay speed every request still follows the answers whose ids it uses.
- **Phases.** A new phase starts at each ``batch_init`` answer and, with ``phase_gap``, after every
  idle gap (nothing in flight) of at least that many seconds.
- **Schedule.** A session's ``at`` is its first send after the phase's first send; a step's
  ``think`` is its send minus the previous step's answer (0 when they overlapped).
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..operations import BUILTIN_ROUTES, DEFAULT_DIALECT, ENTITY_KINDS, OPERATIONS, Dialect, get_dialect
from ..traces import TraceWriter, step

SCENARIO = "recorded"
MAX_UNMATCHED_LISTED = 20
MISSING_PARAM = 1  # an int parameter the route lacks (2023's add_item quantity: one unit)
_INT = re.compile(r"-?\d{1,18}")
# Which entity ranges a batch_init answer creates: (kind, index of the count argument).
BATCH_CREATES: dict[str, tuple[str, int]] = {
    "batch_init_stock": ("item", 0), "batch_init_users": ("user", 0), "batch_init_orders": ("order", 0),
}


@dataclass(frozen=True, slots=True)
class Exchange:
    """One forwarded request and its answer, as the proxy saw them (times in seconds since capture start)."""

    seq: int  # arrival order at the proxy
    conn: int  # client connection number
    method: str
    path: str  # raw path, with the query string if any
    sent: float  # when the request arrived
    done: float  # when its answer was passed on in full (or the exchange ended)
    status: int | None  # None: no answer from upstream
    body: bytes = b""  # the answer's first bytes (where create answers carry their id)


@dataclass(frozen=True, slots=True)
class CapturedStep:
    """A matched request on its way into a session."""

    ex: Exchange
    op: str
    args: tuple[Any, ...]
    bind: str | None
    expect: str
    phase: int
    entities: tuple[tuple[str, str], ...]  # (kind, symbol or literal id) of each entity argument
    uses: tuple[int, ...]  # seqs of the creates whose symbols it refers to


@dataclass(frozen=True, slots=True)
class CapturedTrace:
    """What a capture becomes: sessions per phase, the dialect, and the facts for the header."""

    dialect: str
    phases: tuple[str, ...]
    sessions: tuple[tuple[int, float, tuple[dict, ...]], ...]  # (phase, at, steps) in write order
    facts: dict = field(default_factory=dict)


def expect_of(status: int | None) -> str:
    """The step expectation an observed answer gives: 2xx ok, 4xx fail, otherwise any."""
    if status is None:
        return "any"
    if 200 <= status < 300:
        return "ok"
    return "fail" if 400 <= status < 500 else "any"


def detect_dialect(exchanges: Iterable[Exchange]) -> tuple[str, dict[str, int]]:
    """The built-in dialect matching most requests (ties: the default) and each dialect's match count."""
    dialects = {name: get_dialect(name) for name in BUILTIN_ROUTES}
    counts = {name: 0 for name in dialects}
    for ex in exchanges:
        if "?" in ex.path:
            continue
        for name, d in dialects.items():
            if d.match(ex.method, ex.path) is not None:
                counts[name] += 1
    best = max(counts, key=lambda n: (counts[n], n == DEFAULT_DIALECT))
    return best, counts


def created_id(op: str, ex: Exchange) -> str | None:
    """The id a successful create answer carries (``{"item_id": …}``), or None."""
    key = OPERATIONS[op].id_key
    if key is None or ex.status is None or not 200 <= ex.status < 300:
        return None
    try:
        data = json.loads(ex.body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _literal(raw: str, kind: str) -> Any:
    return int(raw) if kind == "int" and _INT.fullmatch(raw) else raw


def _phase_cuts(matched: list[tuple[Exchange, str, dict]], phase_gap: float | None) -> list[float]:
    """Times at which a new phase starts: after each batch_init answer and each idle gap ≥ phase_gap."""
    cuts: list[float] = []
    busy_until = float("-inf")
    for ex, op, _ in matched:  # in send order
        if phase_gap is not None and busy_until > float("-inf") and ex.sent - busy_until >= phase_gap:
            cuts.append(ex.sent)
        busy_until = max(busy_until, ex.done)
        if op in BATCH_CREATES and ex.status is not None and 200 <= ex.status < 300:
            cuts.append(ex.done)
    return sorted(set(cuts))


class _Joiner:
    """Union-find over session keys (phase, connection)."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, k: Any) -> Any:
        p = self.parent.setdefault(k, k)
        while p != k:
            self.parent[k] = self.parent.setdefault(p, p)
            k, p = p, self.parent[p]
        return k

    def join(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def build_trace(exchanges: Sequence[Exchange], *, dialect: str | Dialect | None = None,
                phase_gap: float | None = None, facts: dict | None = None) -> CapturedTrace:
    """The trace a capture makes (see the module docstring for every rule)."""
    exchanges = sorted(exchanges, key=lambda e: (e.sent, e.seq))
    detected, counts = detect_dialect(exchanges)
    if dialect is None:
        d = get_dialect(detected)
    else:
        d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    matched: list[tuple[Exchange, str, dict]] = []
    unmatched: Counter = Counter()
    for ex in exchanges:
        m = None if "?" in ex.path else d.match(ex.method, ex.path)
        if m is None:
            unmatched[f"{ex.method} {ex.path}"] += 1
        else:
            matched.append((ex, m[0], m[1]))

    cuts = _phase_cuts(matched, phase_gap)
    steps = _to_steps(matched, cuts)
    sessions = _group(steps)
    n_phases = len(cuts) + 1
    used = sorted({s.phase for s in steps}) or [0]
    renumber = {p: i for i, p in enumerate(used)}  # drop phases a cut left empty
    out = []
    for phase, at, group in sessions:
        out.append((renumber[phase], at, tuple(group)))
    out.sort(key=lambda s: (s[0], s[1]))
    all_facts = dict(facts or {})
    all_facts.update({
        "dialect_detected": detected, "dialect_matches": counts, "forwarded": len(exchanges),
        "recorded": len(steps), "unmatched": sum(unmatched.values()),
        "unmatched_listed": [[k, n] for k, n in unmatched.most_common(MAX_UNMATCHED_LISTED)],
        "answers": dict(sorted(Counter(expect_of(ex.status) if ex.status is not None else "none"
                                       for ex, _, _ in matched).items())),
        "symbols": sum(1 for s in steps if s.bind), "phase_gap": phase_gap,
        "phase_cuts": n_phases - 1,
    })
    names = tuple("recorded" if len(used) == 1 else f"recorded-{i}" for i in range(len(used)))
    return CapturedTrace(d.name, names, tuple(out), all_facts)


def _to_steps(matched: list[tuple[Exchange, str, dict]], cuts: list[float]) -> list[CapturedStep]:
    """Match args to symbols (ids whose create answer came before the request was sent)."""
    # The id each create's answer carries (None: refused, or no id in it), parsed once per create.
    made = {ex.seq: created_id(op, ex) for ex, op, _ in matched if OPERATIONS[op].creates}
    creates = sorted(((ex.done, ex.seq, op, made[ex.seq]) for ex, op, _ in matched if ex.seq in made),
                     key=lambda c: (c[0], c[1]))
    symbols: dict[tuple[str, str], tuple[str, int]] = {}  # (kind, real id) → (symbol, create seq)
    k = 0
    out: list[CapturedStep] = []
    for ex, op, raw in matched:
        while k < len(creates) and creates[k][0] <= ex.sent:
            _, seq, cop, real = creates[k]
            if real is not None:
                kind = OPERATIONS[cop].creates
                symbols[(kind, real)] = (f"$r{seq}.{kind}", seq)  # type: ignore[index]
            k += 1
        spec = OPERATIONS[op]
        args, entities, uses = [], [], []
        for name, kind in zip(spec.params, spec.kinds):
            value = raw.get(name)
            if value is None:  # a route without this parameter: 2023's add_item is one unit; 2024's pay names no order
                args.append(MISSING_PARAM if kind == "int" else None)
                continue
            if kind in ENTITY_KINDS:
                sym = symbols.get((kind, value))
                if sym is not None:
                    args.append(sym[0])
                    uses.append(sym[1])
                    entities.append((kind, sym[0]))
                else:
                    args.append(value)
                    entities.append((kind, value))
            else:
                args.append(_literal(value, kind))
        bind = f"$r{ex.seq}.{spec.creates}" if spec.creates and made[ex.seq] is not None else None
        if bind:
            entities.append((spec.creates, bind))  # type: ignore[arg-type]
        out.append(CapturedStep(ex, op, tuple(args), bind, expect_of(ex.status), bisect.bisect_right(cuts, ex.sent),
                                tuple(entities), tuple(uses)))
    return out


def _group(steps: list[CapturedStep]) -> list[tuple[int, float, list[dict]]]:
    """Sessions: (phase, connection) groups joined by symbol use within a phase; timed from their sends."""
    joiner = _Joiner()
    by_seq = {s.ex.seq: s for s in steps}
    for s in steps:
        joiner.find((s.phase, s.ex.conn))
        for seq in s.uses:
            c = by_seq[seq]
            if c.phase == s.phase:
                joiner.join((s.phase, s.ex.conn), (c.phase, c.ex.conn))
    groups: dict[Any, list[CapturedStep]] = defaultdict(list)
    for s in steps:
        groups[joiner.find((s.phase, s.ex.conn))].append(s)
    shared = _interacting(groups)
    phase_start: dict[int, float] = {}
    for s in steps:
        phase_start[s.phase] = min(phase_start.get(s.phase, s.ex.sent), s.ex.sent)
    sessions = []
    for key, group in groups.items():
        group.sort(key=lambda s: (s.ex.sent, s.ex.seq))
        phase = group[0].phase
        built, prev_done = [], None
        for s in group:
            think = 0.0 if prev_done is None else max(0.0, s.ex.sent - prev_done)
            expect = s.expect
            if expect != "any" and key in shared and OPERATIONS[s.op].mutates:
                expect = "any"
            built.append(step(s.op, s.args, s.bind, expect, round(think, 6), SCENARIO))
            prev_done = s.ex.done if prev_done is None else max(prev_done, s.ex.done)
        sessions.append((phase, round(group[0].ex.sent - phase_start[phase], 6), built))
    return sessions


def _interacting(groups: dict[Any, list[CapturedStep]]) -> set:
    """Sessions whose mutations' outcomes may depend on another session of their phase.

    Those that share an entity (symbol or literal id) with another session of the phase, and, when
    a phase has more than one session using literal ids (entities not created in the capture, e.g.
    ``batch_init`` ones), all of those: a literal order's lines are unknown to the capture, so any
    two of them may contend for the same items or user.
    """
    by_entity: dict[tuple, set] = defaultdict(set)
    literal: dict[int, set] = defaultdict(set)
    for key, group in groups.items():
        for s in group:
            for kind, ident in s.entities:
                by_entity[(s.phase, kind, ident)].add(key)
                if not ident.startswith("$"):
                    literal[s.phase].add(key)
    out: set = set()
    for keys in by_entity.values():
        if len(keys) > 1:
            out |= keys
    for keys in literal.values():
        if len(keys) > 1:
            out |= keys
    return out


def write_captured(trace: CapturedTrace, path: str | Path) -> dict:
    """Write ``trace`` as a ``workload: "recorded"`` trace file; return its header."""
    with TraceWriter(path, workload="recorded", seed=0, params=trace.facts, phases=trace.phases,
                     scenarios=[SCENARIO], dialect=trace.dialect) as w:
        for sid, (phase, at, steps) in enumerate(trace.sessions):
            w.write_session(sid, phase, at, list(steps))
    return w.header
