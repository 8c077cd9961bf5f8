"""What a trace holds: header, phases, scenario mix, operations, expectations, symbol checks.

:func:`inspect_trace` streams a trace once and returns a :class:`TraceInspection`;
:func:`render_inspect` formats it for people and :meth:`TraceInspection.to_json` is what
``wdm-replay inspect --json`` prints (stable keys, docs/traces.md).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from ..operations import BUILTIN_ROUTES, OPERATIONS
from ..bugclasses import BUG_CLASSES, ExerciseCounter, class_counts, quantity_counts
from ..traces import TraceReader
from ..traces.keys import step_problem
from ..traces.trace import EXPECT_VALUES, ShrinkNote, TraceHeader
from .stress import StressParams, effective_weights

MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class SymbolReport:
    """The symbol check of a whole trace: symbols bound, problems found, the first few of them."""

    bound: int
    problems: int
    examples: tuple[str, ...]

    def to_json(self) -> dict:
        return {"bound": self.bound, "problems": self.problems, "examples": list(self.examples)}


@dataclass(frozen=True, slots=True)
class MixTest:
    """Pearson's chi-square test of the scenario runs against the weights (chi2 None: infinite)."""

    chi2: float | None
    dof: int
    p: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ScenarioShare:
    """One scenario's runs, requests and share of the runs; for stress also its weight and z-score."""

    runs: int
    requests: int
    share: float
    weight: Any = None  # as the user gave it (a seed weight, or the s7/s8 share); None: no weights
    weight_share: float | None = None
    z: float | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"runs": self.runs, "requests": self.requests, "share": self.share}
        if self.weight_share is not None:
            out.update(weight=self.weight, weight_share=self.weight_share, z=self.z)
        return out


@dataclass(frozen=True, slots=True)
class PhaseSummary:
    """One phase: its sessions and requests, its last session start, its schedule's end at speed 1."""

    name: str
    sessions: int
    requests: int
    last_start: float
    span: float


@dataclass(frozen=True, slots=True)
class ClassExercise:
    """How often a trace holds the behaviour that exposes one bug class."""

    name: str
    title: str
    count: int
    needs_fault: bool
    behaviour: str


@dataclass(frozen=True, slots=True)
class Exercises:
    """Per bug class, the trace's exposing behaviour: from the header, or computed for older traces."""

    source: str  # "header" or "computed"
    classes: tuple[ClassExercise, ...]

    @property
    def exercised(self) -> int:
        return sum(1 for c in self.classes if c.count)

    def to_json(self) -> dict:
        return {"source": self.source, "exercised": self.exercised, "classes": [asdict(c) for c in self.classes]}


@dataclass(frozen=True, slots=True)
class TraceInspection:
    """What :func:`inspect_trace` finds in a trace."""

    file: str
    header: TraceHeader
    phases: tuple[PhaseSummary, ...]
    scenario_mix: dict[str, ScenarioShare]  # by scenario name, declared ones first
    mix_test: MixTest | None
    ops: dict[str, int]  # by count, descending
    expects: dict[str, int]  # ok, fail, any
    expects_by_op: dict[str, dict[str, int]]
    symbols: SymbolReport
    exercises: Exercises
    trailer_sessions: int
    trailer_requests: int

    @property
    def scenario_runs(self) -> int:
        return sum(m.runs for m in self.scenario_mix.values())

    def to_json(self) -> dict:
        """The stable keys of ``inspect --json`` (docs/traces.md)."""
        h = self.header
        return {
            "file": self.file,
            "format": h.format, "version": h.version, "generator": h.generator,
            "workload": h.workload, "seed": h.seed, "dialect": h.dialect,
            "params": dict(h.params),
            "sessions": h.sessions, "requests": h.requests,
            "duration": h.duration,
            "expect": dict(h.expect), "expect_range": None if h.expect_range is None else dict(h.expect_range),
            "phases": [asdict(p) for p in self.phases],
            "scenario_runs": self.scenario_runs,
            "scenario_mix": {n: m.to_json() for n, m in self.scenario_mix.items()},
            "mix_test": None if self.mix_test is None else self.mix_test.to_json(),
            "ops": dict(self.ops),
            "expects": dict(self.expects),
            "expects_by_op": {k: dict(v) for k, v in self.expects_by_op.items()},
            "symbols": self.symbols.to_json(),
            "exercises": self.exercises.to_json(),
            "trailer": {"sessions": self.trailer_sessions, "requests": self.trailer_requests},
            "shrink": None if h.shrink is None else h.shrink.to_record(),
        }


