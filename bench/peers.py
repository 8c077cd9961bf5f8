"""The replayer beside the usual load generators: requests per CPU-second, one null target, side by side.

One private nginx (Debian's package, ONE worker process, every route answers 200 with one fixed JSON
body: bench/static_target.py) on 127.0.0.1 is the target of every tool, one after another, each with
the same number of connections (``--connections``, default 50) for about ``--seconds``:

- wrk (C, ``-t1``), hey (Go), autocannon (Node; installed from the npm registry into a cache folder,
  ``--npm-cache``) — each sends one GET path over and over;
- Locust FastHttpUser (bench/locustfile.py: the seed's six scenarios, no wait), headless;
- a bare aiohttp loop (bench/bare_loop.py ``--client aiohttp``: the trace's requests, no bookkeeping);
- ``wdm-replay replay --speed max --workers 1`` and ``--workers 2`` (a stress trace, every results
  row written).

Each tool runs in its own process group; its CPU is user + system of the process and the children it
waited for (``os.wait4``), START-UP INCLUDED (imports, trace reading, results writing: what the tool
costs the machine). Each replay row also gets its START-UP CPU on its own: the same replay of a
10-request trace (median of three), and requests per CPU-second with that taken out — beside the
headline, which stays start-up included. The figure that matters on a shared machine is requests per CPU-second of the
generator (far less sensitive to neighbours than req/s); the table prints it, req/s, the target's
CPU, the rest of the machine's CPU and the load average at each start, then the ratios of every tool
against autocannon and wrk. A tool that is not installed is listed as skipped with how to install
it, never faked. The trace-based tools (replay, bare aiohttp) get traces sized for ``--seconds`` by a
short calibration run. Loopback only; every process started here is stopped at the end, on error
and on Ctrl-C.

Tools (names for ``--only``): wrk, hey, autocannon, locust-fast, bare-aiohttp, replay-1, replay-2.

    apt-get install -y nginx wrk hey                  # Debian packages (the bench prints what is missing)
    python bench/peers.py                             # ~2 minutes: 10 s per tool
    python bench/peers.py --seconds 5 --repeat 3      # best of 3 rounds, and the ratios round by round
    python bench/peers.py --only wrk,replay-1         # a subset
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_generators import Bench, Row, bare_row, locust_row, replay_row, replayer_loop  # noqa: E402
from harness import bench_run, install_cleanup, last_line, machine, stress_trace  # noqa: E402
from static_target import StaticTarget  # noqa: E402

TOOLS = ("wrk", "hey", "autocannon", "locust-fast", "bare-aiohttp", "replay-1", "replay-2")
AUTOCANNON = "autocannon@7"
PATH = "/stock/find/1"  # what the single-URL tools send (nginx answers every path alike)
DEFAULT_NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wdm-replay-bench" / "npm"


# --- output parsers (pure: tested on the tools' real output) ---------------------------------------


def parse_wrk(out: str) -> tuple[int, float, int]:
    """(requests, seconds, non-2xx or socket errors) from wrk's summary; ValueError if it has none."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk's output")
    seconds = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad += sum(int(x) for x in sock.groups()) if sock else 0
    return int(m.group(1)), seconds, bad


def parse_hey(out: str) -> tuple[int, float, int]:
    """(requests, seconds, responses other than 2xx + errors) from hey's summary; ValueError if none."""
    total = re.search(r"Total:\s+([\d.]+) secs", out)
    codes = [(int(c), int(n)) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)]
    if not total or not codes:
        raise ValueError("no 'Total:' line or status code distribution in hey's output")
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+Get ", out, re.M))
    n = sum(k for _, k in codes)
    return n + errors, float(total.group(1)), sum(k for c, k in codes if not 200 <= c < 300) + errors


