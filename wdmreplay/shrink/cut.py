"""Cutting a trace held in memory: causal closure, dropping sessions and steps, smaller amounts.

Pure functions over a tuple of session maps (the trace's own records, never mutated: an edit
builds new maps). Every candidate goes through :func:`repair`, which drops the steps whose symbols
no kept step binds any more (and so on, to a fixpoint), so a candidate never makes the replayer
skip a request for want of an id.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..traces.stream import FormatError
from ..traces.trace import STEP_KEYS, TraceHeader, TraceReader, TraceWriter, is_step, is_symbol

Sessions = tuple  # tuple of session maps {sid, phase, at, steps}

# The argument of each operation that is an amount (a smaller one is a simpler reproduction).
AMOUNT_ARG = {"create_item": 0, "add_stock": 1, "subtract_stock": 1, "add_funds": 1, "pay": -1, "add_item": 2}
# Operations whose answer a cut cannot change (they need only the entities the closure keeps);
# every other step's expectation was the whole trace's (scarcity, interleaving) and becomes "any".
_STABLE_OK = {"create_item", "create_user", "create_order", "add_stock", "add_funds", "add_item",
              "find_item", "find_user", "find_order"}
_CREATES = {"create_item": "item", "create_user": "user", "create_order": "order"}
# Closure levels, from the fewest requests to the whole trace (the fallback when a cut does not reproduce).
LEVELS = ("closure", "closure+users", "component", "whole")


def load_sessions(path: str) -> tuple[TraceHeader, Sessions]:
    """A trace's header and every session, in file order (a shrink source fits in memory).

    Every step is checked to hold each key of the format once, here, so the cuts read them directly;
    a step that does not is a one-line :class:`FormatError`.
    """
    with TraceReader(path) as r:
        sessions = tuple(r.sessions())
        header = r.trace_header
    for s in sessions:
        for k, st in enumerate(s["steps"]):
            if not is_step(st):
                raise FormatError(f"{path}: session {s['sid']} step {k} is not a step map ({', '.join(STEP_KEYS)})")
    return header, sessions


def symbols(step: dict) -> list[str]:
    """The symbol references among a step's arguments."""
    return [a for a in step["args"] if is_symbol(a)]


def count_requests(sessions: Sessions) -> int:
    """Number of steps (requests) of the sessions."""
    return sum(len(s["steps"]) for s in sessions)


def relax_expectations(sessions: Sessions) -> Sessions:
    """The sessions with every step whose answer depends on the rest of the trace expecting ``"any"``."""
    def relax(st: dict) -> dict:
        keep = st["expect"] == "ok" and st["op"] in _STABLE_OK
        return st if keep or st["expect"] == "any" else {**st, "expect": "any"}
    return tuple({**s, "steps": [relax(st) for st in s["steps"]]} for s in sessions)


@dataclass(slots=True)
class Linked:
    """One symbol's entity: its kind (None: only referenced, never created) and its relations."""

    kind: str | None = None  # "item", "user" or "order"
    user: str | None = None  # an order's user
    items: set[str] = field(default_factory=set)  # an order's items
    orders: set[str] = field(default_factory=set)  # an item's or a user's orders


@dataclass
class Links:
    """Which entity each symbol is, and the order ↔ user and order ↔ item relations of the trace."""

    entities: dict[str, Linked] = field(default_factory=lambda: defaultdict(Linked))

    def kind(self, sym: str) -> str | None:
        """``"item"``, ``"user"`` or ``"order"``: what the trace creates ``sym`` as (None: it does not)."""
        e = self.entities.get(sym)
        return None if e is None else e.kind

    def neighbours(self, sym: str) -> set[str]:
        """Entities one relation away: an order's user and items, an item's or a user's orders."""
        e = self.entities.get(sym)
        if e is None or e.kind is None:
            return set()
        if e.kind == "order":
            return e.items | ({e.user} if e.user else set())
        return set(e.orders)


