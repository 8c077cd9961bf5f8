"""``wdm-replay grade``: the same trace bytes against every team of a TEAMS.toml, and a leaderboard.

A composition root like :mod:`.ab` and :mod:`.capacity`: for each team it replays the shared traces
through :func:`~wdmreplay.replayer.replay_trace` (consistency at full speed, stress at the course's
fixed rate, the :mod:`.capacity` search, the team's own fault schedule), judges each run with
:func:`~wdmreplay.analysis.check_results`, and keeps every results file and report under
``DIR/teams/NAME/``. A team's outcome is one JSON record (``team.json``, written last and atomically:
:mod:`.team_record`): a team with one is graded, so a rerun skips it and a grading night resumes after a crash.
:func:`build_leaderboard` ranks the records (compute); :mod:`.leaderboard` renders them.
"""

from __future__ import annotations

from collections import Counter
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import WdmError, parse_toml
from .targets import Target, choose_target
from .capacity import CapacityInterrupted
from .replayer.config import ReplayConfig
from .replayer.fault_schedule import load_schedule
from .traces.stream import write_text_atomically
from .team_record import SUITES, SuiteRun, SuiteRuns, TeamRecord, read_record, write_record

# Unreachable, crashed and NOT CLEAN teams are marked and come last, in this order after the rest.
UNRANKED = ("not_clean", "error", "unreachable")
RANK_RULE = ("Teams that are NOT CLEAN, crashed (error) or unreachable are marked and come last. The rest "
             "rank by capacity (offered requests/s at the knee, higher first) when measured, then by p99 "
             "at the fixed rate (lower first); INCONCLUSIVE teams (a run that could not be judged) rank after every "
             "OK team, marked.")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOOKS = ("reset", "before", "after")  # a team's shell commands, in the order of Team's fields
_TEAM_KEYS = ("url", "urls", *_HOOKS, "faults")  # what a [teams.NAME] table may hold


class GradeError(WdmError):
    """A grading session that cannot run (bad TEAMS.toml, bad option, traces that differ between teams)."""


class GradeInterrupted(GradeError):
    """Ctrl-C or SIGTERM stopped a replay: grading stops (exit 130); the team in progress is graded again next time."""

    exit_code = 130

    @classmethod
    def during(cls, what: str, outdir: Path) -> "GradeInterrupted":
        """The one wording: what was stopped, and that a rerun resumes (graded teams kept, the rest graded then)."""
        return cls(f"interrupted {what}; a rerun resumes: graded teams are kept in {outdir}, the others are graded then")


# --- TEAMS.toml --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Team:
    """One team of TEAMS.toml: where its shop is, and the shell commands and fault schedule of its deployment."""

    name: str
    target: Target
    where: str  # the url, or the urls.json path as written
    reset: str | None = None  # before each run
    before: str | None = None  # once, before the team's first run
    after: str | None = None  # once, after its last run (also after a failure)
    faults: str | None = None  # fault schedule file (absolute)


def _toml(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise GradeError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return parse_toml(raw)
    except ValueError as e:  # not UTF-8, or not TOML
        raise GradeError(f"{path}: not valid TOML: {e}") from None


def load_teams(path: str | Path) -> list[Team]:
    """The teams of a TEAMS.toml (``[teams.NAME]`` tables), in file order; :class:`GradeError` names what is wrong."""
    path = Path(path)
    doc = _toml(path)
    unknown = set(doc) - {"teams"}
    if unknown:
        raise GradeError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}: only [teams.NAME] tables")
    teams = doc.get("teams")
    if not isinstance(teams, dict) or not teams:
        raise GradeError(f"{path}: no teams: write one table per team, e.g. [teams.alpha] url = \"http://…\"")
    base = path.resolve().parent
    return [_team(path, base, name, spec) for name, spec in teams.items()]


