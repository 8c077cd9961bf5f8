"""The known bug classes of a shop, what a trace must make the shop do to expose each, and how often a trace does.

A checker can only judge what the trace made the shop do: a shop whose checkout collapses an
order's repeated item is CLEAN under any trace that never adds one item twice to an order. This
module is the list (:data:`BUG_CLASSES`, the reference in ``docs/bug-classes.md``) and the scan that
counts, for each class, how often a trace contains the behaviour exposing it
(:class:`ExerciseCounter`, run by :class:`~wdmreplay.traces.TraceWriter` on every session it
writes, so generated and recorded traces both carry the counts in their header's ``exercises``).
:func:`verdict_coverage` turns those counts into what a verdict covered.

A leaf, like :mod:`.operations`: the trace writer (traces), ``inspect`` (workloads) and ``check`` (analysis)
all read it; it imports nothing of the project's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


@dataclass(frozen=True, slots=True)
class BugClass:
    """One kind of shop bug: what it is, the trace behaviour that exposes it, what reports it."""

    name: str  # stable key (JSON, the trace header's ``exercises``)
    title: str  # what people read
    what: str  # the bug
    behaviour: str  # what a trace must contain to expose it (what :class:`ExerciseCounter` counts)
    found_by: tuple[str, ...]  # anomaly kinds and verdict findings that report it
    needs_fault: bool = False  # exposed only when a fault (a kill, a restart) hits the run
    inject: str | None = None  # the reference shop's ``--inject`` bug of this class, if it has one


# The reference shop's deliberate bugs (``serve --inject``, docs/shop.md): INJECT_KINDS are bugs of any shop,
# DURABLE_BUGS of the durable shop only (its split checkout keeps no saga log). Defined here, once: the shop
# and the CLI's choices import them (this module is a light leaf; the shop package is not).
INJECT_KINDS = ("lost-update", "oversell", "no-rollback", "double-charge", "lost-line", "wrong-total",
                "repeat-collapse")
DURABLE_BUGS = ("no-recovery",)


BUG_CLASSES: tuple[BugClass, ...] = (
    BugClass("oversell", "oversell",
             "more units sold than were ever in stock (stock below zero, or a checkout that stock cannot cover "
             "succeeds)",
             "demand beyond stock: an item whose checkouts and subtract_stock ask for more units than were added "
             "to it (counted per item)",
             ("oversell", "unexpected 2xx (correctness)", "expectation_not_met"), inject="oversell"),
    BugClass("lost_update_stock", "lost update of stock",
             "two concurrent writes of one item's stock, one overwriting the other",
             "concurrent stock writes: one item's stock changed (checkout of an order holding it, add_stock, "
             "subtract_stock) by two or more sessions of one phase (counted per item)",
             ("lost_update", "oversell"), inject="lost-update"),
    BugClass("lost_update_credit", "lost update of credit",
             "two concurrent writes of one user's credit, one overwriting the other",
             "concurrent credit writes: one user's credit changed (checkout of the user's order, pay, add_funds) "
             "by two or more sessions of one phase (counted per user)",
             ("lost_update", "double_charge"), inject="lost-update"),
    BugClass("non_atomic_checkout", "non-atomic checkout",
             "a refused checkout that keeps part of its effect (stock taken, credit charged, or the reverse)",
             "a checkout that may be refused (expect fail or any) of an order that holds items, so a partial "
             "effect would show (counted per checkout)",
             ("non_atomic_checkout", "lost_update", "lost_checkout"), inject="no-rollback"),
    BugClass("double_charge", "double charge",
             "a checkout that charges its user more than the order's total",
             "a checkout that may succeed (expect ok or any), its user's credit read back (counted per checkout)",
             ("double_charge",), inject="double-charge"),
    BugClass("lost_order_line", "lost order line",
             "concurrent add_item on one order overwrite each other's lines",
             "concurrent add_item on one order: add_item from two or more sessions of one phase (counted per "
             "order)",
             ("lost_order_line", "wrong_total"), inject="lost-line"),
    BugClass("wrong_total", "wrong total",
             "an order's total_cost is not the sum of quantity x price over its lines",
             "an order holding more than one unit of one item (a quantity above 1, or the item added twice), "
             "read back (counted per order)",
             ("wrong_total",), inject="wrong-total"),
    BugClass("repeated_item_collapsed", "repeated item collapsed",
             "checkout keeps one quantity per item id: adding 1 then 2 units of an item charges for 3 and "
             "takes 2 (or 1)",
             "one item added twice to an order (two add_item lines of the same item), then the order checked "
             "out with a checkout that may succeed (counted per order)",
             ("lost_checkout", "lost_update", "expectation_not_met"), inject="repeat-collapse"),
    BugClass("recheckout_charged", "re-checkout charging again",
             "checking out an already paid order charges the user and takes the stock again",
             "two checkouts of one order (counted per order)",
             ("double_charge", "lost_update (under --recheckout refuse)")),
    BugClass("paid_flag_not_set", "paid flag not set",
             "a checkout answered 2xx whose order reads back unpaid (or paid without its effects)",
             "a checkout that may succeed (expect ok or any), its order read back (counted per checkout)",
             ("lost_checkout", "non_atomic_checkout")),
    BugClass("phantom_success", "phantom success",
             "a request that must be refused answered 2xx, or its effect appearing although it was refused",
             "a request the trace proves must be refused (expect fail: a checkout without stock or credit, a "
             "subtract_stock or pay beyond what is there) (counted per request)",
             ("unexpected 2xx (correctness)", "phantom_checkout", "oversell")),
    BugClass("lost_acknowledged_data", "lost acknowledged data",
             "a write answered 2xx is gone after a crash and restart (not made durable before the answer)",
             "entities created with a 2xx and read back at the end, with a fault (replay --faults: a kill and "
             "restart) during the run (counted per created entity)",
             ("lost_update", "lost_checkout", "coverage (an entity created with a 2xx not found)"),
             needs_fault=True, inject="no-recovery"),
    BugClass("unavailable_under_faults", "unavailability under faults",
             "the shop stops answering, or does not recover, when one service is killed",
             "writes in flight during a fault window (replay --faults), requests scheduled on both sides of it "
             "(counted per state-changing request)",
             ("availability (unavailable, recovery longer than --max-recovery)",), needs_fault=True),
)
BY_NAME: dict[str, BugClass] = {c.name: c for c in BUG_CLASSES}
NAMES: tuple[str, ...] = tuple(BY_NAME)

# Operations that change the shop's state (what a fault can catch in flight).
_WRITES = frozenset(("create_item", "add_stock", "subtract_stock", "create_user", "add_funds", "pay",
                     "cancel_payment", "create_order", "add_item", "remove_item", "remove_order", "checkout",
                     "batch_init_stock", "batch_init_users", "batch_init_orders"))
_CREATES = frozenset(("create_item", "create_user", "create_order"))
_BATCH = frozenset(("batch_init_stock", "batch_init_users", "batch_init_orders"))
_STEP_OPS = frozenset(("add_item", "checkout", "add_stock", "subtract_stock", "add_funds", "pay", "remove_item")) | _BATCH


class _Item:
    __slots__ = ("added", "demand", "wphase", "wsid", "contended")

    def __init__(self, added: int | None) -> None:
        self.added = added  # units added; None when unknown (batch_init, a literal id)
        self.demand = 0
        self.wphase, self.wsid, self.contended = -1, -1, False


class _User:
    __slots__ = ("wphase", "wsid", "contended")

    def __init__(self) -> None:
        self.wphase, self.wsid, self.contended = -1, -1, False


class _Order:
    __slots__ = ("user", "lines", "known", "checkouts", "wphase", "wsid", "contended", "repeated", "multi",
                 "repeat_counted")

    def __init__(self, user: Any, known: bool) -> None:
        self.user = user
        self.lines: dict[Any, list[int]] = {}  # item key -> [add_item lines, units]
        self.known = known  # False: made by batch_init or named by a literal id, contents unknown
        self.checkouts = 0
        self.wphase, self.wsid, self.contended = -1, -1, False
        self.repeated = self.multi = self.repeat_counted = False


class ExerciseCounter:
    """Counts, session by session, how often a trace contains each bug class's exposing behaviour.

    Feed sessions in file order (:meth:`add`), then read :meth:`result` (``{class name: count}``,
    every class present). Memory: entities bound in the last phase are private to their session
    (symbol rules), so their state is dropped when the session ends; only entities of earlier phases
    and literal ids are kept. Two sessions of one phase count as concurrent: the replayer may run
    them at once. One loop with the operations inline: it runs on every step the generator writes.
    """

    def __init__(self, n_phases: int, quantity_counts: bool = True) -> None:
        self.counts = {n: 0 for n in NAMES}
        self._ops: Counter[str] = Counter()
        self._last_phase = n_phases - 1
        self._quantity = quantity_counts  # False: the dialect's add_item adds one unit whatever it says
        # Entities by kind, symbol or literal id -> state: shared (earlier phases, literals), local (this session).
        # A literal id (batch_init, a recorded trace's unmatched id) is shared, its contents unknown.
        self._shared: tuple[dict, dict, dict] = (defaultdict(lambda: _Item(None)), defaultdict(_User),
                                                 defaultdict(lambda: _Order(None, False)))
        self._local: tuple[dict, dict, dict] = ({}, {}, {})
        self._batch_created = 0  # entities batch_init steps create

    def add(self, sid: int, phase: int, steps: Iterable[dict]) -> None:
        """Count one session's steps."""
        ops = self._ops
        last = phase >= self._last_phase
        binds = self._local if last else self._shared
        for st in steps:
            op = st["op"]
            ops[op] += 1
            try:
                if op == "create_item":
                    if st["bind"] is not None:
                        binds[0][st["bind"]] = _Item(0)
                elif op == "create_user":
                    if st["bind"] is not None:
                        binds[1][st["bind"]] = _User()
                elif op == "create_order":
                    if st["bind"] is not None:
                        binds[2][st["bind"]] = _Order(st["args"][0], True)
                elif op in _STEP_OPS:
                    self._step(op, st, sid, phase)
            except (IndexError, TypeError, KeyError):
                pass  # a malformed step (wrong arity): inspect's symbol check reports it
        if last:
            items, users, orders = self._local
            if items:
                for item in items.values():
                    if item.added is not None and item.demand > item.added:
                        self.counts["oversell"] += 1
                items.clear()
            users.clear()
            orders.clear()

    def result(self) -> dict[str, int]:
        """``{class name: count}`` for every class (call once, after the last session)."""
        c, ops = self.counts, self._ops
        for item in self._shared[0].values():
            if item.added is not None and item.demand > item.added:
                c["oversell"] += 1
        c["unavailable_under_faults"] = sum(n for op, n in ops.items() if op in _WRITES)
        c["lost_acknowledged_data"] = sum(n for op, n in ops.items() if op in _CREATES) + self._batch_created
        # A batch_init's count is the trace's literal: a hand-written one may be any int, the header must pack.
        return {name: min(n, _MAX_COUNT) for name, n in c.items()}

    def _get(self, kind: int, ref: Any) -> tuple[Any, bool]:
        """The entity ``ref`` of ``kind`` (0 item, 1 user, 2 order), and whether other sessions may touch it."""
        e = self._local[kind].get(ref)
        if e is not None:
            return e, False  # bound in this session of the last phase: private to it
        return self._shared[kind][ref], True

    def _write(self, e: Any, name: str, sid: int, phase: int) -> None:
        if e.wphase == phase and e.wsid != sid:
            if not e.contended:
                e.contended = True
                self.counts[name] += 1
        else:
            e.wphase, e.wsid = phase, sid

    def _step(self, op: str, st: dict, sid: int, phase: int) -> None:
        c, args = self.counts, st["args"]
        if op == "add_item":
            order, shared = self._get(2, args[0])
            q = args[2] if self._quantity and len(args) > 2 and isinstance(args[2], int) else 1
            line = order.lines.setdefault(args[1], [0, 0])
            line[0] += 1
            line[1] += q
            if line[0] >= 2:
                order.repeated = True
            if line[1] >= 2 and not order.multi:
                order.multi = True
                c["wrong_total"] += 1
            if shared:
                self._write(order, "lost_order_line", sid, phase)
        elif op == "checkout":
            order, _ = self._get(2, args[0])
            self._checkout(order, st["expect"], sid, phase)
        elif op == "add_stock" or op == "subtract_stock":
            (item, shared), n = self._get(0, args[0]), args[1]
            if op == "add_stock":
                if item.added is not None:
                    item.added = item.added + n if isinstance(n, int) else None
            else:
                item.demand += n if isinstance(n, int) else 0
                if st["expect"] == "fail":
                    c["phantom_success"] += 1
            if shared:
                self._write(item, "lost_update_stock", sid, phase)
        elif op == "add_funds" or op == "pay":
            user, shared = self._get(1, args[0])
            if shared:
                self._write(user, "lost_update_credit", sid, phase)
            if op == "pay" and st["expect"] == "fail":
                c["phantom_success"] += 1
        elif op == "remove_item":
            self._get(2, args[0])[0].lines.pop(args[1], None)
        elif op in _BATCH:
            n = args[0]
            self._batch_created += n if isinstance(n, int) and n > 0 else 0

    def _checkout(self, order: _Order, expect: str, sid: int, phase: int) -> None:
        c = self.counts
        order.checkouts += 1
        if order.checkouts == 2:
            c["recheckout_charged"] += 1
        may_succeed = expect != "fail"
        if may_succeed:
            c["double_charge"] += 1
            c["paid_flag_not_set"] += 1
        else:
            c["phantom_success"] += 1
        if expect != "ok" and (order.lines or not order.known):
            c["non_atomic_checkout"] += 1
        if may_succeed and order.repeated and not order.repeat_counted:
            order.repeat_counted = True
            c["repeated_item_collapsed"] += 1
        for item_ref, line in order.lines.items():
            item, shared = self._get(0, item_ref)
            item.demand += line[1]
            if shared:
                self._write(item, "lost_update_stock", sid, phase)
        if order.user is not None:
            user, shared = self._get(1, order.user)
            if shared:
                self._write(user, "lost_update_credit", sid, phase)


