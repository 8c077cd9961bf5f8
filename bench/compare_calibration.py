"""How often does ``compare`` cry wolf, and how often does it catch a real slow-down?

Against the reference shop (``wdm-replay serve`` subprocesses on loopback, replayed by the library's
``replay_trace`` as ``wdm-replay ab`` does) — paced at ``--pace`` sessions/s below the shop's
saturation (the default: response time is then service time, so an added latency shows in full),
or ``--pace 0`` at ``--speed max`` (response time is then queueing in a saturated shop, where a
per-request sleep that costs the shop no CPU barely shows: round 5 saw +25 % as 1.03x):

- **A/A**: two shops of the same build; ``--sessions`` A/B sessions of 3 runs a side in ABBA order
  (A B B A A B). Each session gives one 3-run comparison and three single-run comparisons (its
  adjacent pairs). A busy neighbour — a CPU-bound loop in another process — runs during about
  half of the runs (seeded draw), on top of whatever else the machine is doing.
- **A/B**: the same against a shop slowed by ``serve --latency`` = ``--slowdown`` (25 %) of the
  median response time measured on a first run.

Prints the false-alarm rate (A/A comparisons that exit 1) and the detection rate (A/B comparisons
that exit 1), single-run and 3 runs a side, and the noise floor the A/A single-run pairs measure:
the 95th percentile over pairs of the largest |ratio − 1| over the gated operations, per quantile
(and the run rate) — the figures behind ``NOISE_FLOOR`` in ``wdmreplay/analysis/compare.py``.
Targets (issue 11): A/A ≤ 5 % single-run and ≤ 1 in 20 with 3 runs a side; detection ≥ 95 % with
3 runs a side. Bounded: about 6·sessions·2 short replays (~12 min at the default 20 sessions on a
busy 2-core machine — 470 to 630 s of replays measured; ``--quick``: 5 sessions of a smaller
trace, about 1 min).

    python bench/compare_calibration.py [--quick] [--sessions N] [--requests N] [--seed S] [--slowdown F]
        [--pace SESSIONS_PER_S | --pace 0] [--neighbour block|run] [--keep DIR | --reanalyse DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import install_cleanup  # noqa: E402

from wdmreplay.ab import ab_order  # noqa: E402
from wdmreplay.analysis.compare import NOISE_FLOOR, QUANTILES, CompareResult, compare_runs  # noqa: E402
from wdmreplay.workloads import generate  # noqa: E402
from wdmreplay.replayer import replay_trace  # noqa: E402
from wdmreplay.traces import load_results  # noqa: E402

CONCURRENCY = 32


@dataclass
class Child:
    """A process the bench started (a shop or the busy neighbour), stopped by its own pid."""

    proc: subprocess.Popen
    url: str = ""

    def stop(self) -> None:
        """Terminate it (kill after 5 s) and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_shop(latency_ms: float = 0.0) -> Child:
    """``wdm-replay serve --port 0 [--latency MS]`` in its own process; returns once it listens."""
    argv = [sys.executable, "-m", "wdmreplay", "serve", "--port", "0", "--latency", f"{latency_ms:.3f}"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         text=True, start_new_session=True)
    child = Child(p)
    deadline = time.monotonic() + 30
    assert p.stdout is not None
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            child.url = m.group(1)
            # Keep draining its output so the shop never blocks on a full pipe.
            import threading

            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # type: ignore[union-attr]
            return child
    child.stop()
    raise RuntimeError(f"shop did not start: {' '.join(argv)}")


def start_neighbour() -> Child:
    """A busy neighbour: one CPU-bound loop in another process."""
    return Child(subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True))


def replay(trace: Path, out: Path, url: str, label: str, speed: float | None) -> Path:
    """One replay of ``trace`` against ``url`` (``speed`` None: max; 1.0: paced); the results file."""
    s = replay_trace(str(trace), str(out), target=url, speed=speed, concurrency=CONCURRENCY, label=label,
                     final_read=False)
    if not s.complete:
        raise RuntimeError(f"replay of {trace} against {url} did not complete")
    return out


def neighbour_plan(n: int, mode: str, rng: np.random.Generator) -> list[bool]:
    """Which of a session's ``n`` runs have the busy neighbour.

    ``block``: in about half of the sessions the neighbour comes once and stays for a stretch of
    consecutive runs (random start and length) — another job on the machine. ``run``: every run
    independently with probability 1/2 (white noise no interleaving can balance; the harsh case).
    """
    if mode == "run":
        return [bool(x) for x in rng.random(n) < 0.5]
    plan = [False] * n
    if rng.random() < 0.5:
        start = int(rng.integers(0, n))
        length = int(rng.integers(1, n + 1))
        for k in range(start, min(n, start + length)):
            plan[k] = True
    return plan


