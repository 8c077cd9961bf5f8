"""The HTML report: one self-contained page rendered from a Jinja2 template (``templates/``).

What a person looks at first: a verdict banner in colour with the deciding sections, a table of
the four sections, a per-operation table, the anomalies with each one's story drawn as an inline SVG
timeline (one lane per session, a bar from sent to done coloured by outcome, the overlap shaded),
then charts over time as inline SVG: requests per second stacked by outcome, latency percentiles
above the unanswered share on one time axis (so an outage never reads as a speed-up), fault windows
shaded and recovery marked, and a latency CDF per operation as small multiples.

matplotlib is optional (the ``html`` extra) and imported only for the charts; without it the page
still renders every table and timeline and says that the charts need it. Render only: every figure
comes from the typed :class:`~.report.Report` (:func:`~.report.build_report`).
"""

from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import WdmError
from ..terms import named
from .check import CLEAN, CheckReport
from .recovery import WindowRecovery
from .report import Report, format_expected, format_speed
from .stats import Stats
from .story import Story, StoryRequest, told_headline

MAX_ANOMALY_ROWS = 15  # rows of the anomaly table (the page says how many more)
TIMELINE_MAX_LANES = 14  # sessions drawn per timeline (the table lists every request)
OUTAGE_SHARE = 50.0  # % unanswered in a time bucket above which its latency is not drawn (it is an outage)
_OUTCOME_CSS = {"ok": "ok", "fail": "fail", "error": "unanswered", "timeout": "unanswered",
                "conn_error": "unanswered", "skipped": "read"}
_COLOURS = {"ok": "#2e8b57", "fail": "#e08a00", "unanswered": "#b3261e", "fault": "#b3261e"}
_VERDICT_CSS = {"CLEAN": "clean", "NOT CLEAN": "not-clean", "INCONCLUSIVE": "inconclusive"}


class MissingDependency(WdmError):
    """An optional dependency a feature needs is not installed."""