def _team(path: Path, base: Path, name: str, spec: Any) -> Team:
    where = f"{path}: [teams.{name}]"
    if not _NAME.match(name):
        raise GradeError(f"{where}: a team name is letters, digits, '.', '_' or '-' (it names a directory)")
    if not isinstance(spec, dict):
        raise GradeError(f"{where} must be a table")
    unknown = set(spec) - set(_TEAM_KEYS)
    if unknown:
        raise GradeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(_TEAM_KEYS)})")
    for key in _TEAM_KEYS:
        if key in spec and not (isinstance(spec[key], str) and spec[key].strip()):
            raise GradeError(f"{where}: {key} must be a non-empty string")
    if ("url" in spec) == ("urls" in spec):
        raise GradeError(f"{where}: give exactly one of url = \"http://…\" (one gateway) or urls = \"urls.json\"")
    try:
        if "url" in spec:
            target, shown = choose_target(None, spec["url"]), spec["url"]
        else:
            target, shown = choose_target(base / spec["urls"], None), spec["urls"]
    except WdmError as e:
        raise GradeError(f"{where}: {e}") from None
    faults = None
    if "faults" in spec:
        faults = str(base / spec["faults"])
        if not os.path.isfile(faults):
            raise GradeError(f"{where}: faults file {spec['faults']!r} not found (relative to {base})")
        try:  # read now, not when the team's faults suite starts (after its other suites ran)
            load_schedule(faults)
        except WdmError as e:
            raise GradeError(f"{where}: {e}") from None
    return Team(name, target, shown, *(spec.get(hook) for hook in _HOOKS), faults)


# --- the grading session's configuration and traces -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class GradeConfig:
    """What every team gets: the suites, the shared traces (paths in DIR) and how each run replays."""

    outdir: Path
    suites: tuple[str, ...]
    traces: dict  # suite trace name ("consistency", "stress") -> path in DIR/traces
    digests: dict  # the same names -> digest
    slo: str = "p99<500ms,unanswered<1%"
    capacity_start: float = 1.0
    capacity_max: float = 64.0
    bisect: int = 3
    step_seconds: float | None = None
    replay: ReplayConfig = ReplayConfig()  # concurrency, timeout of every run (speed, label, faults set per run)
    max_recovery: float = 10.0
    reports: bool = True  # HTML report per run (needs matplotlib; text otherwise)
    commands_cwd: str = "."  # where reset/before/after run (TEAMS.toml's directory)


def parse_suites(text: str) -> tuple[str, ...]:
    """The suites of ``--suite consistency,stress,…`` in run order; :class:`GradeError` for an unknown one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SUITES]
    if bad or not names:
        raise GradeError(f"--suite {text!r}: unknown suite {', '.join(bad) or '(none given)'} "
                         f"(known: {', '.join(SUITES)})")
    return tuple(s for s in SUITES if s in names)


def prepare_traces(outdir: Path, suites: tuple[str, ...], *, consistency: str | None, stress: str | None,
                   preset: str = "course", rate: float = 20.0, duration: float = 30.0, seed: int = 0,
                   force: bool = False) -> tuple[dict, dict]:
    """The shared traces in ``DIR/traces`` (given files copied in, else generated once); their paths and digests.

    A rerun reuses the traces already there, so resumed teams get the same bytes; a given file whose
    bytes differ from the one already in DIR is refused unless ``force`` (every team is then regraded).
    """
    from .workloads import generate
    from .traces import trace_digest

    tdir = outdir / "traces"
    tdir.mkdir(parents=True, exist_ok=True)
    wanted = {"consistency": "consistency" in suites,
              "stress": any(s in suites for s in ("stress", "capacity", "faults"))}
    given = {"consistency": consistency, "stress": stress}
    paths, digests = {}, {}
    for name, need in wanted.items():
        if not need:
            continue
        dst = tdir / f"{name}.wdmt"
        src = given[name]
        if src is not None:
            if not os.path.isfile(src):
                raise GradeError(f"--{name}-trace {src}: no such file")
            new = trace_digest(src)
            if dst.exists() and trace_digest(dst) != new and not force:
                raise GradeError(f"{dst} holds another {name} trace (digest {trace_digest(dst)[:16]}…) than {src} "
                                 f"({new[:16]}…): teams graded on it would be compared with teams graded on "
                                 "this one; use another -d, or --force to regrade every team")
            if not dst.exists() or trace_digest(dst) != new:
                shutil.copyfile(src, dst)
        elif not dst.exists():
            if name == "consistency":
                generate("consistency", dst, seed=seed, preset=preset)
            else:
                generate("stress", dst, seed=seed, rate=rate, duration=duration)
        paths[name] = str(dst)
        digests[name] = trace_digest(dst)
    return paths, digests


# --- one team ------------------------------------------------------------------------------------------

def machine() -> dict:
    """The grading machine: host, platform, Python, CPUs."""
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class TeamFailed(Exception):
    """A team's grading stops: ``status`` (error or unreachable) and why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


