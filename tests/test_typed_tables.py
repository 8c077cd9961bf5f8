"""Issue 23, the maps still read by fixed names: a leaderboard row's sort values (SortKeys), a team's run
of each suite (SuiteRuns) and the unit a lost entity held (UNIT, one per entity kind) — each built once,
the readers using fields; what the page, the record and the headline say is unchanged."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from wdmreplay.analysis.wording import UNIT, headline
from wdmreplay.grade import GradeConfig, build_leaderboard
from wdmreplay.team_record import STATUSES, SUITES, TEAM_SCHEMA, SuiteRun, SuiteRuns, TeamRecord, read_record
from wdmreplay.leaderboard import STATUS_TEXT, SortKeys, render_leaderboard_html
from wdmreplay.operations import ENTITY_KINDS


def _record(name: str, status: str, runs: dict) -> TeamRecord:
    return TeamRecord.from_dict({
        "schema": TEAM_SCHEMA, "name": name, "status": status, "error": None, "runs": runs,
        "traces": {"stress": "sha256:aa"}, "suites": list(runs), "tool": "wdm-replay 0.1.0",
        "machine": {"host": "h", "platform": "p", "python": "3.11", "cpus": 2},
        "load": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]}, "started": 1.0, "ended": 2.0,
        "target": "http://x"})


MEASURED = {"consistency": {"verdict": "NOT CLEAN", "anomalies": {"lost_update": 3, "oversell": 1},
                            "reasons": ["consistency: 4 anomalies"]},
            "stress": {"verdict": "CLEAN", "p50_ms": 1.5, "p99_ms": 9.25, "report": "stress-report.txt"},
            "capacity": {"rate": 120.0, "speed": 1.2, "outcome": "found", "verdict": "CLEAN"},
            "faults": {"verdict": "CLEAN", "answered": 0.9912, "recovery_s": 1.25}}


def _board(*records: TeamRecord):
    return build_leaderboard(list(records), GradeConfig(Path("."), ("stress", "capacity"), {}, {}))


def test_a_rows_sort_keys_are_its_figures_and_empty_where_not_measured():
    board = _board(_record("full", "not_clean", MEASURED), _record("bare", "unreachable", {}))
    full, bare = (SortKeys.of(r) for r in board.rows)
    assert full == SortKeys(rank="1.0", status="2", anomalies="4.0", p50="1.5", p99="9.25", capacity="120.0",
                            availability="0.9912", recovery="1.25")
    assert bare == SortKeys(rank="2.0", status="4", anomalies="", p50="", p99="", capacity="", availability="",
                            recovery="")
    # the status column sorts in grade's status order (the page's STATUS_TEXT lists them in it)
    assert tuple(STATUS_TEXT) == STATUSES


def test_the_page_sorts_by_each_rows_sort_keys():
    board = _board(_record("full", "not_clean", MEASURED), _record("bare", "unreachable", {}))
    html = render_leaderboard_html(board)
    for row in board.rows:
        cells = re.search(rf'<tr [^>]*data-team="{row.name}".*?</tr>', html, re.S).group(0)
        got = re.findall(r'data-sort="([^"]*)"', cells)
        k = SortKeys.of(row)
        # rank, team name, status, anomalies, p50, p99, capacity, availability, recovery: in column order
        assert got == [k.rank, row.name, k.status, k.anomalies, k.p50, k.p99, k.capacity, k.availability,
                       k.recovery]
    # every field is a column of the page (the template reads each; StrictUndefined fails on a misspelt one)
    template = (Path(__file__).resolve().parent.parent / "wdmreplay" / "templates" / "leaderboard.html.j2").read_text()
    assert {f.name for f in dataclasses.fields(SortKeys)} == set(re.findall(r"\{\{ key\.(\w+) \}\}", template))


def test_suite_runs_hold_every_suite_by_name_empty_when_it_did_not_run():
    assert [f.name for f in dataclasses.fields(SuiteRuns)] == list(SUITES)
    rec = _record("part", "ok", {"stress": MEASURED["stress"], "faults": MEASURED["faults"]})
    by = SuiteRuns.of(rec.runs)
    assert by.stress.p99_ms == 9.25 and by.faults.recovery_s == 1.25
    assert by.consistency == SuiteRun() and by.capacity == SuiteRun()
    assert SuiteRuns.of(()) == SuiteRuns()
    # the leaderboard reads the row's figures from them
    row = _board(rec).rows[0]
    assert (row.stress_p99_ms, row.recovery_s, row.consistency, row.capacity_rate) == (9.25, 1.25, None, None)


def test_a_team_record_naming_an_unknown_suite_is_not_read_and_the_team_is_graded_again(tmp_path):
    with pytest.raises(ValueError, match=r"unknown suite\(s\) \['latency'\]"):
        SuiteRuns.of((("stress", SuiteRun()), ("latency", SuiteRun())))
    good = _record("t", "ok", {"stress": MEASURED["stress"]})
    doc = good.as_dict()
    path = tmp_path / "team.json"
    path.write_text(json.dumps(doc))
    assert read_record(path) == good  # the record round-trips
    doc["runs"]["latency"] = {"verdict": "CLEAN"}  # a suite of another version
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unknown suite"):
        TeamRecord.from_dict(doc)
    assert read_record(path) is None


def test_the_unit_a_lost_entity_held_is_named_for_every_entity_kind():
    assert set(UNIT) == set(ENTITY_KINDS)
    said = {kind: headline("lost_entity", kind, "7", [5, 5], None, detail="") for kind in ENTITY_KINDS}
    assert said == {"item": "item 7 lost: created with a 2xx, holding 5 units of stock, now read back as not found",
                    "user": "user 7 lost: created with a 2xx, holding 5 credit, now read back as not found",
                    "order": "order 7 lost: created with a 2xx, holding 5 units in its lines, now read back as not found"}