def links_of(sessions: Sessions) -> Links:
    """The :class:`Links` of a trace (from its create_* binds and its create_order / add_item args)."""
    ln = Links()
    ent = ln.entities
    for s in sessions:
        for st in s["steps"]:
            op, args, bind = st["op"], st["args"], st["bind"]
            if bind and op in _CREATES:
                ent[bind].kind = _CREATES[op]
                if op == "create_order" and args and is_symbol(args[0]):
                    ent[bind].user = args[0]
                    ent[args[0]].orders.add(bind)
            elif op in ("add_item", "remove_item") and len(args) >= 2 and is_symbol(args[0]) and is_symbol(args[1]):
                ent[args[0]].items.add(args[1])
                ent[args[1]].orders.add(args[0])
    return ln


def related(links: Links, role: str, level: str) -> set[str]:
    """The symbols a cut at ``level`` keeps for the entity ``role``.

    ``closure``: the entity, the orders it is part of (an item's or a user's orders; an order
    itself), and those orders' users and items. ``closure+users``: also the other orders of those
    users and their items (what spends a user's credit elsewhere). ``component``: everything
    connected to it through orders, users and items.
    """
    if level == "component":
        seen, todo = {role}, [role]
        while todo:
            for n in links.neighbours(todo.pop()) - seen:
                seen.add(n)
                todo.append(n)
        return seen
    kind = links.kind(role)
    orders = {role} if kind == "order" else set(links.neighbours(role)) if kind in ("item", "user") else set()
    keep = {role} | orders
    for o in orders:
        keep |= links.neighbours(o)
    if level == "closure+users":
        for user in [e for e in keep if links.kind(e) == "user"]:
            for o in links.neighbours(user):
                keep |= {o} | links.neighbours(o)
    return keep


def cut(sessions: Sessions, role: str, level: str) -> Sessions:
    """The candidate of closure ``level`` (one of :data:`LEVELS`) around the entity ``role``."""
    if level == "whole" or not is_symbol(role):
        return repair(sessions)
    keep = related(links_of(sessions), role, level)

    def kept(st: dict) -> bool:
        if st["bind"]:
            return st["bind"] in keep  # the creates of other entities go, whatever their arguments
        syms = symbols(st)
        return all(a in keep for a in syms) if syms else st["op"].startswith("batch_init")
    return repair(tuple({**s, "steps": [st for st in s["steps"] if kept(st)]} for s in sessions))


def repair(sessions: Sessions) -> Sessions:
    """The sessions without the steps that use a symbol no kept step binds (to a fixpoint), and without empty sessions."""
    while True:
        bound = {st["bind"] for s in sessions for st in s["steps"] if st["bind"]}
        out, changed = [], False
        for s in sessions:
            steps = [st for st in s["steps"] if all(a in bound for a in symbols(st))]
            changed |= len(steps) != len(s["steps"]) or not steps
            if steps:
                out.append(s if len(steps) == len(s["steps"]) else {**s, "steps": steps})
        sessions = tuple(out)
        if not changed:
            return sessions


def order_symbols(sessions: Sessions) -> list[str]:
    """The symbols create_order binds, in trace order."""
    return [st["bind"] for s in sessions for st in s["steps"] if st["op"] == "create_order" and st["bind"]]


def keep_orders(sessions: Sessions, keep: Iterable[str], role: str) -> Sessions:
    """Only the orders ``keep`` (and ``role``): every other order's steps go, and so do the users and
    items no kept order needs any more (unless one is ``role``), repaired.
    """
    links = links_of(sessions)
    kept = set(keep) | {role}
    dropped = {o for o in order_symbols(sessions) if o not in kept}
    needed = {role} | {e for o in kept if links.kind(o) == "order" for e in links.neighbours(o)}

    def gone(sym: str) -> bool:
        return sym in dropped or (links.kind(sym) in ("user", "item") and sym not in needed)

    def kept_step(st: dict) -> bool:
        syms = symbols(st) + ([st["bind"]] if st["bind"] else [])
        return not any(gone(x) for x in syms)
    return repair(tuple({**s, "steps": [st for st in s["steps"] if kept_step(st)]} for s in sessions))


def keep_sessions(sessions: Sessions, keep: Iterable[int]) -> Sessions:
    """Only the sessions at the positions ``keep``, repaired."""
    return repair(tuple(sessions[i] for i in sorted(set(keep))))


def step_positions(sessions: Sessions) -> list[tuple[int, int]]:
    """Every step as (session position, step position), in trace order."""
    return [(i, k) for i, s in enumerate(sessions) for k in range(len(s["steps"]))]