def session(trace: Path, work: Path, name: str, url_a: str, url_b: str, runs: int, mode: str,
            rng: np.random.Generator, speed: float | None) -> list[dict]:
    """ABBA-ordered runs of one session: [{build, file, busy}] in the order they ran."""
    order = ab_order(runs)
    done = []
    for k, (build, busy) in enumerate(zip(order, neighbour_plan(len(order), mode, rng)), start=1):
        neighbour = start_neighbour() if busy else None
        try:
            path = replay(trace, work / f"{name}-{k:02d}-{build}.wdmr", url_a if build == "A" else url_b, build, speed)
        finally:
            if neighbour is not None:
                neighbour.stop()
        done.append({"build": build, "file": path.name, "busy": busy})
    return done


def compare(paths_a: list[Path], paths_b: list[Path]) -> CompareResult:
    """compare A's runs (base) with B's, without the consistency check (nothing to find on this shop)."""
    runs = [load_results(p) for p in (*paths_a, *paths_b)]
    return compare_runs(runs)


def why(res: CompareResult) -> str:
    """What made a comparison a regression, briefly."""
    b = res.builds[0]
    parts = [f"{op} {c.name} {c.ratio:.2f}" for op, c in b.latency_regressions]
    parts += [f"{op} errors" for op in b.error_regressions]
    if b.throughput is not None and b.throughput.regression:
        parts.append(f"rate {b.throughput.ratio:.2f}")
    return ", ".join(parts)


def spread(res: CompareResult) -> dict[str, float]:
    """Largest |log ratio| over tested gated operations per quantile, and |log rate ratio|."""
    b = res.builds[0]
    out = {}
    for name in (n for n, _ in QUANTILES):
        r = [abs(np.log(c.ratio)) for o in b.ops for c in o.latency if c.name == name and c.ci]
        out[name] = max(r) if r else 0.0
    out["throughput"] = abs(np.log(b.throughput.ratio)) if b.throughput else 0.0
    return out


def median_response_ms(path: Path) -> float:
    """Median response time (ms) of the answered requests of one run."""
    r = load_results(path)
    c = r.cols
    ok = c["outcome"] <= 1
    return float(np.median((c["done"] - c["intended"])[ok])) * 1e3


def analyse(manifest: dict, work: Path, log) -> dict:
    """Every comparison of the recorded sessions: {kind: (multi-run results, single-run results)}."""
    out = {}
    for kind in ("A/A", "A/B"):
        multi, single = [], []
        for s in (x for x in manifest["sessions"] if x["kind"] == kind):
            runs = s["runs"]
            a = [work / r["file"] for r in runs if r["build"] == "A"]
            b = [work / r["file"] for r in runs if r["build"] == "B"]
            res = compare(a, b)
            multi.append(res)
            pairs = [compare([work / p["file"] for p in runs[k:k + 2] if p["build"] == "A"],
                             [work / p["file"] for p in runs[k:k + 2] if p["build"] == "B"])
                     for k in range(0, len(runs), 2)]
            single += pairs
            log(f"  {kind} session {s['session'] + 1}: {len(a)} runs a side "
                f"{'REGRESSION ' + why(res) if res.regression else 'no regression'}; single-run alarms "
                f"{sum(r.regression for r in pairs)}/{len(pairs)}; busy runs {sum(r['busy'] for r in runs)}/{len(runs)}")
        # Two consecutive sessions together: twice the runs a side, still interleaved.
        ss = [x for x in manifest["sessions"] if x["kind"] == kind]
        double = []
        for s1, s2 in zip(ss[0::2], ss[1::2]):
            runs = s1["runs"] + s2["runs"]
            double.append(compare([work / r["file"] for r in runs if r["build"] == "A"],
                                  [work / r["file"] for r in runs if r["build"] == "B"]))
        out[kind] = (multi, single, double)
    return out