class SymbolChecker:
    """Checks the trace's symbol rules while sessions stream past.

    A step may reference only symbols bound earlier in its own session or in an earlier phase;
    every symbol is bound once in the whole trace. Also checks each step's op, arity and expect.
    """

    def __init__(self) -> None:
        self.visible: set[str] = set()  # bound in earlier phases
        self.phase_binds: set[str] = set()  # bound in the current phase (by any session)
        self.phase = -1
        self.bound = 0
        self.problems = 0
        self.examples: list[str] = []

    def _problem(self, text: str) -> None:
        self.problems += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)

    def check(self, session: dict) -> tuple[int, ...]:
        """Check one session (sessions must arrive in file order); the positions of its steps that are
        not steps of the format (usually none), which nothing else should read."""
        sid, phase = session["sid"], session["phase"]
        if phase != self.phase:
            if phase < self.phase:
                self._problem(f"session {sid}: phase {phase} after phase {self.phase}")
            self.visible |= self.phase_binds
            self.phase_binds = set()
            self.phase = phase
        local: set[str] = set()
        refused: list[int] = []
        visible, phase_binds = self.visible, self.phase_binds
        for k, st in enumerate(session["steps"]):
            problem = step_problem(st)
            if problem is not None:  # what the replay refuses too, in its words
                self._problem(f"session {sid} step {k} {problem}")
                refused.append(k)
                continue
            op, args, bind, expect = st["op"], st["args"], st["bind"], st["expect"]
            spec = OPERATIONS.get(op)
            if spec is None:
                self._problem(f"session {sid} step {k}: unknown operation {op!r}")
            elif len(args) != len(spec.params):
                self._problem(f"session {sid} step {k}: {op} takes {len(spec.params)} args, got {len(args)}")
            if expect not in EXPECT_VALUES:
                self._problem(f"session {sid} step {k}: expect {expect!r} is not ok/fail/any")
            for a in args:
                if isinstance(a, str) and a.startswith("$") and a not in local and a not in visible:
                    where = "later in its phase or by another session" if a in phase_binds else "nowhere before"
                    self._problem(f"session {sid} step {k}: {op} uses {a}, bound {where}")
            if bind is not None:
                if bind in local or bind in phase_binds or bind in visible:
                    self._problem(f"session {sid} step {k}: symbol {bind} bound twice")
                local.add(bind)
                self.bound += 1
        phase_binds |= local
        return tuple(refused)

    def result(self) -> SymbolReport:
        """What the check found."""
        return SymbolReport(self.bound, self.problems, tuple(self.examples))


def validate_symbols(sessions: Iterable[dict]) -> SymbolReport:
    """Check every session's symbol use (see :class:`SymbolChecker`)."""
    c = SymbolChecker()
    for s in sessions:
        c.check(s)
    return c.result()


def mix_test(runs: list[int], weights: list[float]) -> MixTest | None:
    """Pearson's chi-square test of scenario run counts against weights.

    Scenarios of weight 0 are left out (a run of one would make the mix impossible: p = 0).
    None when fewer than two scenarios have weight or there are no runs.
    """
    total = sum(runs)
    wsum = sum(weights)
    cells = [(n, w) for n, w in zip(runs, weights) if w > 0]
    if total == 0 or wsum <= 0 or len(cells) < 2:
        return None
    if any(n > 0 for n, w in zip(runs, weights) if w <= 0):
        return MixTest(None, len(cells) - 1, 0.0)  # None: infinite (JSON has no inf)
    from scipy.special import chdtrc  # the chi-square survival function (Cephes); imported where used

    chi2 = sum((n - total * w / wsum) ** 2 / (total * w / wsum) for n, w in cells)
    return MixTest(chi2, len(cells) - 1, float(chdtrc(len(cells) - 1, chi2)))


def _stress_weights(h: TraceHeader) -> list[float] | None:
    """Each scenario's expected share of a stress trace's runs (None for other workloads)."""
    if h.workload != "stress":
        return None
    try:
        return effective_weights(StressParams.from_record(h.params))
    except (TypeError, ValueError, ZeroDivisionError, KeyError):
        return None  # a hand-edited header (no weights, or none above 0): the mix is shown without weights