_MAX_COUNT = 2**63 - 1


def count_exercises(sessions: Iterable[dict], n_phases: int, quantity_counts: bool = True) -> dict[str, int]:
    """``{class name: count}`` of the sessions (an iterable of session maps, in file order)."""
    c = ExerciseCounter(n_phases, quantity_counts)
    for s in sessions:
        c.add(s["sid"], s["phase"], s["steps"])
    return c.result()


def quantity_counts(dialect: str | None, routes: dict[str, dict[str, str]]) -> bool:
    """Whether ``dialect``'s add_item carries the quantity (2023's adds one unit whatever the step says)."""
    table = routes.get(dialect or "")  # keyed by the trace header's dialect: None or unknown counts quantities
    return table is None or "{quantity}" in table["add_item"]


@dataclass(frozen=True, slots=True)
class BugCoverage:
    """What a run covered: the bug classes its trace exercised (fault classes only with faults in the run)."""

    stated: bool  # False: the trace predates the count (no header "exercises")
    covered: tuple[str, ...]  # class names
    not_exercised: tuple[str, ...]  # no exposing behaviour in the trace
    needs_fault: tuple[str, ...]  # behaviour in the trace, but no fault hit the run
    counts: dict[str, int]
    source: str | None = None  # "header" (the trace header's), "trace file" (counted from it), None
    # Why the run may have sent less than the trace holds ("a partial run", "shard 1/4"): the counts
    # are then the trace's, an upper bound on what the run exercised. None for a whole, complete run.
    incomplete: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys; ``check --json``'s ``bug_classes``)."""
        return {"stated": self.stated, "source": self.source, "classes": len(BUG_CLASSES), "covered": list(self.covered),
                "not_exercised": list(self.not_exercised), "needs_fault": list(self.needs_fault),
                "counts": dict(self.counts), "incomplete": self.incomplete}


