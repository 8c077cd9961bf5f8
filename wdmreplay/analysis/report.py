"""The report: a typed :class:`Report` (``build_report``) and its text / JSON renderings.

Compute and render are separate: :func:`build_report` returns typed records (:class:`Report`,
:class:`RunInfo`, :class:`~.stats.Stats`, :class:`~.check.CheckReport`); :func:`render_text`,
:func:`render_check_text` and :func:`render_json` only format them (HTML lives in ``html.py``). A dict
appears only at the JSON edge (``to_json()``; ``render_json``). Text output is deterministic for a
given results file (file names, never absolute paths or clocks).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..bugclasses import coverage_line
from ..traces.results import Results
from .availability import Availability
from .check import PASS, CheckReport, Coverage, check_results
from .anomaly import KINDS, AnalysisError, Anomaly
from .expectations import ExpectationDiff
from .recovery import FaultAnalysis, analyze_faults, fault_lines, has_faults
from .story import Story, report_stories, told_headline
from .stats import LAG_PERCENTILES, MAX_TIMELINE_BUCKETS, PERCENTILES, OpStats, Stats, Timeline, compute_stats
from ..terms import ACCEPTED, CATEGORY_WORDS, MARK_WIDTH, MARKS, OUTCOME_WORDS, REFUSED, SKIPPED, UNANSWERED, plural

REPORT_SCHEMA = "wdm-report/1"
MAX_ANOMALIES_SHOWN = 20
LOST_DETAILED = 3  # lost entities shown with their arithmetic (the rest of the shown ones: headline only)
TIMELINE_ROWS = 30  # rows of the text timeline; longer runs show every k-th bucket


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """The trace a run replayed, as its results header names it."""

    digest: str | None
    workload: str | None
    seed: Any
    requests: int | None
    file: str  # the trace file's name ("" when the header names none)

    def to_json(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"digest": self.digest, "workload": self.workload, "seed": self.seed, "requests": self.requests,
                "file": self.file}


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Identity of a run: label, file, trace, target, dialect, speed, completeness (the report's ``run``)."""

    label: str
    file: str
    trace: TraceInfo
    target: Any
    dialect: str | None
    speed: float | None  # None: as fast as possible (``max``)
    concurrency: int | None
    started: Any
    complete: bool
    reason: str | None
    wall: float | None
    requests: int
    tool: str | None

    def to_json(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"label": self.label, "file": self.file, "trace": self.trace.to_json(), "target": self.target,
                "dialect": self.dialect, "speed": self.speed, "concurrency": self.concurrency,
                "started": self.started, "complete": self.complete, "reason": self.reason, "wall": self.wall,
                "requests": self.requests, "tool": self.tool}


def run_info(results: Results) -> RunInfo:
    """Identity of a run, from its typed results header and trailer."""
    h, tr = results.header_record, results.trailer_record
    th = h.trace_header  # the replayed trace's header as the results header copied it (a partial one in hand-made files)
    return RunInfo(
        label=results.label, file=Path(results.path).name,
        trace=TraceInfo(h.trace.digest, th.workload, th.seed, th.requests,
                        Path(h.trace.path or "").name),
        target=h.target, dialect=h.dialect, speed=h.speed, concurrency=h.concurrency,
        started=h.started, complete=results.complete, reason=tr.reason,
        wall=tr.wall, requests=results.n, tool=h.tool)


@dataclass(frozen=True, slots=True)
class Report:
    """The full report of a run: identity, statistics, the check (None: not run), stories, faults."""

    run: RunInfo
    stats: Stats
    check: CheckReport | None
    stories: tuple[Story, ...]  # the first anomalies' stories (the HTML report draws them)
    faults: FaultAnalysis | None  # only for a run with a fault schedule
    schema: str = REPORT_SCHEMA

    def to_json(self) -> dict:
        """JSON-ready form (schema ``wdm-report/1``; keys documented in docs/analysis.md)."""
        out = {"schema": self.schema, "run": self.run.to_json(), "stats": self.stats.to_json(),
               "check": self.check.as_dict() if self.check is not None else None,
               "stories": [s.as_dict() for s in self.stories]}
        if self.faults is not None:
            out["faults"] = self.faults.as_dict()
        return out


