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
from .faults import analyze_faults, fault_lines, has_faults
from .story import report_stories
from .stats import LAG_PERCENTILES, MAX_TIMELINE_BUCKETS, PERCENTILES, compute_stats

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


def render_check_text(check: dict | CheckReport) -> str:
    """Text of a check verdict: sections (correctness, consistency, availability, coverage), the verdict, then
    the one line of the bug classes the run covered."""
    d = check.as_dict() if isinstance(check, CheckReport) else check
    lines = check_lines(d)
    if d.get("bug_classes"):
        lines.append(coverage_line(d["bug_classes"]))  # what the verdict covered, right after it
    return "\n".join(lines) + "\n"


def _anomaly_lines(c: dict) -> list[str]:
    counts = c["anomaly_counts"]
    total = sum(counts.values())
    if total == 0:
        return ["  anomalies: none"]
    lines = [f"  anomalies: {total} — " + ", ".join(f"{k} {counts[k]}" for k in KINDS if counts[k])]
    shown: dict[str, int] = {}
    for a in c["anomalies"]:
        shown[a["kind"]] = shown.get(a["kind"], 0) + 1
        if shown[a["kind"]] > MAX_ANOMALIES_SHOWN:
            continue
        rel = f" [orders {', '.join(a['orders'][:5])}{', …' if len(a['orders']) > 5 else ''}]" if a["orders"] else ""
        req = (f" [requests {', '.join(a['requests'][:4])}{', …' if len(a['requests']) > 4 else ''}]"
               if a.get("requests") else "")
        tags = f" (also: {', '.join(a['tags'])})" if a.get("tags") else ""
        lines.append(f"    {a['kind']:<20} {a['headline']}{tags}")
        if a["kind"] == "lost_entity" and shown[a["kind"]] > LOST_DETAILED:
            continue  # a store restarted empty loses thousands alike: headlines only after the first few
        lines += [f"      {x}" for x in a.get("arithmetic") or (a["detail"],)]
        if a.get("candidates"):
            lines.append(f"      possible causes (not asserted): {'; '.join(a['candidates'])}")
        if rel or req:
            lines.append(f"     {rel}{req}")
    for k in KINDS:
        if shown.get(k, 0) > MAX_ANOMALIES_SHOWN:
            lines.append(f"    … {shown[k] - MAX_ANOMALIES_SHOWN} more {k}")
    return lines


def _figure_lines(c: dict) -> list[str]:
    t, b = c["totals"], c["benchmark"]
    lines = []
    if t:
        for name in ("stock", "credit"):
            lines.append(f"  {name} total: history allows {format_expected(t[name]['history_allows'])}, implied by "
                         f"the 2xx answers {t[name]['implied_by_2xx']}, read back {t[name]['final']}")
    if b["stock_inconsistencies_logs"] is None:
        lines.append(f"  course benchmark figures: not comparable ({b['why']})")
        return lines
    head = "  course benchmark figures (as its verify.py computes them)"
    lines.append(head + (":" if b["comparable"] else f" — NOT COMPARABLE ({b['why']}):"))

    def fig(v: int | None) -> str:
        return "-" if v is None else str(v)

    lines.append(f"    Stock service inconsistencies in the logs: {fig(b['stock_inconsistencies_logs'])}")
    lines.append(f"    Stock service inconsistencies in the database: {fig(b['stock_inconsistencies_db'])}")
    lines.append(f"    Payment service inconsistencies in the logs: {fig(b['payment_inconsistencies_logs'])}")
    lines.append(f"    Payment service inconsistencies in the database: {fig(b['payment_inconsistencies_db'])}")
    return lines


MAX_UNANSWERED_GROUPS = 6  # groups of indeterminate/skipped requests the text shows (JSON has all)


