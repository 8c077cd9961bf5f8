"""The compare page: one self-contained HTML file from a template (templates/compare.html.j2).

A verdict banner, per build a table of the gated quantiles and error shares (a build or operation
without answered requests is named, never silently missing), the gates these runs cannot fire, and
two inline SVG charts drawn by matplotlib: the ratio new/base with its interval on a log axis with
readable ratio ticks (0.5x 1x 2x), and the latency distribution per operation. Only formatting
happens here; every figure comes from :class:`~.compare.CompareResult`.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

from .compare import (CDF_POINTS, GATED, BuildComparison, Change, CompareResult, GateLimit, change_words, floor_words,
                      op_order, regression_reasons, throughput_not_compared)
from .html import MissingDependency, _pyplot

FINE_RATIO_TICKS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0)  # for an axis narrower than 0.5x–2x
MAX_BANNER_REASONS = 6  # gates that fired, listed in the banner (the tables show all)
MAX_TICKS = 9  # beyond this, only powers of ten (and 1x) are labelled: labels never overlap


def _template() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingDependency("HTML pages need jinja2 and matplotlib: pip install 'wdm-replay[html]'") from None
    env = jinja2.Environment(loader=jinja2.PackageLoader("wdmreplay.analysis", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("compare.html.j2")


def _svg(fig: Any, plt: Any) -> str:
    """A figure as inline SVG (text kept as text, so it stays crisp and selectable)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


def _ratio_label(x: float) -> str:
    return f"{x:g}x"