def build_report(results: Results, *, check: CheckReport | None = None, recheckout: str = "refuse",
                 bucket: float = 1.0) -> Report:
    """The full report of a run: run info, statistics, and (when args were loaded) the check.

    ``check`` is computed unless given (None when the results were loaded without args); ``stories``
    are those of the first anomalies, at most one per kind first. ``bucket`` (seconds per timeline
    slice) must be a positive finite number: AnalysisError otherwise.
    """
    if isinstance(bucket, bool) or not isinstance(bucket, (int, float)) or not (math.isfinite(bucket) and bucket > 0):
        raise AnalysisError(f"bucket must be a positive finite number of seconds, got {bucket!r}")
    if check is None and results.args is not None:
        check = check_results(results, recheckout=recheckout)
    # The stories (``explain``) of the first anomalies: the HTML report draws them as timelines.
    stories = tuple(report_stories(results, check.anomalies)) if check is not None and check.anomalies else ()
    faults = analyze_faults(results, bucket=bucket) if has_faults(results) else None
    return Report(run_info(results), compute_stats(results, bucket=bucket), check, stories, faults)


def render_json(data: Any) -> str:
    """Stable, pretty JSON (sorted keys) of a typed record (its ``to_json()``) or of a JSON-form dict."""
    if not isinstance(data, (dict, list)):
        data = data.to_json()  # Report, CheckReport, CompareResult …: the JSON edge
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _num(x: Any, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def format_speed(speed: Any) -> str:
    """A run's speed as the user gave it: ``max`` (recorded as None) or the multiple, e.g. ``1`` or ``0.5``."""
    return "max" if speed is None else f"{speed:g}" if isinstance(speed, (int, float)) else str(speed)


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def format_expected(v: Any) -> str:
    """An anomaly's expected/actual value as text: ``lo..hi`` for a range, paid/unpaid for a flag."""
    if isinstance(v, (list, tuple)):
        return f"{v[0]}..{v[1]}"
    if isinstance(v, bool):
        return "paid" if v else "unpaid"
    return str(v)


def render_check_text(check: CheckReport, *, verbose: bool = False, anomalies: int | None = None) -> str:
    """Text of a check: the verdict, one line per section, details of what did not pass, the verdict again.

    ``verbose`` adds every section's details (``report`` always shows them); ``anomalies`` is how many
    anomalies the short form lists (default :data:`MAX_ANOMALIES_BRIEF`).
    """
    return "\n".join(check_lines(check, verbose=verbose, anomalies=anomalies)) + "\n"


MAX_ANOMALIES_BRIEF = 5  # anomalies a non-verbose check lists (verbose: MAX_ANOMALIES_SHOWN of each kind)
MAX_UNANSWERED_GROUPS = 6  # groups of unanswered/skipped requests the text shows (JSON has all)


def verdict_line(check: CheckReport) -> str:
    """The check's verdict as one line (first and last line of ``check``): verdict, exit code, deciding sections."""
    v = check.verdict
    decided = f" — decided by {', '.join(v.decided_by)}" if v.decided_by else ""
    return f"verdict: {v.verdict} (exit {v.exit_code}){decided}"


def _mark(status: str) -> str:
    return f"{MARKS[status]:<{MARK_WIDTH}}"


def _correctness_summary(e: ExpectationDiff, strict_faults: bool = False) -> str:
    bc, ag = e.by_category, e.agreed
    if not e.checked:
        return "no request has an outcome the trace decides (its expects are all `any`)"
    tail = [f"{ag['ok']} {ACCEPTED} and {ag['fail']} {REFUSED}, as the trace expects"]
    if bc["indeterminate"]:
        tail.append(f"{bc['indeterminate']} {UNANSWERED}")
    if bc["skipped"]:
        tail.append(f"{bc['skipped']} {SKIPPED}")
    if e.during_faults:
        tail.append(f"{e.during_faults} wrong answers during faults (counted apart"
                    + (", failing the run: --strict-faults)" if strict_faults else "; --strict-faults fails on them)"))
    return f"{e.mismatches} of {e.checked} answers contradict the trace ({'; '.join(tail)})"


def _consistency_summary(check: CheckReport) -> str:
    c = check.consistency
    if not c.final_state:
        return "not checked: no final state in the results"
    ch, co = c.checked, c.checkouts
    total = len(check.anomalies)
    return (f"{plural(total, 'anomaly', 'anomalies')} in {plural(ch.items, 'item')}, {plural(ch.users, 'user')}, "
            f"{plural(ch.orders, 'order')} ({plural(co.ok, 'checkout')} {ACCEPTED}, {plural(co.paid_orders, 'order')} paid)")


def _availability_summary(check: CheckReport) -> str:
    av: Availability = check.availability
    o = av.overall
    ops = [(a.op, a.share) for a in av.ops if a.share is not None]
    fault = (f"; {o.in_fault} in fault windows or their recovery (counted apart; recovery at most "
             f"{check.max_recovery:g} s)" if o.in_fault else "")
    need = (f"{check.min_availability:g}% needed per operation"
            f"{', every request with --strict' if check.strict else ''}")
    if not ops:
        return f"no request counted ({need}){fault}"
    op, low = min(ops, key=lambda x: x[1])
    lowest = ("100.0% answered by every operation" if low >= 1.0
              else f"{100.0 * low:.1f}% answered at the lowest, by {op}")
    return f"{lowest} ({need}); {o.answered} of {o.counted} answered in all{fault}"


def _coverage_summary(cov: Coverage) -> str:
    read = sum(cov.read.values())
    missing = sum(cov.missing.values())
    kinds = ", ".join(plural(n, k) for k, n in cov.read.items())
    st = cov.settle
    settle = ("final state read once" if st is None else
              f"final state {'settled' if st.settled else 'NOT settled'} after {st.snapshots} reads "
              f"(--settle {st.requested:g})")
    if not cov.final_state:
        return "no final state in the results"
    return f"{read} of {read + missing} entities read back ({kinds}); {settle}"


def check_lines(check: CheckReport, *, verbose: bool = True, anomalies: int | None = None) -> list[str]:
    """Lines of a check (shared by check, report and HTML); the verdict first and last.

    Line 1 is the verdict; then one line per section (its mark and the figure that decided it);
    then the details of every section that did not pass (of every section with ``verbose``).
    """
    sec = check.verdict.by_name
    lines = [verdict_line(check), coverage_line(check.bug_classes)]  # what the verdict covered, right after it
    lines += [f"WARNING: {w}" for w in check.warnings]
    summaries = {"correctness": _correctness_summary(check.expectations, check.strict_faults),
                 "consistency": _consistency_summary(check),
                 "availability": _availability_summary(check), "coverage": _coverage_summary(check.coverage)}
    width = max(len(n) for n in summaries)
    for name, text in summaries.items():
        lines.append(f"  {_mark(sec[name].status)}  {name:<{width}}  {text}")
    details = {"correctness": _correctness_details, "consistency": _consistency_details,
               "availability": _availability_details, "coverage": _coverage_details}
    brief = MAX_ANOMALIES_BRIEF if anomalies is None else anomalies
    for name, fn in details.items():
        evidence = name == "correctness" and check.expectations.during_faults  # counted apart, still shown
        if verbose or sec[name].status != PASS or evidence:
            body = _consistency_details(check, verbose, brief) if name == "consistency" else fn(check, verbose)
            said = {ln.strip() for ln in body}
            if name != "correctness":  # its reason repeats the details' counts; so may the others' (not twice)
                body += [f"    why: {r}" for r in sec[name].reasons if r not in said]
            if body:
                lines.append(f"{name} ({sec[name].status}):")
                lines += body
    lines.append(verdict_line(check))
    return lines


def _correctness_details(check: CheckReport, verbose: bool) -> list[str]:
    e = check.expectations
    bc, ag = e.by_category, e.agreed
    counts = [f"{ag['ok']} {ACCEPTED} and {ag['fail']} {REFUSED} as the trace expects"]
    counts += [f"{bc[k]} {CATEGORY_WORDS[k]}" for k in CATEGORY_WORDS if bc[k]]
    lines = [f"    {e.checked} requests whose outcome the trace decides: " + ", ".join(counts)]
    # Contradictions are the evidence: every group with its examples. Unanswered and skipped
    # requests are counted above and judged by availability: only the largest groups here.
    quiet_shown = quiet_total = 0
    for g in e.groups:
        quiet = g.category in ("indeterminate", "skipped", "after_indeterminate")
        if quiet:
            quiet_total += 1
            if quiet_shown >= MAX_UNANSWERED_GROUPS or not verbose:
                continue
            quiet_shown += 1
        lines.append(f"    {g.count} {CATEGORY_WORDS[g.category]}: {g.op} in scenario {g.scenario}")
        for x in g.examples[:1] if quiet else g.examples:
            err = f" {x.error!r}" if x.error else ""
            status = f" {x.status}" if x.status else ""
            lines.append(f"      session {x.sid} step {x.step}: {OUTCOME_WORDS[x.outcome]}{status}{err}")
    if quiet_total > quiet_shown:
        lines.append(f"    (+{quiet_total - quiet_shown} groups of unanswered, skipped or not counted requests: "
                     f"{'check --json' if verbose else 'check --verbose'} lists them)")
    return lines


def _anomaly_lines(check: CheckReport, verbose: bool, brief: int = MAX_ANOMALIES_BRIEF) -> list[str]:
    """Each anomaly's headline (the first ``brief`` ones unless ``verbose``); the first one's arithmetic,
    candidate causes and orders (``verbose``: every one's, but only the first LOST_DETAILED lost entities)."""
    counts = check.anomaly_counts
    every: list[Anomaly] = check.anomalies
    total = len(every)
    if total == 0:
        return ["    anomalies: none"]
    lines = [f"    {plural(total, 'anomaly', 'anomalies')}: " + ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])]
    shown = dict.fromkeys(KINDS, 0)
    listed = 0
    for a in every:
        shown[a.kind] += 1
        if shown[a.kind] > MAX_ANOMALIES_SHOWN or (not verbose and listed >= brief):
            continue
        listed += 1
        tags = f" (also: {', '.join(a.tags)})" if a.tags else ""
        lines.append(f"      {a.kind:<20} {told_headline(a)}{tags}")
        detailed = listed == 1 or (verbose and (a.kind != "lost_entity" or shown[a.kind] <= LOST_DETAILED))
        if not detailed:
            continue  # a store restarted empty loses thousands alike: headlines only after the first few
        lines += [f"        {x}" for x in a.arithmetic or (a.detail,)]
        if a.candidates:
            lines.append(f"        possible causes (not asserted): {'; '.join(a.candidates)}")
        rel = f"[orders {', '.join(a.orders[:5])}{', …' if len(a.orders) > 5 else ''}]" if a.orders else ""
        req = (f"[requests {', '.join(a.requests[:4])}{', …' if len(a.requests) > 4 else ''}]"
               if a.requests else "")
        if rel or req:
            lines.append(f"        {' '.join(x for x in (rel, req) if x)}")
    if listed < total:
        lines.append(f"      … {total - listed} more: "
                     + ("check --json lists them all" if verbose else "check --verbose lists more, check --json all"))
    return lines


