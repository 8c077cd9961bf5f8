"""Performance at the limit: wdm-replay vs bare loops vs Locust, one run, one loopback target.

Every generator hits the same static target (bench/static_target.py: a private nginx answering
every shop route with one fixed JSON body, started and stopped here) with the same concurrency.
Each runs in its own process; client CPU is that process's user+system time (``os.wait4``,
start-up included), target CPU is what the nginx workers used during the run (from /proc).

- replay-1 / replay-2: ``wdm-replay replay --speed max --workers 1|2`` (the lean HTTP client) on a
  stress trace sized for about ``--seconds`` at the rate a short calibration replay reached;
- replay-1 / replay-2 (cap 0.4): the same, every replay process (coordinator and each worker)
  capped at ``--cap`` cores by a cgroup CPU quota of its own (needs root; left out, with a note,
  where cgroups are not writable) on a trace sized for ~``--seconds``/2 — two workers then have
  twice one worker's CPU while the target keeps room, which 2 shared cores cannot give otherwise;
- replay-1 (aiohttp): the same with ``--client aiohttp`` — what the replayer did before its own client;
- bare-lean: bench/bare_loop.py ``--client lean``, the same trace's requests (symbols resolved to
  "1") through one ``wdmreplay.replayer.http.Origin``, N coroutines, no schedule and no results —
  the ceiling of the replayer's own transport;
- bare-aiohttp: bench/bare_loop.py ``--client aiohttp``, the same through one ClientSession,
  ``TCPConnector(limit=N)`` — the ceiling of an aiohttp-based generator (the issue's baseline);
- locust-fast / locust-http: bench/locustfile.py (the seed's six scenarios, no wait) with
  FastHttpUser / HttpUser, headless, ``-u N`` for ``--seconds``; req/s from Locust's CSV.

The aiohttp rows get their own trace, sized by a second calibration, so that every run lasts about
``--seconds`` whatever the client's speed. Each row says which side limited it ("limit"): the
target (nginx near a full core), the client (its process near a full core), or the machine (all
cores busy — client, target and other work share them).

Every tool runs ``--repeat`` rounds (default 3), interleaved so a busy spell of a shared machine
hits all tools alike; the best round is reported, with the others in the note. The rest of the machine's CPU
during each run is printed too ("other CPU s"): well above zero, the figures are disturbed.
Without ``wdm-replay replay`` the replay rows are skipped ("not available yet"); without
``generate-trace`` a stand-in trace of the same six scenarios is used (bench/seed_scenarios.py).
The whole bench stops within 5 minutes, and kills every child it started, even on Ctrl-C.

    python bench/compare_generators.py                     # about 4 minutes
    python bench/compare_generators.py --quick             # ~40 s: no Locust, one round of 3 s
    python bench/compare_generators.py --seconds 5 --concurrency 128 --repeat 5
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (ChildRun, CpuCaps, capped_run, command_available, install_cleanup, last_line, machine,  # noqa: E402
                     option_available, replay_window, run_child, stress_trace, wdm_replay)
from static_target import StaticTarget, machine_busy_seconds  # noqa: E402

from wdmreplay.targets import Target  # noqa: E402

BUDGET_SECONDS = 300  # the whole bench must finish within this, whatever the options say


@dataclass
class Row:
    """One generator's figures."""

    tool: str
    requests: int
    seconds: float  # the tool's own measurement window (excludes process start-up)
    client_cpu: float  # whole process, start-up included
    target_cpu: float
    other_cpu: float  # the rest of the machine during the run (other users' work disturbs the figures)
    note: str = ""
    startup_cpu: float = 0.0  # the same tool's CPU on a trivial job (imports, set-up, exit)

    @property
    def client_share(self) -> float:
        """Cores the client used while measuring (start-up CPU taken out)."""
        return max(self.client_cpu - self.startup_cpu, 0.0) / self.seconds if self.seconds > 0 else 0.0

    @property
    def target_share(self) -> float:
        """Cores the target used during the run."""
        return self.target_cpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def limit(self) -> str:
        """Which side limited the rate: target, client, all cores, or none near a core."""
        cores = os.cpu_count() or 1
        busy = self.client_share + self.target_share + self.other_cpu / max(self.seconds, 1e-9)
        parts = []
        if self.target_share >= 0.85:
            parts.append(f"TARGET {self.target_share:.1f} cores")
        if self.client_share >= 0.85:
            parts.append(f"client {self.client_share:.1f} cores")
        if busy >= 0.9 * cores:
            parts.append(f"all {cores} cores busy")
        return ", ".join(parts) or "no side near a core"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu(self) -> float:
        """Requests per client CPU-second, start-up CPU excluded."""
        net = self.client_cpu - self.startup_cpu
        return self.requests / net if net > 0 else 0.0


