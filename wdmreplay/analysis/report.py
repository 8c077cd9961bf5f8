"""The report: one dict with stable keys (``build_report``) and its text / JSON renderings.

Compute and render are separate: :func:`build_report` returns data; :func:`render_text`,
:func:`render_check_text` and :func:`render_json` only format it (HTML lives in ``html.py``).
Text output is deterministic for a given results file (file names, never absolute paths or clocks).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..bugclasses import coverage_line
from ..traces.results import Results
from .check import CheckReport, check_results
from .consistency import KINDS, AnalysisError
from .recovery import analyze_faults, fault_lines, has_faults
from .story import report_stories
from .stats import LAG_PERCENTILES, MAX_TIMELINE_BUCKETS, PERCENTILES, compute_stats
from ..terms import ACCEPTED, CATEGORY_WORDS, MARK_WIDTH, MARKS, OUTCOME_WORDS, REFUSED, SKIPPED, UNANSWERED

REPORT_SCHEMA = "wdm-report/1"
MAX_ANOMALIES_SHOWN = 20
LOST_DETAILED = 3  # lost entities shown with their arithmetic (the rest of the shown ones: headline only)
TIMELINE_ROWS = 30  # rows of the text timeline; longer runs show every k-th bucket


def run_info(results: Results) -> dict:
    """Identity of a run: label, file, trace (digest, workload), target, dialect, speed, completeness."""
    h = results.header
    trace = h.get("trace") or {}
    th = trace.get("header") or {}
    return {
        "label": results.label, "file": Path(results.path).name,
        "trace": {"digest": trace.get("digest"), "workload": th.get("workload"), "seed": th.get("seed"),
                  "requests": th.get("requests"), "file": Path(str(trace.get("path") or "")).name},
        "target": h.get("target"), "dialect": h.get("dialect"), "speed": h.get("speed"),
        "concurrency": h.get("concurrency"), "started": h.get("started"),
        "complete": results.complete, "reason": results.trailer.get("reason"),
        "wall": results.trailer.get("wall"), "requests": results.n, "tool": h.get("tool"),
    }


def build_report(results: Results, *, check: CheckReport | None = None, recheckout: str = "refuse",
                 bucket: float = 1.0) -> dict:
    """The full report of a run: run info, statistics, and (when args were loaded) the check.

    Keys: ``schema``, ``run``, ``stats`` {span, overall, by_op, timeline}, ``check`` (the
    :meth:`CheckReport.as_dict` form, or None when the results were loaded without args), ``stories``
    (the :class:`~.story.Story` JSON form of the first anomalies, at most one per kind first; [] if none).
    ``bucket`` (seconds per timeline slice) must be a positive finite number: AnalysisError otherwise.
    """
    if isinstance(bucket, bool) or not isinstance(bucket, (int, float)) or not (math.isfinite(bucket) and bucket > 0):
        raise AnalysisError(f"bucket must be a positive finite number of seconds, got {bucket!r}")
    if check is None and results.args is not None:
        check = check_results(results, recheckout=recheckout)
    out = {"schema": REPORT_SCHEMA, "run": run_info(results), "stats": compute_stats(results, bucket=bucket),
           "check": check.as_dict() if check is not None else None}
    # The stories (``explain``) of the first anomalies: the HTML report draws them as timelines.
    out["stories"] = ([s.as_dict() for s in report_stories(results, [a.as_dict() for a in check.anomalies])]
                      if check is not None and check.anomalies else [])
    if has_faults(results):  # the ``faults`` section: only for a run with a fault schedule
        out["faults"] = analyze_faults(results, bucket=bucket).as_dict()
    return out


def render_json(data: Any) -> str:
    """Stable, pretty JSON (sorted keys) of a report, check or compare dict."""
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
    if isinstance(v, list):
        return f"{v[0]}..{v[1]}"
    if isinstance(v, bool):
        return "paid" if v else "unpaid"
    return str(v)


def render_check_text(check: dict | CheckReport, *, verbose: bool = False, anomalies: int | None = None) -> str:
    """Text of a check: the verdict, one line per section, details of what did not pass, the verdict again.

    ``verbose`` adds every section's details (``report`` always shows them); ``anomalies`` is how many
    anomalies the short form lists (default :data:`MAX_ANOMALIES_BRIEF`).
    """
    d = check.as_dict() if isinstance(check, CheckReport) else check
    return "\n".join(check_lines(d, verbose=verbose, anomalies=anomalies)) + "\n"


MAX_ANOMALIES_BRIEF = 5  # anomalies a non-verbose check lists (verbose: MAX_ANOMALIES_SHOWN of each kind)
MAX_UNANSWERED_GROUPS = 6  # groups of unanswered/skipped requests the text shows (JSON has all)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def verdict_line(d: dict) -> str:
    """The check's verdict as one line (first and last line of ``check``): verdict, exit code, deciding sections."""
    decided = f" — decided by {', '.join(d['decided_by'])}" if d["decided_by"] else ""
    return f"verdict: {d['verdict']} (exit {d['exit_code']}){decided}"