def _consistency_details(check: CheckReport, verbose: bool, brief: int = MAX_ANOMALIES_BRIEF) -> list[str]:
    c = check.consistency
    if not c.final_state:
        return []
    co = c.checkouts
    policy = ("a second checkout of a paid order must be refused (--recheckout refuse)" if check.policy == "refuse"
              else "a second checkout of a paid order may charge again (--recheckout charge)")
    lines = [f"    checkouts: {co.ok} {ACCEPTED}, {co.fail} {REFUSED}, {co.indeterminate} {UNANSWERED}, "
             f"{co.skipped} {SKIPPED}; {plural(co.paid_orders, 'order')} paid; {policy}"]
    lines += _anomaly_lines(check, verbose, brief)
    for ag in check.bounds:
        if not verbose and ag.status != "unmet":  # only a broken promise is a detail worth a line
            continue
        note = f" ({ag.note})" if ag.note else ""
        lines.append(f"    trace bound {ag.key} {format_expected(ag.expected)}: actual {ag.actual}, "
                     f"{ag.status}{note}")
    if verbose:
        lines += _figure_lines(check)
    return lines


def _figure_lines(check: CheckReport) -> list[str]:
    t, b = check.consistency.totals, check.figures
    lines = []
    if t.named():
        lines.append("    totals recomputed from the history: " + "; ".join(
            f"{name} total — the history allows {format_expected(f.history_allows)}, the {ACCEPTED} "
            f"requests leave {f.implied_by_2xx}, read back {f.final}"
            for name, f in t.named()))
    if b.stock_logs is None:
        lines.append(f"    course benchmark figures: not comparable ({b.why})")
        return lines
    head = "    course benchmark figures (as its verify.py computes them)"
    lines.append(head + (":" if b.comparable else f" — NOT COMPARABLE ({b.why}):"))

    def fig(v: int | None) -> str:
        return "-" if v is None else str(v)

    lines.append(f"      Stock service inconsistencies in the logs: {fig(b.stock_logs)}")
    lines.append(f"      Stock service inconsistencies in the database: {fig(b.stock_db)}")
    lines.append(f"      Payment service inconsistencies in the logs: {fig(b.payment_logs)}")
    lines.append(f"      Payment service inconsistencies in the database: {fig(b.payment_db)}")
    return lines