class Bench:
    """The run's shared state: options, target, work directory, deadline, rows, notes."""

    def __init__(self, args: argparse.Namespace, target: StaticTarget, work: Path):
        self.a = args
        self.target = target
        self.work = work
        self.deadline = time.monotonic() + BUDGET_SECONDS
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.urls = work / "urls.json"
        self.urls.write_text(json.dumps(Target.single(target.url).as_dict()))
        # The request engine is measured, not the read-back of the final state.
        self.replay_flags = ["--no-final-read"] if option_available(("replay",), "--no-final-read") else []
        if option_available(("replay",), "--force"):  # the same output is written once per round
            self.replay_flags.append("--force")

    def left(self) -> float:
        """Seconds left in the bench's time budget."""
        return self.deadline - time.monotonic()

    def measured(self, argv: list[str], timeout: float, runner: Callable[..., ChildRun] = run_child,
                 **kw) -> tuple[ChildRun, float, float]:
        """Run a child within the budget; its ChildRun, the target's CPU and the rest of the machine's."""
        timeout = min(timeout, max(self.left() - 5, 1))
        c0, m0 = self.target.cpu_seconds(), machine_busy_seconds()
        run = runner(argv, timeout=timeout, **kw)
        target = self.target.cpu_seconds() - c0
        return run, target, max(machine_busy_seconds() - m0 - target - run.cpu, 0.0)

    def skip(self, tool: str, why: str) -> None:
        print(f"  {tool}: {why}", flush=True)
        self.notes.append(f"{tool}: {why}")


# --- generators -------------------------------------------------------------------------------


def replay_row(b: Bench, tool: str, trace: Path, workers: int, client: str = "lean",
               caps: CpuCaps | None = None) -> Row | None:
    """``wdm-replay replay --speed max`` with ``workers`` processes; None (and a note) if it failed.

    With ``caps``, the replay process and each worker it forks run under a CPU cap of their own.
    """
    out = b.work / f"{tool.split()[0]}.wdmr"
    argv = wdm_replay() + ["replay", str(trace), "--speed", "max", "--concurrency", str(b.a.concurrency),
                           "--workers", str(workers), "-o", str(out), "--quiet", "--urls", str(b.urls), *b.replay_flags]
    if client != "lean":
        argv += ["--client", client]
    capped = ""

    def under_caps(argv: list[str], timeout: float) -> ChildRun:
        nonlocal capped
        run, procs, throttled = capped_run(caps, argv, timeout)
        capped = f"{procs} process{'es' if procs > 1 else ''} capped at {caps.cores:g} core, throttled in {throttled} periods"
        return run

    run, tcpu, other = b.measured(argv, timeout=b.a.seconds * 6 + 30, runner=run_child if caps is None else under_caps)
    if run.returncode != 0 or run.timed_out:
        b.skip(tool, f"failed (exit {run.returncode}{', timed out' if run.timed_out else ''}): "
                     f"{last_line(run.stderr)}")
        return None
    n, seconds, bad = replay_window(out)
    return Row(tool, n, seconds, run.cpu, tcpu, other,
               note="  ".join(p for p in (capped, f"not ok: {bad}" if bad else "") if p))