# The team commands running now, in any thread (``--parallel`` runs teams in a pool), so that the
# main thread, which alone gets Ctrl-C and SIGTERM, can stop them: command -> "grading", "cleanup"
# (``after``: a first stop lets it finish) or "stopped".
_COMMANDS: dict[subprocess.Popen, str] = {}
_COMMANDS_LOCK = threading.Lock()


def run_command(command: str, what: str, team: str, cfg: GradeConfig, timeout: float = 600.0, *,
                cleanup: bool = False) -> None:
    """Run a team's shell command (env WDM_GRADE_TEAM, WDM_GRADE_STEP); :class:`TeamFailed` when it fails.

    It runs in a process group of its own, stopped whole (the shell and what it started) on a
    timeout, on Ctrl-C in this thread, or by :func:`stop_commands` — then :class:`GradeInterrupted`.
    ``cleanup`` (the ``after`` command) is left to finish by a first stop.
    """
    env = {**os.environ, "WDM_GRADE_TEAM": team, "WDM_GRADE_STEP": what}
    try:
        proc = subprocess.Popen(command, shell=True, cwd=cfg.commands_cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    except OSError as e:
        raise TeamFailed("error", f"{what} command could not start: {e.strerror or e}") from None
    with _COMMANDS_LOCK:
        _COMMANDS[proc] = "cleanup" if cleanup else "grading"
    interrupted = False
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.communicate()
        raise TeamFailed("error", f"{what} command did not end within {timeout:g} s: {command}") from None
    except BaseException as e:  # Ctrl-C / SIGTERM in this thread: the command's whole group goes too
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        if not isinstance(e, KeyboardInterrupt):
            raise
        interrupted = True
    finally:
        with _COMMANDS_LOCK:
            interrupted |= _COMMANDS.pop(proc) == "stopped"  # by stop_commands, from the main thread
    if interrupted:
        raise GradeInterrupted.during(f"during {team}'s {what} command", cfg.outdir)
    if proc.returncode != 0:
        last = (err.strip().splitlines() or [""])[-1][:200]
        raise TeamFailed("error", f"{what} command exited {proc.returncode}: {command}" + (f": {last}" if last else ""))


def stop_commands(*, hard: bool = False) -> int:
    """Stop the team commands running in any thread (SIGTERM to each one's group; ``hard``: SIGKILL, and
    the ``after`` cleanups too); how many were signalled. Their :func:`run_command` raises GradeInterrupted."""
    with _COMMANDS_LOCK:
        procs = [p for p, state in _COMMANDS.items() if hard or state == "grading"]
        for p in procs:
            _COMMANDS[p] = "stopped"
    for p in procs:
        _signal_group(p, signal.SIGKILL if hard else signal.SIGTERM)
    return len(procs)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: the group is the shell's pid
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _write_report(results: Any, check: Any, out_stem: Path, reports: bool) -> str:
    """The run's report next to its results: HTML when possible, else text; returns its file name."""
    from .analysis import build_report, render_text

    report = build_report(results, check=check)
    if reports:
        try:
            from .analysis import render_html

            write_text_atomically(out_stem.with_suffix(".html"), render_html(report))
            return out_stem.with_suffix(".html").name
        except WdmError:  # matplotlib missing: the text report instead
            pass
    write_text_atomically(out_stem.with_suffix(".txt"), render_text(report))
    return out_stem.with_suffix(".txt").name


def _anomaly_counts(check: Any) -> tuple[tuple[str, int], ...]:
    counts = Counter(a.kind for a in (*check.consistency.anomalies, *check.bound_anomalies))
    return tuple(sorted(counts.items()))


def _replay_and_check(team: Team, cfg: GradeConfig, tdir: Path, run: str, trace: str, speed: float | None,
                      faults: str | None = None) -> SuiteRun:
    """One replay of a suite, its check and report: the suite's run."""
    from .analysis import check_results, compute_stats
    from .replayer import TargetUnreachable, replay_trace
    from .traces import load_results

    if team.reset:
        run_command(team.reset, f"reset before {run}", team.name, cfg)
    out = tdir / f"{run}.wdmr"
    try:
        summary = replay_trace(trace, str(out), target=team.target,
                               config=cfg.replay.replace(speed=speed, label=f"{team.name}-{run}", faults=faults))
    except TargetUnreachable as e:
        raise TeamFailed("unreachable", str(e)) from None
    if not summary.complete:
        if summary.reason == "interrupted":
            raise GradeInterrupted.during(f"during {team.name}'s {run} run", cfg.outdir)
        raise TeamFailed("error", f"{run} replay did not complete ({summary.reason})")
    results = load_results(out, with_args=True)
    check = check_results(results, max_recovery=cfg.max_recovery)
    overall = compute_stats(results).overall
    outcomes = overall.outcomes
    windows = recovery = None
    if faults is not None:
        from .analysis.recovery import analyze_faults

        found = analyze_faults(results).windows
        recoveries = [w.recovery_s for w in found]
        windows = len(found)
        recovery = None if not recoveries or any(r is None for r in recoveries) else round(max(recoveries), 3)
    return SuiteRun(
        verdict=check.verdict.verdict, results=out.name,
        report=_write_report(results, check, tdir / f"{run}-report", cfg.reports),
        reasons=tuple(check.verdict.reasons()[:5]), anomalies=_anomaly_counts(check), requests=results.n,
        rate=overall.rate, p50_ms=overall.response_ms["p50"], p99_ms=overall.response_ms["p99"],
        answered=round((outcomes["ok"] + outcomes["fail"]) / overall.count, 6) if overall.count else None,
        windows=windows, recovery_s=recovery)


def _capacity(team: Team, cfg: GradeConfig, tdir: Path) -> SuiteRun:
    from .capacity import (ReplayOptions, SearchPlan, find_capacity, matplotlib_missing, parse_slo,
                           plot_capacity, render_capacity_text)
    from .replayer import TargetUnreachable

    if team.reset:
        run_command(team.reset, "reset before capacity", team.name, cfg)
    cdir = tdir / "capacity"
    try:
        res = find_capacity(cfg.traces["stress"], cdir, slo=parse_slo(cfg.slo),
                            plan=SearchPlan(cfg.capacity_start, cfg.capacity_max, bisect_steps=cfg.bisect),
                            opts=ReplayOptions(team.target, cfg.replay),
                            step_seconds=cfg.step_seconds)
    except TargetUnreachable as e:
        raise TeamFailed("unreachable", str(e)) from None
    write_text_atomically(cdir / "capacity.json", json.dumps(res.as_dict(), indent=2, sort_keys=True) + "\n")
    write_text_atomically(cdir / "capacity.txt", render_capacity_text(res))
    report = "capacity/capacity.txt"
    if cfg.reports and matplotlib_missing() is None:
        plot_capacity(res, cdir / "capacity.png")
        report = "capacity/capacity.png"
    return SuiteRun(verdict="NOT CLEAN" if res.outcome == "not_clean" else "CLEAN",
                    results="capacity/capacity.json", report=report, speed=res.speed, rate=res.rate,
                    outcome=res.outcome, resolution=res.resolution, steps=len(res.steps))


def status_of(runs: dict[str, SuiteRun]) -> str:
    """ok / inconclusive / not_clean from the runs' verdicts (a crash or unreachable shop is decided elsewhere)."""
    verdicts = {r.verdict for r in runs.values()}
    if "NOT CLEAN" in verdicts:
        return "not_clean"
    if "INCONCLUSIVE" in verdicts:
        return "inconclusive"
    return "ok"


def grade_team(team: Team, cfg: GradeConfig, notify: Callable[[str], None] = lambda s: None) -> TeamRecord:
    """Grade one team (every suite of ``cfg``); write and return its record (``team.json``)."""
    tdir = cfg.outdir / "teams" / team.name
    if tdir.exists():
        shutil.rmtree(tdir)  # a half-graded team (the grader crashed): start it over
    tdir.mkdir(parents=True)
    started, load_start = time.time(), load_average()
    runs: dict[str, SuiteRun] = {}
    status, error, warnings = "ok", None, []
    before_ran = False
    try:
        if team.before:
            run_command(team.before, "before", team.name, cfg)
        before_ran = True
        for suite in cfg.suites:
            notify(f"grade: {team.name}: {suite}")
            runs[suite] = _run_suite(suite, team, cfg, tdir, runs)
        status = status_of(runs)
    except TeamFailed as e:
        status, error = e.status, str(e)
    except (GradeInterrupted, CapacityInterrupted):
        raise  # no team.json: the team is graded again on the next run
    except WdmError as e:
        status, error = "error", str(e)
    except Exception as e:  # a grading night goes on past one team's crash; the record says what happened
        status, error = "error", f"{type(e).__name__}: {e}"
    finally:
        if team.after and before_ran:
            try:
                run_command(team.after, "after", team.name, cfg, cleanup=True)
            except TeamFailed as e:
                warnings.append(str(e))
    load_end = load_average()
    record = TeamRecord(team.name, team.where, status, error, tuple(sorted(cfg.digests.items())), cfg.suites,
                        f"wdm-replay {__version__}", machine(), started, time.time(),
                        tuple(load_start) if load_start else None, tuple(load_end) if load_end else None,
                        tuple(runs.items()), tuple(warnings))
    write_record(tdir / "team.json", record)
    return record


def _run_suite(suite: str, team: Team, cfg: GradeConfig, tdir: Path, runs: dict[str, SuiteRun]) -> SuiteRun:
    """One suite for one team (the runs so far decide whether capacity is measured)."""
    if suite == "consistency":
        return _replay_and_check(team, cfg, tdir, "consistency", cfg.traces["consistency"], None)
    if suite == "stress":
        return _replay_and_check(team, cfg, tdir, "stress", cfg.traces["stress"], 1.0)
    if suite == "capacity":
        if status_of(runs) == "not_clean":
            return SuiteRun(skipped="NOT CLEAN: no capacity is measured for a wrong shop")
        return _capacity(team, cfg, tdir)
    if team.faults is None:
        return SuiteRun(skipped="no fault schedule in TEAMS.toml")
    return _replay_and_check(team, cfg, tdir, "faults", cfg.traces["stress"], 1.0, faults=team.faults)


# --- the session ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GradeOutcome:
    """What ``grade`` did: the records in TEAMS.toml order, which teams it graded now and which it skipped."""

    records: tuple[TeamRecord, ...]
    graded: tuple[str, ...]
    skipped: tuple[str, ...]
    leaderboard: "Leaderboard"
    files: tuple[str, ...] = field(default=())


def run_grade(teams: list[Team], cfg: GradeConfig, *, parallel: int = 1, force: bool = False,
              progress: bool = False, notify: Callable[[str], None] = lambda s: None) -> GradeOutcome:
    """Grade every team not yet graded (all with ``force``), ``parallel`` at a time; write the leaderboard."""
    from .leaderboard import write_leaderboard

    if parallel < 1:
        raise GradeError(f"--parallel must be at least 1, got {parallel}")
    cfg.outdir.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for team in teams:
        rec = read_record(cfg.outdir / "teams" / team.name / "team.json")
        if rec is not None and not force:
            skipped.append(team.name)
            notify(f"grade: {team.name}: already graded ({rec.status}), skipped (--force regrades)")
        else:
            todo.append(team)
    lock = threading.Lock()
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="team", desc="grade", file=sys.stderr)

    def one(team: Team) -> TeamRecord:
        rec = grade_team(team, cfg, notify)
        with lock:
            notify(f"grade: {team.name}: {rec.status}" + (f" ({rec.error})" if rec.error else ""))
            if bar is not None:
                bar.update(1)
        return rec

    try:
        if parallel == 1:
            for team in todo:
                one(team)
        else:
            pool = ThreadPoolExecutor(max_workers=parallel)
            futures = [pool.submit(one, team) for team in todo]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                # Ctrl-C / SIGTERM: teams not started are dropped, and the replays in flight in the
                # pool's threads — which signals never reach — are stopped as a signal stops one,
                # until their threads end (a replay a thread starts after the first stop is stopped
                # too; a second Ctrl-C stops them at once). Their teams have no team.json: graded
                # again next time. (The threads used to run every suite of their teams to the end.)
                pool.shutdown(wait=False, cancel_futures=True)
                _stop_pool(futures)
                raise GradeInterrupted.during("with teams in flight", cfg.outdir) from None
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    records = []
    for team in teams:
        rec = read_record(cfg.outdir / "teams" / team.name / "team.json")
        if rec is None:
            raise GradeError(f"{cfg.outdir}/teams/{team.name}/team.json: missing after grading")
        records.append(rec)
    board = build_leaderboard(records, cfg)
    files = write_leaderboard(board, cfg.outdir)
    return GradeOutcome(tuple(records), tuple(t.name for t in todo), tuple(skipped), board, files)


