"""Benchmark: analysis of a 10,000,000-request results file (DESIGN §9 target: ≤ 10 s).

Synthesizes a results file with numpy (chunks of 1,000,000 rows written by ResultsWriter, no
per-row Python), then — in a fresh child process, so the peak RSS is the analysis's own — times:
load (columns only, no args), statistics report (build_report), expectation diff, text rendering.
Prints wall and CPU seconds per step (CPU time is the fairer figure on a shared, busy machine), the
total, the row rate and the child's peak RSS.

    python bench/analysis.py                    # 10M rows in a temp dir
    python bench/analysis.py --rows 1000000 --keep /tmp/r.wdmr
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from wdmreplay.api import OP_CODES
from wdmreplay.traces import ResultsWriter, results_header
from wdmreplay.traces.results import COLUMNS

MIX = {"find_item": 0.25, "create_order": 0.1, "add_item": 0.2, "checkout": 0.15, "add_stock": 0.1,
       "create_item": 0.05, "add_funds": 0.1, "create_user": 0.05}
CHUNK = 1_000_000


def synthesize(path: str, rows: int, seed: int = 0, rate: float = 10_000.0) -> float:
    """Write a results file of ``rows`` requests at ``rate`` req/s; return seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ops = np.array([OP_CODES[n] for n in MIX], dtype=np.uint8)
    p = np.array(list(MIX.values()))
    header = results_header(
        trace={"path": "synthetic.wdmt", "digest": "sha256:synthetic", "header": {
            "workload": "synthetic", "seed": seed, "scenarios": ["synthetic"], "expect": {}, "requests": rows}},
        target={}, dialect="2024", speed=1.0, concurrency=256, timeout=10.0, label="bench", started=0.0,
        tool="bench", host="bench", shard=None, workers=1, scenarios=["synthetic"])
    w = ResultsWriter(path, header)
    done_rows = 0
    while done_rows < rows:
        n = min(CHUNK, rows - done_rows)
        idx = np.arange(done_rows, done_rows + n)
        intended = idx / rate
        lag = rng.exponential(0.0002, n)
        service = rng.lognormal(np.log(0.004), 0.6, n)
        outcome = rng.choice(np.array([0, 1, 2, 3], dtype=np.uint8), n, p=[0.95, 0.04, 0.009, 0.001])
        cols = {
            "sid": (idx // 8).astype(np.uint32), "step": (idx % 8).astype(np.uint16),
            "phase": np.zeros(n, np.uint16), "op": rng.choice(ops, n, p=p),
            "scenario": np.zeros(n, np.uint16), "expect": np.where(rng.random(n) < 0.9, 0, 2).astype(np.uint8),
            "outcome": outcome, "status": np.choose(outcome, [200, 400, 500, 0]).astype(np.uint16),
            "intended": intended, "sent": intended + lag, "done": intended + lag + service,
        }
        assert set(cols) == {c[0] for c in COLUMNS}
        w.write_requests(cols)
        done_rows += n
    w.close(complete=True, wall=rows / rate + 1.0)
    return time.perf_counter() - t0


def analyse(path: str) -> dict:
    """Load, report, diff, render; return seconds per step and the peak RSS (this process)."""
    from wdmreplay.analysis import build_report, diff_expectations, render_text
    from wdmreplay.traces import load_results

    wall, cpu = {}, {}

    def timed(name: str, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall[name], cpu[name] = time.perf_counter() - w0, time.process_time() - c0
        return out

    r = timed("load", lambda: load_results(path))
    rep = timed("stats report", lambda: build_report(r))
    diff = timed("expectation diff", lambda: diff_expectations(r))
    timed("render text", lambda: render_text(rep))
    wall["total"], cpu["total"] = sum(wall.values()), sum(cpu.values())
    return {"rows": r.n, "seconds": wall, "cpu": cpu, "differences": diff.differences,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", help="write the synthetic file here and keep it (reused if it exists)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(analyse(a.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = a.keep or os.path.join(tmp, "bench.wdmr")
        if not os.path.exists(path):
            s = synthesize(path, a.rows)
            print(f"synthesized {a.rows:,} rows ({os.path.getsize(path) / 1e6:.0f} MB) in {s:.1f} s")
        out = subprocess.run([sys.executable, __file__, "--child", path], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
    secs, cpu = res["seconds"], res["cpu"]
    print(f"{'step':>18}  {'wall s':>7} {'cpu s':>7}")
    for k, v in secs.items():
        print(f"{k:>18}: {v:7.2f} {cpu[k]:7.2f}")
    print(f"{'load average':>18}: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall > cpu means contention)")
    print(f"{'rows/s':>18}: {res['rows'] / secs['total']:,.0f}  ({res['rows']:,} rows)")
    print(f"{'peak RSS':>18}: {res['peak_rss_mb']:.0f} MB")
    print(f"{'target':>18}: <= 10 s for 10M rows -> {secs['total'] / 10.0 * 10_000_000 / res['rows']:.2f}x of budget")


if __name__ == "__main__":
    main()
