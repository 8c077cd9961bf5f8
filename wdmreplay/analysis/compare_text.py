"""Render a :class:`~.compare.CompareResult`: the text report and the one dispatch by format.

:mod:`.compare` computes (no rendering there); this module and :mod:`.compare_html` (the page) only
format its result, so neither imports the other's caller: compare ← compare_text, compare ← compare_html.
"""

from __future__ import annotations

from .compare import (BuildComparison, CompareResult, _pct, change_words, floor_words, regression_reasons,
                      throughput_not_compared)
from .consistency import KINDS
from .report import render_json
from ..terms import plural

__all__ = ["compare_verdict_line", "render_compare", "render_compare_text"]


def _throughput_line(res: CompareResult, b: BuildComparison) -> str:
    if b.throughput is not None:
        t = b.throughput
        flag = f" — REGRESSION (< 1/{1 + res.threshold:g})" if t.regression else ""
        word = "lower" if t.ratio < 1 else "higher"
        return (f"  throughput (--speed max): {t.base:.1f} -> {t.new:.1f} req/s, {t.ratio:.2f}x {word} "
                f"({'significant' if t.significant else 'not significant'}, interval "
                f"{t.ci[0]:.2f}–{t.ci[1]:.2f}){flag}")
    parts = []
    r = b.rates
    for lbl, ach, sch in ((res.base_label, r.base, r.base_scheduled), (b.label, r.new, r.new_scheduled)):
        parts.append(f"{lbl} {'-' if ach is None else f'{ach:.1f}'}" + ("" if sch is None else f" of {sch:.1f} scheduled"))
    return f"  throughput: not compared ({throughput_not_compared(b)}); achieved req/s: " + ", ".join(parts)


def render_compare_text(res: CompareResult) -> str:
    """Text of a comparison: per build, significant changes, errors, throughput, anomalies, verdict."""
    level = f"{(1 - res.alpha) * 100:g}%"
    lines = [compare_verdict_line(res),
             f"base: {res.base_label} ({plural(len(res.base_files), 'run')}: {', '.join(res.base_files)}); "
             f"trace {res.digest[:19]}…; threshold {res.threshold * 100:g}%, error threshold "
             f"{res.error_threshold * 100:g} points, alpha {res.alpha:g}"]
    for b in res.builds:
        lines.append("")
        lines.append(f"{b.label} ({plural(len(b.files), 'run')}: {', '.join(b.files)}) vs {res.base_label}:")
        lines += [f"  WARNING: {n}" for n in b.notes]
        if b.tests:
            lines.append(f"  intervals: {level} confidence " + ("(1 gated test)" if b.tests == 1 else
                                                             f"for all {b.tests} gated tests together (Bonferroni)"))
        hidden: list[str] = []
        for o in b.ops:
            for c in o.latency:
                if c.note:  # untested: listed with the gates that cannot fire
                    continue
                if not c.significant:
                    if c.gated:
                        hidden.append(f"{o.op} {c.name} ({change_words(c.ratio)})")
                    continue
                flag = f" — REGRESSION (> {res.threshold * 100:g}%)" if c.regression else ""
                gate = "" if c.gated else ", not gated"
                lines.append(f"  {o.op} {c.name}: {change_words(c.ratio)} ({c.base:.2f} -> {c.new:.2f} ms; "
                             f"significant{gate}, interval {c.ci[0]:.2f}–{c.ci[1]:.2f}){flag}")
        lines.append(_throughput_line(res, b))
        errs = [o for o in b.ops if o.errors.base_errors or o.errors.new_errors]
        if errs:
            words = []
            for o in errs:
                e = o.errors
                sig = " significant" if e.significant else ""
                flag = " REGRESSION" if e.regression else ""
                words.append(f"{o.op} {_pct(e.base_share)} -> {_pct(e.new_share)}{sig}{flag}")
            lines.append("  error share (5xx, timeout, connection): " + ", ".join(words))
            lat = [f"{o.op} {'-' if o.base_error_ms is None else f'{o.base_error_ms:.1f}'} / "
                   f"{'-' if o.new_error_ms is None else f'{o.new_error_ms:.1f}'} ms"
                   for o in errs if o.base_error_ms is not None or o.new_error_ms is not None]
            if lat:
                lines.append("  errors' median latency (not in the figures above), base / new: " + ", ".join(lat))
        else:
            lines.append("  error share: 0 in both builds")
        skipped = [f"{o.op} {o.base_skipped} -> {o.new_skipped}" for o in b.ops if o.base_skipped != o.new_skipped]
        if skipped:
            lines.append("  skipped (an id they needed was never created): " + ", ".join(skipped))
        if b.base_anomalies is None or b.new_anomalies is None:
            lines.append("  anomalies: not compared (no check)")
        else:
            diff = [f"{k} {b.base_anomalies[k]:g} -> {b.new_anomalies[k]:g}" for k in KINDS
                    if b.base_anomalies[k] or b.new_anomalies[k]]
            lines.append("  anomalies per run: " + (", ".join(diff) if diff else "none in either build"))
        if hidden:
            lines.append("  not significant: " + ", ".join(hidden))
        if b.limits:
            lines.append("  gates that cannot fire with these runs:")
            lines += [f"    {g.gate}{' (' + ', '.join(g.ops) + ')' if g.ops else ''}: {g.why}" for g in b.limits]
        if b.noise_floor:
            lines.append(f"  one run on a side: between-run noise unknown, intervals widened by the calibrated noise "
                         f"floor ({floor_words()}) — a weaker verdict; for a stronger one compare 3+ runs per build "
                         f"(wdm-replay ab … --runs 3, or labelled runs)")
        why = regression_reasons(res, b)
        lines.append("  verdict: " + (f"REGRESSION ({'; '.join(why)})" if why else "no regression"))
    if len(res.builds) > 1:
        lines.append(compare_verdict_line(res))
    return "\n".join(lines) + "\n"


def compare_verdict_line(res: CompareResult) -> str:
    """The comparison's verdict as one line (first line of the text, and last with several builds)."""
    bad = [b.label for b in res.builds if b.regression]
    if bad:
        return f"verdict: REGRESSION — {', '.join(bad)} vs {res.base_label} (exit 1)"
    return f"verdict: no regression — {', '.join(b.label for b in res.builds)} vs {res.base_label} (exit 0)"


def render_compare(res: CompareResult, fmt: str) -> str:
    """The comparison as ``text``, ``json`` or ``html`` (html imports matplotlib, only then)."""
    if fmt == "json":
        return render_json(res)
    if fmt == "html":
        from .compare_html import render_compare_html  # lazy: the page's imports (jinja2, matplotlib) only for html

        return render_compare_html(res)
    return render_compare_text(res)
