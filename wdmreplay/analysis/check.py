"""The ``check`` verdict: CLEAN, NOT CLEAN or INCONCLUSIVE, decided by four sections.

- *correctness*: the expectation diff — a 2xx where the trace proves a 4xx, or the reverse; those
  inside a fault window or its recovery are *wrong answers during faults*, counted apart and failing
  the run only with ``strict_faults`` (``check --strict-faults``), so one fault history gives one
  verdict whatever the interleaving (see :mod:`.expectations`);
- *consistency*: the anomalies of the history + final-state checker and the trace's proven bounds;
- *availability*: per operation, the share of requests (every one, whatever it expects) that got an
  answer (2xx/4xx), at least ``min_availability``; with ``strict``, every request answered;
- *coverage*: everything the verdict needs was observed — a complete run, not a lone shard, every
  bound entity read back, from a state shown settled.

A section *fails* when it proves something wrong, is *inconclusive* when it cannot judge. The
verdict is NOT CLEAN (exit 1) when a section fails, else INCONCLUSIVE (exit 3) when one is
inconclusive, else CLEAN (exit 0). Anomalies found on a state that was not shown settled, or on a
partial history, are not proof (a request still in flight may explain them) — except those that no
history explains (negative stock or credit, an order's wrong total). A lone shard is INCONCLUSIVE
whatever it shows: its history is part of the run, its final state the whole shop's.
"""

from __future__ import annotations

import gc
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..operations import CREATE_OP, ENTITY_KINDS, OP_CODES
from ..bugclasses import BugCoverage, verdict_coverage
from ..terms import plural
from ..traces.records import TraceRef
from ..traces.results import INDETERMINATE, OK, Results
from ..traces.trace import run_exercises
from .availability import Availability, compute_availability
from .bounds import BoundCheck, RunTotals, check_bounds
from .consistency import KINDS, Anomaly, Checked, ConsistencyResult, TotalFigures, check_consistency, lost_ids
from .expectations import ExpectationDiff, diff_expectations
from .recovery import action_findings, analyze_faults, apart_windows, has_faults, recovery_findings
from .figures import BenchmarkFigures, benchmark_figures
from .final_state import Settle