def _stop_pool(futures: list) -> None:
    """Stop the replays of ``futures``' threads and wait until every one has ended."""
    from .replayer import interrupt_replays

    hard = False
    while not all(f.done() for f in futures):
        try:
            interrupt_replays(hard=hard)
            stop_commands(hard=hard)
            wait_futures(futures, timeout=0.1)
        except KeyboardInterrupt:  # another Ctrl-C: the replays' workers are killed at once
            hard = True


# --- the leaderboard (compute) -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TeamRow:
    """One row of the leaderboard: a team's rank, status and figures (None where not measured)."""

    name: str
    rank: int
    status: str
    ranked: bool  # False for not_clean, error, unreachable (they come last, marked)
    error: str | None
    consistency: str | None  # verdict
    anomalies: dict
    stress_p50_ms: float | None
    stress_p99_ms: float | None
    stress_verdict: str | None
    capacity_speed: float | None
    capacity_rate: float | None
    capacity_note: str | None
    availability: float | None  # answered share under faults
    recovery_s: float | None
    faults_verdict: str | None
    links: dict  # suite -> path of its report relative to DIR
    load: dict
    target: str
    why: str | None = None  # the first reason of the run that made it NOT CLEAN / INCONCLUSIVE

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"name": self.name, "rank": self.rank, "status": self.status, "ranked": self.ranked,
                "error": self.error, "target": self.target, "consistency": self.consistency,
                "anomalies": dict(self.anomalies), "anomaly_count": sum(self.anomalies.values()),
                "stress": {"p50_ms": self.stress_p50_ms, "p99_ms": self.stress_p99_ms, "verdict": self.stress_verdict},
                "capacity": {"speed": self.capacity_speed, "rate": self.capacity_rate, "note": self.capacity_note},
                "faults": {"availability": self.availability, "recovery_s": self.recovery_s,
                           "verdict": self.faults_verdict},
                "links": dict(self.links), "load": dict(self.load), "why": self.why}


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """Ranked rows and the fairness block (traces, tool, machine)."""

    rows: tuple[TeamRow, ...]
    rule: str
    traces: dict
    tools: tuple[str, ...]
    machines: tuple[dict, ...]
    slo: str
    suites: tuple[str, ...]
    generated: float

    def as_dict(self) -> dict:
        """``{"teams": [...], "rule", "fairness": {...}}`` (stable keys)."""
        return {"schema": "wdm-leaderboard/1", "teams": [r.as_dict() for r in self.rows], "rule": self.rule,
                "slo": self.slo, "suites": list(self.suites), "generated": self.generated,
                "fairness": {"traces": dict(self.traces), "tool": list(self.tools), "machines": list(self.machines),
                             "load": {r.name: r.load for r in self.rows}}}