def _mark(status: str) -> str:
    return f"{MARKS[status]:<{MARK_WIDTH}}"


def _correctness_summary(e: dict, strict_faults: bool = False) -> str:
    bc, ag = e["by_category"], e.get("agreed") or {"ok": 0, "fail": 0}
    if not e["checked"]:
        return "no request has an outcome the trace decides (its expects are all `any`)"
    tail = [f"{ag['ok']} {ACCEPTED} and {ag['fail']} {REFUSED}, as the trace expects"]
    if bc["indeterminate"]:
        tail.append(f"{bc['indeterminate']} {UNANSWERED}")
    if bc["skipped"]:
        tail.append(f"{bc['skipped']} {SKIPPED}")
    if e.get("during_faults"):
        tail.append(f"{e['during_faults']} wrong answers during faults (counted apart"
                    + (", failing the run: --strict-faults)" if strict_faults else "; --strict-faults fails on them)"))
    return f"{e['mismatches']} of {e['checked']} answers contradict the trace ({'; '.join(tail)})"


def _consistency_summary(c: dict) -> str:
    if not c["final_state"]:
        return "not checked: no final state in the results"
    ch, co = c["checked"], c["checkouts"]
    total = sum(c["anomaly_counts"].values())
    return (f"{_plural(total, 'anomaly', 'anomalies')} in {_plural(ch['items'], 'item')}, {_plural(ch['users'], 'user')}, "
            f"{_plural(ch['orders'], 'order')} ({co['ok']} checkouts {ACCEPTED}, {co['paid_orders']} orders paid)")


def _availability_summary(d: dict) -> str:
    av = d["availability"]
    o = av["overall"]
    ops = [(op, a["share"]) for op, a in av["ops"].items() if a["share"] is not None]
    fault = (f"; {o['in_fault']} in fault windows or their recovery (counted apart; recovery at most "
             f"{d['max_recovery']:g} s)" if o["in_fault"] else "")
    need = f"{d['min_availability']:g}% needed per operation{', every request with --strict' if d['strict'] else ''}"
    if not ops:
        return f"no request counted ({need}){fault}"
    op, low = min(ops, key=lambda x: x[1])
    lowest = ("100.0% answered by every operation" if low >= 1.0
              else f"{100.0 * low:.1f}% answered at the lowest, by {op}")
    return f"{lowest} ({need}); {o['answered']} of {o['counted']} answered in all{fault}"


def _coverage_summary(cov: dict) -> str:
    read = sum(cov["read"].values())
    missing = sum(cov.get("missing", {}).values())
    kinds = ", ".join(_plural(n, k) for k, n in cov["read"].items())
    st = cov["settle"]
    settle = ("final state read once" if st is None else
              f"final state {'settled' if st['settled'] else 'NOT settled'} after {st['snapshots']} reads "
              f"(--settle {st['requested']:g})")
    if not cov["final_state"]:
        return "no final state in the results"
    return f"{read} of {read + missing} entities read back ({kinds}); {settle}"


