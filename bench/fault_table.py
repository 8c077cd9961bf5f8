"""Benchmark: the closing table of issue 13 — fault kind × recovery time × verdict × anomalies, measured.

Each row is one ``demo --faults`` run (:func:`wdmreplay.demo.run_fault_demo`: the durable shop as
real processes on loopback, a stress trace at speed 1, a schedule that kills one process (``kill -9``) at
40 % of the run and restarts it ``--down`` seconds later with an ``undo`` that waits until it
listens, then ``check --max-recovery 5``). *restart s* is how long that ``undo`` took (start to
listening); the window ends with it. Kinds: the split shop's order, stock and payment service,
the one-port durable shop (``serve --data``), and the split shop with ``--inject no-recovery``
(order service killed). Prints per run: the window, its requests and unanswered share, time from
the window's end to the first success and back to the pre-fault success rate, the verdict and the
anomalies; then per kind how many runs gave the majority verdict.

    python bench/fault_table.py                       # one run per kind, the demo's defaults (20 s, 20/s)
    python bench/fault_table.py --repeat 3 --duration 10 --kinds order,no-recovery
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import tempfile
import time

from wdmreplay.demo import fault_plan, run_fault_demo

KINDS = {  # label -> (--faults-service, --inject)
    "order": ("order", None),
    "stock": ("stock", None),
    "payment": ("payment", None),
    "shop": ("shop", None),
    "no-recovery": ("order", "no-recovery"),
}
LABELS = {"order": "kill -9 order (split)", "stock": "kill -9 stock (split)", "payment": "kill -9 payment (split)",
          "shop": "kill -9 one-port shop", "no-recovery": "no-recovery, kill order"}


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--repeat", type=int, default=1, help="runs per kind")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of stress schedule")
    ap.add_argument("--rate", type=float, default=20.0, help="stress sessions per second")
    ap.add_argument("--down", type=float, default=3.0, help="seconds between the kill and the restart")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--undo-returns-at-once", action="store_true",
                    help="restart without waiting until the process listens (like `docker compose start`)")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        sys.exit(f"unknown kind(s): {', '.join(bad)}")
    print(f"stress {a.rate:g} sessions/s for {a.duration:g} s at speed 1; kill -9 at 40 % of the run, restart "
          f"{a.down:g} s later ({'undo returns at once' if a.undo_returns_at_once else 'undo waits until it listens'}); "
          f"check --max-recovery 5")
    print(f"{'fault':<26}{'window s':>16}{'restart s':>10}{'reqs':>6}{'unans%':>8}{'first ok s':>11}"
          f"{'recovery s':>11}{'wall s':>8}  {'verdict (decided by)':<27} anomalies")
    verdicts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for kind in kinds:
        service, inject = KINDS[kind]
        for i in range(a.repeat):
            plan = dataclasses.replace(fault_plan(service, a.duration, a.rate, inject, down=a.down),
                                       undo_waits=not a.undo_returns_at_once)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="wdm-fault-table-") as d:
                r = run_fault_demo(d, plan, seed=a.seed + i, echo=lambda _line: None)
            wall = time.perf_counter() - t0
            verdicts[kind][r.verdict] += 1
            (w,) = r.report["faults"]["windows"]
            cons = r.report["check"]["consistency"]
            kinds_found = collections.Counter(x["kind"] for x in cons.get("anomalies") or [])
            anoms = ", ".join(f"{k} {n}" for k, n in kinds_found.items()) or "none"
            if r.orders:
                anoms += f" (orders {', '.join(r.orders[:4])}{' …' if len(r.orders) > 4 else ''})"
            decided = r.report["check"]["decided_by"]
            verdict = r.verdict + (f" ({', '.join(decided)})" if decided and r.verdict != "CLEAN" else "")
            end = "open" if w["end"] is None else f"{w['end']:.2f}"
            undo = next((x for x in r.report["faults"]["actions"] if x["which"] == "undo"), None)
            restart = "-" if undo is None or undo["end"] is None else f"{undo['end'] - undo['start']:.2f}"
            print(f"{LABELS[kind]:<26}{w['start']:>7.2f} -> {end:>5}{restart:>10}{w['requests']:>6}"
                  f"{100 * (w['error_share'] or 0):>8.1f}{_s(w['first_success_s']):>11}{_s(w['recovery_s']):>11}"
                  f"{wall:>8.1f}  {verdict:<27} {anoms}", flush=True)
    if a.repeat > 1:
        print()
        for kind in kinds:
            c = verdicts[kind]
            print(f"{LABELS[kind]:<26}" + ", ".join(f"{v} {n}/{a.repeat}" for v, n in c.most_common()))


if __name__ == "__main__":
    main()