def check_lines(d: dict) -> list[str]:
    """Lines of the check section from its JSON-form dict (shared by check, report and HTML); the verdict is last."""
    lines: list[str] = []
    for w in d["warnings"]:
        lines.append(f"WARNING: {w}")
    sec = d["sections"]
    e = d["expectations"]
    bc = e["by_category"]
    lines.append(f"correctness [{sec['correctness']['status']}]: {e['checked']} requests with a determined expect; "
                 f"{e['mismatches']} contradicted ({bc['unexpected_ok']} unexpected 2xx, {bc['unexpected_fail']} "
                 f"unexpected 4xx), {bc['indeterminate']} indeterminate, {bc['skipped']} skipped, "
                 f"{bc['after_indeterminate']} differing after an indeterminate/skipped step they depend on"
                 + (f"; {e['during_faults']} wrong answers during faults (counted apart"
                    f"{', failing the run: --strict-faults' if d.get('strict_faults') else '; --strict-faults fails on them'})"
                    if e.get("during_faults") else ""))
    # Contradictions are the evidence: every group with its examples. Unanswered (indeterminate,
    # skipped) requests are counted above and judged by availability: only the largest groups here.
    unanswered = 0
    for g in e["groups"]:
        quiet = g["category"] in ("indeterminate", "skipped")
        if quiet and unanswered >= MAX_UNANSWERED_GROUPS:
            unanswered += 1
            continue
        unanswered += quiet
        lines.append(f"  {g['category']:<15} {g['scenario']}/{g['op']} (expect {g['expect']}): {g['count']}")
        for x in g["examples"][:1] if quiet else g["examples"]:
            err = f" {x['error']!r}" if x["error"] else ""
            lines.append(f"      session {x['sid']} step {x['step']}: {x['outcome']} {x['status']}{err}")
    if unanswered > MAX_UNANSWERED_GROUPS:
        lines.append(f"  (+{unanswered - MAX_UNANSWERED_GROUPS} more groups of indeterminate or skipped requests; "
                     f"--json lists them all)")
    c = d["consistency"]
    if not c["final_state"]:
        lines.append(f"consistency [{sec['consistency']['status']}]: NOT CHECKED (no final state in the results)")
    else:
        ch, co = c["checked"], c["checkouts"]
        lines.append(f"consistency [{sec['consistency']['status']}]: checked {ch['items']} items, {ch['users']} "
                     f"users, {ch['orders']} orders (re-checkout policy: {d['recheckout']})")
        lines.append(f"  checkouts: {co['ok']} ok, {co['fail']} fail, {co['indeterminate']} indeterminate, "
                     f"{co['skipped']} skipped; {co['paid_orders']} orders paid")
    lines += _anomaly_lines(c)
    for ag in c["aggregates"]:
        note = f" ({ag['note']})" if ag["note"] else ""
        lines.append(f"  trace bound {ag['key']} {format_expected(ag['trace_bound'])}: actual {ag['actual']}, "
                     f"{ag['status']}{note}")
    lines += _figure_lines(c)
    for r in sec["consistency"]["reasons"]:
        lines.append(f"  -> {r}")
    av = d["availability"]
    o = av["overall"]
    share = "-" if o["share"] is None else f"{100.0 * o['share']:.1f}%"
    fault = (f", {o['in_fault']} in fault windows or their recovery (counted apart; recovery at most "
             f"{d['max_recovery']:g} s)" if o["in_fault"] else "")
    lines.append(f"availability [{sec['availability']['status']}]: {o['answered']}/{o['counted']} answered "
                 f"({share}) of {'requests with a determined expect' if av['basis'] == 'determined' else 'all requests'}"
                 f"{fault}; minimum {d['min_availability']:g}% per operation{' (strict)' if d['strict'] else ''}")
    for r in sec["availability"]["reasons"]:
        lines.append(f"  -> {r}")
    cov = d["coverage"]
    read = ", ".join(f"{n} {k}s" for k, n in cov["read"].items())
    st = cov["settle"]
    settle = ("read once" if st is None else
              f"{'settled' if st['settled'] else 'NOT settled'} after {st['snapshots']} snapshots (--settle {st['requested']:g})")
    lines.append(f"coverage [{sec['coverage']['status']}]: read back {read}; state {settle}")
    for r in sec["coverage"]["reasons"]:
        lines.append(f"  -> {r}")
    decided = f" — decided by {', '.join(d['decided_by'])}" if d["decided_by"] else ""
    lines.append(f"verdict: {d['verdict']} (exit {d['exit_code']}){decided}")
    return lines


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
    lines = [title, f"  {'t s':>9}{'requests':>10}{'ok':>9}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}"]
    for k in range(0, n, step):
        lines.append(f"  {tl['t'][k]:>9g}{tl['count'][k]:>10}{tl['ok'][k]:>9}{tl['errors'][k]:>8}"
                     f"{_num(tl['p50_ms'][k]):>10}{_num(tl['p99_ms'][k]):>10}")
    return lines + [""]


def render_text(report: dict) -> str:
    """The text report: run identity, per-operation table, latency tables, then the check."""
    r, s = report["run"], report["stats"]
    t = r["trace"]
    skipped = s["overall"]["outcomes"]["skipped"]
    wall = f" ({_num(r['wall'], 3)} s wall clock in all)" if isinstance(r["wall"], (int, float)) else ""
    lines = [f"wdm-replay report: {r['label']} ({r['file']})",
             f"trace: {t['workload']} {str(t['digest'])[:19]}…  dialect {r['dialect']}  speed {format_speed(r['speed'])}",
             f"run: {'complete' if r['complete'] else 'PARTIAL (' + str(r['reason'] or 'interrupted') + ')'}, "
             f"{r['requests']} requests ({skipped} skipped): {_num(s['overall']['rate'], 1)} req/s over "
             f"{_num(s['span'], 3)} s from first send to last answer{wall}",
             ""]
    hdr = f"  {'operation':<18}{'count':>9}{'req/s':>10}{'ok%':>7}{'fail%':>7}{'err%':>7}{'skip%':>7}"
    lines += ["requests", hdr]
    rows = list(s["by_op"].items()) + [("overall", s["overall"])]
    for name, b in rows:
        sh = b["shares"]
        err = sh["error"] + sh["timeout"] + sh["conn_error"]
        lines.append(f"  {name:<18}{b['count']:>9}{_num(b['rate'], 1):>10}{_pct(sh['ok']):>7}{_pct(sh['fail']):>7}"
                     f"{_pct(err):>7}{_pct(sh['skipped']):>7}")
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
    if report["check"] is None:
        lines.append("check: not run (results loaded without args)")
    else:
        lines += check_lines(report["check"])
    return "\n".join(lines) + "\n"