def bare_row(b: Bench, tool: str, trace: Path, loop: str, client: str) -> Row | None:
    """A bare loop (bench/bare_loop.py, aiohttp or the lean client) in its own process, on ``trace``'s requests."""
    argv = [sys.executable, str(HERE / "bare_loop.py"), "--trace", str(trace), "--url", b.target.url,
            "--concurrency", str(b.a.concurrency), "--loop", loop, "--client", client, "--dialect", b.a.dialect]
    run, tcpu, other = b.measured(argv, timeout=b.a.seconds * 6 + 30)
    if run.returncode != 0 or run.timed_out:
        b.skip(tool, f"failed (exit {run.returncode}): {last_line(run.stderr)}")
        return None
    r = json.loads(run.stdout.strip().splitlines()[-1])
    return Row(tool, r["requests"], r["seconds"], run.cpu, tcpu, other,
               note=f"{r['errors']} errors" if r["errors"] else "")


def locust_row(b: Bench, tool: str, user_class: str, users: int | None = None, seconds: int | None = None) -> Row | None:
    """Locust headless with ``user_class`` for ``--seconds``; figures from its CSV 'Aggregated' row."""
    prefix = b.work / tool
    users = b.a.locust_users or b.a.concurrency if users is None else users
    argv = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "-u", str(users),
            "-r", str(max(users, 1)), "-t", f"{seconds or b.a.seconds}s", "--host", b.target.url, "--csv", str(prefix),
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2", user_class]
    env = dict(os.environ, WDM_DIALECT=b.a.dialect)
    run, tcpu, other = b.measured(argv, timeout=b.a.seconds + 60, env=env)
    stats = Path(f"{prefix}_stats.csv")
    if run.timed_out or not stats.exists():
        b.skip(tool, f"failed (exit {run.returncode}): {last_line(run.stderr)}")
        return None
    with open(stats, newline="") as f:
        agg = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    count, rate, failures = int(agg["Request Count"]), float(agg["Requests/s"]), int(agg["Failure Count"])
    return Row(tool, count, count / rate if rate else 0.0, run.cpu, tcpu, other,
               note=f"{failures} failures" if failures else "")


# --- report -----------------------------------------------------------------------------------


def render_table(rows: list[Row]) -> str:
    """The figures as a fixed-width text table (client % and target % are of one core)."""
    head = f"{'tool':<22}{'requests':>9}{'seconds':>8}{'req/s':>7}{'client CPU s':>13}{'start-up':>9}" \
           f"{'req/CPU-s':>10}{'client %':>9}{'target CPU s':>13}{'target %':>9}{'other CPU s':>12}  {'limit':<37}note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.tool:<22}{r.requests:>9}{r.seconds:>8.2f}{r.rate:>7.0f}{r.client_cpu:>13.2f}"
                     f"{r.startup_cpu:>9.2f}{r.per_cpu:>10.0f}{100 * r.client_share:>8.0f}%{r.target_cpu:>13.2f}"
                     f"{100 * r.target_share:>8.0f}%{r.other_cpu:>12.2f}  {r.limit:<37}{r.note}".rstrip())
    return "\n".join(lines)