def keep_steps(sessions: Sessions, keep: Iterable[tuple[int, int]]) -> Sessions:
    """Only the steps at the positions ``keep`` (see :func:`step_positions`), repaired."""
    wanted = set(keep)
    return repair(tuple({**s, "steps": [st for k, st in enumerate(s["steps"]) if (i, k) in wanted]}
                        for i, s in enumerate(sessions)))


@dataclass(frozen=True, slots=True)
class AmountSlot:
    """An amount argument that could be smaller: session and step position, argument index, value."""

    session: int
    step: int
    arg: int
    value: int


def amount_slots(sessions: Sessions) -> list[AmountSlot]:
    """The integer amounts above 1 (stock, funds, payments, quantities, prices), in trace order."""
    out = []
    for i, s in enumerate(sessions):
        for k, st in enumerate(s["steps"]):
            pos = AMOUNT_ARG.get(st["op"])
            if pos is None or not st["args"] or len(st["args"]) <= (pos if pos >= 0 else -pos - 1):
                continue
            v = st["args"][pos]
            if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                out.append(AmountSlot(i, k, pos % len(st["args"]), v))
    return out


def smaller_values(value: int) -> list[int]:
    """The values to try instead of ``value``, smallest first: 1, then half."""
    return [v for v in dict.fromkeys((1, value // 2)) if 1 <= v < value]


def with_amount(sessions: Sessions, slot: AmountSlot, value: int) -> Sessions:
    """The sessions with one amount replaced."""
    s = sessions[slot.session]
    steps = list(s["steps"])
    st = steps[slot.step]
    args = list(st["args"])
    args[slot.arg] = value
    steps[slot.step] = {**st, "args": args}
    return sessions[:slot.session] + ({**s, "steps": steps},) + sessions[slot.session + 1:]


def is_timed(sessions: Sessions) -> bool:
    """Whether any session starts after 0 or any step waits (think) before it is sent."""
    return any(s["at"] or any(st["think"] for st in s["steps"]) for s in sessions)


def untimed(sessions: Sessions) -> Sessions:
    """The sessions all starting at 0 of their phase, with no think time."""
    return tuple({**s, "at": 0.0, "steps": [{**st, "think": 0.0} for st in s["steps"]]} for s in sessions)


def write_trace(path: str, source: TraceHeader | dict, sessions: Sessions, shrink: dict, *,
                inputs: Sequence[str] = ()) -> dict:
    """Write ``sessions`` as a trace (phases renumbered, empty ones left out); return its header.

    The header keeps the source's dialect and scenario names, drops its aggregate expectations
    (they were the whole trace's) and carries ``shrink`` (what it reproduces, from where).
    ``source`` may be a header map: only its identity is used, not its counts.
    """
    if not isinstance(source, TraceHeader):
        source = TraceHeader.from_record({"sessions": 0, "requests": 0, **source}, "shrink source")
    names = source.phase_names
    used = sorted({s["phase"] for s in sessions})
    renumber = {p: i for i, p in enumerate(used)}
    ordered = sorted(sessions, key=lambda s: (renumber[s["phase"]], s["at"]))
    with TraceWriter(path, workload="shrunk", seed=source.seed,
                     params={"source_workload": source.workload, "source_params": dict(source.params)},
                     phases=[names[p] for p in used], scenarios=source.scenarios,
                     dialect=source.dialect, expect={}, inputs=inputs) as w:
        w.header["shrink"] = shrink
        for s in ordered:
            w.write_session(s["sid"], renumber[s["phase"]], s["at"], list(s["steps"]))
    return w.header


def script_lines(phase_names: Sequence[str], sessions: Sessions) -> list[str]:
    """The sessions as a short readable script: a line per phase, then per request (session, call, expect)."""
    lines: list[str] = []
    phase = None
    for s in sorted(sessions, key=lambda s: (s["phase"], s["at"])):
        if s["phase"] != phase:
            phase = s["phase"]
            name = phase_names[phase] if phase < len(phase_names) else str(phase)
            lines.append(f"phase {name}")
        for st in s["steps"]:
            call = f"{st['op']}({', '.join(str(a) for a in st['args'])})"
            if st["bind"]:
                call += f" -> {st['bind']}"
            lines.append(f"  s{s['sid']:<5} {call:<46} expect {st['expect']}")
    return lines