_CAPACITY_NOTES = {"none_met": "no speed met the SLO", "at_max": "at --max (may take more)", "not_clean": "NOT CLEAN step"}


def _row(rec: TeamRecord, outdir_rel: str) -> TeamRow:
    by = SuiteRuns.of(rec.runs)  # by suite name
    c, s, cap, f = by.consistency, by.stress, by.capacity, by.faults
    links = {k: f"{outdir_rel}/{r.report}" for k, r in rec.runs if r.report}
    return TeamRow(rec.name, 0, rec.status, rec.status not in UNRANKED, rec.error, c.verdict, dict(c.anomalies),
                   s.p50_ms, s.p99_ms, s.verdict, cap.speed, cap.rate,
                   cap.skipped or _CAPACITY_NOTES.get(cap.outcome or ""), f.answered, f.recovery_s, f.verdict, links,
                   {"start": rec.load_start, "end": rec.load_end, "started": rec.started, "ended": rec.ended},
                   rec.target, _why(rec))


def _why(rec: TeamRecord) -> str | None:
    """``suite: reason`` of the first run whose verdict made the team NOT CLEAN or INCONCLUSIVE."""
    wanted = {"not_clean": "NOT CLEAN", "inconclusive": "INCONCLUSIVE"}.get(rec.status)
    for suite, run in rec.runs:
        if wanted is not None and run.verdict == wanted:
            reason = run.reasons[0] if run.reasons else wanted
            return reason if reason.startswith(f"{suite}:") else f"{suite}: {reason}"
    return None


