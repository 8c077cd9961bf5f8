"""How often does ``compare`` cry wolf, and how often does it catch a real slow-down?

Against the reference shop (``wdm-replay serve`` subprocesses on loopback, replayed at ``--speed
max`` by the library's ``replay_trace`` as ``wdm-replay ab`` does):

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
busy 2-core machine; ``--quick``: 5 sessions of a smaller trace, ~2 min).

    python bench/compare_calibration.py [--quick] [--sessions N] [--requests N] [--seed S]
"""

from __future__ import annotations

import argparse
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
from wdmreplay.analysis.compare import GATED, NOISE_FLOOR, CompareResult, compare_runs  # noqa: E402
from wdmreplay.recorder import generate  # noqa: E402
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


def replay(trace: Path, out: Path, url: str, label: str) -> Path:
    """One --speed max replay of ``trace`` against ``url``; the results file."""
    s = replay_trace(str(trace), str(out), target=url, speed=None, concurrency=CONCURRENCY, label=label,
                     final_read=False)
    if not s["complete"]:
        raise RuntimeError(f"replay of {trace} against {url} did not complete")
    return out


def session(trace: Path, work: Path, name: str, url_a: str, url_b: str, runs: int,
            rng: np.random.Generator) -> tuple[list[tuple[str, Path]], int]:
    """ABBA-ordered runs of one session (build, results path), and how many had the busy neighbour."""
    done, busy = [], 0
    for k, build in enumerate(ab_order(runs), start=1):
        neighbour = start_neighbour() if rng.random() < 0.5 else None
        busy += neighbour is not None
        try:
            path = replay(trace, work / f"{name}-{k:02d}-{build}.wdmr", url_a if build == "A" else url_b, build)
        finally:
            if neighbour is not None:
                neighbour.stop()
        done.append((build, path))
    return done, busy


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
    for name in GATED:
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


def run_mode(kind: str, trace: Path, work: Path, url_a: str, url_b: str, sessions: int, runs: int,
             rng: np.random.Generator, log) -> tuple[list[CompareResult], list[CompareResult], int, int]:
    """``sessions`` sessions: their 3-run comparisons, single-run comparisons, runs and busy runs."""
    multi, single, n_runs, n_busy = [], [], 0, 0
    for s in range(sessions):
        done, busy = session(trace, work, f"{kind.replace('/', '')}{s:02d}", url_a, url_b, runs, rng)
        n_runs += len(done)
        n_busy += busy
        a = [p for b, p in done if b == "A"]
        b = [p for b, p in done if b == "B"]
        res = compare(a, b)
        multi.append(res)
        for k in range(0, len(done), 2):
            pair = dict(done[k:k + 2])
            single.append(compare([pair["A"]], [pair["B"]]))
        log(f"  {kind} session {s + 1}/{sessions}: {runs} runs a side {'REGRESSION ' + why(res) if res.regression else 'no regression'}"
            f"; single-run alarms {sum(r.regression for r in single[-runs:])}/{runs}; busy runs {busy}/{len(done)}")
        for f in (*a, *b):
            f.unlink()
    return multi, single, n_runs, n_busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 sessions of a smaller trace (~2 min)")
    ap.add_argument("--sessions", type=int, default=None, help="A/A and A/B sessions each (default 20; quick 5)")
    ap.add_argument("--requests", type=int, default=None, help="requests in the trace (default 1500; quick 800)")
    ap.add_argument("--runs", type=int, default=3, help="runs a side per session (default 3)")
    ap.add_argument("--slowdown", type=float, default=0.25, help="added latency as a share of the median (0.25)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the trace and of the busy-neighbour draws")
    args = ap.parse_args()
    sessions = args.sessions or (5 if args.quick else 20)
    requests = args.requests or (800 if args.quick else 1500)
    install_cleanup()
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f} s] {msg}", flush=True)

    load1 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="wdm-calib-") as tmp:
        work = Path(tmp)
        trace = work / "stress.wdmt"
        generate("stress", trace, seed=args.seed, rate=5000.0, requests=requests)
        shops = [start_shop(), start_shop()]
        try:
            warm = replay(trace, work / "warm.wdmr", shops[0].url, "A")
            median = median_response_ms(warm)
            added = args.slowdown * median
            log(f"trace: {requests} requests (stress, seed {args.seed}), --speed max, concurrency {CONCURRENCY}; "
                f"median response {median:.2f} ms -> slowed shop: serve --latency {added:.2f} "
                f"(+{args.slowdown * 100:g}%)")
            shops.append(start_shop(added))
            aa = run_mode("A/A", trace, work, shops[0].url, shops[1].url, sessions, args.runs, rng, log)
            ab = run_mode("A/B", trace, work, shops[0].url, shops[2].url, sessions, args.runs, rng, log)
        finally:
            for s in shops:
                s.stop()
    elapsed = time.monotonic() - t0
    load2 = os.getloadavg()[0]

    def rate(results: list[CompareResult]) -> str:
        k = sum(r.regression for r in results)
        return f"{k}/{len(results)} ({k / len(results) * 100:.0f}%)"

    print()
    print(f"compare calibration: {aa[2] + ab[2]} runs in {elapsed:.0f} s; busy neighbour in "
          f"{aa[3] + ab[3]} of them; load average {load1:.1f} before, {load2:.1f} after "
          f"({os.cpu_count()} cores, shared)")
    print(f"threshold 10%, alpha 0.05; noise floor in code: "
          + ", ".join(f"{k} {v * 100:g}%" for k, v in NOISE_FLOOR.items()))
    print()
    print(f"| mode | A/A false alarms | A/B detections (+{args.slowdown * 100:g}% of median) | target |")
    print("|---|---|---|---|")
    print(f"| single run a side | {rate(aa[1])} | {rate(ab[1])} | A/A <= 5% |")
    print(f"| {args.runs} runs a side, interleaved | {rate(aa[0])} | {rate(ab[0])} | A/A <= 1 in 20, A/B >= 95% |")
    print()
    alarms = [why(r) for r in (*aa[0], *aa[1]) if r.regression]
    if alarms:
        print("A/A false alarms, what tripped: " + "; ".join(alarms))
    spreads = [spread(r) for r in aa[1]]
    print("noise floor measured by the A/A single-run pairs (95th percentile of the largest |ratio-1| "
          "over the gated operations):")
    for name in (*GATED, "throughput"):
        v = np.array([s[name] for s in spreads])
        print(f"  {name}: {np.expm1(np.quantile(v, 0.95)) * 100:.0f}% (median {np.expm1(np.median(v)) * 100:.0f}%, "
              f"max {np.expm1(v.max()) * 100:.0f}%)")
    b_single = [r.builds[0] for r in ab[1]]
    p50 = [c.ratio for b in b_single for o in b.ops for c in o.latency if c.name == "p50" and c.ci]
    if p50:
        print(f"A/B single-run p50 ratios: median {np.median(p50):.2f} (the slow-down as compare sees it)")


if __name__ == "__main__":
    main()