def ratio_ticks(lo: float, hi: float) -> list[float]:
    """Ratio ticks for a log axis from ``lo`` to ``hi``: 1-2-5 steps, thinned to decades (then every k-th
    decade, keeping 1x) when there would be more than :data:`MAX_TICKS`; finer steps on a narrow axis."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [float(f"{m}e{d}") for d in decades for m in (1, 2, 5) if lo <= float(f"{m}e{d}") <= hi]
    if len(ticks) < 3:
        ticks = [t for t in FINE_RATIO_TICKS if lo <= t <= hi]
    if len(ticks) > MAX_TICKS:
        ticks = [float(f"1e{d}") for d in decades if lo <= float(f"1e{d}") <= hi]
    if len(ticks) > MAX_TICKS:
        step = math.ceil(len(ticks) / MAX_TICKS)
        ticks = [t for t in ticks if round(math.log10(t)) % step == 0]
    return ticks or [1.0]


def _interval_plot(res: CompareResult, plt: Any) -> str | None:
    rows = [(f"{b.label}: {o.op} {c.name}", c) for b in res.builds for o in b.ops for c in o.latency
            if c.ci and c.name in GATED]
    rows += [(f"{b.label}: throughput", b.throughput) for b in res.builds if b.throughput and b.throughput.ci]
    if not rows:
        return None
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    fig, ax = plt.subplots(figsize=(10, 0.34 * len(rows) + 1.3))
    for y, (_, c) in enumerate(rows):
        color = "#b3261e" if c.regression else ("#a15c00" if c.significant else "#1f5fa8")
        ax.plot([c.ci[0], c.ci[1]], [y, y], color=color, lw=2.2)
        ax.plot([c.ratio], [y], "o", color=color)
    lo = min([c.ci[0] for _, c in rows] + [1.0 / (1.0 + res.threshold)])
    hi = max([c.ci[1] for _, c in rows] + [1.0 + res.threshold])
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.3, hi * 1.3)
    ticks = ratio_ticks(lo / 1.3, hi * 1.3)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _ratio_label(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(1.0 + res.threshold, color="#b3261e", lw=1, ls="--", label=f"threshold +{res.threshold * 100:g}%")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize="small")
    ax.set_xlabel(f"new / base with its {(1 - res.alpha) * 100:g}% interval (log scale; red: regression, "
                  f"orange: significant, blue: not significant)")
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig, plt)


def _ms_label(x: float) -> str:
    return f"{x:g} ms" if x >= 1 else f"{x * 1000:g} µs"


def _cdf_plot(res: CompareResult, plt: Any) -> str:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    sent: dict[str, set] = {}  # label -> ops its runs sent or skipped (so a build without answers shows as such)
    for r in res.runs:
        sent.setdefault(r.label, set()).update(op for op, s in r.ops.items() if s.sent or s.skipped)
    ops = sorted({op for ops in sent.values() for op in ops}, key=op_order)
    cols = 3 if len(ops) > 4 else 2 if len(ops) > 1 else 1
    rows = max(1, math.ceil(len(ops) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.5 * rows), squeeze=False)
    for ax, op in zip(axes.flat, ops):
        silent = []
        for k, label in enumerate(sent):
            ms = res.distributions[label].get(op)
            pts = [(m, q) for m, q in zip(ms or (), CDF_POINTS) if m > 0]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, color=f"C{k}")
            elif op in sent[label]:
                silent.append(label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _ms_label(x)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(op, fontsize="medium")
        ax.set_ylabel("fraction", fontsize="small")
        ax.grid(alpha=0.3, which="major")
        for label in silent:  # a legend entry without a line: the build is named, not silently missing
            ax.plot([], [], " ", label=f"{label}: no answered requests")
        ax.legend(fontsize="small", loc="lower right")
    for ax in list(axes.flat)[len(ops):]:
        ax.set_visible(False)
    fig.supxlabel("response time of answered requests (log scale)", fontsize="small")
    fig.tight_layout()
    return _svg(fig, plt)


# --- page model (numbers to strings): what the template reads, by attribute ------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    cls: str


@dataclass(frozen=True, slots=True)
class OpRow:
    op: str
    answered: str
    cells: tuple[Cell, ...]  # one per GATED quantile
    errors: str
    err_cls: str


@dataclass(frozen=True, slots=True)
class BuildView:
    label: str
    files: tuple[str, ...]
    regression: bool
    notes: tuple[str, ...]
    unanswered: tuple[tuple[str, tuple[str, ...]], ...]  # (side's label, operations)
    rows: tuple[OpRow, ...]
    throughput: str
    anomalies: str
    limits: tuple[GateLimit, ...]  # gates that cannot fire
    floor: str


@dataclass(frozen=True, slots=True)
class Side:
    label: str
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Figure:
    id: str
    svg: str
    caption: str


def _cell(c: Change | None, untested: str) -> Cell:
    if c is None:
        return Cell(untested, "none" if untested.startswith("no answered") else "")
    if c.ci is None:
        return Cell(f"not tested: {c.note}", "")
    text = f"{change_words(c.ratio)} [{c.ci[0]:.2f}–{c.ci[1]:.2f}]"
    return Cell(text + (" REGRESSION" if c.regression else ""),
                "regression" if c.regression else "significant" if c.significant else "")


def _build_context(res: CompareResult, b: BuildComparison) -> BuildView:
    side_label = {"base": res.base_label, "new": b.label}
    missing = {op for ops in b.unanswered.values() for op in ops}
    rows = []
    for o in b.ops:
        by_name = {c.name: c for c in o.latency}
        untested = "no answered requests" if o.op in missing else "not tested"
        e = o.errors
        rows.append(OpRow(
            o.op, f"{o.base_answered} / {o.new_answered}",
            tuple(_cell(by_name.get(q), untested) for q in GATED),  # by quantile name: absent when not estimated
            f"{100 * e.base_share:.1f}% → {100 * e.new_share:.1f}%" + (" REGRESSION" if e.regression else ""),
            "regression" if e.regression else "significant" if e.significant else ""))
    if b.throughput is not None:
        t = b.throughput
        tput = (f"{t.base:.1f} → {t.new:.1f} req/s, {t.ratio:.2f}x [{t.ci[0]:.2f}–{t.ci[1]:.2f}]"
                + (" REGRESSION" if t.regression else ""))
    else:
        tput = (f"not compared ({throughput_not_compared(b)}); achieved {res.base_label} "
                f"{'-' if b.rates.base is None else f'{b.rates.base:.1f}'} req/s, {b.label} "
                f"{'-' if b.rates.new is None else f'{b.rates.new:.1f}'} req/s")
    if b.base_anomalies is None or b.new_anomalies is None:
        anomalies = "not compared (no check)"
    else:
        diff = [f"{k} {b.base_anomalies[k]:g} → {b.new_anomalies[k]:g}" for k in b.base_anomalies
                if b.base_anomalies[k] or b.new_anomalies[k]]
        anomalies = ", ".join(diff) if diff else "none in either build"
    return BuildView(
        b.label, tuple(b.files), b.regression, tuple(b.notes),
        tuple((side_label[side], tuple(ops)) for side, ops in b.unanswered.items()),
        tuple(rows), tput, anomalies, tuple(b.limits),
        (f"One run on a side: between-run noise unknown, intervals widened by the calibrated noise floor "
         f"({floor_words()}) — a weaker verdict; compare 3+ runs per build for a stronger one."
         if b.noise_floor else ""))


def render_compare_html(res: CompareResult) -> str:
    """One self-contained HTML page of a comparison: banner, tables, gates that cannot fire, SVG charts."""
    template = _template()
    plt = _pyplot()
    plt.rcParams["svg.fonttype"] = "none"  # text as <text>: crisp, searchable, and its layout testable
    plt.rcParams["svg.hashsalt"] = "wdm-replay"  # reproducible element ids
    figures = []
    iv = _interval_plot(res, plt)
    if iv:
        figures.append(Figure("intervals", iv,
                              "Ratio new/base of every gated quantile with its interval (a ratio above 1 is slower)"))
    figures.append(Figure("distributions", _cdf_plot(res, plt),
                          "Latency distribution per operation (answered requests, every run of a build pooled)"))
    bad = [b for b in res.builds if b.regression]
    reasons = [f"{b.label}: {r}" for b in bad for r in regression_reasons(res, b)]
    if len(reasons) > MAX_BANNER_REASONS:
        reasons = reasons[:MAX_BANNER_REASONS - 1] + [f"… and {len(reasons) - MAX_BANNER_REASONS + 1} more (tables below)"]
    headline = (f" — {', '.join(b.label for b in bad)} vs {res.base_label}" if bad else
                f" — {', '.join(b.label for b in res.builds)} vs {res.base_label}")
    return template.render(
        overall="REGRESSION" if res.regression else "no regression", regression=res.regression, headline=headline,
        reasons=reasons, base=Side(res.base_label, tuple(res.base_files)), digest=res.digest,
        threshold=f"{res.threshold * 100:g}%", error_threshold=f"{res.error_threshold * 100:g} points",
        level=f"{(1 - res.alpha) * 100:g}%", builds=[_build_context(res, b) for b in res.builds], figures=figures)