def report(manifest: dict, results: dict) -> None:
    """The table, what tripped the A/A alarms, and the noise floor the A/A single-run pairs measure."""
    aa, ab = results["A/A"], results["A/B"]

    def rate(rs: list[CompareResult]) -> str:
        k = sum(r.regression for r in rs)
        return f"{k}/{len(rs)} ({k / len(rs) * 100:.0f}%)" if rs else "-"

    m = manifest
    busy = sum(r["busy"] for s in m["sessions"] for r in s["runs"])
    total = sum(len(s["runs"]) for s in m["sessions"])
    print()
    print(f"compare calibration: {total} runs of {m['requests']} requests ({m.get('mode', '--speed max')}, "
          f"concurrency {CONCURRENCY}) "
          f"in {m['elapsed']:.0f} s; busy neighbour ({m['neighbour']} mode) in {busy} of them; load average "
          f"{m['load'][0]:.1f} before, {m['load'][1]:.1f} after ({m['cores']} cores, shared); slowed shop +"
          f"{m['added_ms']:.2f} ms = {m['slowdown'] * 100:g}% of the median {m['median_ms']:.2f} ms")
    print("threshold 10%, alpha 0.05 per comparison (Bonferroni over its gated tests); noise floor in code: "
          + ", ".join(f"{k} {v * 100:g}%" for k, v in NOISE_FLOOR.items()))
    print()
    print(f"| mode | A/A false alarms | A/B detections (+{m['slowdown'] * 100:g}% of median) | target |")
    print("|---|---|---|---|")
    print(f"| single run a side | {rate(aa[1])} | {rate(ab[1])} | A/A <= 5% |")
    print(f"| {m['runs']} runs a side, interleaved | {rate(aa[0])} | {rate(ab[0])} | A/A <= 1 in 20, A/B >= 95% |")
    print(f"| {2 * m['runs']} runs a side (two sessions) | {rate(aa[2])} | {rate(ab[2])} | - |")
    print()
    alarms = [why(r) for r in (*aa[0], *aa[1]) if r.regression]
    if alarms:
        print("A/A false alarms, what tripped: " + "; ".join(alarms))
    spreads = [spread(r) for r in aa[1]]
    print("noise floor measured by the A/A single-run pairs (95th percentile of the largest |ratio-1| "
          "over the gated operations):")
    for name in (*(n for n, _ in QUANTILES), "throughput"):
        v = np.array([s[name] for s in spreads])
        print(f"  {name}: {np.expm1(np.quantile(v, 0.95)) * 100:.0f}% (median {np.expm1(np.median(v)) * 100:.0f}%, "
              f"max {np.expm1(v.max()) * 100:.0f}%)")
    p50 = [c.ratio for r in ab[1] for o in r.builds[0].ops if o.op == "all" for c in o.latency if c.name == "p50"]
    if p50:
        print(f"A/B single-run 'all' p50 ratios: median {np.median(p50):.2f} (the slow-down as compare sees it)")


def collect(args, work: Path, log) -> dict:
    """Start the shops, measure the median, replay every session; the manifest of what ran."""
    sessions = args.sessions or (5 if args.quick else 20)
    requests = args.requests or (800 if args.quick else 1500)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    load1 = os.getloadavg()[0]
    trace = work / "stress.wdmt"
    speed = 1.0 if args.pace > 0 else None
    generate("stress", trace, seed=args.seed, rate=args.pace if args.pace > 0 else 5000.0, requests=requests)
    shops = [start_shop(), start_shop()]
    manifest = {"requests": requests, "runs": args.runs, "neighbour": args.neighbour, "slowdown": args.slowdown,
                "mode": f"paced, {args.pace:g} sessions/s at speed 1" if speed else "--speed max",
                "cores": os.cpu_count(), "sessions": []}
    try:
        warm = replay(trace, work / "warm.wdmr", shops[0].url, "A", speed)
        median = median_response_ms(warm)
        added = args.slowdown * median
        manifest.update(median_ms=median, added_ms=added)
        log(f"trace: {requests} requests; median response {median:.2f} ms -> slowed shop: serve --latency "
            f"{added:.2f} (+{args.slowdown * 100:g}%)")
        shops.append(start_shop(added))
        for kind, url_b in (("A/A", shops[1].url), ("A/B", shops[2].url)):
            for s in range(sessions):
                runs = session(trace, work, f"{kind.replace('/', '')}{s:02d}", shops[0].url, url_b, args.runs,
                               args.neighbour, rng, speed)
                manifest["sessions"].append({"kind": kind, "session": s, "runs": runs})
                log(f"  {kind} session {s + 1}/{sessions} replayed")
    finally:
        for shop in shops:
            shop.stop()
    manifest.update(elapsed=time.monotonic() - t0, load=[load1, os.getloadavg()[0]])
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 sessions of a smaller trace (~2 min)")
    ap.add_argument("--sessions", type=int, default=None, help="A/A and A/B sessions each (default 20; quick 5)")
    ap.add_argument("--requests", type=int, default=None, help="requests in the trace (default 1500; quick 800)")
    ap.add_argument("--runs", type=int, default=3, help="runs a side per session (default 3)")
    ap.add_argument("--pace", type=float, default=60.0,
                    help="sessions/s of the trace, replayed at speed 1 below the shop's saturation (default 60); "
                         "0: --speed max")
    ap.add_argument("--slowdown", type=float, default=0.25, help="added latency as a share of the median (0.25)")
    ap.add_argument("--neighbour", choices=["block", "run"], default="block",
                    help="busy neighbour: a stretch of runs in half the sessions (block), or each run at random (run)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the trace and of the busy-neighbour draws")
    ap.add_argument("--keep", type=Path, help="keep the results files and manifest.json in this directory")
    ap.add_argument("--reanalyse", type=Path, metavar="DIR", help="no replays: analyse the runs kept in DIR")
    args = ap.parse_args()
    install_cleanup()
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f} s] {msg}", flush=True)

    if args.reanalyse:
        work = args.reanalyse
        manifest = json.loads((work / "manifest.json").read_text())
        report(manifest, analyse(manifest, work, log))
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        manifest = collect(args, args.keep, log)
        report(manifest, analyse(manifest, args.keep, log))
        return
    with tempfile.TemporaryDirectory(prefix="wdm-calib-") as tmp:
        manifest = collect(args, Path(tmp), log)
        report(manifest, analyse(manifest, Path(tmp), log))


if __name__ == "__main__":
    main()