def _availability_details(check: CheckReport, verbose: bool) -> list[str]:
    av = check.availability
    basis = ("requests whose outcome the trace decides" if av.basis == "determined"
             else "all requests (the trace decides no outcome)")
    if not verbose:
        return []
    lines = [f"    counted: {basis}; per operation, answered of counted:"]
    ops = [f"{a.op} {a.answered}/{a.counted}" for a in av.ops]
    lines += [f"      {', '.join(ops[i:i + 5])}" for i in range(0, len(ops), 5)]
    return lines


def _coverage_details(check: CheckReport, verbose: bool) -> list[str]:
    missing = check.coverage.missing
    if not verbose:
        return []
    return [f"    not read back: {', '.join(plural(n, k) for k, n in missing.items()) if missing else 'none'}"]


def _latency_table(title: str, stats: Stats, latency: Callable[[OpStats], Mapping[str, float | None]],
                   names: tuple) -> list[str]:
    cols = [n for n, _ in names] + ["max"]
    lines = [f"{title}", f"  {'operation':<18}" + "".join(f"{c:>10}" for c in cols)]
    rows: list[tuple[str, OpStats]] = [*stats.by_op.items(), ("overall", stats.overall)]
    for name, s in rows:
        lat = latency(s)
        lines.append(f"  {name:<18}" + "".join(f"{_num(lat[c]):>10}" for c in cols))
    return lines


