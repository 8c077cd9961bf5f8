"""The shrink search: pick the finding, cut the trace, replay candidates, keep what still reproduces.

A composition root like :mod:`wdmreplay.ab`: it replays candidates in-process through
:func:`~wdmreplay.replayer.replay_trace` and judges them with
:func:`~wdmreplay.analysis.check_results`; the cutting is :mod:`.cut`, the minimising :mod:`.ddmin`.

A candidate *reproduces* when one of up to ``runs`` replays at ``--speed max`` is NOT CLEAN on
consistency with an anomaly of the same kind on the entity playing the same role: the anomaly's
id, mapped back through the replay's bindings (id → symbol), is the finding's trace symbol.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import WdmError
from ..operations import ENTITY_KINDS
from ..targets import Target
from ..terms import plural
from ..traces.records import TraceRef
from ..traces.results import load_results
from ..traces.stream import refuse_unwritable
from ..traces.trace import TraceHeader, refuse_replacing, trace_digest
from . import cut
from .ddmin import ddmin

DEFAULT_RUNS = 5
DEFAULT_BUDGET = 300.0
ORDERS_PASS_MIN = 16  # orders in the first reproducing cut from which whole orders are dropped first


class ShrinkError(WdmError):
    """Bad input to shrink: a missing or mismatched trace, an unknown anomaly kind, a failing --before-each."""


class NothingToShrink(WdmError):
    """A run with nothing to reproduce (CLEAN, no final state, no finding of that kind) or a finding that never recurs."""

    exit_code = 3


class ShrinkInterrupted(WdmError):
    """Ctrl-C before any candidate reproduced: nothing to keep (exit 130, like ``replay``)."""

    exit_code = 130


@dataclass(frozen=True, slots=True)
class Finding:
    """The anomaly to reproduce: its kind, entity kind, role (trace symbol, or literal id) and source id."""

    kind: str
    entity: str
    role: str
    source_id: str
    detail: str

    def describe(self) -> str:
        """E.g. ``lost_update on item $item3 (item-4 in the source run)``."""
        where = f" ({self.source_id} in the source run)" if self.source_id != self.role else ""
        return f"{self.kind} on {self.entity} {self.role}{where}"

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys), as stored in the minimal trace's header."""
        return {"kind": self.kind, "entity": self.entity, "role": self.role, "source_id": self.source_id,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ShrinkResult:
    """What a shrink did: the finding, sizes before and after, replays, time, reproduction, the script."""

    finding: Finding
    output: str
    source_run: str
    source_trace: str
    level: str  # the cut that first reproduced (closure, closure+users, component, whole)
    before: tuple[int, int]  # sessions, requests
    after: tuple[int, int]
    replays: int
    seconds: float
    hits: int | None  # of the final `runs` replays; None when interrupted before measuring
    runs: int
    stopped: str | None  # why the search ended early ("budget", "interrupted", an error), or None
    script: tuple[str, ...]
    replays_by_pass: tuple[tuple[str, int], ...] = ()  # (pass, replays): cut, role amounts, orders, sessions, steps,
    # amounts, times, measuring

    @property
    def rate(self) -> float | None:
        """Share of the final replays that reproduced the finding (None when not measured)."""
        return None if self.hits is None else self.hits / self.runs


def parse_anomaly(spec: str | None) -> tuple[str | None, str | None]:
    """``(kind, id or symbol)`` of ``--anomaly KIND[:ID]``; :class:`ShrinkError` for an unknown kind."""
    from ..analysis import KINDS

    if spec is None:
        return None, None
    kind, sep, ident = spec.partition(":")
    kind = kind.strip().replace("-", "_")
    if kind not in KINDS or kind == "expectation_not_met":
        raise ShrinkError(f"--anomaly {spec!r}: unknown kind {kind!r}; choose one of: "
                          + ", ".join(k for k in KINDS if k != "expectation_not_met"))
    if sep and not ident.strip():
        raise ShrinkError(f"--anomaly {spec!r}: give an entity id after the colon, or only the kind")
    return kind, (ident.strip() if sep else None)


def role_of(entity_id: str, symbol_of: dict[str, str]) -> str:
    """The trace symbol an entity id was bound to in a run (the id itself for literal ids, e.g. batch_init's)."""
    return symbol_of.get(entity_id, entity_id)


def pick_finding(report: Any, bindings: dict[str, str], kind: str | None, ident: str | None, run: str) -> Finding:
    """The finding to reproduce: the first per-entity anomaly, or the first of ``kind`` (on ``ident``)."""
    symbol_of = {v: k for k, v in bindings.items()}
    entity_anoms = [a for a in report.anomalies if a.entity in ENTITY_KINDS]
    if not entity_anoms:
        kinds = sorted({a.kind for a in report.anomalies})
        raise NothingToShrink(f"{run}: {report.verdict.verdict} with no anomaly on an item, user or order to "
                              f"reproduce" + (f" (only {', '.join(kinds)})" if kinds else ""))
    chosen = [a for a in entity_anoms if kind is None or a.kind == kind]
    if ident is not None:
        chosen = [a for a in chosen if ident in (a.id, role_of(a.id, symbol_of), role_of(a.id, symbol_of).lstrip("$"))]
    if not chosen:
        have = ", ".join(sorted({a.kind for a in entity_anoms}))
        what = kind + (f" on {ident}" if ident else "")
        raise NothingToShrink(f"{run}: no {what} anomaly in this run (it has: {have})")
    a = chosen[0]
    return Finding(a.kind, a.entity, role_of(a.id, symbol_of), a.id, a.detail)


def reproduced(report: Any, bindings: dict[str, str], finding: Finding) -> bool:
    """Whether a checked replay is NOT CLEAN on consistency with the finding's kind on the same role."""
    if report.verdict.verdict != "NOT CLEAN":
        return False
    if not any(s.name == "consistency" and s.status == "fail" for s in report.verdict.sections):
        return False
    symbol_of = {v: k for k, v in bindings.items()}
    return any(a.kind == finding.kind and a.entity == finding.entity and role_of(a.id, symbol_of) == finding.role
               for a in report.anomalies)


def source_trace(run: str, trace: TraceRef, override: str | None) -> str:
    """The trace a run replayed (``override``, or the path its results header names), checked against its digest."""
    digest = trace.digest
    if override is not None:
        path = override
    else:
        named = trace.path or ""
        beside = Path(run).parent / named
        path = named if named and os.path.isfile(named) else str(beside) if named and beside.is_file() else ""
        if not path:
            raise ShrinkError(f"{run}: the trace it replayed ({named or 'not named'}) is not found; give it with --trace")
    if not os.path.isfile(path):
        raise ShrinkError(f"--trace {path}: no such file")
    if digest and trace_digest(path) != digest:
        raise ShrinkError(f"{path}: not the trace {run} replayed (its digest differs)")
    return path


class _Stop(Exception):
    """The search must end now (budget spent, interrupted, the target gone); the best so far stays."""


class Oracle:
    """Replays candidates and says whether they reproduce the finding; counts replays, keeps the budget."""

    def __init__(self, *, target: Target | str, finding: Finding, runs: int, deadline: float, workdir: Path,
                 before_each: str | None, timeout: float, concurrency: int, bar: Any):
        self.target, self.finding, self.runs, self.deadline = target, finding, runs, deadline
        self.workdir, self.before_each, self.timeout, self.concurrency = workdir, before_each, timeout, concurrency
        self.bar = bar
        self.replays = 0
        self.silent = 0  # replays the shop answered none of (every request 5xx, timed out, cut off, not the API's)
        self.seconds = 0.0  # spent replaying and checking (for the reserve of the final measurement)
        self._source: TraceHeader | None = None
        self._seen: dict[str, bool] = {}

    def setup(self, source_header: TraceHeader) -> None:
        """The source trace's header, which every candidate trace's header copies."""
        self._source = source_header

    def reserve(self) -> float:
        """Seconds to keep for the final ``runs`` replays (from the mean replay so far, with a margin)."""
        if not self.replays:
            return 0.0  # nothing measured yet: the first candidate is always tried
        return self.runs * self.seconds / self.replays * 1.5

    def attempt(self, sessions: cut.Sessions, *, final: bool = False) -> bool:
        """Whether ``sessions`` reproduce in one of up to ``runs`` replays (memoised; empty never does)."""
        if not sessions:
            return False
        key = repr(sessions)
        if key in self._seen:
            return self._seen[key]
        path = self._write(sessions)
        ok = any(self.replay(path, final=final) for _ in range(self.runs))
        self._seen[key] = ok
        return ok

    def _write(self, sessions: cut.Sessions) -> str:
        path = str(self.workdir / f"candidate-{self.replays:05d}.wdmt")
        assert self._source is not None, "setup() first"
        cut.write_trace(path, self._source, sessions, {})
        return path

    def replay(self, trace: str, *, final: bool = False) -> bool:
        """One replay of ``trace`` at --speed max, checked; raises :class:`_Stop` when the budget is spent."""
        from ..analysis import check_results
        from ..replayer import replay_trace

        now = time.monotonic()
        if not final and now + self.reserve() > self.deadline:
            raise _Stop("budget")
        if self.before_each:
            run_before_each(self.before_each, self.replays + 1)
        out = str(self.workdir / "replay.wdmr")
        summary = replay_trace(trace, out, target=self.target, speed=None, concurrency=self.concurrency,
                               timeout=self.timeout)
        self.replays += 1
        if summary.reason == "interrupted":
            raise _Stop("interrupted")
        self.silent += summary.outcomes["ok"] + summary.outcomes["fail"] == 0
        results = load_results(out, with_args=True)
        ok = reproduced(check_results(results), results.bindings, self.finding)
        os.unlink(out)
        self.seconds += time.monotonic() - now
        if self.bar is not None:
            self.bar.update(1)
        return ok

    def measure(self, sessions: cut.Sessions) -> int:
        """Reproductions in ``runs`` fresh replays of ``sessions`` (the final rate; outside the search budget)."""
        path = self._write(sessions)
        return sum(self.replay(path, final=True) for _ in range(self.runs))


def run_before_each(command: str, index: int) -> None:
    """Run ``command`` in a shell (env WDM_SHRINK_REPLAY=index); :class:`ShrinkError` if it fails."""
    env = {**os.environ, "WDM_SHRINK_REPLAY": str(index)}
    try:
        done = subprocess.run(command, shell=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, errors="replace")
    except OSError as e:
        raise ShrinkError(f"--before-each could not start before replay {index}: {e.strerror or e}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1][:200]
        raise ShrinkError(f"--before-each exited {done.returncode} before replay {index}: {command}"
                          + (f": {last}" if last else ""))


class _Search:
    """The minimising passes over one reproducing candidate; ``best`` is always a reproducing one."""

    def __init__(self, oracle: Oracle, best: cut.Sessions, stage: Callable[[str, cut.Sessions], None]):
        self.oracle, self.best, self.stage = oracle, best, stage

    def _keep_if(self, candidate: cut.Sessions) -> bool:
        if candidate == self.best:
            return True
        if self.oracle.attempt(candidate):
            self.best = candidate
            return True
        return False

    def orders(self, role: str) -> None:
        """ddmin over whole orders (each with its lines, checkout, and its user and items if no other
        order needs them), when there are many: a chunk of orders alone often still races, so a big
        trace halves in a replay at a time instead of losing a session at a time.
        """
        base = self.best
        orders = [o for o in cut.order_symbols(base) if o != role]
        if len(orders) < ORDERS_PASS_MIN:
            return
        self.stage("orders", base)
        ddmin(orders, lambda keep: self._keep_if(cut.keep_orders(base, keep, role)))

    def sessions(self) -> None:
        """ddmin over the sessions (``best`` follows each reproducing subset)."""
        base = self.best
        self.stage("sessions", base)
        ddmin(list(range(len(base))), lambda keep: self._keep_if(cut.keep_sessions(base, keep)))

    def steps(self) -> None:
        """ddmin over the steps of every session."""
        base = self.best
        self.stage("steps", base)
        ddmin(cut.step_positions(base), lambda keep: self._keep_if(cut.keep_steps(base, keep)))

    def amounts(self, role: str | None = None) -> None:
        """Each amount made 1, else half, where the finding still recurs (only the role's own with ``role``)."""
        slots = cut.amount_slots(self.best)
        if role is not None:
            slots = [sl for sl in slots if role in self.best[sl.session]["steps"][sl.step]["args"]]
            if not slots:
                return
        self.stage("role amounts" if role is not None else "amounts", self.best)
        for slot in slots:
            for v in cut.smaller_values(slot.value):
                if self._keep_if(cut.with_amount(self.best, slot, v)):
                    break

    def times(self) -> None:
        """Every start and think time 0, if the finding still recurs."""
        if cut.is_timed(self.best):
            self.stage("times", self.best)
            self._keep_if(cut.untimed(self.best))


def shrink_run(run: str, output: str, *, target: Target | str, trace: str | None = None, anomaly: str | None = None,
               runs: int = DEFAULT_RUNS, budget: float = DEFAULT_BUDGET, before_each: str | None = None,
               timeout: float = 10.0, concurrency: int = 256, progress: bool = False,
               notify: Callable[[str], None] = print, force: bool = False) -> ShrinkResult:
    """Shrink the trace of ``run`` to a small one that still reproduces its finding; write it to ``output``.

    An existing ``output`` that holds what no command could make again (a run's results, a recorded
    or shrunk trace) is replaced only with ``force``.

    Raises :class:`ShrinkError` (exit 2) for bad input, :class:`NothingToShrink` (exit 3) for a run
    with nothing to reproduce or a finding that never recurs. Ctrl-C and the ``budget`` (seconds)
    end the search early: the smallest reproducing trace found so far is written.
    """
    if runs < 1:
        raise ShrinkError(f"--runs must be at least 1, got {runs}")
    if not budget > 0:
        raise ShrinkError(f"--budget must be positive, got {budget}")
    t0 = time.monotonic()
    finding, trace_path = _finding_of(run, output, trace, anomaly, force)
    header, source = cut.load_sessions(trace_path)
    source = cut.relax_expectations(source)
    before = (len(source), cut.count_requests(source))
    notify(f"shrink: reproducing {finding.describe()} from {plural(before[0], 'session')}, {plural(before[1], 'request')}")

    workdir = Path(tempfile.mkdtemp(prefix="wdm-shrink-"))
    bar = _progress_bar(progress)
    oracle = Oracle(target=target, finding=finding, runs=runs, deadline=t0 + budget, workdir=workdir,
                    before_each=before_each, timeout=timeout, concurrency=concurrency, bar=bar)
    oracle.setup(header)

    spent: Counter[str] = Counter()  # replays per pass
    current = ["cut"]

    def account(name: str) -> None:
        spent[current[0]] += oracle.replays - sum(spent.values())
        current[0] = "cut" if name in cut.LEVELS else name

    def stage(name: str, sessions: cut.Sessions) -> None:
        account(name)
        text = f"{name}: {plural(len(sessions), 'session')}, {plural(cut.count_requests(sessions), 'request')}"
        if bar is not None:
            bar.set_postfix_str(text)
        else:
            notify(f"shrink: {text}")

    stopped: str | None = None
    try:
        best, level = _first_reproduction(oracle, source, finding, stage)
        search = _Search(oracle, best, stage)
        try:
            # The entity's own amounts first: 100 units of stock need 101 orders to oversell, 1 needs 2.
            search.amounts(finding.role)
            search.orders(finding.role)
            search.sessions()
            search.steps()
            search.amounts()
            search.times()
        except _Stop as e:
            stopped = str(e)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except WdmError as e:
            stopped = str(e)
        best = search.best
        hits: int | None = None
        if stopped != "interrupted":
            stage("measuring", best)
            try:
                hits = oracle.measure(best)
            except (_Stop, KeyboardInterrupt):
                stopped = "interrupted"
            except WdmError as e:  # the shop went away: the trace still reproduced during the search
                stopped = str(e)
        account("done")
        spent.pop("done", None)
        seconds = time.monotonic() - t0
        after = (len(best), cut.count_requests(best))
        info = {"finding": finding.as_dict(),
                "source": {"run": os.path.abspath(run), "trace": os.path.abspath(trace_path),
                           "trace_digest": trace_digest(trace_path), "sessions": before[0], "requests": before[1]},
                "reproduction": {"hits": hits, "runs": runs, "rate": None if hits is None else hits / runs},
                "replays": oracle.replays, "replays_by_pass": spent, "seconds": round(seconds, 3), "cut": level, "stopped": stopped}
        written = cut.write_trace(output, header, best, info, inputs=[trace_path, run])
        names = [p["name"] for p in written["phases"]]
        script = cut.script_lines(names, _renumbered(best))
        return ShrinkResult(finding, output, run, trace_path, level, before, after, oracle.replays, seconds, hits,
                            runs, stopped, tuple(script), tuple(spent.items()))
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _finding_of(run: str, output: str, trace: str | None, anomaly: str | None,
                force: bool = False) -> tuple[Finding, str]:
    """The finding to reproduce and the trace ``run`` replayed, after every check of the input."""
    from ..analysis import check_results

    kind, ident = parse_anomaly(anomaly)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise ShrinkError(f"{output}: its directory does not exist")
    results = load_results(run, with_args=True)
    trace_path = source_trace(run, results.header_record.trace, trace)
    for p in (trace_path, run):
        if os.path.exists(output) and os.path.samefile(p, output):
            raise ShrinkError(f"{output}: is one of the inputs; choose another -o")
    refuse_replacing(output, force)  # before minutes of replays, not after
    refuse_unwritable(output)  # likewise: a directory that refuses files (/proc) fails only when writing
    if results.final is None:
        why = ("replayed without the final read" if results.complete
               else f"a partial run: {results.trailer_record.reason or 'interrupted'}")
        raise NothingToShrink(f"{run}: the run has no final state ({why}): nothing to reproduce")
    report = check_results(results)
    if report.clean:
        raise NothingToShrink(f"{run}: CLEAN: there is no finding to reproduce")
    return pick_finding(report, results.bindings, kind, ident, run), trace_path


def _renumbered(sessions: cut.Sessions) -> cut.Sessions:
    used = {p: i for i, p in enumerate(sorted({s["phase"] for s in sessions}))}
    return tuple({**s, "phase": used[s["phase"]]} for s in sessions)


def _first_reproduction(oracle: Oracle, source: cut.Sessions, finding: Finding,
                        stage: Callable[[str, cut.Sessions], None]) -> tuple[cut.Sessions, str]:
    """The smallest closure level whose cut reproduces; :class:`NothingToShrink` when none does."""
    tried: list[str] = []
    seen: set[str] = set()
    try:
        for level in cut.LEVELS:
            cand = cut.cut(source, finding.role, level)
            if repr(cand) in seen:
                continue  # the same requests as a smaller level's cut
            seen.add(repr(cand))
            stage(level, cand)
            tried.append(level)
            if oracle.attempt(cand):
                return cand, level
    except _Stop as e:
        if str(e) == "interrupted":
            raise ShrinkInterrupted(f"interrupted before {finding.describe()} reproduced ({oracle.replays} "
                                    f"replays): nothing written") from None
        raise NothingToShrink(f"{finding.describe()} not reproduced before the search stopped ({e}): "
                              f"{oracle.replays} replays of the {', '.join(tried)} cut(s)") from None
    except KeyboardInterrupt:
        raise ShrinkInterrupted(f"interrupted before {finding.describe()} reproduced ({oracle.replays} replays): "
                                "nothing written") from None
    dead = ("; the shop answered none of the requests of any replay (5xx, timeouts, connection errors or "
            "answers that are not the API's): is it the shop of the run, and up?"
            if oracle.replays and oracle.silent == oracle.replays else "")
    raise NothingToShrink(f"{finding.describe()} never reproduced: {oracle.replays} replays at --speed max "
                          f"({oracle.runs} per distinct cut: {', '.join(tried)}){dead}")


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="replay", desc="shrink", file=sys.stderr, leave=False, dynamic_ncols=True)


def format_result(r: ShrinkResult) -> str:
    """The text the command prints: the finding, before → after, replays, time, rate, and the script."""
    rate = ("not measured (interrupted)" if r.hits is None
            else f"{r.hits}/{r.runs} fresh replays ({r.rate:.0%})")
    lines = [
        f"shrink: {r.finding.describe()}",
        f"  before: {plural(r.before[0], 'session')}, {plural(r.before[1], 'request')} ({r.source_trace})",
        f"  after:  {plural(r.after[0], 'session')}, {plural(r.after[1], 'request')} ({r.output}; first reproduced by the {r.level} cut)",
        f"  replays: {r.replays} ({', '.join(f'{k} {n}' for k, n in r.replays_by_pass if n)}), wall time "
        f"{r.seconds:.1f} s" + (f", stopped early: {r.stopped}" if r.stopped else ""),
        f"  reproduction rate: {rate}",
        "",
        *r.script,
    ]
    return "\n".join(lines)