CHECK_SCHEMA = "wdm-check/3"
CLEAN, NOT_CLEAN, INCONCLUSIVE = "CLEAN", "NOT CLEAN", "INCONCLUSIVE"
EXIT_CODES = {CLEAN: 0, NOT_CLEAN: 1, INCONCLUSIVE: 3}
SECTIONS = ("correctness", "consistency", "availability", "coverage")
PASS, FAIL, UNJUDGED = "pass", "fail", "inconclusive"
DEFAULT_MIN_AVAILABILITY = 99.0
DEFAULT_MAX_RECOVERY = 10.0  # seconds from a fault's end back to the pre-fault success rate


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the verdict: its status (pass / fail / inconclusive) and why."""

    name: str
    status: str
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"status": self.status, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The verdict of a run: CLEAN / NOT CLEAN / INCONCLUSIVE, its exit code and the deciding sections."""

    verdict: str
    sections: tuple[Section, ...]
    decided_by: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        """0 CLEAN, 1 NOT CLEAN, 3 INCONCLUSIVE."""
        return EXIT_CODES[self.verdict]

    @property
    def by_name(self) -> dict[str, Section]:
        """The sections by name (correctness, consistency, availability, coverage)."""
        return {s.name: s for s in self.sections}

    def reasons(self) -> list[str]:
        """The reasons of the deciding sections, each prefixed with its section."""
        by = self.by_name
        return [f"{name}: {r}" for name in self.decided_by for r in by[name].reasons]


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the final read covered: entities read and missing per kind, settling, shard, completeness."""

    final_state: bool
    read: dict[str, int]
    missing: dict[str, int]
    settle: Settle | None  # None: the final state was read once
    quiesce: object
    indeterminate: int  # requests with no answer (5xx, timeout, connection error)
    shard: str | None
    stopped: tuple[str, ...] = ()  # why the final read's circuit breaker stopped reading (empty: it did not)

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        st = self.settle
        settle = None if st is None else {"requested": st.requested, "settled": st.settled,
                                          "snapshots": st.snapshots, "why": st.why}
        return {"final_state": self.final_state, "read": dict(self.read), "missing": dict(self.missing),
                "settle": settle, "quiesce": self.quiesce, "indeterminate": self.indeterminate,
                "shard": self.shard, "stopped": list(self.stopped)}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything ``check`` found about one run, and its :class:`Verdict`."""

    path: str
    label: str
    complete: bool
    reason: str | None
    policy: str
    strict: bool
    min_availability: float  # percent
    expectations: ExpectationDiff
    consistency: ConsistencyResult
    availability: Availability
    coverage: Coverage
    bounds: tuple[BoundCheck, ...]
    figures: BenchmarkFigures
    verdict: Verdict
    warnings: tuple[str, ...] = ()
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped
    bound_anomalies: tuple[Anomaly, ...] = field(default=())
    max_recovery: float = DEFAULT_MAX_RECOVERY  # seconds (fault runs)
    bug_classes: BugCoverage = field(default_factory=lambda: verdict_coverage(None, False))  # what it covered
    strict_faults: bool = False

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every anomaly (per entity, then the trace's aggregate bounds), in kind order."""
        return sorted(self.consistency.anomalies + list(self.bound_anomalies), key=lambda a: KINDS.index(a.kind))

    @property
    def anomaly_counts(self) -> dict[str, int]:
        """Number of anomalies per primary kind (every kind present, zeros included)."""
        c = Counter(a.kind for a in self.anomalies)
        return {k: c[k] for k in KINDS}  # a Counter: 0 for a kind not found

    @property
    def clean(self) -> bool:
        """Whether the verdict is CLEAN."""
        return self.verdict.verdict == CLEAN

    def to_json(self) -> dict:
        """JSON-ready form: :meth:`as_dict` (``render_json`` takes the report itself)."""
        return self.as_dict()

    def as_dict(self) -> dict:
        """JSON-ready form (schema ``wdm-check/3``, stable keys, documented in docs/analysis.md)."""
        c, v = self.consistency, self.verdict
        return {
            "schema": CHECK_SCHEMA, "path": self.path, "label": self.label,
            "verdict": v.verdict, "exit_code": v.exit_code, "decided_by": list(v.decided_by),
            "sections": {s.name: s.as_dict() for s in v.sections}, "clean": self.clean,
            "complete": self.complete, "reason": self.reason, "undetermined": self.undetermined,
            "recheckout": self.policy, "strict": self.strict, "min_availability": self.min_availability,
            "max_recovery": self.max_recovery, "strict_faults": self.strict_faults, "warnings": list(self.warnings),
            "expectations": self.expectations.as_dict(),
            "availability": self.availability.as_dict(),
            "coverage": self.coverage.as_dict(),
            "bug_classes": self.bug_classes.as_dict(),
            "consistency": {
                "final_state": c.final_state, "checked": c.checked.as_dict(), "checkouts": c.checkouts.as_dict(),
                "anomaly_counts": self.anomaly_counts, "anomalies": [a.as_dict() for a in self.anomalies],
                "aggregates": [b.as_dict() for b in self.bounds], "totals": c.totals.as_dict(),
                "benchmark": self.figures.as_dict(), "notes": c.notes,
            },
        }


def _coverage(results: Results, consistency: ConsistencyResult, shard: str | None) -> Coverage:
    fs = consistency.final
    indet = int(np.count_nonzero(np.isin(results.cols["outcome"], INDETERMINATE)))
    if fs is None:
        return Coverage(False, {k: 0 for k in ENTITY_KINDS}, {}, None, None, indet, shard)
    op, outcome = results.cols["op"], results.cols["outcome"]
    created = {k: int(np.count_nonzero((op == OP_CODES[CREATE_OP[k]]) & (outcome == OK))) for k in ENTITY_KINDS}
    read = {k: fs.read_count(k) for k in ENTITY_KINDS}
    # A definite "not found" is an answer: lost (consistency) when acknowledged, else simply absent.
    # Files without ``bound_not_found`` (older) keep every failed read as not read back.
    old = fs.bound_not_found is None
    lost = Counter({k: len(v) for k, v in lost_ids(consistency.history, fs).items()} if consistency.history else {})
    missing = {k: max(fs.missing_count(k) if old else fs.unanswered_count(k), created[k] - read[k] - lost[k])
               for k in ENTITY_KINDS}
    return Coverage(True, read, {k: n for k, n in missing.items() if n}, fs.settle, fs.quiesce, indet, shard,
                    fs.stopped)


def lone_shard(shard: object) -> bool:
    """Whether a results header's ``shard`` ("i/N") names one shard of several (N > 1)."""
    if not isinstance(shard, str) or "/" not in shard:
        return False
    try:
        return int(shard.split("/", 1)[1]) > 1
    except ValueError:
        return False


def coverage_section(cov: Coverage, complete: bool, reason: str | None) -> tuple[Section, bool]:
    """The coverage section, and whether the state and history can prove anomalies (settled, whole)."""
    why: list[str] = []
    judgeable = True
    if lone_shard(cov.shard):
        why.append(f"a lone shard ({cov.shard}): merge the shards with `wdm-replay merge` and check the merged file")
        judgeable = False
    if not complete:
        why.append(f"partial run ({reason or 'interrupted'}): the history may lack requests")
        judgeable = False
    if not cov.final_state:
        why.append("no final state recorded (replay with the final read)")
    else:
        if cov.missing:
            why.append("not read back: " + ", ".join(f"{n} {k}(s)" for k, n in cov.missing.items()))
        why.extend(cov.stopped)  # "final read stopped after K connection failures in a row …"
        if cov.settle is not None and not cov.settle.settled:
            st = cov.settle
            why.append(f"final state did not settle within {st.requested:g} s "
                       f"({st.snapshots} snapshots{'; ' + st.why if st.why else ''})")
            judgeable = False
        elif cov.settle is None and cov.indeterminate:
            why.append(f"{cov.indeterminate} request(s) got no answer and the final state was read once, "
                       f"not shown settled: replay with --settle")
            judgeable = False
    return Section("coverage", UNJUDGED if why else PASS, tuple(why)), judgeable


def _proof_without_settle(a: Anomaly) -> bool:
    """Anomalies no in-flight request can explain: negative stock/credit, an order's wrong total, an
    acknowledged entity answered "not found" (no request deletes one)."""
    return a.kind in ("wrong_total", "lost_entity") or (a.kind == "oversell" and isinstance(a.actual, int) and a.actual < 0)


def consistency_section(anomalies: list[Anomaly], final_state: bool, judgeable: bool, checked: Checked) -> Section:
    """The consistency section: anomalies prove a fault when the state and history are whole."""
    if not anomalies:
        if not final_state:
            return Section("consistency", UNJUDGED, ("not checked: no final state",))
        if not (checked.items or checked.users or checked.orders):
            return Section("consistency", UNJUDGED, ("nothing checked: the final read returned no item, user or order",))
        return Section("consistency", PASS)
    counts = Counter(a.kind for a in anomalies)
    text = ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])
    lost = _lost_reasons(anomalies)
    if judgeable:  # the same words as the details' count line, so the text prints it once
        return Section("consistency", FAIL, (f"{plural(len(anomalies), 'anomaly', 'anomalies')}: {text}", *lost))
    proof = [a for a in anomalies if _proof_without_settle(a)]
    if proof:
        return Section("consistency", FAIL, (f"{plural(len(proof), 'anomaly', 'anomalies')} no in-flight request explains "
                                             f"(of {len(anomalies)}: {text})", *lost))
    return Section("consistency", UNJUDGED, (f"{plural(len(anomalies), 'anomaly', 'anomalies')} ({text}) on a state or history "
                                              f"that is not whole: not proof",))