def check_lines(d: dict, *, verbose: bool = True, anomalies: int | None = None) -> list[str]:
    """Lines of a check from its JSON-form dict (shared by check, report and HTML); the verdict first and last.

    Line 1 is the verdict; then one line per section (its mark and the figure that decided it);
    then the details of every section that did not pass (of every section with ``verbose``).
    """
    sec = d["sections"]
    lines = [verdict_line(d)]
    if d.get("bug_classes"):
        lines.append(coverage_line(d["bug_classes"]))  # what the verdict covered, right after it
    lines += [f"WARNING: {w}" for w in d["warnings"]]
    summaries = {"correctness": _correctness_summary(d["expectations"], bool(d.get("strict_faults"))),
                 "consistency": _consistency_summary(d["consistency"]),
                 "availability": _availability_summary(d), "coverage": _coverage_summary(d["coverage"])}
    width = max(len(n) for n in summaries)
    for name, text in summaries.items():
        lines.append(f"  {_mark(sec[name]['status'])}  {name:<{width}}  {text}")
    details = {"correctness": _correctness_details, "consistency": _consistency_details,
               "availability": _availability_details, "coverage": _coverage_details}
    brief = MAX_ANOMALIES_BRIEF if anomalies is None else anomalies
    for name, fn in details.items():
        evidence = name == "correctness" and d["expectations"].get("during_faults")  # counted apart, still shown
        if verbose or sec[name]["status"] != "pass" or evidence:
            body = _consistency_details(d, verbose, brief) if name == "consistency" else fn(d, verbose)
            said = {ln.strip() for ln in body}
            if name != "correctness":  # its reason repeats the details' counts; so may the others' (not twice)
                body += [f"    why: {r}" for r in sec[name]["reasons"] if r not in said]
            if body:
                lines.append(f"{name} ({sec[name]['status']}):")
                lines += body
    lines.append(verdict_line(d))
    return lines


def _correctness_details(d: dict, verbose: bool) -> list[str]:
    e = d["expectations"]
    bc, ag = e["by_category"], e.get("agreed") or {"ok": 0, "fail": 0}
    counts = [f"{ag['ok']} {ACCEPTED} and {ag['fail']} {REFUSED} as the trace expects"]
    counts += [f"{bc[k]} {CATEGORY_WORDS[k]}" for k in CATEGORY_WORDS if bc.get(k)]
    lines = [f"    {e['checked']} requests whose outcome the trace decides: " + ", ".join(counts)]
    # Contradictions are the evidence: every group with its examples. Unanswered and skipped
    # requests are counted above and judged by availability: only the largest groups here.
    quiet_shown = quiet_total = 0
    for g in e["groups"]:
        quiet = g["category"] in ("indeterminate", "skipped", "after_indeterminate")
        if quiet:
            quiet_total += 1
            if quiet_shown >= MAX_UNANSWERED_GROUPS or not verbose:
                continue
            quiet_shown += 1
        lines.append(f"    {g['count']} {CATEGORY_WORDS[g['category']]}: {g['op']} in scenario {g['scenario']}")
        for x in g["examples"][:1] if quiet else g["examples"]:
            err = f" {x['error']!r}" if x["error"] else ""
            status = f" {x['status']}" if x["status"] else ""
            lines.append(f"      session {x['sid']} step {x['step']}: {OUTCOME_WORDS.get(x['outcome'], x['outcome'])}"
                         f"{status}{err}")
    if quiet_total > quiet_shown:
        lines.append(f"    (+{quiet_total - quiet_shown} groups of unanswered, skipped or not counted requests: "
                     f"{'check --json' if verbose else 'check --verbose'} lists them)")
    return lines


def _anomaly_lines(c: dict, verbose: bool, brief: int = MAX_ANOMALIES_BRIEF) -> list[str]:
    """Each anomaly's headline (the first ``brief`` ones unless ``verbose``); the first one's arithmetic,
    candidate causes and orders (``verbose``: every one's, but only the first LOST_DETAILED lost entities)."""
    counts = c["anomaly_counts"]
    total = sum(counts.values())
    if total == 0:
        return ["    anomalies: none"]
    lines = [f"    {_plural(total, 'anomaly', 'anomalies')}: " + ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])]
    shown: dict[str, int] = {}
    listed = 0
    for a in c["anomalies"]:
        shown[a["kind"]] = shown.get(a["kind"], 0) + 1
        if shown[a["kind"]] > MAX_ANOMALIES_SHOWN or (not verbose and listed >= brief):
            continue
        listed += 1
        tags = f" (also: {', '.join(a['tags'])})" if a.get("tags") else ""
        lines.append(f"      {a['kind']:<20} {a['headline']}{tags}")
        detailed = listed == 1 or (verbose and (a["kind"] != "lost_entity" or shown[a["kind"]] <= LOST_DETAILED))
        if not detailed:
            continue  # a store restarted empty loses thousands alike: headlines only after the first few
        lines += [f"        {x}" for x in a.get("arithmetic") or (a["detail"],)]
        if a.get("candidates"):
            lines.append(f"        possible causes (not asserted): {'; '.join(a['candidates'])}")
        rel = f"[orders {', '.join(a['orders'][:5])}{', …' if len(a['orders']) > 5 else ''}]" if a["orders"] else ""
        req = (f"[requests {', '.join(a['requests'][:4])}{', …' if len(a['requests']) > 4 else ''}]"
               if a.get("requests") else "")
        if rel or req:
            lines.append(f"        {' '.join(x for x in (rel, req) if x)}")
    if listed < total:
        lines.append(f"      … {total - listed} more: "
                     + ("check --json lists them all" if verbose else "check --verbose lists more, check --json all"))
    return lines


