"""The HTML report: one self-contained file, plots drawn by matplotlib and embedded as base64 PNG.

matplotlib is optional (the ``html`` extra) and imported only here, only when an HTML report is
asked for; without it the user gets one line saying what to install.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from ..api import WdmError
from .faults import availability_plot, shade_faults
from .report import check_lines, format_expected, render_text


class MissingDependency(WdmError):
    """An optional dependency a feature needs is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("HTML reports need matplotlib: pip install 'wdm-replay[html]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, plt: Any) -> str:
    buf = io.BytesIO()
    # A fixed metadata set keeps the bytes reproducible (no creation date, no software version).
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: dict) -> list[tuple[str, str]]:
    plt = _pyplot()
    s = report["stats"]
    tl = s["timeline"]
    out = []
    fig, ax = plt.subplots(figsize=(9, 3.2))
    nan = float("nan")
    ax.plot(tl["t"], [nan if v is None else v for v in tl["p50_ms"]], label="p50")
    ax.plot(tl["t"], [nan if v is None else v for v in tl["p99_ms"]], label="p99")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("response time (ms)")
    ax.set_title("Latency percentiles over time")
    shade_faults(ax, report)
    ax.legend()
    ax.grid(alpha=0.3)
    out.append(("Latency percentiles over time", _png(fig, plt)))

    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = tl["bucket"]
    ax.bar(tl["t"], tl["count"], width=width, align="edge", label="all", color="#8da0cb")
    ax.bar(tl["t"], tl["errors"], width=width, align="edge", label="errors", color="#fc8d62")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(f"requests per {width:g} s")
    ax.set_title("Throughput over time")
    shade_faults(ax, report)
    ax.legend()
    ax.grid(alpha=0.3)
    out.append(("Throughput over time", _png(fig, plt)))
    if report.get("faults"):
        out.append(("Availability over time (fault windows shaded)", availability_plot(report, plt, _png)))

    fig, ax = plt.subplots(figsize=(9, 4))
    for op, cdf in s["cdf"].items():
        pts = [(ms, q) for ms, q in zip(cdf["ms"], cdf["q"]) if ms is not None and ms > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=op)
    ax.set_xscale("log")
    ax.set_xlabel("response time (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF per operation")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3, which="both")
    out.append(("Latency CDF per operation", _png(fig, plt)))
    return out


def _anomaly_table(report: dict) -> str:
    chk = report.get("check")
    if chk is None:
        return "<p>Check not run (results loaded without args).</p>"
    rows = chk["consistency"]["anomalies"]
    if not rows:
        return "<p>No anomalies.</p>"
    e = html.escape
    body = "".join(
        f"<tr><td>{e(a['kind'])}</td><td>{e(a['entity'])}</td><td>{e(str(a['id']))}</td>"
        f"<td>{e(format_expected(a['expected']))}</td><td>{e(format_expected(a['actual']))}</td>"
        f"<td>{e(a['detail'])}</td><td>{e(', '.join(a['orders'][:10]))}</td></tr>"
        for a in rows)
    return ("<table><tr><th>kind</th><th>entity</th><th>id</th><th>expected</th><th>actual</th>"
            f"<th>detail</th><th>orders</th></tr>{body}</table>")


def render_html(report: dict) -> str:
    """One self-contained HTML page: summary, plots (base64 PNG), anomalies table, full text report."""
    e = html.escape
    r = report["run"]
    verdict = ""
    if report.get("check") is not None:
        verdict = check_lines(report["check"])[-1]
    figs = "".join(f'<figure><img alt="{e(t)}" src="data:image/png;base64,{b64}"><figcaption>{e(t)}</figcaption></figure>'
                   for t, b64 in _plots(report))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wdm-replay report: {e(str(r['label']))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:90%}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:85%}}figure{{margin:1em 0}}</style></head>
<body><h1>wdm-replay report: {e(str(r['label']))}</h1>
<p>{e(r['file'])} — trace {e(str(r['trace']['workload']))} {e(str(r['trace']['digest']))};
{r['requests']} requests; {'complete' if r['complete'] else '<strong>PARTIAL RUN</strong>'}.
<strong>{e(verdict)}</strong></p>
<h2>Plots</h2>{figs}
<h2>Anomalies</h2>{_anomaly_table(report)}
<h2>Text report</h2><pre>{e(render_text(report))}</pre>
</body></html>
"""