def _timeline_table(tl: Timeline) -> list[str]:
    """Throughput and latency over time: every bucket, or an even sample of them for long runs."""
    n = len(tl.t)
    if not n:
        return []
    step = -(-n // TIMELINE_ROWS)
    title = (f"over time ({n} buckets of {tl.bucket:g} s"
             + (f", widened from {tl.requested_bucket:g} s: at most {MAX_TIMELINE_BUCKETS} buckets" if tl.widened else "")
             + (f", every {step}th shown)" if step > 1 else ")"))
    lines = [title, f"  {'t s':>9}{'requests':>10}{ACCEPTED:>10}{UNANSWERED:>12}{'p50 ms':>10}{'p99 ms':>10}"]
    for k in range(0, n, step):
        lines.append(f"  {tl.t[k]:>9g}{tl.count[k]:>10}{tl.ok[k]:>10}{tl.errors[k]:>12}"
                     f"{_num(tl.p50_ms[k]):>10}{_num(tl.p99_ms[k]):>10}")
    return lines + [""]


def render_text(report: Report) -> str:
    """The text report: the verdict, run identity, per-operation tables, the check in full, the verdict again."""
    r, s = report.run, report.stats
    t = r.trace
    skipped = s.overall.outcomes["skipped"]
    wall = f" ({_num(r.wall, 3)} s wall clock in all)" if isinstance(r.wall, (int, float)) else ""
    check = report.check
    verdict = verdict_line(check) if check is not None else "verdict: not judged (report --no-check)"
    lines = [f"wdm-replay report: {r.label} ({r.file}) — {verdict}",
             f"trace: {t.workload} {str(t.digest)[:19]}…  dialect {r.dialect}  speed {format_speed(r.speed)}",
             f"run: {'complete' if r.complete else 'PARTIAL (' + str(r.reason or 'interrupted') + ')'}, "
             f"{r.requests} requests ({skipped} {SKIPPED}): {_num(s.overall.rate, 1)} req/s over "
             f"{_num(s.span, 3)} s from first send to last answer{wall}",
             ""]
    hdr = (f"  {'operation':<18}{'count':>9}{'req/s':>10}{ACCEPTED + '%':>11}{REFUSED + '%':>10}"
           f"{UNANSWERED + '%':>13}{SKIPPED + '%':>10}")
    lines += ["requests (accepted: 2xx, refused: 4xx, unanswered: 5xx, timeout or connection error)", hdr]
    for name, b in [*s.by_op.items(), ("overall", s.overall)]:
        sh = b.shares
        lines.append(f"  {name:<18}{b.count:>9}{_num(b.rate, 1):>10}{_pct(sh['ok']):>11}{_pct(sh['fail']):>10}"
                     f"{_pct(b.unanswered_share):>13}{_pct(sh['skipped']):>10}")
    lines.append("")
    lines += _latency_table("response time ms (done - intended)", s, lambda b: b.response_ms, PERCENTILES)
    lines.append("")
    lines += _latency_table("service time ms (done - sent)", s, lambda b: b.service_ms, PERCENTILES)
    lines.append("")
    lines += _latency_table("schedule lag ms (sent - intended)", s, lambda b: b.lag_ms, LAG_PERCENTILES)
    lines.append("")
    lines += _timeline_table(s.timeline)
    if report.faults is not None:
        lines += fault_lines(report.faults)
    if check is None:
        lines.append("check: not run (report --no-check)")
        lines.append(verdict)
    else:
        lines += check_lines(check)
    return "\n".join(lines) + "\n"