def _consistency_details(d: dict, verbose: bool, brief: int = MAX_ANOMALIES_BRIEF) -> list[str]:
    c = d["consistency"]
    if not c["final_state"]:
        return []
    co = c["checkouts"]
    policy = ("a second checkout of a paid order must be refused (--recheckout refuse)" if d["recheckout"] == "refuse"
              else "a second checkout of a paid order may charge again (--recheckout charge)")
    lines = [f"    checkouts: {co['ok']} {ACCEPTED}, {co['fail']} {REFUSED}, {co['indeterminate']} {UNANSWERED}, "
             f"{co['skipped']} {SKIPPED}; {co['paid_orders']} orders paid; {policy}"]
    lines += _anomaly_lines(c, verbose, brief)
    for ag in c["aggregates"]:
        if not verbose and ag["status"] != "unmet":  # only a broken promise is a detail worth a line
            continue
        note = f" ({ag['note']})" if ag["note"] else ""
        lines.append(f"    trace bound {ag['key']} {format_expected(ag['trace_bound'])}: actual {ag['actual']}, "
                     f"{ag['status']}{note}")
    if verbose:
        lines += _figure_lines(c)
    return lines


def _figure_lines(c: dict) -> list[str]:
    t, b = c["totals"], c["benchmark"]
    lines = []
    if t:
        lines.append("    totals recomputed from the history: " + "; ".join(
            f"{name} total — the history allows {format_expected(t[name]['history_allows'])}, the {ACCEPTED} "
            f"requests leave {t[name]['implied_by_2xx']}, read back {t[name]['final']}"
            for name in ("stock", "credit") if name in t))
    if b["stock_inconsistencies_logs"] is None:
        lines.append(f"    course benchmark figures: not comparable ({b['why']})")
        return lines
    head = "    course benchmark figures (as its verify.py computes them)"
    lines.append(head + (":" if b["comparable"] else f" — NOT COMPARABLE ({b['why']}):"))

    def fig(v: int | None) -> str:
        return "-" if v is None else str(v)

    lines.append(f"      Stock service inconsistencies in the logs: {fig(b['stock_inconsistencies_logs'])}")
    lines.append(f"      Stock service inconsistencies in the database: {fig(b['stock_inconsistencies_db'])}")
    lines.append(f"      Payment service inconsistencies in the logs: {fig(b['payment_inconsistencies_logs'])}")
    lines.append(f"      Payment service inconsistencies in the database: {fig(b['payment_inconsistencies_db'])}")
    return lines


def _availability_details(d: dict, verbose: bool) -> list[str]:
    av = d["availability"]
    basis = ("requests whose outcome the trace decides" if av["basis"] == "determined"
             else "all requests (the trace decides no outcome)")
    if not verbose:
        return []
    lines = [f"    counted: {basis}; per operation, answered of counted:"]
    ops = [f"{op} {a['answered']}/{a['counted']}" for op, a in av["ops"].items()]
    lines += [f"      {', '.join(ops[i:i + 5])}" for i in range(0, len(ops), 5)]
    return lines


def _coverage_details(d: dict, verbose: bool) -> list[str]:
    cov = d["coverage"]
    if not verbose:
        return []
    missing = cov.get("missing") or {}
    return [f"    not read back: {', '.join(_plural(n, k) for k, n in missing.items()) if missing else 'none'}"]


