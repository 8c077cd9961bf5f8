"""Benchmark: analysis of a 10,000,000-request results file (DESIGN §9 target: ≤ 10 s), and the full check.

Synthesizes a results file with numpy (chunks of 1,000,000 rows written by ResultsWriter, no
per-row Python), then — in a fresh child process, so the peak RSS is the analysis's own — times:
load (columns only, no args), statistics report (build_report), expectation diff, text rendering.
Prints wall and CPU seconds per step (CPU time is the fairer figure on a shared, busy machine), the
total, the row rate and the child's peak RSS.

    python bench/analysis.py                    # 10M rows in a temp dir
    python bench/analysis.py --rows 1000000 --keep /tmp/r.wdmr

Then, unless ``--check-rows 0``, the full ``check`` (args loaded; expectation diff, consistency
of items, users and orders — lines and totals against their add_item history —, availability,
coverage, verdict) on synthetic files of each of ``--check-rows`` rows (default 1,000,000 and
10,000,000; issue 10's target: 10M rows ≤ 30 s, peak RSS ≤ 2 GB) with a final state of 10k items,
10k users and rows/5 orders.

    python bench/analysis.py --rows 1000000 --check-rows 1000000      # quick
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

from wdmreplay.operations import OP_CODES
from wdmreplay.traces import ResultsWriter, results_header
from wdmreplay.traces.results import COLUMNS

MIX = {"find_item": 0.25, "create_order": 0.1, "add_item": 0.2, "checkout": 0.15, "add_stock": 0.1,
       "create_item": 0.05, "add_funds": 0.1, "create_user": 0.05}
CHUNK = 1_000_000


def _header(rows: int, seed: int, digest: str) -> dict:
    return results_header(
        trace={"path": "synthetic.wdmt", "digest": digest, "header": {
            "workload": "synthetic", "seed": seed, "scenarios": ["synthetic"], "expect": {}, "requests": rows}},
        target={}, dialect="2024", speed=1.0, concurrency=256, timeout=10.0, label="bench", started=0.0,
        tool="bench", host="bench", shard=None, workers=1, scenarios=["synthetic"])


def synthesize(path: str, rows: int, seed: int = 0, rate: float = 10_000.0) -> float:
    """Write a results file of ``rows`` requests at ``rate`` req/s; return seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ops = np.array([OP_CODES[n] for n in MIX], dtype=np.uint8)
    p = np.array(list(MIX.values()))
    w = ResultsWriter(path, _header(rows, seed, "sha256:synthetic"))
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


