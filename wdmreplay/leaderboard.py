"""The leaderboard's renderings: ``leaderboard.json``, ``leaderboard.csv`` and ``leaderboard.html``.

Render only: the ranking and the figures come computed in a :class:`~wdmreplay.grade.Leaderboard`.
The HTML page is a Jinja2 template (``templates/leaderboard.html.j2``): self-contained (inline CSS
and a few lines of script that sort a column on a click; no external URL), one row per team.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import WdmError
from .traces.stream import write_text_atomically

if TYPE_CHECKING:
    from .grade import Leaderboard, TeamRow

CSV_COLUMNS = ("rank", "name", "status", "consistency", "anomalies", "stress_p50_ms", "stress_p99_ms",
               "capacity_rate", "capacity_speed", "faults_availability", "faults_recovery_s", "error", "target")
# In the order of team_record.STATUSES: the status column sorts in this order.
STATUS_TEXT = {"ok": "OK", "inconclusive": "INCONCLUSIVE", "not_clean": "NOT CLEAN", "error": "CRASHED",
               "unreachable": "UNREACHABLE"}


def render_leaderboard_json(board: "Leaderboard") -> str:
    """Stable pretty JSON: ``{"teams": [{"name", "rank", "status", …}], "rule", "fairness", …}``."""
    return json.dumps(board.as_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _cell(x: object) -> str:
    return "" if x is None else str(x)


def render_leaderboard_csv(board: "Leaderboard") -> str:
    """One line per team in rank order (the columns of :data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in board.rows:
        anomalies = " ".join(f"{k}={v}" for k, v in r.anomalies.items())
        w.writerow([r.rank, r.name, r.status, _cell(r.consistency), anomalies, _cell(r.stress_p50_ms),
                    _cell(r.stress_p99_ms), _cell(r.capacity_rate), _cell(r.capacity_speed), _cell(r.availability),
                    _cell(r.recovery_s), _cell(r.error), r.target])
    return buf.getvalue()


def _fmt(x: float | None, nd: int = 1, suffix: str = "") -> str:
    return "–" if x is None else f"{x:,.{nd}f}{suffix}"


def _when(t: float | None) -> str:
    return "–" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def render_leaderboard_html(board: "Leaderboard") -> str:
    """The self-contained leaderboard page."""
    try:
        import jinja2
    except ImportError:  # pragma: no cover - jinja2 is a dependency
        raise WdmError("the HTML leaderboard needs jinja2: pip install jinja2") from None
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    env.filters["when"] = _when
    template = env.from_string(resources.files("wdmreplay").joinpath("templates/leaderboard.html.j2")
                               .read_text(encoding="utf-8"))
    counts = {s: sum(1 for r in board.rows if r.status == s) for s in STATUS_TEXT}
    best = next((r for r in board.rows if r.ranked), None)
    return template.render(board=board, rows=board.rows, counts=counts, best=best, status_text=STATUS_TEXT,
                           sort_keys=SortKeys.of)


@dataclass(frozen=True, slots=True)
class SortKeys:
    """A row's ``data-sort`` value per sortable column of the page: a number as text, or empty when not
    measured (sorted last either way). Built once per row (:meth:`of`); the template reads the fields."""

    rank: str
    status: str
    anomalies: str  # the consistency run's anomaly count (empty: the suite did not run)
    p50: str
    p99: str
    capacity: str
    availability: str
    recovery: str

    @classmethod
    def of(cls, row: "TeamRow") -> "SortKeys":
        """The sort values of ``row``'s cells."""
        def num(v: float | None) -> str:
            return "" if v is None else repr(float(v))

        return cls(num(row.rank), str(list(STATUS_TEXT).index(row.status)),
                   num(sum(row.anomalies.values()) if row.consistency else None), num(row.stress_p50_ms),
                   num(row.stress_p99_ms), num(row.capacity_rate), num(row.availability), num(row.recovery_s))


def write_leaderboard(board: "Leaderboard", outdir: str | Path) -> tuple[str, ...]:
    """Write the three files into ``outdir`` (each atomically); their paths."""
    outdir = Path(outdir)
    out = []
    for name, text in (("leaderboard.json", render_leaderboard_json(board)),
                       ("leaderboard.csv", render_leaderboard_csv(board)),
                       ("leaderboard.html", render_leaderboard_html(board))):
        path = outdir / name
        try:
            write_text_atomically(path, text)
        except OSError as e:
            raise WdmError(f"{path}: cannot write: {e.strerror}") from None
        out.append(str(path))
    return tuple(out)


def render_leaderboard_text(board: "Leaderboard") -> str:
    """The board for a terminal: one line per team, the rule, the traces."""
    lines = [f"{'rank':>4}  {'team':<16} {'status':<13} {'consistency':<12} {'anomalies':>9} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'capacity/s':>10} {'avail.':>7} {'recovery':>8}"]
    for r in board.rows:
        lines.append(f"{r.rank:>4}  {r.name:<16} {STATUS_TEXT[r.status]:<13} {r.consistency or '–':<12} "
                     f"{sum(r.anomalies.values()):>9} {_fmt(r.stress_p50_ms):>8} {_fmt(r.stress_p99_ms):>8} "
                     f"{_fmt(r.capacity_rate, 0):>10} "
                     f"{'–' if r.availability is None else f'{100 * r.availability:.1f}%':>7} "
                     f"{_fmt(r.recovery_s, 2, ' s'):>8}" + (f"  ({r.error or r.why})" if r.error or r.why else ""))
    lines.append(f"rule: {board.rule}")
    lines.append("traces: " + ", ".join(f"{k} {v[:16]}…" for k, v in board.traces.items()))
    return "\n".join(lines) + "\n"