def _env() -> Any:
    try:
        import jinja2
    except ImportError:  # a runtime dependency; only a broken install lacks it
        raise MissingDependency("HTML reports need jinja2: pip install 'jinja2>=3.1'") from None
    return jinja2.Environment(loader=jinja2.PackageLoader("wdmreplay.analysis", "templates"),
                              autoescape=jinja2.select_autoescape(("html", "j2")), trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _pyplot_or_none() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _pyplot() -> Any:
    """pyplot, or MissingDependency (one line: what to install) — for pages that are nothing but charts."""
    plt = _pyplot_or_none()
    if plt is None:
        raise MissingDependency("HTML reports need matplotlib: pip install 'wdm-replay[html]'")
    return plt


# --- page model (numbers to strings): what the template reads, by attribute ------------------------


@dataclass(frozen=True, slots=True)
class Banner:
    verdict: str
    css: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SectionRow:
    name: str
    status: str
    css: str
    figure: str
    reasons: tuple[str, ...]
    deciding: bool


@dataclass(frozen=True, slots=True)
class OpRow:
    name: str
    count: str
    rate: str
    ok: str
    fail: str
    unanswered: str
    unanswered_n: int
    skipped: str
    p50: str
    p90: str
    p99: str
    max: str


@dataclass(frozen=True, slots=True)
class StoryRow:
    n: int
    session: int
    op: str
    order: str | None
    amount_text: str
    intended: str
    sent: str
    done: str
    status: Any
    css: str
    concurrent: str
    answer: str


@dataclass(frozen=True, slots=True)
class StoryView:
    headline: str
    arithmetic: tuple[str, ...]
    omitted: int
    requests: tuple[StoryRow, ...]


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    kind: str
    entity: str
    id: str
    expected: str
    actual: str
    headline: str
    story: StoryView | None
    timeline: str  # inline SVG ("" without a story)

    @property
    def name(self) -> str:
        """The entity as a person names it ("item 3", "item-285"): :func:`wdmreplay.terms.named`."""
        return named(self.entity, self.id)


@dataclass(frozen=True, slots=True)
class FaultRow:
    name: str
    window: str
    requests: int
    unanswered: str
    baseline: str
    first: str
    recovery: str


@dataclass(frozen=True, slots=True)
class ContradictionRow:
    category: str
    scenario: str
    op: str
    expect: str
    count: int
    example: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    caption: str
    svg: str


def _n(x: Any, nd: int = 1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _count_share(n: int, total: int) -> str:
    return "0" if n == 0 else f"{n:,} ({100.0 * n / total:.1f}%)" if total else f"{n:,}"


def _banner(report: Report) -> Banner:
    r, chk = report.run, report.check
    lines: list[str] = []
    if not r.complete:
        lines.append(f"PARTIAL RUN: {r.reason or 'interrupted'} — what was not recorded cannot be judged.")
    if chk is None:
        return Banner("NOT CHECKED", "unchecked",
                      (*lines, "Statistics only: the consistency check was not run (report --no-check)."))
    verdict = chk.verdict.verdict
    sec = chk.verdict.by_name
    for name in chk.verdict.decided_by:
        reasons = sec[name].reasons
        lines.append(f"{name} {sec[name].status}: " + ("; ".join(reasons[:3]) if reasons else "see below")
                     + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""))
    if verdict == CLEAN:
        lines.append("Every section passed: no contradicted expectation, no anomaly, availability met, "
                     "every entity read back.")
    return Banner(verdict, _VERDICT_CSS[verdict], tuple(lines))


def _sections(chk: CheckReport | None) -> list[SectionRow]:
    if chk is None:
        return []
    e, c, av, cov = chk.expectations, chk.consistency, chk.availability, chk.coverage
    n_anom = len(chk.anomalies)
    o = av.overall
    read = ", ".join(f"{n:,} {k}s" for k, n in cov.read.items()) or "nothing"
    st = cov.settle
    figures = {
        "correctness": f"{e.mismatches:,} of {e.checked:,} answers contradict what the trace proves",
        "consistency": ("no final state in the results: not checked" if not c.final_state else
                        f"{n_anom:,} anomalies over {c.checked.items:,} items, {c.checked.users:,} users, "
                        f"{c.checked.orders:,} orders"),
        "availability": (f"{o.answered:,} of {o.counted:,} requests answered"
                         + ("" if o.share is None else f" ({100.0 * o.share:.1f}%)")
                         + f"; at least {chk.min_availability:g}% needed per operation"),
        "coverage": f"read back {read}; " + ("state read once" if st is None else
                                             "settled" if st.settled else "NOT settled"),
    }
    out = []
    for s in chk.verdict.sections:
        out.append(SectionRow(s.name, s.status, s.status, figures[s.name], s.reasons[:5],
                              s.name in chk.verdict.decided_by))
    return out


def _ops(stats: Stats) -> list[OpRow]:
    rows = []
    for name, b in [*stats.by_op.items(), ("all operations", stats.overall)]:
        oc, n = b.outcomes, b.count
        unans = b.unanswered
        lat = b.response_ms
        rows.append(OpRow(name, f"{n:,}", _n(b.rate), _count_share(oc["ok"], n), _count_share(oc["fail"], n),
                          _count_share(unans, n), unans, _count_share(oc["skipped"], n), _n(lat["p50"]),
                          _n(lat["p90"]), _n(lat["p99"]), _n(lat["max"])))
    return rows


def _story_view(story: Story) -> StoryView:
    rows = tuple(
        StoryRow(r.n, r.sid, r.op, r.order, "" if r.amount is None else f"{r.amount:+d}", _ms(r.intended_ms),
                 _ms(r.sent_ms), _ms(r.done_ms), r.status or r.outcome, _OUTCOME_CSS[r.outcome],
                 ", ".join(f"#{k}" for k in r.concurrent[:6]) + (" …" if len(r.concurrent) > 6 else ""),
                 r.answer if len(r.answer) <= 90 else r.answer[:89] + "…")
        for r in story.requests)
    return StoryView(story.headline, story.arithmetic, story.omitted, rows)


def _anomalies(report: Report) -> tuple[list[AnomalyRow] | None, int, str]:
    chk = report.check
    if chk is None:
        return None, 0, "Not checked: the results were loaded without their requests' arguments."
    rows = chk.anomalies
    if not chk.consistency.final_state and not rows:
        return None, 0, "Not checked: the run holds no final state (replayed with --no-final-read, or cut short)."
    stories = {(s.entity, s.id): s for s in report.stories}
    out = []
    for a in rows[:MAX_ANOMALY_ROWS]:
        s = stories.get((a.entity, str(a.id)))  # keyed by entity: the anomalies told as stories
        if s is not None and not s.requests:
            s = None  # an aggregate: its headline says it all
        actual = ("not found" if a.kind == "lost_entity" else "-") if a.actual is None else format_expected(a.actual)
        out.append(AnomalyRow(a.kind, a.entity, a.id, format_expected(a.expected), actual, told_headline(a),
                              None if s is None else _story_view(s), "" if s is None else timeline_svg(s)))
    counts = chk.anomaly_counts
    summary = f"{len(rows):,} anomalies: " + ", ".join(f"{k} {n:,}" for k, n in counts.items() if n)
    summary += (". Each told below with its timeline: the first of each kind, then the next ones"
                if stories else "")
    return out, max(0, len(rows) - MAX_ANOMALY_ROWS), summary


def _windows(report: Report) -> tuple[WindowRecovery, ...]:
    return () if report.faults is None else report.faults.windows


def _faults(report: Report) -> list[FaultRow]:
    out = []
    for w in _windows(report):
        end = "open to the end" if math.isinf(w.end) else f"{w.end:.2f}"
        out.append(FaultRow(w.name, f"{w.start:.2f} → {end}", w.requests,
                            "-" if w.error_share is None else f"{100.0 * w.error_share:.1f}%",
                            f"{100.0 * w.baseline:.1f}%",
                            "none" if w.first_success_s is None else f"{w.first_success_s:.2f} s after",
                            "not recovered" if w.recovery_s is None else f"{w.recovery_s:.2f} s"))
    return out


def _contradictions(chk: CheckReport | None) -> list[ContradictionRow]:
    if chk is None:
        return []
    out = []
    for g in chk.expectations.groups:
        if g.category not in ("unexpected_ok", "unexpected_fail"):
            continue
        x = g.examples[0] if g.examples else None
        ex = "" if x is None else f"session {x.sid} step {x.step}: {x.outcome} {x.status} {x.error or ''}"
        out.append(ContradictionRow(g.category.replace("_", " "), g.scenario, g.op, g.expect, g.count, ex[:120]))
    return out[:30]


def render_html(report: Report) -> str:
    """One self-contained HTML page of a report (tables always; charts when matplotlib is installed)."""
    r, s = report.run, report.stats
    anomalies, more, summary = _anomalies(report)
    plt = _pyplot_or_none()
    page = _env().get_template("report.html.j2").render(
        run=r, banner=_banner(report), sections=_sections(report.check), ops=_ops(s),
        anomalies=anomalies, anomalies_more=more, anomaly_summary=summary, faults=_faults(report),
        charts=None if plt is None else charts(report, plt), contradictions=_contradictions(report.check),
        span=_n(s.span, 2), rate=_n(s.overall.rate), speed=format_speed(r.speed))
    return page


# --- the story's timeline, drawn directly as SVG ------------------------------------------------------


def _esc(text: Any) -> str:
    return html.escape(str(text))  # quotes too: the SVG's attribute values


def _drawn(requests: tuple[StoryRequest, ...]) -> list[StoryRequest]:
    """The requests a timeline draws: the racing ones (and what overlaps them), else the last writes."""
    timed = [r for r in requests if r.sent_ms is not None and r.done_ms is not None]
    racing = [r for r in timed if r.concurrent]
    if racing:
        lo, hi = min(r.sent_ms for r in racing), max(r.done_ms for r in racing)
        pick = [r for r in timed if r.done_ms >= lo and r.sent_ms <= hi and (r.amount is not None
                                                                                    or r.concurrent)]
    else:  # nothing raced: the last requests, create and reads included (a lost entity's whole story)
        pick = timed[-10:]
    return pick


def _overlaps(bars: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans where two or more bars are in flight at once (sweep over start/end events)."""
    events = sorted([(s, 1) for s, _ in bars] + [(e, -1) for _, e in bars], key=lambda x: (x[0], x[1]))
    out, depth, start = [], 0, 0.0
    for t, d in events:
        if depth < 2 <= depth + d:
            start = t
        elif depth >= 2 > depth + d and t > start:
            out.append((start, t))
        depth += d
    return out


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


def _next_bar_within(drawn: list[StoryRequest], r: StoryRequest, x: Any, until: float) -> bool:
    """Whether a later bar of ``r``'s lane starts before ``until`` (its label would run over it)."""
    return any(o.sid == r.sid and o.sent_ms > r.sent_ms and x(o.sent_ms) < until
               for o in drawn)


def timeline_svg(story: Story) -> str:
    """A story's timeline as inline SVG: one lane per session, a bar from sent to done per request,
    coloured by outcome (racing bars outlined), the spans where two or more overlap shaded."""
    drawn = _drawn(story.requests)
    if not drawn:
        return '<p class="note">No request of this story has both a send and an answer time to draw.</p>'
    lanes: list[int] = []
    for r in drawn:
        if r.sid not in lanes:
            lanes.append(r.sid)
    hidden = len(lanes) - TIMELINE_MAX_LANES
    lanes = lanes[:TIMELINE_MAX_LANES]
    drawn = [r for r in drawn if r.sid in lanes]
    lo, hi = min(r.sent_ms for r in drawn), max(r.done_ms for r in drawn)
    pad = max((hi - lo) * 0.04, 0.5)
    lo, hi = lo - pad, hi + pad
    left, right, top, lane_h = 118.0, 12.0, 26.0, 24.0
    width = 1000.0
    height = top + lane_h * len(lanes) + 24.0
    plot_w = width - left - right

    def x(t: float) -> float:
        return left + (t - lo) / (hi - lo) * plot_w

    parts = [f'<svg class="timeline" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
             f'aria-label="timeline of {_esc(story.entity)} {_esc(story.id)}">']
    parts.append(f'<text x="{left:.0f}" y="14">ms on the run\'s clock · one lane per session · bar = sent → done · '
                 'shaded = 2xx or unanswered requests in flight together</text>')
    for k, sid in enumerate(lanes):
        y = top + k * lane_h
        parts.append(f'<rect class="lane" x="{left:.1f}" y="{y + 2:.1f}" width="{plot_w:.1f}" height="{lane_h - 4:.1f}"/>')
        parts.append(f'<text x="{left - 6:.0f}" y="{y + lane_h / 2 + 4:.1f}" text-anchor="end">session {sid}</text>')
    # Shade where the requests that may have taken effect (2xx or unanswered) overlap: the race itself.
    racing = [(r.sent_ms, r.done_ms) for r in drawn if r.concurrent and r.outcome != "fail"]
    if not _overlaps(racing):
        racing = [(r.sent_ms, r.done_ms) for r in drawn if r.concurrent]
    y0, y1 = top, top + lane_h * len(lanes)
    for s, e in _overlaps(racing):
        parts.append(f'<rect class="overlap" x="{x(s):.1f}" y="{y0:.1f}" width="{max(x(e) - x(s), 1):.1f}" '
                     f'height="{y1 - y0:.1f}"/>')
    taken: dict[int, float] = {}  # per lane, the x up to which bars and labels already stand
    for r in drawn:
        k = lanes.index(r.sid)
        y = top + k * lane_h + 5
        x0, x1 = x(r.sent_ms), x(r.done_ms)
        w = max(x1 - x0, 3.0)
        css = _OUTCOME_CSS[r.outcome] + (" concurrent" if r.concurrent else "")
        amount = "" if r.amount is None else f" {r.amount:+d}"
        label = f"#{r.n} {r.op}{amount} → {r.status or r.outcome}"
        tip = (f"#{r.n} session {r.sid} {r.op} {r.order or ''}{amount}: sent {r.sent_ms:.1f} ms, "
               f"done {r.done_ms:.1f} ms, {r.status or r.outcome} {r.answer}")
        parts.append(f'<rect class="bar {css}" data-n="{r.n}" x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" '
                     f'height="{lane_h - 10:.1f}" rx="2"><title>{_esc(tip)}</title></rect>')
        # A label inside the bar, else right of it, else left of it — never over another label or bar
        # of its lane (requests of one session follow each other); else only the tooltip names it.
        text_w = 6.2 * len(label)
        free = taken.get(k, left)
        ty = y + lane_h / 2 - 1
        if w > 7.0 * len(label) and x0 >= free:
            parts.append(f'<text class="in-bar" x="{x0 + 4:.1f}" y="{ty:.1f}">{_esc(label)}</text>')
        elif x1 + 6 + text_w < width and not _next_bar_within(drawn, r, x, x1 + 6 + text_w):
            parts.append(f'<text x="{x1 + 4:.1f}" y="{ty:.1f}">{_esc(label)}</text>')
            x1 = x1 + 6 + text_w
        elif x0 - 6 - text_w > free:
            parts.append(f'<text x="{x0 - 4:.1f}" y="{ty:.1f}" text-anchor="end">{_esc(label)}</text>')
        taken[k] = max(x1, x0 + w)
    parts.append(f'<line class="axis" x1="{left:.1f}" x2="{width - right:.1f}" y1="{y1 + 2:.1f}" y2="{y1 + 2:.1f}"/>')
    for t in _ticks(lo, hi):
        parts.append(f'<line class="axis" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{y1 + 2:.1f}" y2="{y1 + 6:.1f}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{y1 + 18:.1f}" text-anchor="middle">{t:g}</text>')
    parts.append("</svg>")
    legend = ('<div class="legend"><span><i style="background:#2e8b57"></i>answered 2xx</span>'
              '<span><i style="background:#e08a00"></i>refused 4xx</span>'
              '<span><i style="background:#b3261e"></i>unanswered</span>'
              '<span><i style="background:#f5c518;opacity:.5"></i>in flight together (2xx or unanswered)</span>'
              + (f"<span>{hidden} more sessions not drawn (listed below)</span>" if hidden > 0 else "") + "</div>")
    return "".join(parts) + legend


# --- charts (matplotlib's SVG backend) --------------------------------------------------------------


def _svg(fig: Any, plt: Any, salt: str) -> str:
    """A figure as inline SVG: text as text, ids unique per chart, no XML prologue, no fixed size."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1', text, count=1)
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _shade(ax: Any, report: Report, *, label: bool = False) -> None:
    """Fault windows shaded red; each recovery marked by a dashed green line."""
    span = report.stats.span
    for k, w in enumerate(_windows(report)):
        end = w.end if not math.isinf(w.end) else span or w.start
        # Hatched, over the bars: told apart from the pink of a mostly unanswered second.
        ax.axvspan(w.start, end, facecolor="none", edgecolor=_COLOURS["fault"], hatch="///", alpha=0.55, lw=0,
                   zorder=3, label="fault window" if label and k == 0 else None)
        if w.recovery_s is not None and not math.isinf(w.end):
            ax.axvline(w.end + w.recovery_s, color="#1f7a3a", ls="--", lw=1.2,
                       label="recovered" if label and k == 0 else None)


def charts(report: Report, plt: Any) -> list[Chart]:
    """The page's charts as inline SVG (id, caption, svg)."""
    tl = report.stats.timeline
    faults = "; fault windows hatched red, recovery dashed green" if report.faults is not None else ""
    out: list[Chart] = []
    if tl.t:
        out.append(Chart("rate", f"Requests per second by outcome (by answer time){faults}",
                         _svg(_rate_chart(report, plt), plt, "rate")))
        out.append(Chart("latency", "Latency percentiles over time, above the share of requests that got "
                                    "no answer; where most got none, the latency (of failing) is not drawn "
                                    f"but shaded — an outage never reads as a speed-up{faults}",
                         _svg(_latency_chart(report, plt), plt, "latency")))
    if report.stats.cdf:
        out.append(Chart("cdf", "Response-time CDF per operation (log scale; grey: the other operations)",
                         _svg(_cdf_chart(report, plt), plt, "cdf")))
    return out


def _rate_chart(report: Report, plt: Any) -> Any:
    tl = report.stats.timeline
    w = tl.bucket
    ok = [v / w for v in tl.ok]
    un = [v / w for v in tl.errors]
    refused = [(c - o - e) / w for c, o, e in zip(tl.count, tl.ok, tl.errors)]
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ax.bar(tl.t, ok, width=w, align="edge", color=_COLOURS["ok"], label="answered 2xx")
    ax.bar(tl.t, refused, width=w, align="edge", bottom=ok, color=_COLOURS["fail"], label="refused 4xx")
    ax.bar(tl.t, un, width=w, align="edge", bottom=[a + b for a, b in zip(ok, refused)],
           color=_COLOURS["unanswered"], label="unanswered")
    _shade(ax, report, label=True)
    ax.set_ylabel("requests / s")
    ax.set_xlabel("seconds since the start")
    ax.set_xlim(0, tl.t[-1] + w)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig


def _latency_chart(report: Report, plt: Any) -> Any:
    tl = report.stats.timeline
    w = tl.bucket
    nan = float("nan")
    mid = [t + w / 2 for t in tl.t]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 3.9), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    share = [100.0 * e / c if c else 0.0 for c, e in zip(tl.count, tl.errors)]
    # A second mostly unanswered is an outage: its "latency" is how fast requests fail, so it is not
    # drawn as a point of the line (which would fall) but shaded, the share below saying why.
    outage = [sh >= OUTAGE_SHARE for sh in share]
    for series, colour, name in ((tl.p50_ms, "#1f77b4", "p50"), (tl.p99_ms, "#6a3d9a", "p99")):
        ax.plot(mid, [nan if v is None or out else v for v, out in zip(series, outage)], marker=".", ms=3, lw=1.4,
                color=colour, label=name)
    for k, (t, out) in enumerate(zip(tl.t, outage)):
        if out:
            ax.axvspan(t, t + w, color=_COLOURS["unanswered"], alpha=0.12, lw=0,
                       label="mostly unanswered" if k == outage.index(True) else None)
    _shade(ax, report, label=True)
    ax.set_ylabel("response ms")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
    ax.grid(alpha=0.3)
    bx.bar(tl.t, share, width=w, align="edge", color=_COLOURS["unanswered"])
    _shade(bx, report)
    bx.set_ylim(0, 100)
    bx.set_ylabel("unanswered %")
    bx.set_xlabel("seconds since the start")
    bx.set_xlim(0, tl.t[-1] + w)
    bx.grid(alpha=0.3)
    return fig


def _cdf_chart(report: Report, plt: Any) -> Any:
    from matplotlib.ticker import NullFormatter

    cdf = report.stats.cdf
    names = list(cdf)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.2 * rows + 0.4), sharey=True, squeeze=False)
    every = [(ms, q) for c in cdf.values() for ms, q in zip(c.ms, c.q) if ms and ms > 0]
    lo = min((ms for ms, _ in every), default=0.1)
    hi = max((ms for ms, _ in every), default=1.0)
    if hi < 10 * lo:  # at least a decade, so the log axis has readable ticks
        mid = (lo * hi) ** 0.5
        lo, hi = mid / 10 ** 0.5, mid * 10 ** 0.5
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        pts = [(ms, q) for ms, q in zip(cdf[names[k]].ms, cdf[names[k]].q) if ms is not None and ms > 0]
        for other in names:
            if other != names[k]:
                o = [(ms, q) for ms, q in zip(cdf[other].ms, cdf[other].q) if ms is not None and ms > 0]
                ax.plot([p[0] for p in o], [p[1] for p in o], color="#c9d1d9", lw=0.8)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#1f77b4", lw=1.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
        ax.set_xlim(lo * 0.8, hi * 1.25)
        ax.set_title(names[k], fontsize="medium")
        ax.grid(alpha=0.3, which="major")
        if k % cols == 0:
            ax.set_ylabel("fraction ≤ x")
        if k >= len(names) - cols:
            ax.set_xlabel("response ms")
    fig.tight_layout()
    return fig
