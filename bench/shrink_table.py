"""The shrink table: every injected bug of the reference shop, shrunk from a NOT CLEAN run to a minimal trace.

For each bug, the workload that shows it (``consistency`` for the checkout bugs, ``contention``
for the order-line bugs, the sizes of ``bench/verdict_table.py``) is replayed at --speed max
against the reference shop (in a thread, loopback) with that ``--inject`` bug; the run is checked,
then ``shrink_run`` (what ``wdm-replay shrink`` calls) reduces it with ``--runs`` replays per
candidate and ``--budget`` seconds. Printed per bug: the finding, requests (and sessions) before →
after, replays spent, seconds, and the reproduction rate over ``--runs`` fresh replays of the
minimal trace (what its header stores). Then a fresh check that the minimal trace, replayed, is
NOT CLEAN. About 2–5 minutes (twice that with ``--course``).

    python bench/shrink_table.py                 # markdown table on stdout
    python bench/shrink_table.py --bugs lost-update,oversell --budget 60
    python bench/shrink_table.py --course        # and the checkout bugs at the course benchmark's size
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wdmreplay.analysis import check_results
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import ShopThread
from wdmreplay.shrink import shrink_run
from wdmreplay.traces import load_results

WORKLOAD = {"lost-update": "consistency", "oversell": "consistency", "no-rollback": "consistency",
            "double-charge": "consistency", "lost-line": "contention", "wrong-total": "contention"}


# The course benchmark's own consistency test (1 item of 100 units, 1000 users of 1 credit, 1000
# orders): the checkout bugs again at full size, with --course.
COURSE_BUGS = ("lost-update", "oversell", "no-rollback", "double-charge")


def make_trace(workload: str, path: Path, seed: int) -> None:
    """The source trace of a bug's workload (sizes as in bench/verdict_table.py, or the course preset)."""
    if workload == "consistency":
        generate("consistency", path, seed=seed, items=8, stock=3, users=20, credit=2, orders=60)
    elif workload == "consistency --preset course":
        generate("consistency", path, seed=seed, preset="course")
    else:
        generate("contention", path, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bugs", default=",".join(WORKLOAD), help="comma-separated --inject bugs (default: all six)")
    ap.add_argument("--runs", type=int, default=5, help="replays per candidate and final replays (default 5)")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per shrink (default 120)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated traces")
    ap.add_argument("--course", action="store_true",
                    help="also the checkout bugs on the course benchmark's consistency test (5,002 requests)")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="wdm-shrink-table-"))
    t0 = time.monotonic()
    print("| bug | workload | finding | requests before → after | sessions before → after | replays | seconds "
          "| reproduction rate | minimal trace replayed |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [(bug, WORKLOAD[bug]) for bug in a.bugs.split(",")]
    if a.course:
        cases += [(bug, "consistency --preset course") for bug in a.bugs.split(",") if bug in COURSE_BUGS]
    for k, (bug, wl) in enumerate(cases):
        trace, run, out = d / f"{k}-{bug}.wdmt", d / f"{k}-{bug}.wdmr", d / f"{k}-{bug}.min.wdmt"
        make_trace(wl, trace, a.seed)
        with ShopThread(inject=bug) as shop:
            replay_trace(str(trace), str(run), target=shop.target, speed=None)
            src = check_results(load_results(run, with_args=True))
            if src.clean:
                print(f"| {bug} | {wl} | (source run CLEAN) | | | | | | |", flush=True)
                continue
            r = shrink_run(str(run), str(out), target=shop.target, runs=a.runs, budget=a.budget,
                           notify=lambda _: None)
            again = d / f"{k}-{bug}.again.wdmr"
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