def parse_autocannon(out: str) -> tuple[int, float, int]:
    """(requests, seconds, non-2xx + errors + timeouts) from autocannon's ``--json`` line; ValueError if none."""
    line = next((ln for ln in reversed(out.strip().splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise ValueError("no JSON result in autocannon's output")
    r = json.loads(line)
    return int(r["requests"]["total"]), float(r["duration"]), \
        int(r.get("non2xx", 0)) + int(r.get("errors", 0)) + int(r.get("timeouts", 0))


# --- the tools ----------------------------------------------------------------------------------


def autocannon_js(cache: Path, install: bool) -> tuple[Path | None, str]:
    """autocannon's entry script in ``cache`` (installed there from npm if asked); (path, why not)."""
    js = cache / "node_modules" / "autocannon" / "autocannon.js"
    if js.exists():
        return js, ""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node/npm not found (apt-get install -y nodejs npm)"
    if not install:
        return None, f"not in {cache} (--no-install; npm install --prefix {cache} {AUTOCANNON})"
    print(f"installing {AUTOCANNON} from the npm registry into {cache} ...", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), AUTOCANNON],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "npm install took over 300 s"
    if r.returncode != 0 or not js.exists():
        return None, f"npm install failed: {last_line(r.stderr or r.stdout, 1)}"
    return js, ""


def fixed_url_row(b: Bench, tool: str, argv: list[str], parse: Callable[[str], tuple[int, float, int]]) -> Row | None:
    """One single-URL tool (wrk, hey, autocannon) for ``--seconds``; None (and a note) if it failed."""
    run, tcpu, other = b.measured(argv, timeout=b.a.seconds + 60)
    try:
        n, seconds, bad = parse(run.stdout)
    except (ValueError, KeyError) as e:
        b.skip(tool, f"failed (exit {run.returncode}): {e}; {last_line(run.stderr + run.stdout)}")
        return None
    return Row(tool, n, seconds, run.cpu, tcpu, other, note=f"{bad} not 2xx/errors" if bad else "")


def tool_runs(b: Bench, js: Path | None, traces: dict[str, Path]) -> dict[str, Callable[[], Row | None]]:
    """What runs each available tool, by name."""
    a, url, c, s = b.a, b.target.url, str(b.a.connections), str(b.a.seconds)
    runs: dict[str, Callable[[], Row | None]] = {
        "wrk": lambda: fixed_url_row(b, "wrk", ["wrk", "-t1", "-c", c, "-d", f"{s}s", url + PATH], parse_wrk),
        "hey": lambda: fixed_url_row(b, "hey", ["hey", "-z", f"{s}s", "-c", c, url + PATH], parse_hey),
        "autocannon": lambda: fixed_url_row(b, "autocannon", ["node", str(js), "-c", c, "-d", s, "--json",
                                                              url + PATH], parse_autocannon),
        "locust-fast": lambda: locust_row(b, "locust-fast", "FastShopUser"),
        "bare-aiohttp": lambda: bare_row(b, "bare-aiohttp", traces["aiohttp"], a.loop, "aiohttp"),
        "replay-1": lambda: patient(b, lambda: replay_row(b, "replay-1", traces["replay"], 1)),
        "replay-2": lambda: patient(b, lambda: replay_row(b, "replay-2", traces["replay"], 2)),
    }
    return runs


def patient(b: Bench, run: Callable[[], Row | None]) -> Row | None:
    """``run`` with the trace-based row's time limit (6 x --seconds + 30 s) raised to at least 6.5 minutes:
    a trace sized by a short calibration may take several times --seconds when neighbours load the machine."""
    saved = b.a.seconds
    b.a.seconds = max(saved, 60)
    try:
        return run()
    finally:
        b.a.seconds = saved


def missing(tool: str, js_note: str) -> str:
    """Why ``tool`` cannot run here (with how to install it), or '' if it can."""
    if tool in ("wrk", "hey") and not shutil.which(tool):
        return f"not installed (apt-get install -y {tool})"
    if tool == "autocannon":
        return js_note
    if tool == "locust-fast" and importlib.util.find_spec("locust") is None:
        return "locust not installed (pip install -e '.[bench]')"
    return ""


# --- report -------------------------------------------------------------------------------------


def render(rows: list[Row], loads: dict[str, float], startup: dict[str, float] | None = None) -> str:
    """The table: req/s and requests per CPU-second (start-up included), CPU of client, target, rest.

    ``startup`` (tool → CPU seconds of the same tool on a trivial job) adds two columns for those
    tools: that start-up CPU, and requests per CPU-second with it taken out. The headline
    ``req/CPU-s`` stays start-up included.
    """
    startup = startup or {}
    head = (f"{'tool':<14}{'requests':>10}{'seconds':>9}{'req/s':>9}{'client CPU s':>13}{'req/CPU-s':>11}"
            f"{'start-up s':>11}{'w/o start-up':>13}{'target %':>9}{'other CPU s':>12}{'load':>6}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.tool in startup:
            net = r.client_cpu - startup[r.tool]
            extra = f"{startup[r.tool]:>11.2f}" + (f"{r.requests / net:>13,.0f}" if net > 0 else f"{'n/a':>13}")
        else:
            extra = f"{'':>11}{'':>13}"
        lines.append(f"{r.tool:<14}{r.requests:>10,}{r.seconds:>9.2f}{r.rate:>9,.0f}{r.client_cpu:>13.2f}"
                     f"{r.per_cpu:>11,.0f}{extra}{100 * r.target_share:>8.0f}%{r.other_cpu:>12.2f}"
                     f"{loads.get(r.tool, 0.0):>6.2f}  {r.note}".rstrip())
    return "\n".join(lines)


STARTUP_RUNS = 3  # trivial-job runs per replay row; their median is its start-up CPU


def replay_startup(b: Bench, tiny: Path, chosen: list[str]) -> dict[str, float]:
    """Each replay row's start-up CPU: the median of :data:`STARTUP_RUNS` replays of a 10-request trace
    (imports, probe, trace scan, fork, results file, exit), as bench/compare_generators.py measures it."""
    out: dict[str, float] = {}
    for tool in (t for t in ("replay-1", "replay-2") if t in chosen):
        runs = [row.client_cpu for _ in range(STARTUP_RUNS)
                if (row := replay_row(b, f"{tool} start-up", tiny, int(tool[-1]))) is not None]
        if runs:
            out[tool] = statistics.median(runs)
    return out


def ratios(rows: list[Row], against: tuple[str, ...] = ("autocannon", "wrk")) -> str:
    """Every tool's req per CPU-second and req/s over each baseline's (n/a where a baseline is missing)."""
    by = {r.tool: r for r in rows}
    cols = [x for x in against if x in by]
    if not cols:
        return "ratios: n/a (" + " and ".join(against) + " not measured)"
    head = f"{'tool':<14}" + "".join(f"{'per CPU-s / ' + x:>24}{'req/s / ' + x:>20}" for x in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for x in cols:
            base = by[x]
            cells.append(f"{r.per_cpu / base.per_cpu if base.per_cpu else 0:>23.2f}x"
                         f"{r.rate / base.rate if base.rate else 0:>19.2f}x")
        lines.append(f"{r.tool:<14}" + "".join(cells))
    return "\n".join(lines)


def paired(per_round: dict[str, list[float | None]], against: tuple[str, ...] = ("autocannon", "wrk")) -> str:
    """Each tool's req per CPU-second over each baseline's *in the same round* (the runs next to each
    other in time), as the median and range over the rounds; "" with fewer than two rounds.

    The table's ratios take each tool's best round, whichever round it was; on a machine whose speed
    drifts between minutes, rounds run side by side compare like with like."""
    rounds = max((len(v) for v in per_round.values()), default=0)
    cols = [x for x in against if x in per_round]
    if rounds < 2 or not cols:
        return ""
    head = f"{'tool':<14}" + "".join(f"{'per CPU-s / ' + x + ', same round':>40}" for x in cols)
    lines = [head, "-" * len(head)]
    for tool, values in per_round.items():
        cells = []
        for x in cols:
            rs = sorted(v / b for v, b in zip(values, per_round[x]) if v and b)
            cells.append(f"{statistics.median(rs):>15.2f}x median, {rs[0]:.2f}-{rs[-1]:.2f}x in {len(rs)}"
                         if rs else f"{'n/a':>40}")
        lines.append(f"{tool:<14}" + "".join(f"{c:>40}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse options, start the target, run each available tool, print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--seconds", type=int, default=10, help="length of each tool's run (default 10)")
    ap.add_argument("--connections", type=int, default=50, help="connections of every tool (default 50)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the table takes each tool's best by req per CPU-second, and the ratios are "
                         "also given round by round: median and range (default 1)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--npm-cache", type=Path, default=DEFAULT_NPM_CACHE,
                    help=f"where autocannon is installed (default {DEFAULT_NPM_CACHE})")
    ap.add_argument("--no-install", action="store_true", help="do not install autocannon from npm")
    ap.add_argument("--keep", metavar="DIR", help="keep traces and results in DIR")
    a = ap.parse_args(argv)
    only = [t for t in a.only.split(",") if t] or list(TOOLS)
    if unknown := [t for t in only if t not in TOOLS]:
        ap.error(f"unknown tool(s) in --only: {', '.join(unknown)} (known: {', '.join(TOOLS)})")
    if a.seconds < 1 or a.connections < 1 or a.repeat < 1:
        ap.error("--seconds, --connections and --repeat must be >= 1")
    # compare_generators' row functions read these names.
    a.concurrency, a.locust_users, a.dialect = a.connections, 0, "2024"
    a.loop = replayer_loop()  # the replayer's (WDM_REPLAY_UVLOOP=0 turns uvloop off); the bare loops run on it too
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        sys.exit("peers: nginx not found: the null target is Debian's nginx (apt-get install -y nginx)")
    install_cleanup()
    t_start = time.monotonic()
    with bench_run("peers", "wdm-bench-peers-", a.keep) as work:
        with StaticTarget(prefer="nginx", workers=1) as target:
            b = Bench(a, target, work)
            b.deadline = time.monotonic() + 120 + len(only) * a.repeat * (a.seconds * 4 + 60)
            run_all(b, only)
    print(f"\nbench wall time: {time.monotonic() - t_start:.0f} s")


def run_all(b: Bench, only: list[str]) -> None:
    """Calibrate and write the traces, run the tools in rounds, print the results."""
    from importlib.metadata import version

    a = b.a
    print(f"machine: {machine()}, "
          f"wdm-replay {version('wdm-replay')}, event loop {a.loop}")
    print(f"target: {b.target.kind} at {b.target.url}; {a.connections} connections, ~{a.seconds} s per tool; "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    js, js_note = (None, "")
    if "autocannon" in only:
        js, js_note = autocannon_js(a.npm_cache, not a.no_install)
    chosen = []
    for tool in only:
        if why := missing(tool, js_note):
            b.skip(tool, f"skipped: {why}")
        else:
            chosen.append(tool)

    traces: dict[str, Path] = {}
    need = {"replay": "replay-1" in chosen or "replay-2" in chosen, "aiohttp": "bare-aiohttp" in chosen}
    if any(need.values()):
        cal = b.work / "calibrate.wdmt"
        stress_trace(cal, 20000)
        for kind, tool in (("replay", "replay-1"), ("aiohttp", "bare-aiohttp")):
            if not need[kind]:
                continue
            print(f"calibrating {tool} on a 20,000-request trace ...", flush=True)
            row = replay_row(b, "calibration", cal, 1) if kind == "replay" else \
                bare_row(b, "calibration", cal, a.loop, "aiohttp")
            if row is None:
                raise RuntimeError(f"the calibration run of {tool} failed: " + b.notes[-1])
            traces[kind] = b.work / f"{kind}.wdmt"
            h, _ = stress_trace(traces[kind], max(int(row.rate * a.seconds), 1000))
            print(f"  {row.rate:,.0f} req/s -> a trace of {h['requests']:,} requests", flush=True)

    startup: dict[str, float] = {}
    if need["replay"]:
        tiny = b.work / "tiny.wdmt"
        stress_trace(tiny, 10)
        print(f"start-up CPU of the replay rows (a 10-request trace, median of {STARTUP_RUNS}) ...", flush=True)
        startup = replay_startup(b, tiny, chosen)

    runs = tool_runs(b, js, traces)
    best: dict[str, Row] = {}
    loads: dict[str, float] = {}
    per_round: dict[str, list[float | None]] = {}  # each round's req per CPU-second (None: skipped)
    for rnd in range(a.repeat):
        for tool in chosen:
            load = os.getloadavg()[0]
            print(f"round {rnd + 1}/{a.repeat}: {tool} (load {load:.2f}) ...", flush=True)
            row = runs[tool]()
            per_round.setdefault(tool, []).append(row.per_cpu if row else None)
            if row:
                print(f"  {row.per_cpu:,.0f} req per CPU-second", flush=True)
            if row and (tool not in best or row.per_cpu > best[tool].per_cpu):
                best[tool], loads[tool] = row, load
    rows = [best[t] for t in chosen if t in best]
    print("\n" + render(rows, loads, startup))
    print("\nratios (requests per generator CPU-second, start-up included; and req/s):")
    print(ratios(rows))
    if same_round := paired(per_round):
        print(f"\nthe same ratios round by round (each tool against the baseline's run of its own round; "
              f"{a.repeat} rounds):")
        print(same_round)
    print(f"\nreq/CPU-s = requests / the tool's whole CPU (user + system, children included, start-up included). "
          f"start-up s = the same replay on a 10-request trace (median of {STARTUP_RUNS}: imports, probe, trace scan, "
          f"fork, results file, exit); w/o start-up = requests / (client CPU s - start-up s). "
          f"target % = the nginx worker's share of one core in the tool's window (near 100 %: the target, not "
          f"the tool, set req/s). other CPU s = the rest of the machine meanwhile; load = 1-min load average at "
          f"the row's start ({os.cpu_count()} CPUs). Load average at end {os.getloadavg()[0]:.2f}.")
    if b.notes:
        print("\nnotes:\n  " + "\n  ".join(b.notes))


if __name__ == "__main__":
    main()