def synthesize_with_args(path: str, rows: int, seed: int = 0, rate: float = 10_000.0) -> None:
    """A results file whose rows carry args and a final state a correct shop would end with.

    Written with :class:`ResultsWriter` as a replay writes it: args as columns next to the packed
    args, the final state's orders as columns.

    add_stock / add_funds / add_item (order k always gets item k mod 10k, user k mod 10k) /
    checkout / find_item; 90 % 2xx, 9 % 4xx, 1 % 5xx (taken as not applied). The final state
    follows from the 2xx rows, so the check walks every entity without an anomaly — the usual case.
    """
    rng = np.random.default_rng(seed)
    n_items, n_users, n_orders = 10_000, 10_000, max(rows // 5, 1)
    names = ["add_stock", "add_funds", "add_item", "checkout", "find_item"]
    p = [0.1, 0.1, 0.4, 0.2, 0.2]
    stock = np.zeros(n_items, np.int64)
    credit = np.zeros(n_users, np.int64)
    qty = np.zeros(n_orders, np.int64)
    paid = np.zeros(n_orders, bool)
    w = ResultsWriter(path, _header(rows, seed, "sha256:synthetic-args"))
    done_rows = 0
    while done_rows < rows:
        n = min(CHUNK, rows - done_rows)
        idx = np.arange(done_rows, done_rows + n)
        which = rng.choice(len(names), n, p=p)
        order = rng.integers(0, n_orders, n)
        item = np.where(which == 2, order % n_items, rng.integers(0, n_items, n))
        user = rng.integers(0, n_users, n)
        amount = rng.integers(1, 100, n)
        outcome = rng.choice(np.array([0, 1, 2], dtype=np.uint8), n, p=[0.9, 0.09, 0.01])
        ok = outcome == 0
        np.add.at(stock, item[ok & (which == 0)], amount[ok & (which == 0)])
        np.add.at(credit, user[ok & (which == 1)], amount[ok & (which == 1)])
        np.add.at(qty, order[ok & (which == 2)], 1)
        paid[order[ok & (which == 3)]] = True
        args = []
        for wk, i, u, o, am in zip(which.tolist(), item.tolist(), user.tolist(), order.tolist(), amount.tolist()):
            if wk == 0:
                args.append([f"i{i}", am])
            elif wk == 1:
                args.append([f"u{u}", am])
            elif wk == 2:
                args.append([f"o{o}", f"i{i}", 1])
            elif wk == 3:
                args.append([f"o{o}"])
            else:
                args.append([f"i{i}"])
        intended = idx / rate
        ops = np.array([OP_CODES[x] for x in names], dtype=np.uint8)[which]
        w.write_requests({
            "sid": (idx // 8).astype(np.uint32), "step": (idx % 8).astype(np.uint16),
            "phase": np.zeros(n, np.uint16), "op": ops, "scenario": np.zeros(n, np.uint16),
            "expect": np.full(n, 2, np.uint8), "outcome": outcome,
            "status": np.choose(outcome, [200, 400, 500]).astype(np.uint16),
            "intended": intended, "sent": intended, "done": intended + 0.004}, args)
        done_rows += n
    taken = np.where(paid, qty, 0)
    stock -= np.bincount(np.arange(n_orders) % n_items, weights=taken, minlength=n_items).astype(np.int64)
    credit -= np.bincount(np.arange(n_orders) % n_users, weights=taken, minlength=n_users).astype(np.int64)
    w.write_final({
        "items": {f"i{k}": {"stock": int(stock[k]), "price": 1} for k in range(n_items)},
        "users": {f"u{k}": {"credit": int(credit[k])} for k in range(n_users)},
        "orders": {f"o{k}": {"paid": bool(paid[k]), "items": [[f"i{k % n_items}", int(qty[k])]] if qty[k] else [],
                             "user_id": f"u{k % n_users}", "total_cost": int(qty[k])} for k in range(n_orders)},
        "missing": {}, "settle": None, "read_at": rows / rate})
    w.close(complete=True, wall=rows / rate + 1.0)


def analyse_check(path: str) -> dict:
    """Load with args (as columns) and run the full check; seconds per step, verdict, anomalies and peak RSS."""
    from wdmreplay.analysis import check_results
    from wdmreplay.analysis.check import paused_gc
    from wdmreplay.traces import load_results

    w0, c0 = time.perf_counter(), time.process_time()
    with paused_gc():  # as `wdm-replay check` loads it
        r = load_results(path, with_args=True)
    w1, c1 = time.perf_counter(), time.process_time()
    rep = check_results(r)
    w2, c2 = time.perf_counter(), time.process_time()
    return {"rows": r.n, "seconds": {"load with args": w1 - w0, "check": w2 - w1, "total": w2 - w0},
            "cpu": {"load with args": c1 - c0, "check": c2 - c1, "total": c2 - c0},
            "anomalies": len(rep.anomalies), "anomaly_counts": {k: v for k, v in rep.anomaly_counts.items() if v},
            "verdict": rep.verdict.verdict, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
    ap.add_argument("--check-rows", default="1000000,10000000",
                    help="comma-separated row counts of files with args and final state for the full check (0: skip)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-check", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(analyse(a.child)))
        return
    if a.child_check:
        print(json.dumps(analyse_check(a.child_check)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = a.keep or os.path.join(tmp, "bench.wdmr")
        if not os.path.exists(path):
            s = synthesize(path, a.rows)
            print(f"synthesized {a.rows:,} rows ({os.path.getsize(path) / 1e6:.0f} MB) in {s:.1f} s")
        out = subprocess.run([sys.executable, __file__, "--child", path], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
        _print(res, "load + stats report + expectation diff (no args)")
        print(f"{'target':>18}: <= 10 s for 10M rows -> "
              f"{res['seconds']['total'] / 10.0 * 10_000_000 / res['rows']:.2f}x of budget (wall)")
        for rows in [int(x) for x in a.check_rows.split(",") if int(x) > 0]:
            cpath = os.path.join(tmp, f"check-{rows}.wdmr")
            synthesize_with_args(cpath, rows)
            out = subprocess.run([sys.executable, __file__, "--child-check", cpath], capture_output=True, text=True,
                                 check=True)
            res = json.loads(out.stdout)
            _print(res, f"full check of {rows:,} rows (args loaded; expectations, consistency, orders, verdict)")
            print(f"{'target':>18}: <= 30 s and 2 GB for 10M rows -> "
                  f"{res['seconds']['total'] / 30.0 * 10_000_000 / res['rows']:.2f}x of the time budget (wall), "
                  f"{res['peak_rss_mb'] / 2048.0:.2f}x of the memory budget")
            os.remove(cpath)


def _print(res: dict, title: str) -> None:
    print(f"-- {title}")
    secs, cpu = res["seconds"], res["cpu"]
    print(f"{'step':>18}  {'wall s':>7} {'cpu s':>7}")
    for k, v in secs.items():
        print(f"{k:>18}: {v:7.2f} {cpu[k]:7.2f}")
    print(f"{'load average':>18}: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall > cpu means contention)")
    print(f"{'rows/s':>18}: {res['rows'] / secs['total']:,.0f}  ({res['rows']:,} rows)")
    print(f"{'peak RSS':>18}: {res['peak_rss_mb']:.0f} MB")
    if "verdict" in res:
        print(f"{'verdict':>18}: {res['verdict']}, {res['anomalies']} anomalies {res.get('anomaly_counts', '')}")


if __name__ == "__main__":
    main()
