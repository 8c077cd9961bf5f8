"""A team's grading record, ``team.json`` (schema ``wdm-grade-team/1``): the JSON edge of ``grade``.

:class:`TeamRecord` holds one team's status and the :class:`SuiteRun` of each suite it ran;
:func:`write_record` writes it atomically when the team is done, and :func:`read_record` reads it
back, so a rerun of ``grade`` skips the teams that have one (a grading night resumes after a crash).
:mod:`.grade` makes the records, :func:`~wdmreplay.grade.build_leaderboard` ranks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .traces.stream import write_text_atomically

SUITES = ("consistency", "stress", "capacity", "faults")
STATUSES = ("ok", "inconclusive", "not_clean", "error", "unreachable")
TEAM_SCHEMA = "wdm-grade-team/1"


# --- the record --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SuiteRun:
    """What one suite found for a team; a figure the suite does not measure stays None.

    ``rate`` is the run's achieved requests/s, or for ``capacity`` the offered requests/s at the
    knee (``speed``). ``skipped`` says why a suite did not run for this team.
    """

    verdict: str | None = None  # CLEAN / NOT CLEAN / INCONCLUSIVE (capacity: NOT CLEAN when a step was)
    results: str | None = None  # results file (or capacity.json), relative to the team's directory
    report: str | None = None  # report file, relative to the team's directory
    reasons: tuple[str, ...] = ()
    anomalies: tuple[tuple[str, int], ...] = ()  # (kind, count), sorted by kind
    requests: int | None = None
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    answered: float | None = None  # share of requests answered (2xx/4xx)
    windows: int | None = None  # fault windows
    recovery_s: float | None = None  # slowest recovery of the fault windows (None: not recovered)
    speed: float | None = None  # capacity: the knee's speed
    outcome: str | None = None  # capacity: found | at_max | none_met | not_clean
    resolution: float | None = None  # capacity: one bisection step
    steps: int | None = None  # capacity: replays run
    skipped: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready form: every field, tuples as lists, anomalies as an object."""
        d = {k: getattr(self, k) for k in self.__slots__}
        d["reasons"], d["anomalies"] = list(self.reasons), dict(self.anomalies)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SuiteRun":
        """The record from its JSON form; ValueError for an unknown field (a record of another version)."""
        unknown = set(d) - set(cls.__slots__)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        return cls(**{**d, "reasons": tuple(d.get("reasons") or ()),
                      "anomalies": tuple(sorted((str(k), int(v)) for k, v in (d.get("anomalies") or {}).items()))})


@dataclass(frozen=True, slots=True)
class SuiteRuns:
    """A team's run of each suite of :data:`SUITES` by name (an empty :class:`SuiteRun` when it did not run)."""

    consistency: SuiteRun = SuiteRun()
    stress: SuiteRun = SuiteRun()
    capacity: SuiteRun = SuiteRun()
    faults: SuiteRun = SuiteRun()

    @classmethod
    def of(cls, runs: tuple[tuple[str, SuiteRun], ...]) -> "SuiteRuns":
        """The runs of ``(suite, run)`` pairs; ValueError for a suite not in :data:`SUITES` (another version's)."""
        unknown = sorted({k for k, _ in runs} - set(SUITES))
        if unknown:
            raise ValueError(f"unknown suite(s) {unknown}")
        return cls(**dict(runs))


@dataclass(frozen=True, slots=True)
class TeamRecord:
    """One team's grading: its status, the runs of each suite, the traces and the machine it ran on."""

    name: str
    target: str
    status: str  # one of STATUSES
    error: str | None
    traces: tuple[tuple[str, str], ...]  # (trace name, digest)
    suites: tuple[str, ...]
    tool: str
    machine: dict
    started: float
    ended: float
    load_start: tuple[float, ...] | None
    load_end: tuple[float, ...] | None
    runs: tuple[tuple[str, SuiteRun], ...]  # (suite, run), in run order
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The ``team.json`` document (schema ``wdm-grade-team/1``)."""
        return {"schema": TEAM_SCHEMA, "name": self.name, "target": self.target, "status": self.status,
                "error": self.error, "traces": dict(self.traces), "suites": list(self.suites), "tool": self.tool,
                "machine": self.machine, "started": self.started, "ended": self.ended,
                "load": {"start": self.load_start, "end": self.load_end},
                "runs": {k: r.as_dict() for k, r in self.runs}, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> "TeamRecord":
        """The record from ``team.json``; ValueError when it is not one (of this schema)."""
        if not isinstance(d, dict) or d.get("schema") != TEAM_SCHEMA:
            raise ValueError(f"not a {TEAM_SCHEMA} record")
        if d["status"] not in STATUSES:
            raise ValueError(f"unknown status {d['status']!r}")
        load = d["load"]
        runs = tuple((k, SuiteRun.from_dict(v)) for k, v in d["runs"].items())
        SuiteRuns.of(runs)  # ValueError for a suite this version does not know
        return cls(d["name"], d["target"], d["status"], d["error"], tuple(sorted(d["traces"].items())),
                   tuple(d["suites"]), d["tool"], d["machine"], d["started"], d["ended"],
                   tuple(load["start"]) if load["start"] else None, tuple(load["end"]) if load["end"] else None,
                   runs, tuple(d.get("warnings") or ()))


def write_record(path: Path, record: TeamRecord) -> None:
    """``path`` written atomically (temp file + rename): a crash never leaves a half record."""
    write_text_atomically(path, json.dumps(record.as_dict(), indent=2, sort_keys=True) + "\n")


def read_record(path: Path) -> TeamRecord | None:
    """A team's record, or None when absent or not a record of this version (then the team is graded again)."""
    try:
        return TeamRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
