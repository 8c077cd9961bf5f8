"""The compare page: one self-contained HTML file — per-operation latency CDFs of every build overlaid,
the ratio intervals, and the verdict; plots are matplotlib PNGs embedded as base64 (as the report's).
"""

from __future__ import annotations

import html
import math

from ..api import OP_NAMES
from .compare import CDF_POINTS, GATED, CompareResult, render_compare_text
from .html import _png, _pyplot


def _cdf_plot(res: CompareResult, plt) -> str:
    ops = sorted({op for d in res.distributions.values() for op in d},
                 key=lambda op: OP_NAMES.index(op) if op in OP_NAMES else len(OP_NAMES))
    cols = 2 if len(ops) > 1 else 1
    rows = max(1, math.ceil(len(ops) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.6 * rows), squeeze=False)
    for ax, op in zip(axes.flat, ops):
        for label, dist in res.distributions.items():
            ms = dist.get(op)
            if ms:
                pts = [(m, q) for m, q in zip(ms, CDF_POINTS) if m > 0]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
        ax.set_xscale("log")
        ax.set_title(op, fontsize="medium")
        ax.set_xlabel("response time of answered requests (ms, log)", fontsize="small")
        ax.set_ylabel("fraction", fontsize="small")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(ops):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig, plt)


def _interval_plot(res: CompareResult, plt) -> str | None:
    rows = [(f"{b.label}: {o.op} {c.name}", c) for b in res.builds for o in b.ops for c in o.latency
            if c.ci and c.name in GATED]
    rows += [(f"{b.label}: throughput", b.throughput) for b in res.builds if b.throughput and b.throughput.ci]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    for y, (name, c) in enumerate(rows):
        color = "#d62728" if c.regression else ("#ff7f0e" if c.significant else "#1f77b4")
        ax.plot([c.ci[0], c.ci[1]], [y, y], color=color, lw=2)
        ax.plot([c.ratio], [y], "o", color=color)
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(1.0 + res.threshold, color="#d62728", lw=1, ls="--", label=f"threshold +{res.threshold * 100:g}%")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize="small")
    ax.set_xscale("log")
    ax.set_xlabel(f"new / base with {(1 - res.alpha) * 100:g}% interval (red: regression, orange: significant)")
    ax.invert_yaxis()
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="x", which="both")
    return _png(fig, plt)


def render_compare_html(res: CompareResult) -> str:
    """One self-contained HTML page of a comparison: verdict, overlaid CDFs, intervals, the text."""
    e = html.escape
    plt = _pyplot()
    figs = [("Latency distribution per operation (answered requests, every run of a build pooled)", _cdf_plot(res, plt))]
    iv = _interval_plot(res, plt)
    if iv:
        figs.append(("Ratio new/base with its interval, per gated quantile", iv))
    body = "".join(f'<figure><img alt="{e(t)}" src="data:image/png;base64,{b64}"><figcaption>{e(t)}</figcaption></figure>'
                   for t, b64 in figs)
    text = render_compare_text(res)
    verdicts = "".join(f"<li>{e(b.label)} vs {e(res.base_label)}: <strong>"
                       f"{'REGRESSION' if b.regression else 'no regression'}</strong></li>" for b in res.builds)
    overall = "REGRESSION" if res.regression else "no regression"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wdm-replay compare: {e(overall)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:85%}}figure{{margin:1em 0}}</style></head>
<body><h1>wdm-replay compare: {e(overall)}</h1>
<p>base {e(res.base_label)} ({len(res.base_files)} run(s)); trace {e(res.digest)}</p>
<ul class="verdict">{verdicts}</ul>
<h2>Plots</h2>{body}
<h2>Comparison</h2><pre>{e(text)}</pre>
</body></html>
"""
