"""Where a replayed request's CPU goes: the floor under the replayer, measured step by step in one run (issue 24).

One private nginx (bench/static_target.py, ONE worker, every route answers 200 with one fixed JSON
body; the aiohttp fallback when nginx is not installed, and the bench says so) on 127.0.0.1 is the
target of every row, one child process after another, each with ``--connections`` connections:

- ``wrk``: wrk ``-t1``, one GET path (C; the cheapest generator there is) — when on PATH;
- ``autocannon``: autocannon (Node), one GET path — when bench/peers.py has installed it in its
  npm cache (``--npm-cache``; this bench does not install it);
- ``callback``: bench/floor_loops.py's callback loop — an ``asyncio.Protocol`` that writes the next
  fixed GET from the parser's ``on_message_complete``: no coroutine, Task or Future per request,
  the floor of any Python generator on this machine;
- ``exchange``: bench/floor_loops.py's coroutine loop — the same GET through the replayer's own
  client, ``Origin.exchange``, awaited from N coroutines;
- ``bare-lean``: bench/bare_loop.py ``--client lean`` over a stress trace — the trace's requests
  through the same client, with no schedule, symbols or results;
- ``replay-1``: ``wdm-replay replay TRACE --workers 1 --speed max --no-final-read`` on that trace.

Each row's CPU is its child's rusage (``os.wait4``: user and system apart, the process and the
children it waited for). Every row runs twice per round, a full run and a short one (a tenth of the
requests; wrk and autocannon: ``--seconds`` and a fifth of it), and its cost per request is the
difference of the two over the difference in requests: start-up, connection set-up and exit cancel
out (they are printed apart as "fixed CPU s"; bench/peers.py counts them in). ``--rounds`` rounds
alternate the rows (forward, then backward); each row reports the round with the median total (with
an even count, the mean of the two middle rounds). Then the differences that say where the CPU goes —
exchange − callback (the coroutine client over the bare loop), bare-lean − exchange (the trace's
mixed requests over one fixed GET), replay-1 − bare-lean (the replayer's bookkeeping) — and what
replay-1's total would have to be for issue 24's targets (≥ 0.5x wrk and ≥ 1.0x autocannon in
requests per CPU-second). Loopback only; every child has a time limit; Ctrl-C stops every process
started here.

Rows (names for ``--only``): wrk, autocannon, callback, exchange, bare-lean, replay-1.

    python bench/floor.py                             # ~1.5 minutes: 2 rounds, 200,000 GETs, a ~5 s trace
    python bench/floor.py --rounds 3 --json floor.json
    python bench/floor.py --only callback,exchange --requests 100000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (ChildRun, bench_run, install_cleanup, last_line, machine, replay_window, run_child,  # noqa: E402
                     stress_trace, wdm_replay)
from peers import DEFAULT_NPM_CACHE, autocannon_js, parse_autocannon, parse_wrk  # noqa: E402
from static_target import StaticTarget  # noqa: E402

TOOLS = ("wrk", "autocannon", "callback", "exchange", "bare-lean", "replay-1")
PATH = "/stock/find/1"  # the fixed GET of the single-URL rows (nginx answers every path alike)
SHORT = 10  # a short run has 1/SHORT of a full run's requests
CALIBRATION_REQUESTS = 20_000
# Each difference: (minuend, subtrahend, what it is).
DIFFERENCES = (
    ("exchange", "callback", "the coroutine client (Origin.exchange, a Future per request) over the bare loop"),
    ("bare-lean", "exchange", "the trace's mixed requests and bare-lean's rendering of them over one fixed GET"),
    ("replay-1", "bare-lean", "the replayer's bookkeeping (trace, sessions, symbols, schedule, results rows)"),
    ("replay-1", "exchange", "all the replayer adds to its client's fixed-GET loop"),
)
SENDING = "bare-lean w/o rendering"  # bare-lean with its rendering of the trace (before its loop) taken out
# The targets for replay-1 in requests per CPU-second: (baseline row, ratio).
TARGETS = (("wrk", 0.5), ("autocannon", 1.0))


# --- records (compute) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One measured child: requests answered, its CPU (user, system), the target's CPU meanwhile."""

    requests: int
    user: float
    system: float
    target: float
    render_user: float = 0.0  # bare-lean: CPU its rendering of the trace took, before its loop
    render_system: float = 0.0