def class_counts(exercises: Mapping[str, Any]) -> dict[str, int]:
    """Every class's count from a trace's ``exercises`` map, read once at the edge (a class the trace's
    writer did not know yet: 0)."""
    return {c.name: int(exercises.get(c.name, 0) or 0) for c in BUG_CLASSES}


def verdict_coverage(exercises: dict | None, faults: bool, source: str | None = "header",
                     incomplete: str | None = None) -> BugCoverage:
    """What a run covered, from its trace's ``exercises`` counts (None: not known).

    ``faults``: whether the run had fault windows (a class that needs a fault is covered only then);
    ``source`` says where the counts came from; ``incomplete`` why the run may not have sent the
    whole trace (a partial run, one shard), so the counts are at most what it covered.
    """
    if not isinstance(exercises, dict):
        return BugCoverage(False, (), (), (), {}, None, incomplete)
    counts = class_counts(exercises)
    covered, missing, unfaulted = [], [], []
    for c in BUG_CLASSES:
        if not counts[c.name]:
            missing.append(c.name)
        elif c.needs_fault and not faults:
            unfaulted.append(c.name)
        else:
            covered.append(c.name)
    return BugCoverage(True, tuple(covered), tuple(missing), tuple(unfaulted),
                       counts, source, incomplete)


def coverage_line(cov: BugCoverage) -> str:
    """The one line ``check`` prints after the verdict: ``covered: 9 of 13 …``."""
    if not cov.stated:
        return ("covered: not stated (the trace predates bug-class counts and its file is not where the run "
                "read it, unchanged; `wdm-replay inspect TRACE` counts what it exercises)")
    parts = []
    if cov.not_exercised:
        parts.append("not exercised: " + ", ".join(BY_NAME[n].title for n in cov.not_exercised))
    if cov.needs_fault:
        parts.append("need a fault run: " + ", ".join(BY_NAME[n].title for n in cov.needs_fault))
    tail = f" ({'; '.join(parts)})" if parts else ""
    if cov.incomplete:  # the trace's count: the run may not have sent what exposes them
        return (f"covered: at most {len(cov.covered)} of {len(BUG_CLASSES)} bug classes — {cov.incomplete}: "
                f"some requests of the trace may not have been sent{tail}")
    return f"covered: {len(cov.covered)} of {len(BUG_CLASSES)} bug classes{tail}"