def render_ratios(rows: list[Row], loop: str, cap: float = 0.0) -> str:
    """The issue's ratios, each with its target and whether this run met it, plus the extra baselines."""
    by = {r.tool: r for r in rows}

    def ratio(name: str, a: str, b: str, per_cpu: bool = False, goal: float | None = None, why: str = "") -> str:
        if a not in by or b not in by:
            return f"{name:<66} n/a ({a if a not in by else b} not measured)"
        x, y = (by[a].per_cpu, by[b].per_cpu) if per_cpu else (by[a].rate, by[b].rate)
        value = x / y if y else 0.0
        verdict = "" if goal is None else f"target >= {goal:g}: {'met' if value >= goal else 'NOT met'}"
        limits = f"limits: {by[a].limit} / {by[b].limit}"
        return f"{name:<66} {value:6.2f}x   {'; '.join(p for p in (verdict, why, limits) if p)}"

    bare_a, bare_l = f"bare-aiohttp ({loop})", f"bare-lean ({loop})"
    return "\n".join(line for line in [
        ratio(f"replay-1 / {bare_a} (req/s)", "replay-1", bare_a, goal=0.9),
        ratio(f"replay-1 / {bare_a} (req per CPU-second)", "replay-1", bare_a, per_cpu=True),
        ratio("replay-1 / locust-fast (req per CPU-second: per core)", "replay-1", "locust-fast", per_cpu=True,
              goal=1.0),
        ratio("replay-1 / locust-fast (req/s)", "replay-1", "locust-fast"),
        ratio("replay-1 / locust-http (req/s)", "replay-1", "locust-http", goal=3),
        ratio("replay-2 / replay-1 (req/s)", "replay-2", "replay-1", goal=1.7),
        ratio(f"replay-2 / replay-1, each process capped at {cap:g} core (req/s)", f"replay-2 (cap {cap:g})",
              f"replay-1 (cap {cap:g})", goal=1.7, why="a core's share for each process, room left for the target")
        if cap else "replay-2 / replay-1 with CPU caps: left out (--cap 0, or no writable cgroups: see the notes)",
        ratio(f"replay-2 / replay-1, capped at {cap:g} (req per CPU-second)", f"replay-2 (cap {cap:g})",
              f"replay-1 (cap {cap:g})", per_cpu=True) if cap else "",
        ratio("replay-2 / replay-1 (req per CPU-second): the workers' cost", "replay-2", "replay-1", per_cpu=True,
              why="1.0 = two workers spend no more CPU per request than one; the cores are shared here"),
        ratio(f"replay-1 / {bare_l} (req/s): the replayer's bookkeeping", "replay-1", bare_l),
        ratio(f"replay-1 / {bare_l} (req per CPU-second)", "replay-1", bare_l, per_cpu=True),
        ratio(f"replay-1 (aiohttp) / {bare_a} (req/s): the old path", "replay-1 (aiohttp)", bare_a),
        ratio("replay-1 / replay-1 (aiohttp) (req/s): the new client's gain", "replay-1", "replay-1 (aiohttp)"),
    ] if line)


def replayer_loop() -> str:
    """The event loop the replayer runs on ("uvloop" or "asyncio"), as the replayer itself decides it
    (``wdmreplay.eventloop``: uvloop when installed, unless ``WDM_REPLAY_UVLOOP=0``)."""
    from wdmreplay.eventloop import loop_name

    return loop_name()