def _ns(bind: str) -> str:
    return bind.rsplit(".", 1)[0]


def inspect_trace(path: str | Path) -> TraceInspection:
    """What the trace at ``path`` holds (streams the file once)."""
    with TraceReader(path) as r:
        h = r.trace_header
        names = list(h.scenarios)
        runs: Counter[str] = Counter(dict.fromkeys(names, 0))  # scenario -> runs (declared ones first)
        sc_requests: Counter[str] = Counter(dict.fromkeys(names, 0))
        ops: Counter[str] = Counter()
        expects = {e: 0 for e in EXPECT_VALUES}
        by_op: defaultdict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(EXPECT_VALUES, 0))
        ph = [{"name": n, "sessions": 0, "requests": 0, "last_start": 0.0, "span": 0.0} for n in h.phase_names]
        checker = SymbolChecker()
        # Older traces carry no "exercises": count them here, from the sessions streaming past.
        counter = None if h.exercises is not None else ExerciseCounter(
            len(h.phases), quantity_counts(h.dialect, BUILTIN_ROUTES))
        for s in r:
            refused = checker.check(s)
            if counter is not None:
                counter.add(s["sid"], s["phase"], s["steps"])
            p = ph[s["phase"]]
            p["sessions"] += 1
            p["requests"] += len(s["steps"])
            if s["at"] > p["last_start"]:
                p["last_start"] = s["at"]
            cur_sc, cur_ns = None, None
            think = 0.0
            for k, st in enumerate(s["steps"]):
                if refused and k in refused:
                    continue  # not a step of the format: the checker reports it
                op, sc, e, bind = st["op"], st["scenario"], st["expect"], st["bind"]
                think += st["think"] or 0.0
                ops[op] += 1
                row = by_op[op]  # every operation has its row (zeros when no step of it has a valid expect)
                if e in expects:
                    expects[e] += 1
                    row[e] += 1
                # A scenario run is a block of one scenario's steps in a session; a new symbol
                # namespace ("$s3.r1.") starts a new run of the same scenario (closed model).
                ns = _ns(bind) if isinstance(bind, str) else cur_ns
                if sc != cur_sc or (bind is not None and ns != cur_ns):
                    runs[sc] += 1
                cur_sc, cur_ns = sc, ns
                sc_requests[sc] += 1
            # span: when the phase's schedule ends at speed 1, response times not counted
            if s["at"] + think > p["span"]:
                p["span"] = s["at"] + think
        trailer = r.trailer
    total_runs = sum(runs.values())
    weights = _stress_weights(h)
    wsum = sum(weights) if weights else 0.0
    # What the user gave: the six seed weights, then s7's and s8's shares (shown beside the share).
    sp = StressParams.from_record(h.params)  # weights found: a stress trace's (with the s7/s8 shares since they exist)
    given = list(sp.weights) + [s for s in (sp.repeat_share, sp.recheckout_share) if s is not None] if weights else []
    mix: dict[str, ScenarioShare] = {}
    for k, n in enumerate(runs):
        share = runs[n] / total_runs if total_runs else 0.0
        if weights and k < len(weights) and wsum > 0:
            ws = weights[k] / wsum
            se = math.sqrt(ws * (1 - ws) / total_runs) if total_runs and 0 < ws < 1 else 0.0
            mix[n] = ScenarioShare(runs[n], sc_requests[n], share, given[k] if k < len(given) else weights[k], ws,
                                   (share - ws) / se if se > 0 else (0.0 if share == ws else None))
        else:
            mix[n] = ScenarioShare(runs[n], sc_requests[n], share)
    test = mix_test([runs[n] for n in names], weights) if weights and len(weights) == len(names) else None
    return TraceInspection(
        str(path), h, tuple(PhaseSummary(**p) for p in ph), mix, test,
        dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))), expects, {k: by_op[k] for k in sorted(by_op)},
        checker.result(),
        _exercises(h.exercises if counter is None else counter.result(), "header" if counter is None else "computed"),
        trailer.sessions, trailer.requests)


def _exercises(counts: dict, source: str) -> Exercises:
    """Per bug class: how often the trace contains its exposing behaviour."""
    n = class_counts(counts)
    return Exercises(source, tuple(ClassExercise(c.name, c.title, n[c.name], c.needs_fault, c.behaviour)
                                   for c in BUG_CLASSES))


