"""An entity's story: every request that touched it, in send order, and the arithmetic of its anomaly.

What ``explain`` prints and the HTML report draws as a timeline (in the spirit of Knossos'
linearizability timelines): for one item, user or order, the requests that touched it — its
create, its writes, the checkouts of the orders that hold it, the reads of it — with their
intended / sent / done times (milliseconds on the run's clock), status and answer; requests whose
[sent, done] intervals overlap are marked concurrent. Then the arithmetic that proves the anomaly,
in units ("3 checkouts answered 2xx took 3 units; stock was 1; final 0").

Compute only: :func:`explain_run` returns :class:`Story` records; :func:`render_explain_text` and
:meth:`Story.as_dict` format them. The anomaly is the checker's :class:`~.consistency.Anomaly`, so
a kind added later (e.g. ``lost_entity``) is told the same way: its entity's requests and final read.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WdmError
from ..operations import CREATE_OP, ENTITY_KINDS, FIND_OP, OP_CODES, OP_NAMES
from ..terms import named, plural
from ..traces.argcols import IdTable, as_int
from ..traces.results import OUTCOMES, SKIPPED, Results
from .anomaly import Anomaly
from .final_state import FinalState, OrderState, final_state
from .wording import headline as _worded_headline

EXPLAIN_SCHEMA = "wdm-explain/1"
MAX_STORY_REQUESTS = 60  # requests told per entity (the story says how many more there were)
_UNANSWERED = ("error", "timeout", "conn_error")
_VIA_ORDER = ("checkout", "add_item", "remove_item")  # operations whose first argument is an order
# Operations whose first argument is an entity of each kind.
_BY_K0 = {"item": ("add_stock", "subtract_stock"), "user": ("add_funds", "pay", "create_order", "cancel_payment"),
          "order": _VIA_ORDER}


class ExplainError(WdmError):
    """An ``explain`` request that cannot be answered (unknown id, no args loaded)."""


@dataclass(frozen=True, slots=True)
class StoryRequest:
    """One request of a story: who sent it, what it would do to the entity, when, and what it was told."""

    n: int  # 1-based number in send order within the story
    row: int
    sid: int
    step: int
    op: str
    order: str | None  # the order a checkout / add_item acts through
    amount: int | None  # signed effect on the entity's stock or credit (units) if it took effect
    intended_ms: float | None
    sent_ms: float | None
    done_ms: float | None
    outcome: str  # ok | fail | error | timeout | conn_error | skipped
    status: int
    answer: str
    concurrent: tuple[int, ...]  # numbers of the story's requests whose [sent, done] overlaps this one's

    @property
    def unanswered(self) -> bool:
        """No answer (5xx, timeout, connection error): it may or may not have taken effect."""
        return self.outcome in _UNANSWERED

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"n": self.n, "row": self.row, "session": self.sid, "step": self.step, "op": self.op,
                "order": self.order, "amount": self.amount, "intended_ms": self.intended_ms,
                "sent_ms": self.sent_ms, "done_ms": self.done_ms, "outcome": self.outcome, "status": self.status,
                "answer": self.answer, "concurrent_with": list(self.concurrent)}


@dataclass(frozen=True, slots=True)
class Story:
    """An entity's story: its requests in send order, the arithmetic, and the anomaly it explains."""

    entity: str  # item | user | order | aggregate
    id: str
    anomaly: Anomaly | None  # the checker's anomaly, or None when asked about a sound entity
    headline: str
    arithmetic: tuple[str, ...]
    requests: tuple[StoryRequest, ...]
    omitted: int  # requests that touched the entity beyond MAX_STORY_REQUESTS (not told)
    final: Any  # the final read's value (stock, credit, paid) or None when it was not read back

    @property
    def concurrent_count(self) -> int:
        """How many of the told requests overlap another one."""
        return sum(1 for r in self.requests if r.concurrent)

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"entity": self.entity, "id": self.id,
                "anomaly": None if self.anomaly is None else self.anomaly.as_dict(), "headline": self.headline,
                "arithmetic": list(self.arithmetic), "requests": [r.as_dict() for r in self.requests],
                "omitted": self.omitted, "final": self.final, "concurrent": self.concurrent_count}