LOST_NAMED = 5  # ids named per kind in the lost-data reason line (then a count)


def _lost_reasons(anomalies: list[Anomaly]) -> tuple[str, ...]:
    """One line per entity kind with lost acknowledged data: the first ids, then how many more."""
    out = []
    for kind in ENTITY_KINDS:
        ids = [a.id for a in anomalies if a.kind == "lost_entity" and a.entity == kind]
        if ids:
            more = f" and {len(ids) - LOST_NAMED} more" if len(ids) > LOST_NAMED else ""
            out.append(f"lost acknowledged data: {len(ids)} {kind}(s) created with a 2xx now answer not found: "
                       f"{', '.join(ids[:LOST_NAMED])}{more}")
    return tuple(out)


def availability_section(av: Availability, min_pct: float, strict: bool, undetermined: int) -> Section:
    """The availability section: every operation at or above ``min_pct`` % answered (and all with strict)."""
    why = [f"unavailable: {a.op} {a.breakdown()} < {min_pct:g}%" for a in av.below(min_pct / 100.0)]
    if strict and undetermined:
        why.append(f"strict: {undetermined} request(s) not answered (5xx, timeout, connection error or skipped)")
    return Section("availability", FAIL if why else PASS, tuple(why))


def correctness_section(diff: ExpectationDiff, strict_faults: bool = False) -> Section:
    """The correctness section: a contradicted determined expectation is proven wrong; one during a
    fault (window or recovery) only with ``strict_faults``."""
    why = []
    bc = diff.by_category
    if diff.mismatches:
        why.append(f"{diff.mismatches} contradicted expectations ({bc['unexpected_ok']} "
                   f"unexpected 2xx, {bc['unexpected_fail']} unexpected 4xx)")
    if strict_faults and diff.during_faults:
        why.append(f"strict faults: {diff.during_faults} wrong answer(s) during faults")
    return Section("correctness", FAIL if why else PASS, tuple(why))