@dataclass(frozen=True)
class Round:
    """One round of one row: a full run and a short run; per-request figures are their difference."""

    full: Sample
    short: Sample

    def _per(self, full: float, short: float) -> float:
        extra = self.full.requests - self.short.requests
        return 1e6 * (full - short) / extra if extra > 0 else float("nan")

    @property
    def user_us(self) -> float:
        return self._per(self.full.user, self.short.user)

    @property
    def system_us(self) -> float:
        return self._per(self.full.system, self.short.system)

    @property
    def total_us(self) -> float:
        return self.user_us + self.system_us

    @property
    def target_us(self) -> float:
        return self._per(self.full.target, self.short.target)

    @property
    def render_user_us(self) -> float:
        return self._per(self.full.render_user, self.short.render_user)

    @property
    def render_system_us(self) -> float:
        return self._per(self.full.render_system, self.short.render_system)

    @property
    def fixed_s(self) -> float:
        """CPU seconds the tool spends apart from its requests (start-up, connecting, exit)."""
        return self.short.user + self.short.system - self.short.requests * self.total_us / 1e6


@dataclass(frozen=True)
class Row:
    """One row of the table: µs of CPU per request (user, system), the target's, fixed CPU, rounds."""

    tool: str
    requests: int  # of the full run
    user_us: float
    system_us: float
    target_us: float
    fixed_s: float
    round_totals: tuple[float, ...]  # total µs per request of every round, in order
    note: str = ""
    render_user_us: float = 0.0  # bare-lean: its rendering of the trace, per request (part of user_us)
    render_system_us: float = 0.0

    @property
    def total_us(self) -> float:
        return self.user_us + self.system_us

    @property
    def per_cpu_second(self) -> float:
        """Requests per CPU-second of the generator (start-up and the like excluded)."""
        return 1e6 / self.total_us if self.total_us > 0 else 0.0


@dataclass(frozen=True)
class Difference:
    """Row ``minuend`` minus row ``subtrahend``, µs of CPU per request: where the CPU between them goes."""

    minuend: str
    subtrahend: str
    meaning: str
    user_us: float
    system_us: float

    @property
    def total_us(self) -> float:
        return self.user_us + self.system_us


@dataclass(frozen=True)
class TargetGap:
    """What replay-1's total per request must be for ``ratio`` x ``baseline`` in requests per CPU-second."""

    baseline: str
    ratio: float
    baseline_us: float
    bound_us: float  # replay-1's total may be at most this
    replay_us: float
    floor_us: float | None  # the callback loop's total (nan-free), None if not measured

    @property
    def met(self) -> bool:
        return self.replay_us <= self.bound_us

    @property
    def cut_us(self) -> float:
        """µs per request replay-1 would have to shed (0 when met)."""
        return max(self.replay_us - self.bound_us, 0.0)