def told_headline(a: Anomaly) -> str:
    """An anomaly's headline as told (the checker's, else worded from its kind, entity and figures)."""
    return a.headline or _worded_headline(a.kind, a.entity, a.id, a.expected, a.actual, a.detail)


def _ms(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x * 1000.0, 3)


def _names(ids: list[str], limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def mark_concurrent(sent: list[float | None], done: list[float | None]) -> list[tuple[int, ...]]:
    """For each interval, the 1-based numbers of the others whose [sent, done] overlaps it (open ends never)."""
    out: list[list[int]] = [[] for _ in sent]
    order = sorted((s, k) for k, s in enumerate(sent) if s is not None and done[k] is not None)
    for a, (s_a, i) in enumerate(order):
        d_a = done[i]
        for s_b, j in order[a + 1:]:
            if s_b >= d_a:  # sorted by start: nothing later can overlap i
                break
            if s_a < done[j]:
                out[i].append(j + 1)
                out[j].append(i + 1)
    return [tuple(sorted(x)) for x in out]


class RunStories:
    """Tells the stories of one run's entities (needs the results loaded ``with_args``)."""

    def __init__(self, results: Results, *, trace: str | Path | None = None, reads: str = "all"):
        if results.argcols is None:
            raise ExplainError(f"{Path(results.path).name}: loaded without args; cannot tell stories")
        self.r = results
        self.fs: FinalState | None = final_state(results.final_record)  # typed once per run (cached)
        ac = results.argcols
        self.ids = IdTable(ac.names)
        c = results.cols
        self.op, self.outcome = c["op"], c["outcome"]
        self.k0, self.k1, self.num = ac.k0, ac.k1, ac.num
        self._masks: dict[tuple[str, ...], np.ndarray] = {}
        self._reads: dict[tuple[str, str], list[int]] | None = None
        self._creates: dict[tuple[str, str], int] | None = None
        # A trace the user named is checked now, before any story is told or not (ExplainError); one
        # found by the run's header is looked for only when a story needs its creates.
        self._named = trace is not None
        self._trace_file = _run_trace(results, trace) if trace is not None else None
        # "all": every story lists the entity's create (read from the trace) and reads (the args of every
        # find_* row decoded once); "lost": only entities the final read did not return (the report's path).
        self._with_reads = reads

    # --- which entity is an id, and which requests touched it ---------------------------------

    def kind_of(self, eid: str) -> str | None:
        """``item``, ``user`` or ``order`` for an id this run knows (final read, or the ops that used it)."""
        return next((kind for kind in ENTITY_KINDS if self.knows(kind, eid)), None)

    def knows(self, kind: str, eid: str) -> bool:
        """Whether this run knows ``eid`` as an entity of ``kind``: read back (or not found) by the final
        read, named by an operation on that kind, or in the range of a ``batch_init`` of that kind."""
        fs = self.fs
        if fs is not None and (eid in fs.section(kind) or eid in fs.missing[kind]):
            return True
        code = self.ids.code(eid)
        if code >= 0:
            for k, ops, col in (("item", ("add_stock", "subtract_stock"), self.k0), ("item", ("add_item",), self.k1),
                                ("user", ("add_funds", "pay", "create_order"), self.k0),
                                ("order", ("checkout", "add_item", "remove_item"), self.k0)):
                if k == kind and np.any((col == code) & self._op_rows(*ops)):
                    return True
        return eid.isdigit() and int(eid) < _batch_size(self, kind)

    def _op_rows(self, *names: str) -> np.ndarray:
        """Mask of the rows of these operations (cached: every story asks for the same few)."""
        mask = self._masks.get(names)
        if mask is None:
            mask = self._masks[names] = np.isin(self.op, [OP_CODES[n] for n in names if n in OP_CODES])
        return mask

    def _read_rows(self, kind: str, eid: str) -> list[int]:
        if self._reads is None:  # one pass over the read rows' args, for every story of the run
            self._reads = {}
            args = self.r.args
            rows = np.nonzero(self._op_rows(*FIND_OP.values()) & (self.outcome != SKIPPED))[0].tolist()
            kinds = {OP_CODES[op]: k for k, op in FIND_OP.items()}
            if args is not None:
                for row in rows:
                    a = args[row]
                    if a:
                        self._reads.setdefault((kinds[int(self.op[row])], str(a[0])), []).append(row)
        return self._reads.get((kind, eid), [])

    def _creates_by_entity(self) -> dict[tuple[str, str], int]:
        """(kind, id) -> row of its create request, read from the run's trace once (empty without it)."""
        if self._creates is None:
            path = self._trace_file if self._named else _run_trace(self.r, None)
            self._creates = _create_rows(self.r, path, self._named)
        return self._creates

    def final_order(self, order: str) -> OrderState | None:
        """``order`` as the final read returned it (None: not returned, or no final read)."""
        return self.fs.orders.get(order) if self.fs is not None else None

    def _create_row(self, kind: str, eid: str) -> int | None:
        """The row of the request whose answer created ``eid`` (from the trace's bind symbols), if found."""
        return self._creates_by_entity().get((kind, eid))

    def _orders_of(self, kind: str, eid: str) -> list[str]:
        """Orders that act on an item (hold it) or a user (belong to it): add_item history and the final read."""
        names = self.ids.names
        found: set[str] = set()
        code = self.ids.code(eid)
        if kind == "item" and code >= 0:
            rows = self._op_rows("add_item") & (self.k1 == code)
            found.update(names[k] for k in np.unique(self.k0[rows]).tolist() if k >= 0)
        if kind == "user" and code >= 0 and self._full(kind, eid):  # its orders' creates (even if the final read lost them)
            found.update(oid for (k, oid), row in self._creates_by_entity().items()
                         if k == "order" and int(self.k0[row]) == code and int(self.op[row]) == OP_CODES["create_order"])
        if self.fs is not None:
            t = self.fs.orders.table
            try:
                s = t.strings.index(eid)
            except ValueError:
                s = -1
            if s >= 0 and kind == "item":
                found.update(t.ids[k] for k in np.unique(t.line_order[t.line_item == s]).tolist())
            elif s >= 0 and kind == "user":
                found.update(t.ids[k] for k in np.nonzero(t.user == s)[0].tolist())
        return sorted(found)

    def _rows_of(self, kind: str, eid: str, orders: list[str]) -> np.ndarray:
        code = self.ids.code(eid)
        sel = np.zeros(self.op.size, bool)
        if code >= 0:  # one id may name an item, a user and an order (batch_init ids "0", "1", …)
            sel |= (self.k0 == code) & self._op_rows(*_BY_K0[kind])
            if kind == "item":
                sel |= (self.k1 == code) & self._op_rows("add_item", "remove_item")
        if orders and kind in ("item", "user"):
            codes = self.ids.codes(orders)
            sel |= self._op_rows("checkout") & np.isin(self.k0, codes[codes >= 0])
        rows = set(np.nonzero(sel)[0].tolist())
        if self._full(kind, eid):
            rows.update(self._read_rows(kind, eid))
            create = self._create_row(kind, eid)
            if create is not None:
                rows.add(create)
        return np.array(sorted(rows), np.int64)

    def _full(self, kind: str, eid: str) -> bool:
        """Whether the story lists the entity's create and reads: always for ``explain``; in the report, only
        for an entity the final read did not return (they cost a pass over the trace and the reads' args)."""
        if self._with_reads == "all":
            return True
        fs = self.fs
        return fs is not None and eid not in fs.section(kind)

    # --- the story ------------------------------------------------------------------------------

    def _qty(self, kind: str, eid: str, order: str) -> int | None:
        """Units of ``eid`` (item) or credit (user) a checkout of ``order`` moves, from the final read or add_item
        (None: a user's cost of an order the final read did not return)."""
        st = self.final_order(order)
        if kind == "item":
            if st is not None:
                return st.quantities[eid]
            oc, ic = self.ids.code(order), self.ids.code(eid)
            rows = self._op_rows("add_item") & (self.k0 == oc) & (self.k1 == ic) & (self.outcome == 0)
            return int(self.num[rows].sum())
        return st.total_cost if st is not None else None

    def _amount(self, kind: str, eid: str, op: str, row: int, order: str | None) -> int | None:
        n = int(self.num[row])
        if op in ("add_stock", "add_funds"):
            return n
        if op in ("subtract_stock", "pay"):
            return -n
        if op == "checkout" and order is not None and kind in ("item", "user"):
            q = self._qty(kind, eid, order)
            return None if q is None else -q
        if op == "add_item" and kind == "order":
            return n
        return None

    def story(self, kind: str, eid: str, anomaly: Anomaly | None = None) -> Story:
        """The story of ``eid`` (an ``item``, ``user`` or ``order``), explaining ``anomaly`` when given."""
        if kind not in ENTITY_KINDS:
            return _aggregate_story(eid, anomaly)
        orders = self._orders_of(kind, eid) if kind in ("item", "user") else []
        rows = self._rows_of(kind, eid, orders)
        c = self.r.cols
        sent = c["sent"][rows]
        order_by = np.lexsort((c["intended"][rows], np.where(np.isfinite(sent), sent, np.inf)))
        rows = rows[order_by]
        told, omitted = rows[:MAX_STORY_REQUESTS], max(0, rows.size - MAX_STORY_REQUESTS)
        reqs = self._requests(kind, eid, told)
        arithmetic, headline, final = _arithmetic(self, kind, eid, rows, anomaly)
        return Story(kind, eid, anomaly, headline, tuple(arithmetic), tuple(reqs), omitted, final)

    def _requests(self, kind: str, eid: str, rows: np.ndarray) -> list[StoryRequest]:
        c, names = self.r.cols, self.ids.names
        sent = [_ms(x) for x in c["sent"][rows].tolist()]
        done = [_ms(x) for x in c["done"][rows].tolist()]
        ops = [OP_NAMES[int(self.op[row])] for row in rows.tolist()]
        orders = [names[int(self.k0[row])] if op in _VIA_ORDER and int(self.k0[row]) >= 0 else None
                  for op, row in zip(ops, rows.tolist())]
        amounts = [self._amount(kind, eid, op, row, order) for op, row, order in zip(ops, rows.tolist(), orders)]
        # Only the writes race: requests that move the entity's stock / credit (or, for an order, change it).
        racing = [a is not None or op == "checkout" or (kind == "order" and op in _VIA_ORDER)
                  for op, a in zip(ops, amounts)]
        conc = mark_concurrent([s if w else None for s, w in zip(sent, racing)], done)
        out = []
        for k, row in enumerate(rows.tolist()):
            op, order = ops[k], orders[k]
            outcome = OUTCOMES[int(self.outcome[row])]
            status = int(c["status"][row])
            answer = self.r.error_text(row) or ("answered 2xx" if outcome == "ok" else "")
            out.append(StoryRequest(k + 1, row, int(c["sid"][row]), int(c["step"][row]), op, order,
                                    amounts[k], _ms(float(c["intended"][row])),
                                    sent[k], done[k], outcome, status, answer, conc[k]))
        return out


def _create_rows(results: Results, path: Path | None, named: bool) -> dict[tuple[str, str], int]:
    """(kind, id) -> row of its create request, matched through the bind symbols of the run's trace at
    ``path`` (empty without it). A trace the user ``named`` that cannot be read is an ExplainError."""
    from ..traces.stream import FormatError
    from ..traces.trace import TraceReader, is_step

    if path is None:
        return {}
    by_symbol = results.bindings
    wanted: dict[tuple[int, int], tuple[str, str]] = {}
    kind_of_create = {op: kind for kind, op in CREATE_OP.items()}
    try:
        with TraceReader(path) as tr:
            for s in tr:
                for k, st in enumerate(s["steps"]):
                    sym = st["bind"] if is_step(st) else None  # a step not of the format names nothing
                    if sym and sym in by_symbol and st["op"] in CREATE_OP.values():
                        wanted[(int(s["sid"]), k)] = (kind_of_create[st["op"]], str(by_symbol[sym]))
    except (FormatError, OSError) as e:
        if named:  # named by the user: say so; found by name: quietly no creates
            raise ExplainError(str(e)) from None
        return {}
    c = results.cols
    out: dict[tuple[str, str], int] = {}
    creates = np.nonzero(np.isin(c["op"], [OP_CODES[o] for o in CREATE_OP.values()]))[0]
    for row, sid, step in zip(creates.tolist(), c["sid"][creates].tolist(), c["step"][creates].tolist()):
        key = wanted.get((sid, step))
        if key is not None:
            out[key] = row
    return out


def _run_trace(results: Results, trace: str | Path | None) -> Path | None:
    """The run's trace file if it is the one the run replayed (same digest, or a readable trace when the
    run recorded none). Named by the user (``trace``): ExplainError when it is not; found by name: None."""
    from ..traces.stream import FormatError, file_digest
    from ..traces.trace import TraceReader

    path = _trace_path(results, trace)
    if path is None:
        return None
    want = results.header_record.trace.digest
    try:
        if want is not None and file_digest(path) != want:
            problem = "not the trace this run replayed (its digest differs from the run's)"
        else:
            with TraceReader(path):  # the run recorded no digest: at least a trace file
                problem = None
    except (FormatError, OSError) as e:
        problem = str(e).removeprefix(f"{path}: ")
    if problem is None:
        return path
    if trace is not None:  # named by the user: say so; found by name: quietly not this run's trace
        raise ExplainError(f"{trace}: {problem}")
    return None


def _trace_path(results: Results, trace: str | Path | None) -> Path | None:
    """The run's trace file: as given, else as the header names it (as is, or beside the results file)."""
    if trace is not None:
        return Path(trace)
    name = results.header_record.trace.path
    if not name:
        return None
    for p in (Path(name), Path(results.path).parent / Path(name).name):
        if p.is_file():
            return p
    return None


def _fmt(v: Any) -> str:
    return f"{v[0]}..{v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2 else str(v)


def _aggregate_story(eid: str, anomaly: Anomaly | None) -> Story:
    if anomaly is None:
        return Story("aggregate", eid, None, "", ("trace bound None, run has None",), (), 0, None)
    a = anomaly
    lines = a.arithmetic or (f"trace bound {_fmt(a.expected)}, run has {_fmt(a.actual)}",)
    return Story("aggregate", eid, anomaly, told_headline(a), tuple(lines), (), 0, a.actual)


def _outcome_counts(st: RunStories, rows: np.ndarray) -> tuple[int, int, int]:
    o = st.outcome[rows]
    return int(np.count_nonzero(o == 0)), int(np.count_nonzero(o == 1)), int(np.count_nonzero((o >= 2) & (o != SKIPPED)))


def _arithmetic(st: RunStories, kind: str, eid: str, rows: np.ndarray, anomaly: Anomaly | None
                ) -> tuple[list[str], str, Any]:
    """(lines, headline, final value) for the entity's anomaly, in units."""
    fs = st.fs
    if kind == "order":
        lines, head, final = _order_arithmetic(st, eid, rows)
    else:
        lines, head, final = _ledger_arithmetic(st, kind, eid, rows)
    if fs is not None and final is None:
        why = fs.missing[kind].get(eid)  # keyed by entity id
        create = st._create_row(kind, eid)
        created = ""
        if create is not None and int(st.outcome[create]) == 0:
            # The request line's own rounded milliseconds (_ms), so the two never differ in the last digit.
            created = f"created with a 2xx at {_ms(float(st.r.cols['done'][create])):.1f} ms; "
        gone = [r for r in rows.tolist() if int(st.op[r]) == OP_CODES[FIND_OP[kind]] and int(st.outcome[r]) == 1]
        reads = f"{plural(len(gone), 'read')} answered 4xx (not found); " if gone else ""
        lines.append(f"final read: {why or 'not read back'}")
        head = f"{created}{reads}the final read did not find {named(kind, eid)}" if (created or reads or why) else head
    if anomaly is not None:  # the checker's own words (and, when it gives them, its sum and possible causes)
        head_a = told_headline(anomaly)
        lines.append(f"checker: {head_a or anomaly.detail}")
        lines += [f"  {x}" for x in anomaly.arithmetic if x != head_a]
        if anomaly.candidates:
            lines.append("possible causes (not asserted): " + "; ".join(map(str, anomaly.candidates)))
    return lines, head, final


def _ledger_arithmetic(st: RunStories, kind: str, eid: str, rows: np.ndarray) -> tuple[list[str], str, Any]:
    """Stock of an item or credit of a user: what it started with, what the 2xx answers took, what was read."""
    add_op, sub_op = ("add_stock", "subtract_stock") if kind == "item" else ("add_funds", "pay")
    what, unit = ("stock", "unit") if kind == "item" else ("credit", "credit")
    ops = st.op[rows]
    initial = _batch_initial(st, kind, eid)
    lines: list[str] = []
    start = initial
    if initial:
        lines.append(f"{what} at batch_init: {initial}")
    for op, sign in ((add_op, 1), (sub_op, -1)):
        r = rows[(ops == OP_CODES[op]) & (st.outcome[rows] == 0)]
        if r.size:
            amount = int(st.num[r].sum())
            start += sign * amount
            lines.append(f"{'+' if sign > 0 else '-'}{amount} by {plural(int(r.size), op)} answered 2xx")
        unc = rows[(ops == OP_CODES[op]) & (st.outcome[rows] >= 2) & (st.outcome[rows] != SKIPPED)]
        if unc.size:
            lines.append(f"{plural(int(unc.size), op)} unanswered ({int(st.num[unc].sum())} in all may or may not "
                         "have taken effect)")
    co = rows[ops == OP_CODES["checkout"]]
    names = st.ids.names
    co_orders = [names[int(k)] if k >= 0 else "?" for k in st.k0[co].tolist()]
    take = [st._qty(kind, eid, o) for o in co_orders]
    ok_idx = [k for k in range(co.size) if int(st.outcome[co[k]]) == 0]
    n_ok, n_fail, n_unans = _outcome_counts(st, co)
    took = sum(take[k] or 0 for k in ok_idx)
    unknown = sum(1 for k in ok_idx if take[k] is None)
    verb = "took" if kind == "item" else "cost"
    units = plural(took, "unit") if kind == "item" else f"{took} credit"
    lines.append(f"{what} was {start} before the checkouts")
    lines.append(f"{plural(n_ok, 'checkout')} answered 2xx {verb} {units}"
                 + (f" (orders {_names([co_orders[k] for k in ok_idx])})" if ok_idx else "")
                 + (f"; the cost of {plural(unknown, 'order')} is unknown (not read back)" if unknown else ""))
    if n_fail or n_unans:
        lines.append(f"{n_fail} refused (4xx), {n_unans} unanswered")
    paid = _paid_orders(st, co_orders)
    if paid is not None and paid != sorted(set(co_orders[k] for k in ok_idx)):
        paid_take = sum(st._qty(kind, eid, o) or 0 for o in paid)
        lines.append(f"{plural(len(paid), 'order')} paid at the final read, {verb} {paid_take}")
    left = start - took
    lines.append(f"a serial order of the 2xx answers leaves {start} - {took} = {left}"
                 + (f": below zero, so no serial order lets all {n_ok} succeed" if left < 0 else ""))
    final = None
    if st.fs is not None:
        ent = (st.fs.items if kind == "item" else st.fs.users).get(eid)
        if ent is not None:
            final = ent.stock if kind == "item" else ent.credit
    if final is not None:
        diff = final - left
        lines.append(f"final read: {final}" + ("" if diff == 0 else
                                               f" ({abs(diff)} {'more' if diff > 0 else 'less'} than that)"))
    head = (f"{plural(n_ok, 'checkout')} answered 2xx {verb} {units}; {what} was {start}; "
            f"final {'not read' if final is None else final}")
    return lines, head, final


def _paid_orders(st: RunStories, orders: list[str]) -> list[str] | None:
    if st.fs is None:
        return None
    return sorted({o for o in orders if (s := st.final_order(o)) is not None and s.paid})


def _batch_initial(st: RunStories, kind: str, eid: str) -> int:
    """The batch_init stock or credit of ``eid`` (0 when no batch_init created it)."""
    if not eid.isdigit():
        return 0
    op = OP_CODES["batch_init_stock" if kind == "item" else "batch_init_users"]
    value = 0
    for row, args in sorted(st.r.argcols.extra.items()):
        if int(st.op[row]) == op and int(st.outcome[row]) != 1 and len(args) > 1 and int(eid) < as_int(args[0]):
            value = as_int(args[1])
    return value


def _batch_size(st: RunStories, kind: str) -> int:
    """How many ids (``"0"`` … ``"n-1"``) the run's ``batch_init`` of ``kind`` created at most (0: none)."""
    op = OP_CODES[{"item": "batch_init_stock", "user": "batch_init_users", "order": "batch_init_orders"}[kind]]
    return max((as_int(args[0]) for row, args in st.r.argcols.extra.items()
                if int(st.op[row]) == op and int(st.outcome[row]) != 1 and args), default=0)


def _order_arithmetic(st: RunStories, eid: str, rows: np.ndarray) -> tuple[list[str], str, Any]:
    ops = st.op[rows]
    co = rows[ops == OP_CODES["checkout"]]
    n_ok, n_fail, n_unans = _outcome_counts(st, co)
    lines = [f"checkouts: {n_ok} answered 2xx, {n_fail} refused (4xx), {n_unans} unanswered"]
    adds = rows[(ops == OP_CODES["add_item"]) & (st.outcome[rows] == 0)]
    if adds.size:
        names = st.ids.names
        per: Counter[str] = Counter()
        for k1, q in zip(st.k1[adds].tolist(), st.num[adds].tolist()):
            per[names[k1]] += q
        lines.append("lines added with 2xx: " + ", ".join(f"{q} x {i}" for i, q in sorted(per.items())))
    s = st.final_order(eid)
    final = None
    if s is not None:
        final = s.paid
        lines.append(f"final read: {'paid' if s.paid else 'unpaid'}, lines "
                     + (", ".join(f"{q} x {i}" for i, q in s.lines) or "none") + f", total_cost {s.total_cost}")
    head = (f"{plural(n_ok, 'checkout')} answered 2xx, {n_fail} refused; "
            f"final {'not read' if s is None else 'paid' if s.paid else 'unpaid'}")
    return lines, head, final


def explain_run(results: Results, ids: tuple[str, ...] = (), anomalies: list[Anomaly] | None = None, *,
                trace: str | Path | None = None) -> list[Story]:
    """Stories of ``ids`` (an entity id, ``kind:id`` such as ``user:0``, or an anomaly kind for its first
    anomaly), or of the first anomaly of each kind when ``ids`` is empty.

    ``anomalies`` are the check's. ExplainError for an id the run does not know.
    """
    st = RunStories(results, trace=trace)  # checks a trace the user named
    anomalies = anomalies or []
    by_id: dict[str, Anomaly] = {}
    for a in anomalies:
        by_id.setdefault(str(a.id), a)
    first_of_kind: dict[str, Anomaly] = {}
    for a in anomalies:
        first_of_kind.setdefault(a.kind, a)
    wanted: list[tuple[str, str, Anomaly | None]] = []
    if not ids:
        wanted = [(a.entity, str(a.id), a) for a in first_of_kind.values()]
    by_key: dict[tuple[str, str], Anomaly] = {}
    for a in anomalies:
        by_key.setdefault((a.entity, str(a.id)), a)
    for eid in ids:
        if eid in first_of_kind and eid not in by_id and st.kind_of(eid) is None:
            a = first_of_kind[eid]
            wanted.append((a.entity, str(a.id), a))
            continue
        prefix, _, rest = eid.partition(":")
        if prefix in ENTITY_KINDS and rest:  # "item:0": one id may name an item, a user and an order
            if (prefix, rest) not in by_key and not st.knows(prefix, rest):
                raise ExplainError(f"{Path(results.path).name}: no {prefix} {rest!r} in this run")
            wanted.append((prefix, rest, by_key.get((prefix, rest))))
            continue
        a = by_id.get(eid)
        kind = a.entity if a is not None else st.kind_of(eid)
        if kind is None:
            raise ExplainError(f"{Path(results.path).name}: no item, user or order {eid!r} in this run "
                               f"(and no anomaly of that kind)")
        wanted.append((kind, eid, a))
    return [st.story(kind, eid, a) for kind, eid, a in wanted]


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render_story_lines(s: Story) -> list[str]:
    """Text lines of one story: headline, the requests table, the arithmetic."""
    a = s.anomaly
    kind = f" — {a.kind}" if a else ""
    lines = [f"{named(s.entity, s.id)}{kind}: {s.headline}"]
    if s.requests:
        lines.append(f"  {'#':>3} {'session':>7} {'step':>4}  {'operation':<15}{'order':<12}{'amount':>7}"
                     f"{'intended':>10}{'sent':>10}{'done':>10}  {'status':<6} concurrent  answer")
        for r in s.requests:
            amount = "" if r.amount is None else f"{r.amount:+d}"
            conc = ("#" + ",#".join(map(str, r.concurrent[:4])) + ("…" if len(r.concurrent) > 4 else "")
                    if r.concurrent else "")
            status = r.status if r.status else r.outcome
            lines.append(f"  {r.n:>3} {r.sid:>7} {r.step:>4}  {r.op:<15}{(r.order or '')[:11]:<12}{amount:>7}"
                         f"{_cell(r.intended_ms):>10}{_cell(r.sent_ms):>10}{_cell(r.done_ms):>10}  {status!s:<6} "
                         f"{conc:<11} {r.answer if len(r.answer) <= 64 else r.answer[:63] + '…'}")
        lines.append("  (times in ms on the run's clock; concurrent = [sent, done] overlaps those requests)")
    if s.omitted:
        lines.append(f"  … {s.omitted} more requests touched it (not shown)")
    lines.append("  arithmetic:")
    lines += [f"    {x}" for x in s.arithmetic]
    return lines


def render_explain_text(stories: list[Story], *, verdict: str | None = None) -> str:
    """The text of ``explain``: one block per story."""
    if not stories:
        return f"no anomalies to explain{f' (verdict: {verdict})' if verdict else ''}\n"
    out: list[str] = []
    for s in stories:
        out += render_story_lines(s) + [""]
    return "\n".join(out)


def explain_json(stories: list[Story], *, run: str, verdict: str | None) -> dict:
    """The JSON form of ``explain`` (stable keys)."""
    return {"schema": EXPLAIN_SCHEMA, "run": run, "verdict": verdict, "stories": [s.as_dict() for s in stories]}


MAX_REPORT_STORIES = 6  # stories the HTML report tells (the first anomaly of each kind first)


def report_stories(results: Results, anomalies: list[Anomaly], *, limit: int = MAX_REPORT_STORIES) -> list[Story]:
    """Stories of a run's per-entity anomalies for the report: the first of each kind, then the next ones."""
    per_entity = [a for a in anomalies if a.entity in ENTITY_KINDS]
    if not per_entity or results.argcols is None:
        return []
    firsts: dict[str, Anomaly] = {}
    for a in per_entity:
        firsts.setdefault(a.kind, a)
    chosen = list(firsts.values())
    for a in per_entity:
        if len(chosen) >= limit:
            break
        if a not in chosen:
            chosen.append(a)
    st = RunStories(results, reads="lost")
    return [st.story(a.entity, str(a.id), a) for a in chosen[:limit]]
