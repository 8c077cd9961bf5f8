"""Results → answers: expectation diff, consistency checker, statistics, report, compare.

Library entries: :func:`check_results` (→ :class:`CheckReport`, ``.verdict``, ``.clean``, ``.anomalies``),
:func:`build_report` (→ :class:`~.report.Report`; its ``to_json()`` has the stable keys), :func:`render_text`, :func:`render_json`,
:func:`render_html` (a page from Jinja2 templates; its charts need matplotlib, imported only then), :func:`compare_runs`
(→ :class:`CompareResult`) and :func:`render_compare_text`.
"""

from __future__ import annotations

from .check import CheckReport, Verdict, check_results
from .compare import CompareError, CompareResult, compare_runs
from .compare_text import render_compare_text
from .consistency import KIND_MEANING, KINDS, AnalysisError, Anomaly, check_consistency
from .expectations import ExpectationDiff, diff_expectations
from .report import build_report, render_check_text, render_json, render_text
from .stats import compute_stats


def render_html(report: dict) -> str:
    """One self-contained HTML page of a report (charts when matplotlib is installed; the tables always)."""
    from .html import render_html as _render

    return _render(report)


__all__ = [
    "AnalysisError", "Anomaly", "CheckReport", "Verdict", "CompareError", "CompareResult", "ExpectationDiff", "KINDS",
    "KIND_MEANING", "build_report", "check_consistency", "check_results", "compare_runs", "compute_stats",
    "diff_expectations", "render_check_text", "render_compare_text", "render_html", "render_json",
    "render_text",
]