def summarize(tool: str, rounds: list[Round], note: str = "") -> Row:
    """The row of ``rounds``: the round with the median total (even count: the mean of the two middle ones)."""
    ordered = sorted(rounds, key=lambda r: r.total_us)
    k = len(ordered)
    middle = ordered[(k - 1) // 2: k // 2 + 1]

    def mean(get: Callable[[Round], float]) -> float:
        return statistics.fmean(get(r) for r in middle)

    render_user, render_system = mean(lambda r: r.render_user_us), mean(lambda r: r.render_system_us)
    if render_user or render_system:
        note = "; ".join(x for x in (f"of which rendering the trace {render_user + render_system:.2f}", note) if x)
    return Row(tool, max(r.full.requests for r in rounds), mean(lambda r: r.user_us), mean(lambda r: r.system_us),
               mean(lambda r: r.target_us), mean(lambda r: r.fixed_s), tuple(r.total_us for r in rounds), note,
               render_user, render_system)


def differences(rows: list[Row]) -> list[Difference]:
    """Every difference of :data:`DIFFERENCES` whose two rows were measured."""
    by = {r.tool: r for r in rows}
    out = [Difference(a, b, why, by[a].user_us - by[b].user_us, by[a].system_us - by[b].system_us)
           for a, b, why in DIFFERENCES if a in by and b in by]
    lean = by.get("bare-lean")
    if lean is not None and "exchange" in by and (lean.render_user_us or lean.render_system_us):
        x = by["exchange"]
        out.insert(2, Difference(SENDING, "exchange", "the trace's mixed requests (POSTs, many paths) alone",
                                 lean.user_us - lean.render_user_us - x.user_us,
                                 lean.system_us - lean.render_system_us - x.system_us))
    return out


def target_gaps(rows: list[Row]) -> list[TargetGap]:
    """Issue 24's targets for replay-1, each against a baseline measured in this run."""
    by = {r.tool: r for r in rows}
    if "replay-1" not in by:
        return []
    floor = by["callback"].total_us if "callback" in by else None
    return [TargetGap(base, ratio, by[base].total_us, by[base].total_us / ratio, by["replay-1"].total_us, floor)
            for base, ratio in TARGETS if base in by]


# --- render -------------------------------------------------------------------------------------


def target_column(target_kind: str) -> str:
    """The heading of the target's CPU column: its kind's first word (nginx, aiohttp)."""
    return f"{target_kind.split()[0] if target_kind else 'target'} µs"


def render_table(rows: list[Row], target_kind: str = "nginx") -> str:
    """The rows as a fixed-width table, µs of CPU per request."""
    head = (f"{'tool':<12}{'requests':>10}{'user µs':>9}{'system µs':>11}{'total µs':>10}{'req/CPU-s':>11}"
            f"{'fixed CPU s':>13}{target_column(target_kind):>12}  rounds (total µs)  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        rounds = ", ".join(f"{t:.2f}" for t in r.round_totals)
        lines.append(f"{r.tool:<12}{r.requests:>10,}{r.user_us:>9.2f}{r.system_us:>11.2f}{r.total_us:>10.2f}"
                     f"{r.per_cpu_second:>11,.0f}{r.fixed_s:>13.2f}{r.target_us:>12.2f}  {rounds:<17}  {r.note}".rstrip())
    return "\n".join(lines)


def render_differences(diffs: list[Difference]) -> str:
    """The differences between rows, µs of CPU per request."""
    if not diffs:
        return "differences: n/a (their rows were not measured)"
    head = f"{'difference':<35}{'user µs':>9}{'system µs':>11}{'total µs':>10}  what it is"
    lines = [head, "-" * len(head)]
    for d in diffs:
        lines.append(f"{d.minuend + ' - ' + d.subtrahend:<35}{d.user_us:>9.2f}{d.system_us:>11.2f}"
                     f"{d.total_us:>10.2f}  {d.meaning}")
    return "\n".join(lines)


def render_targets(gaps: list[TargetGap], skipped: dict[str, str], replay_measured: bool = True) -> str:
    """Issue 24's targets as bounds on replay-1's µs per request, and how far this run is from them."""
    if not replay_measured:
        return "targets: n/a (replay-1 not measured)"
    lines = []
    for g in gaps:
        if math.isnan(g.bound_us):
            lines.append(f"replay-1 >= {g.ratio:.1f}x {g.baseline} per CPU-second: n/a, no per-request figure "
                         f"for {g.baseline} in this run (see its note)")
            continue
        verdict = "met" if g.met else f"NOT met: {g.cut_us:.2f} µs/req too many ({g.replay_us / g.bound_us:.2f}x the bound)"
        floor = "" if g.floor_us is None else \
            f"; the callback floor alone is {g.floor_us:.2f} µs ({g.floor_us / g.bound_us:.0%} of the bound)"
        lines.append(f"replay-1 >= {g.ratio:.1f}x {g.baseline} per CPU-second: replay-1 at most "
                     f"{g.baseline_us:.2f} / {g.ratio:.1f} = {g.bound_us:.2f} µs/req; it is {g.replay_us:.2f}: "
                     f"{verdict}{floor}")
    measured = [g.baseline for g in gaps]
    for base, ratio in TARGETS:
        if base not in measured:
            only = f"only {' and '.join(measured)}'s target is given" if measured else "no target can be given"
            lines.append(f"replay-1 >= {ratio:.1f}x {base}: n/a, {base} not measured in this run "
                         f"({skipped.get(base, 'not chosen')}); {only}")
    return "\n".join(lines)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Floor:
    """The run's state: options, target, work directory, traces, rounds and notes."""

    a: argparse.Namespace
    target: StaticTarget
    work: Path
    loop: str
    js: Path | None = None
    traces: dict[str, Path] = field(default_factory=dict)  # "full" and "short"
    rounds: dict[str, list[Round]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def note(self, tool: str, text: str) -> None:
        self.notes.setdefault(tool, [])
        if text not in self.notes[tool]:
            self.notes[tool].append(text)

    def child(self, argv: list[str], timeout: float) -> tuple[ChildRun, float]:
        """Run one child; its ChildRun and the target's CPU seconds meanwhile."""
        c0 = self.target.cpu_seconds()
        run = run_child(argv, timeout=timeout)
        return run, self.target.cpu_seconds() - c0

    def sample(self, tool: str, short: bool) -> Sample:
        """Run ``tool`` once (its full or its short run); RuntimeError with a one-line reason if it failed."""
        a, url, c = self.a, self.target.url, str(self.a.connections)
        n = a.requests // SHORT if short else a.requests
        seconds = max(1, a.seconds // 5) if short else a.seconds
        count_timeout = 30 + n / 2000
        if tool in ("callback", "exchange"):
            run, tcpu = self.child([sys.executable, str(HERE / "floor_loops.py"), tool, "--url", url,
                                    "--requests", str(n), "--connections", c], count_timeout)
            return self._json_sample(tool, run, tcpu)
        if tool == "bare-lean":
            trace = self.traces["short" if short else "full"]
            run, tcpu = self.child([sys.executable, str(HERE / "bare_loop.py"), "--trace", str(trace), "--url", url,
                                    "--concurrency", c, "--loop", self.loop, "--client", "lean"],
                                   30 + self.trace_size(short) / 2000)
            return self._json_sample(tool, run, tcpu, render=True)
        if tool == "replay-1":
            return self.replay(self.traces["short" if short else "full"], 30 + self.trace_size(short) / 2000)
        if tool == "wrk":
            argv = [shutil.which("wrk") or "wrk", "-t1", "-c", c, "-d", f"{seconds}s", url + PATH]
            return self._fixed_url_sample(tool, argv, seconds, parse_wrk)
        argv = [shutil.which("node") or "node", str(self.js), "-c", c, "-d", str(seconds), "--json", url + PATH]
        return self._fixed_url_sample(tool, argv, seconds, parse_autocannon)

    def trace_size(self, short: bool) -> int:
        from wdmreplay.traces import read_header

        return int(read_header(self.traces["short" if short else "full"])["requests"])

    def replay(self, trace: Path, timeout: float) -> Sample:
        """``wdm-replay replay TRACE --workers 1 --speed max --no-final-read`` once; its Sample."""
        out = self.work / "replay.wdmr"
        argv = wdm_replay() + ["replay", str(trace), "--url", self.target.url, "--speed", "max", "--workers", "1",
                               "--concurrency", str(self.a.connections), "--no-final-read", "--quiet", "--force",
                               "-o", str(out)]
        run, tcpu = self.child(argv, timeout)
        if run.returncode != 0 or run.timed_out:
            raise RuntimeError(f"exit {run.returncode}{', timed out' if run.timed_out else ''}: {last_line(run.stderr)}")
        n, _, bad = replay_window(out)
        if bad:
            self.note("replay-1", f"not ok: {bad}")
        return Sample(n, run.user, run.system, tcpu)

    def _json_sample(self, tool: str, run: ChildRun, tcpu: float, render: bool = False) -> Sample:
        if run.returncode != 0 or run.timed_out:
            raise RuntimeError(f"exit {run.returncode}{', timed out' if run.timed_out else ''}: {last_line(run.stderr)}")
        r = json.loads(run.stdout.strip().splitlines()[-1])
        if r["errors"]:
            self.note(tool, f"{r['errors']} not 2xx")
        if render:
            return Sample(int(r["requests"]), run.user, run.system, tcpu, r["render_user"], r["render_system"])
        return Sample(int(r["requests"]), run.user, run.system, tcpu)

    def _fixed_url_sample(self, tool: str, argv: list[str], seconds: int,
                          parse: Callable[[str], tuple[int, float, int]]) -> Sample:
        run, tcpu = self.child(argv, seconds + 30)
        try:
            n, _, bad = parse(run.stdout)
        except (ValueError, KeyError) as e:
            raise RuntimeError(f"exit {run.returncode}: {e}; {last_line(run.stderr + run.stdout)}") from None
        if bad:
            self.note(tool, f"{bad} not 2xx/errors")
        return Sample(n, run.user, run.system, tcpu)


def make_traces(f: Floor) -> None:
    """Write the full trace (``--trace-requests``, or sized for ~``--seconds`` of replay-1) and its tenth."""
    a = f.a
    size = a.trace_requests
    if size == 0:
        cal = f.work / "calibrate.wdmt"
        stress_trace(cal, CALIBRATION_REQUESTS)
        progress(f"calibrating: replay-1 on a {CALIBRATION_REQUESTS:,}-request trace ...")
        f.replay(cal, 30 + CALIBRATION_REQUESTS / 2000)
        n, seconds, _ = replay_window(f.work / "replay.wdmr")
        size = max(int(n / seconds * a.seconds) if seconds > 0 else n, 1000)
    for kind, n in (("full", size), ("short", max(size // SHORT, 100))):
        f.traces[kind] = f.work / f"{kind}.wdmt"
        h, _ = stress_trace(f.traces[kind], n)
        progress(f"trace '{kind}': {h['requests']:,} requests")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_rounds(f: Floor, chosen: list[str]) -> None:
    """``--rounds`` rounds, the rows forward then backward, each row a short run then a full run."""
    for rnd in range(f.a.rounds):
        order = chosen if rnd % 2 == 0 else chosen[::-1]
        for tool in order:
            if tool in f.skipped:
                continue
            progress(f"round {rnd + 1}/{f.a.rounds}: {tool} (load {os.getloadavg()[0]:.2f}) ...")
            try:
                short = f.sample(tool, short=True)
                full = f.sample(tool, short=False)
            except RuntimeError as e:
                f.note(tool, f"round {rnd + 1} failed ({e})")
                continue
            if full.requests <= short.requests:  # possible for wrk and autocannon, which run for a time
                f.note(tool, f"round {rnd + 1}: the full run made no more requests than the short one "
                             f"({full.requests:,} vs {short.requests:,}): no per-request figure (nan)")
            f.rounds.setdefault(tool, []).append(Round(full, short))


def result_rows(f: Floor, chosen: list[str]) -> list[Row]:
    """The measured rows, in the order of :data:`TOOLS`; a row whose every round failed is listed as skipped."""
    rows = []
    for tool in chosen:
        if tool in f.skipped:
            continue
        if not f.rounds.get(tool):
            f.skipped[tool] = "failed: " + "; ".join(f.notes.get(tool, ["no round completed"]))
            continue
        rows.append(summarize(tool, f.rounds[tool], "; ".join(f.notes.get(tool, []))))
    return rows


def why_missing(tool: str, js_note: str) -> str:
    """Why ``tool`` cannot run here, or '' if it can."""
    if tool == "wrk" and not shutil.which("wrk"):
        return "wrk not on PATH (apt-get install -y wrk)"
    if tool == "autocannon":
        if not shutil.which("node"):
            return "node not on PATH (apt-get install -y nodejs npm)"
        return js_note
    return ""


def as_json(f: Floor, rows: list[Row], meta: dict) -> dict:
    """The run as one JSON document (stable keys)."""
    def row(r: Row) -> dict:
        d = asdict(r)
        d.update(total_us=r.total_us, per_cpu_second=r.per_cpu_second, round_totals=list(r.round_totals))
        return d

    return {"format": "wdm-bench-floor", "version": 1, **meta, "rows": [row(r) for r in rows],
            "skipped": [{"tool": t, "why": w} for t, w in f.skipped.items()],
            "differences": [{**asdict(d), "total_us": d.total_us} for d in differences(rows)],
            "targets": [{**asdict(g), "met": g.met, "cut_us": g.cut_us} for g in target_gaps(rows)]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--requests", type=int, default=200_000,
                    help="GETs of a full run of callback and exchange (default 200000; short runs: a tenth)")
    ap.add_argument("--trace-requests", type=int, default=0, metavar="N",
                    help="requests of the stress trace of bare-lean and replay-1 (default 0: sized for about "
                         "--seconds of replay-1 by a 20,000-request calibration replay)")
    ap.add_argument("--seconds", type=int, default=5,
                    help="wrk's and autocannon's full run, and the trace's target length (default 5; short: a fifth)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median per row (default 2)")
    ap.add_argument("--connections", type=int, default=50, help="connections of every row (default 50)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--npm-cache", type=Path, default=DEFAULT_NPM_CACHE,
                    help=f"where bench/peers.py installed autocannon (default {DEFAULT_NPM_CACHE})")
    ap.add_argument("--json", metavar="PATH", type=Path, help="also write the figures as JSON to PATH")
    a = ap.parse_args(argv)
    a.only = [t for t in a.only.split(",") if t] or list(TOOLS)
    if unknown := [t for t in a.only if t not in TOOLS]:
        ap.error(f"unknown row(s) in --only: {', '.join(unknown)} (known: {', '.join(TOOLS)})")
    if a.requests < 1000:
        ap.error("--requests must be >= 1000 (a short run is a tenth of it)")
    if a.trace_requests != 0 and a.trace_requests < 1000:
        ap.error("--trace-requests must be 0 (calibrate) or >= 1000")
    if a.seconds < 2 or a.rounds < 1 or a.connections < 1:
        ap.error("--seconds must be >= 2, --rounds and --connections >= 1")
    if a.json is not None and not a.json.parent.is_dir():
        ap.error(f"--json: no such directory: {a.json.parent}")
    if a.json is not None and a.json.is_dir():
        ap.error(f"--json: {a.json} is a directory")
    return a


def main(argv: list[str] | None = None) -> None:
    """Parse options, start the target, run the rows in rounds, print the table, differences and targets."""
    a = parse_args(argv)
    install_cleanup()
    from importlib.metadata import version

    t_start = time.monotonic()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()[0]
    with bench_run("floor", "wdm-bench-floor-") as work:
        with StaticTarget(prefer="nginx", workers=1) as target:
            f = Floor(a, target, work, loop)
            js_note = ""
            if "autocannon" in a.only:
                f.js, js_note = autocannon_js(a.npm_cache, install=False)
                if f.js is None:
                    js_note = js_note.replace("--no-install; ", "")
            for tool in a.only:
                if why := why_missing(tool, js_note):
                    f.skipped[tool] = why
                    progress(f"{tool}: skipped: {why}")
            chosen = [t for t in TOOLS if t in a.only]
            if any(t in chosen and t not in f.skipped for t in ("bare-lean", "replay-1")):
                make_traces(f)
            run_rounds(f, chosen)
            rows = result_rows(f, chosen)
            meta = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "wdm_replay": version("wdm-replay"),
                    "event_loop": loop, "target": target.kind + (f" ({target.note})" if target.note else ""),
                    "connections": a.connections, "rounds": a.rounds,
                    "load": {"start": load_start, "end": os.getloadavg()[0]}}
    print(f"{meta['date']}; {meta['machine']}; wdm-replay {meta['wdm_replay']}; event loop {loop}")
    print(f"target: {meta['target']}; {a.connections} connections; {a.rounds} round(s); load average "
          f"{meta['load']['start']:.2f} at start, {meta['load']['end']:.2f} at end\n")
    print(render_table(rows, target.kind))
    print("\n" + render_differences(differences(rows)))
    print("\nissue 24's targets (requests per CPU-second = 1,000,000 / total µs):")
    print(render_targets(target_gaps(rows), f.skipped, any(r.tool == 'replay-1' for r in rows)))
    print(f"\nµs = CPU microseconds per request, (full run - short run) / (full requests - short requests): "
          f"start-up, connecting and exit cancel out; 'fixed CPU s' is what they cost (bench/peers.py counts it "
          f"in). user/system from the child's rusage (children included); '{target_column(target.kind)}' is "
          f"the target's CPU per request. Each row: the round with the median total (even count: the mean of "
          f"the two middle ones).")
    if f.skipped:
        print("\nskipped:\n  " + "\n  ".join(f"{t}: {w}" for t, w in f.skipped.items()))
    if a.json is not None:
        try:
            a.json.write_text(json.dumps(as_json(f, rows, meta), indent=1) + "\n")
        except OSError as e:
            sys.exit(f"floor: cannot write --json {a.json}: {e.strerror or e}")
    print(f"\nbench wall time: {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