def rank_key(row: TeamRow) -> tuple:
    """The sort key of :data:`RANK_RULE`."""
    if not row.ranked:
        return (2, UNRANKED.index(row.status), 0.0, 0.0, row.name)
    cap = row.capacity_rate if row.capacity_rate is not None else (row.capacity_speed or None)
    p99 = row.stress_p99_ms if row.stress_p99_ms is not None else float("inf")
    return (0 if row.status == "ok" else 1, 0 if cap is not None else 1, -(cap or 0.0), p99, row.name)


def build_leaderboard(records: list[TeamRecord], cfg: GradeConfig) -> Leaderboard:
    """Rank the records; :class:`GradeError` when two teams were graded on different traces."""
    first: dict[str, tuple[str, str]] = {}
    for rec in records:
        for name, digest in rec.traces:
            if name in first and first[name][1] != digest:
                raise GradeError(f"teams {first[name][0]} and {rec.name} were graded on different {name} traces "
                                 f"({first[name][1][:16]}… vs {digest[:16]}…): regrade with --force")
            first.setdefault(name, (rec.name, digest))
    rows = sorted((_row(r, f"teams/{r.name}") for r in records), key=rank_key)
    rows = [replace(r, rank=i) for i, r in enumerate(rows, 1)]
    tools = tuple(sorted({r.tool for r in records}))
    machines = tuple({json.dumps(r.machine, sort_keys=True): r.machine for r in records}.values())
    return Leaderboard(tuple(rows), RANK_RULE, {k: v[1] for k, v in first.items()}, tools, machines, cfg.slo,
                       cfg.suites, time.time())