def main() -> None:
    """Run every available generator against one static target and print the table and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--seconds", type=int, default=None, help="length of each run (default 10; --quick: 3)")
    ap.add_argument("--concurrency", type=int, default=64, help="in-flight requests per generator (default 64)")
    ap.add_argument("--locust-users", type=int, default=0, help="Locust users (default: --concurrency)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds; each tool's best round is reported (default 3; --quick: 1)")
    ap.add_argument("--requests", type=int, default=0,
                    help="trace size (default: calibrated to --seconds at replay-1's rate)")
    ap.add_argument("--dialect", default="2024", choices=("2024", "2023"))
    ap.add_argument("--target", default="nginx", choices=("nginx", "aiohttp"), help="static target server")
    ap.add_argument("--nginx-workers", type=int, default=2,
                    help="nginx worker processes (default 2: the target may use whatever core the client leaves)")
    ap.add_argument("--quick", action="store_true",
                    help="the quick check (~40 s): no Locust, one round of 3 s (unless given otherwise)")
    ap.add_argument("--cap", type=float, default=0.4,
                    help="also run replay-1 and replay-2 with each replay process capped at this many cores "
                         "(cgroups, needs root; default 0.4; 0: leave out)")
    ap.add_argument("--keep", metavar="DIR", help="keep traces, results and CSVs in DIR")
    a = ap.parse_args()
    a.seconds = a.seconds or (3 if a.quick else 10)
    a.repeat = a.repeat or (1 if a.quick else 3)
    install_cleanup()
    t_start = time.monotonic()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="wdm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with StaticTarget(prefer=a.target, workers=a.nginx_workers) as target:
            run_all(Bench(a, target, work))
    except KeyboardInterrupt:
        print("\ninterrupted: every child process and the target were stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nbench wall time: {time.monotonic() - t_start:.0f} s")


def run_all(b: Bench) -> None:
    """Calibrate, generate the trace, run every generator, print the results."""
    a, target = b.a, b.target
    from importlib.metadata import version  # not `import locust`: it monkey-patches this process (gevent)

    print(f"machine: {machine()}")
    print(f"versions: wdm-replay {version('wdm-replay')}, aiohttp {version('aiohttp')}, "
          f"uvloop {version('uvloop') if _importable('uvloop') else '-'}, "
          f"locust {version('locust') if _importable('locust') else '-'}")
    print(f"target: {target.kind} at {target.url}  {target.note}".rstrip())
    print(f"concurrency {a.concurrency}, runs of ~{a.seconds} s, dialect {a.dialect}, "
          f"load average at start {os.getloadavg()[0]:.2f}\n", flush=True)

    have_replay = command_available("replay")
    has_client = option_available(("replay",), "--client")
    sizes = {"lean": a.requests, "aiohttp": a.requests}
    if not a.requests and have_replay:
        # Size each trace for ~--seconds: replay a small one first and measure the rate, per client
        # (the lean client is several times faster than aiohttp: one trace for both would make the
        # aiohttp runs last several times longer).
        cal = b.work / "calibrate.wdmt"
        stress_trace(cal, 30000, dialect=a.dialect)
        for client in ("lean", "aiohttp") if has_client else ("lean",):
            print(f"calibrating: replay-1 --client {client} on a 30,000-request trace ...", flush=True)
            if row := replay_row(b, "calibration", cal, 1, client):
                sizes[client] = int(row.rate * a.seconds)
                print(f"  {row.rate:.0f} req/s -> trace of {sizes[client]} requests", flush=True)
    traces: dict[str, Path] = {}
    for client in ("lean", "aiohttp"):
        traces[client] = b.work / f"stress-{client}.wdmt"
        h, how = stress_trace(traces[client], sizes[client] or 10000 * a.seconds, dialect=a.dialect)
        print(f"trace for the {client} rows: {h['requests']} requests in {h['sessions']} sessions, from {how}",
              flush=True)
    if "stand-in" in how:
        b.notes.append(f"trace from {how}")
    caps = None
    if a.cap and have_replay:
        try:
            caps = CpuCaps(a.cap)
        except RuntimeError as e:
            b.skip("replay-1/2 capped", f"left out: {e}")
    if caps is not None:
        # Sized for about half of --seconds with one worker at the cap.
        traces["capped"] = b.work / "stress-capped.wdmt"
        h, _ = stress_trace(traces["capped"], max(int((sizes["lean"] or 10000 * a.seconds) * a.cap / 2), 1000),
                            dialect=a.dialect)
        print(f"trace for the capped rows ({a.cap:g} core per replay process, cgroup v{caps.version}): "
              f"{h['requests']} requests", flush=True)

    # Each tool: its measured run, and the same tool on a trivial job (its start-up CPU).
    tiny = b.work / "tiny.wdmt"
    stress_trace(tiny, 10, dialect=a.dialect)
    runs: list[tuple[str, Callable[[], Row | None], Callable[[], Row | None]]] = []
    if have_replay:
        for w in (1, 2):
            runs.append((f"replay-{w}", lambda w=w: replay_row(b, f"replay-{w}", traces["lean"], w),
                         lambda w=w: replay_row(b, f"replay-{w} start-up", tiny, w)))
        if caps is not None:
            for w in (1, 2):
                tool = f"replay-{w} (cap {a.cap:g})"
                runs.append((tool, lambda w=w, tool=tool: replay_row(b, tool, traces["capped"], w, caps=caps),
                             lambda w=w, tool=tool: replay_row(b, f"{tool} start-up", tiny, w, caps=caps)))
        if has_client:
            runs.append(("replay-1 (aiohttp)", lambda: replay_row(b, "replay-1 (aiohttp)", traces["aiohttp"], 1, "aiohttp"),
                         lambda: replay_row(b, "replay-1 (aiohttp) start-up", tiny, 1, "aiohttp")))
        else:
            b.skip("replay-1 (aiohttp)", "not available (replay has no --client option)")
    else:
        for tool in ("replay-1", "replay-2"):
            b.skip(tool, "not available yet (wdm-replay replay missing)")
    loop = replayer_loop()  # the bare loops run on the replayer's event loop
    for client in ("lean", "aiohttp"):
        tool = f"bare-{client} ({loop})"
        runs.append((tool, lambda tool=tool, client=client: bare_row(b, tool, traces[client], loop, client),
                     lambda client=client: bare_row(b, "bare start-up", tiny, loop, client)))
    for tool, cls in (("locust-fast", "FastShopUser"), ("locust-http", "ShopUser")):
        if a.quick:
            b.notes.append(f"{tool}: left out (--quick)")
        elif importlib.util.find_spec("locust") is None:
            b.skip(tool, "locust is not installed (pip install -e '.[bench]')")
        else:
            runs.append((tool, lambda tool=tool, cls=cls: locust_row(b, tool, cls),
                         lambda tool=tool, cls=cls: locust_row(b, f"{tool}-start-up", cls, users=0, seconds=1)))

    print("start-up CPU of each tool (a trivial job) ...", flush=True)
    startup = {tool: (row.client_cpu if (row := measure()) else 0.0) for tool, _, measure in runs}

    # Rounds, not tool after tool: a slow spell of the machine then hits every tool alike.
    best: dict[str, Row] = {}
    rates: dict[str, list[float]] = {}
    last_round = 15.0 + (a.seconds + 4) * len(runs)  # a guess until the first round has been timed
    for rnd in range(a.repeat):
        if rnd and b.left() < last_round + 10:
            b.notes.append(f"only {rnd} round(s): the {BUDGET_SECONDS} s budget would be exceeded")
            break
        t_round = time.monotonic()
        for tool, run, _ in runs:
            print(f"round {rnd + 1}/{a.repeat}: {tool} ...", flush=True)
            if row := run():
                row.startup_cpu = startup[tool]
                rates.setdefault(tool, []).append(row.rate)
                if tool not in best or row.rate > best[tool].rate:
                    best[tool] = row
        last_round = time.monotonic() - t_round
    for tool, row in best.items():
        if len(rates[tool]) > 1:
            row.note = (f"best of {', '.join(f'{r:.0f}' for r in rates[tool])} req/s  " + row.note).rstrip()
    b.rows = [best[t] for t, _, _ in runs if t in best]

    print("\n" + render_table(b.rows))
    print(f"\nratios (the bare loops run on the replayer's event loop: {loop}):")
    print(render_ratios(b.rows, loop, a.cap if caps is not None else 0.0))
    print("\nseconds = the tool's own window (replay: first send to last response; bare: timed loop; Locust: "
          "count / its req/s). client CPU = the whole process; start-up = the same tool's CPU on a trivial job "
          "(10-request trace; Locust: 0 users for 1 s); req/CPU-s = requests / (client CPU - start-up); "
          "client % / target % = cores used during the window (start-up taken out), 100% = one full core (client % can pass 100% for one process: CPU outside its window, e.g. trace reading and results writing, beyond the start-up job's). "
          f"The target ({target.kind}) and the clients share these {os.cpu_count()} cores.")
    if any(r.target_share >= 0.85 for r in b.rows):
        print("TARGET near a full core in: " + ", ".join(r.tool for r in b.rows if r.target_share >= 0.85)
              + " — there the figure is (also) the target's limit, not only the client's.")
    print(f"load average at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); 'other CPU s' is the rest of "
          "the machine during each run — well above 0, the figures are disturbed.")
    if b.notes:
        print("\nnotes:\n  " + "\n  ".join(b.notes))


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