def _latency_table(title: str, stats: dict, key: str, names: tuple) -> list[str]:
    cols = [n for n, _ in names] + ["max"]
    lines = [f"{title}", f"  {'operation':<18}" + "".join(f"{c:>10}" for c in cols)]
    rows = list(stats["by_op"].items()) + [("overall", stats["overall"])]
    for name, s in rows:
        lat = s[key]
        lines.append(f"  {name:<18}" + "".join(f"{_num(lat[c]):>10}" for c in cols))
    return lines


def _timeline_table(tl: dict) -> list[str]:
    """Throughput and latency over time: every bucket, or an even sample of them for long runs."""
    n = len(tl["t"])
    if not n:
        return []
    step = -(-n // TIMELINE_ROWS)
    widened = tl.get("requested_bucket", tl["bucket"]) != tl["bucket"]
    title = (f"over time ({n} buckets of {tl['bucket']:g} s"
             + (f", widened from {tl['requested_bucket']:g} s: at most {MAX_TIMELINE_BUCKETS} buckets" if widened else "")
             + (f", every {step}th shown)" if step > 1 else ")"))
    lines = [title, f"  {'t s':>9}{'requests':>10}{ACCEPTED:>10}{UNANSWERED:>12}{'p50 ms':>10}{'p99 ms':>10}"]
    for k in range(0, n, step):
        lines.append(f"  {tl['t'][k]:>9g}{tl['count'][k]:>10}{tl['ok'][k]:>10}{tl['errors'][k]:>12}"
                     f"{_num(tl['p50_ms'][k]):>10}{_num(tl['p99_ms'][k]):>10}")
    return lines + [""]


def render_text(report: dict) -> str:
    """The text report: the verdict, run identity, per-operation tables, the check in full, the verdict again."""
    r, s = report["run"], report["stats"]
    t = r["trace"]
    skipped = s["overall"]["outcomes"]["skipped"]
    wall = f" ({_num(r['wall'], 3)} s wall clock in all)" if isinstance(r["wall"], (int, float)) else ""
    check = report["check"]
    verdict = verdict_line(check) if check is not None else "verdict: not judged (report --no-check)"
    lines = [f"wdm-replay report: {r['label']} ({r['file']}) — {verdict}",
             f"trace: {t['workload']} {str(t['digest'])[:19]}…  dialect {r['dialect']}  speed {format_speed(r['speed'])}",
             f"run: {'complete' if r['complete'] else 'PARTIAL (' + str(r['reason'] or 'interrupted') + ')'}, "
             f"{r['requests']} requests ({skipped} {SKIPPED}): {_num(s['overall']['rate'], 1)} req/s over "
             f"{_num(s['span'], 3)} s from first send to last answer{wall}",
             ""]
    hdr = (f"  {'operation':<18}{'count':>9}{'req/s':>10}{ACCEPTED + '%':>11}{REFUSED + '%':>10}"
           f"{UNANSWERED + '%':>13}{SKIPPED + '%':>10}")
    lines += ["requests (accepted: 2xx, refused: 4xx, unanswered: 5xx, timeout or connection error)", hdr]
    rows = list(s["by_op"].items()) + [("overall", s["overall"])]
    for name, b in rows:
        sh = b["shares"]
        err = sh["error"] + sh["timeout"] + sh["conn_error"]
        lines.append(f"  {name:<18}{b['count']:>9}{_num(b['rate'], 1):>10}{_pct(sh['ok']):>11}{_pct(sh['fail']):>10}"
                     f"{_pct(err):>13}{_pct(sh['skipped']):>10}")
    lines.append("")
    lines += _latency_table("response time ms (done - intended)", s, "response_ms", PERCENTILES)
    lines.append("")
    lines += _latency_table("service time ms (done - sent)", s, "service_ms", PERCENTILES)
    lines.append("")
    lines += _latency_table("schedule lag ms (sent - intended)", s, "lag_ms", LAG_PERCENTILES)
    lines.append("")
    lines += _timeline_table(s["timeline"])
    if report.get("faults"):
        lines += fault_lines(report["faults"])
    if check is None:
        lines.append("check: not run (report --no-check)")
        lines.append(verdict)
    else:
        lines += check_lines(check)
    return "\n".join(lines) + "\n"