def _exercise_lines(ex: Exercises) -> list[str]:
    n = len(ex.classes)
    src = "" if ex.source == "header" else " (computed: the header predates it)"
    faulted = sum(1 for c in ex.classes if c.count and c.needs_fault)
    also = f", {faulted} of them only when replayed with --faults" if faulted else ""
    out = [f"bug classes exercised: {ex.exercised} of {n}{also}{src}"]
    for c in ex.classes:
        if c.count:
            note = "  (needs a fault: replay --faults)" if c.needs_fault else ""
            out.append(f"  {c.title:<28} {c.count:>10,}{note}")
    for c in ex.classes:
        if not c.count:
            need = c.behaviour.split(" (counted per")[0]
            out.append(f"  {c.title:<28} {'NOT EXERCISED':>10} — needs {need}")
    return out


def render_inspect(ins: TraceInspection) -> str:
    """The summary as text for people."""
    h = ins.header
    out = [f"{ins.file}: {h.format} v{h.version} ({h.generator})",
           f"workload {h.workload}  seed {h.seed}  dialect {h.dialect}",
           "params   " + " ".join(f"{k}={_fmt(v)}" for k, v in (h.params or {}).items() if v is not None),
           f"sessions {h.sessions:,}  requests {h.requests:,}  schedule {h.duration:.3f} s at speed 1"]
    if h.shrink is not None:
        out.append(_shrink_line(h.shrink))
    exp = h.expect
    out.append("expect   " + (" ".join(f"{k}={v}" for k, v in exp.items()) if exp else "(no aggregate outcome is determined)"))
    if h.expect_range and not exp:
        out.append("range    " + " ".join(f"{k}={v[0]}..{v[1]}" for k, v in h.expect_range.items()))
    out.append("")
    out.append("phases")
    for i, p in enumerate(ins.phases):
        out.append(f"  {i} {p.name:<12} {p.sessions:>10,} sessions {p.requests:>11,} requests  "
                   f"last start {p.last_start:.3f} s")
    out.append("")
    out.append(f"scenario mix ({ins.scenario_runs:,} runs)")
    for name, m in ins.scenario_mix.items():
        line = f"  {name:<20} {m.runs:>10,} runs {100 * m.share:6.2f} %"
        if m.weight_share is not None:
            z = "n/a" if m.z is None else f"{m.z:+.2f}"
            line += f"   weight {_fmt(m.weight)} → {100 * m.weight_share:6.2f} %   z {z}"
        out.append(line)
    t = ins.mix_test
    if t:
        verdict = "consistent with the weights" if t.p >= 0.001 else "NOT consistent with the weights"
        chi2 = "inf (runs of a zero-weight scenario)" if t.chi2 is None else f"{t.chi2:.2f}"
        out.append(f"  chi-square {chi2} on {t.dof} dof, p = {t.p:.3g}: {verdict}")
    out.append("")
    out.append("operations                   count       ok     fail      any")
    for op, n in ins.ops.items():
        e = ins.expects_by_op[op]
        out.append(f"  {op:<22} {n:>11,} {e['ok']:>8,} {e['fail']:>8,} {e['any']:>8,}")
    e = ins.expects
    out.append(f"  {'total':<22} {h.requests:>11,} {e['ok']:>8,} {e['fail']:>8,} {e['any']:>8,}")
    out.append("")
    s = ins.symbols
    if s.problems:
        out.append(f"symbols  {s.bound:,} bound, {s.problems:,} PROBLEMS, e.g.:")
        out.extend(f"  {x}" for x in s.examples)
    else:
        out.append(f"symbols  {s.bound:,} bound, every reference bound earlier in its session or phase")
    out.append("")
    out.extend(_exercise_lines(ins.exercises))
    return "\n".join(out)


def _shrink_line(sh: ShrinkNote) -> str:
    """What a trace written by ``shrink`` reproduces, how often, and from which run."""
    rate = "rate not measured" if sh.hits is None else f"in {sh.hits}/{sh.runs} fresh replays"
    return (f"shrunk   reproduces {sh.kind} on {sh.entity} {sh.role} {rate}; "
            f"from {sh.source_run} ({sh.source_requests} requests)")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ",".join(_fmt(x) for x in v)
    return str(v)