def decide(sections: tuple[Section, ...], lone: bool) -> Verdict:
    """The verdict of the sections (a lone shard is always INCONCLUSIVE)."""
    if lone:
        return Verdict(INCONCLUSIVE, sections, ("coverage",))
    failed = tuple(s.name for s in sections if s.status == FAIL)
    if failed:
        return Verdict(NOT_CLEAN, sections, failed)
    unjudged = tuple(s.name for s in sections if s.status == UNJUDGED)
    if unjudged:
        return Verdict(INCONCLUSIVE, sections, unjudged)
    return Verdict(CLEAN, sections, ())


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for an allocation-heavy pass over a big run.

    With millions of decoded args alive, every automatic collection walks them all; the check's
    records hold no reference cycles, so pausing it loses nothing (it was measured to take more
    than half the check's time on 1M rows).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_results(results: Results, *, recheckout: str = "refuse", strict: bool = False,
                  min_availability: float = DEFAULT_MIN_AVAILABILITY,
                  max_recovery: float = DEFAULT_MAX_RECOVERY, strict_faults: bool = False) -> CheckReport:
    """Check a run loaded with ``with_args=True``: the four sections and the verdict.

    ``max_recovery`` (seconds): a fault window not back to its pre-fault success rate within it
    fails the availability section (:func:`.faults.recovery_findings`). ``strict_faults``: wrong
    answers during faults (contradictions in a window or its recovery) fail the correctness section.
    """
    with paused_gc():
        return _check(results, recheckout, strict, min_availability, max_recovery, strict_faults)


def _bug_coverage(results: Results, trace: TraceRef, shard: str | None, faults: bool) -> BugCoverage:
    """The bug classes the run covered (from its trace's exercise counts; see docs/bug-classes.md)."""
    counts, source = run_exercises(trace)
    incomplete = ("a partial run" if not results.complete
                  else f"one shard ({shard}) of the trace" if lone_shard(shard) else None)
    return verdict_coverage(counts, faults, source, incomplete)


def _final_total(t: TotalFigures | None) -> int:
    """The total read back (0 when nothing was recomputed: no final state)."""
    return 0 if t is None else t.final


def _check(results: Results, recheckout: str, strict: bool, min_availability: float,
           max_recovery: float, strict_faults: bool = False) -> CheckReport:
    consistency = check_consistency(results, recheckout=recheckout)
    hist, fs = consistency.history, consistency.final
    assert hist is not None
    header = results.header_record
    trace, trace_header = header.trace, header.trace_header
    shard, reason = header.shard, results.trailer_record.reason
    totals_read = fs is not None and not fs.missing_count("item") and not fs.missing_count("user")
    loaded = hist.checkout_ok_loaded()
    bounds, bound_anoms = check_bounds(
        trace_header, RunTotals(hist.checkouts["ok"], loaded, _final_total(consistency.totals.stock),
                                _final_total(consistency.totals.credit)),
        complete=results.complete, undetermined=hist.undetermined, totals_read=totals_read)
    figures = benchmark_figures(trace_header, results.bindings, fs, hist.checkouts["ok"],
                                undetermined=hist.undetermined, complete=results.complete)
    fa = analyze_faults(results) if has_faults(results) else None
    apart = None if fa is None else apart_windows(fa, max_recovery)
    expectations = diff_expectations(results, windows=apart)
    availability = compute_availability(results, apart)
    coverage = _coverage(results, consistency, shard)
    cov_section, judgeable = coverage_section(coverage, results.complete, reason)
    anomalies = consistency.anomalies + bound_anoms
    av_section = availability_section(availability, min_availability, strict, hist.undetermined)
    if fa is not None:
        slow = recovery_findings(fa, max_recovery)
        if slow:
            av_section = Section("availability", FAIL, av_section.reasons + tuple(slow))
    broken = action_findings(fa) if fa is not None else []
    if broken:  # a fault that did not happen, or a shop maybe not restored: the run cannot be judged
        cov_section = Section("coverage", UNJUDGED, cov_section.reasons + tuple(broken))
    sections = (correctness_section(expectations, strict_faults), consistency_section(anomalies, fs is not None, judgeable, consistency.checked),
                av_section, cov_section)
    verdict = decide(sections, lone_shard(coverage.shard))
    warnings = []
    if not results.complete:
        warnings.append(f"PARTIAL RUN ({reason or 'interrupted'}): {results.n} requests recorded; the verdict cannot be clean")
    warnings.extend(consistency.notes)
    return CheckReport(results.path, results.label, results.complete, reason, recheckout,
                       strict, min_availability, expectations, consistency, availability, coverage, tuple(bounds),
                       figures, verdict, tuple(warnings), hist.undetermined, tuple(bound_anoms), max_recovery,
                       _bug_coverage(results, trace, shard, fa is not None), strict_faults)
