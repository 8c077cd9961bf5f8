"""The shrink table: every injected bug of the reference shop, shrunk from a NOT CLEAN run to a minimal trace.

For each bug, the workload that shows it (``consistency`` for the checkout bugs, ``contention``
for the order-line bugs, the sizes of ``bench/verdict_table.py``) is replayed at --speed max
against the reference shop (in a thread, loopback) with that ``--inject`` bug; the run is checked,
then ``shrink_run`` (what ``wdm-replay shrink`` calls) reduces it with ``--runs`` replays per
candidate and ``--budget`` seconds. Printed per bug: the finding, requests (and sessions) before →
after, replays spent, seconds, and the reproduction rate over ``--runs`` fresh replays of the
minimal trace (what its header stores). Then a fresh check that the minimal trace, replayed, is
NOT CLEAN. About 2–5 minutes.

    python bench/shrink_table.py                 # markdown table on stdout
    python bench/shrink_table.py --bugs lost-update,oversell --budget 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wdmreplay.analysis import check_results
from wdmreplay.recorder import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import ShopThread
from wdmreplay.shrink import shrink_run
from wdmreplay.traces import load_results

WORKLOAD = {"lost-update": "consistency", "oversell": "consistency", "no-rollback": "consistency",
            "double-charge": "consistency", "lost-line": "contention", "wrong-total": "contention"}


def make_trace(workload: str, path: Path, seed: int) -> None:
    """The source trace of a bug's workload (sizes as in bench/verdict_table.py)."""
    if workload == "consistency":
        generate("consistency", path, seed=seed, items=8, stock=3, users=20, credit=2, orders=60)
    else:
        generate("contention", path, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bugs", default=",".join(WORKLOAD), help="comma-separated --inject bugs (default: all six)")
    ap.add_argument("--runs", type=int, default=5, help="replays per candidate and final replays (default 5)")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per shrink (default 120)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated traces")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="wdm-shrink-table-"))
    t0 = time.monotonic()
    print("| bug | workload | finding | requests before → after | sessions before → after | replays | seconds "
          "| reproduction rate | minimal trace replayed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for bug in a.bugs.split(","):
        wl = WORKLOAD[bug]
        trace, run, out = d / f"{bug}.wdmt", d / f"{bug}.wdmr", d / f"{bug}.min.wdmt"
        make_trace(wl, trace, a.seed)
        with ShopThread(inject=bug) as shop:
            replay_trace(str(trace), str(run), target=shop.target, speed=None)
            src = check_results(load_results(run, with_args=True))
            if src.clean:
                print(f"| {bug} | {wl} | (source run CLEAN) | | | | | | |", flush=True)
                continue
            r = shrink_run(str(run), str(out), target=shop.target, runs=a.runs, budget=a.budget,
                           notify=lambda _: None)
            again = d / f"{bug}.again.wdmr"
            replay_trace(str(out), str(again), target=shop.target, speed=None)
            verdict = check_results(load_results(again, with_args=True)).verdict.verdict
        rate = "not measured" if r.hits is None else f"{r.hits}/{r.runs}"
        stopped = f" (stopped: {r.stopped})" if r.stopped else ""
        print(f"| {bug} | {wl} | {r.finding.kind} on {r.finding.entity} | {r.before[1]} → {r.after[1]} "
              f"| {r.before[0]} → {r.after[0]} | {r.replays} | {r.seconds:.1f}{stopped} | {rate} | {verdict} |",
              flush=True)
    print(f"\nshrunk in {time.monotonic() - t0:.0f} s in all (files in {d})")


if __name__ == "__main__":
    main()
