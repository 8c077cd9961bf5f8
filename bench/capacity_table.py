"""The capacity table of docs/grade.md: the reference shop with and without added latency, searched twice each.

Each search is ``wdm-replay capacity`` (its library function) over loopback HTTP against the
reference shop in a thread: a stress trace (default 30 sessions/s for 4 s), ``--concurrency 8`` (a
course team's client pool, small enough that a shop's per-request latency bounds its throughput),
the default SLO ``p99<500ms,unanswered<1%`` (plus the default achieved>80%), climb ×2 from speed 1
to 32, three bisection steps, a confirming repeat. Prints one markdown row per search (knee speed,
offered rate at the knee, the bracket's resolution, steps, seconds) and the ratio of each shop's two
knees; writes the plot of one search per shop. About 2–4 minutes on a quiet 2-core machine.

    python bench/capacity_table.py                       # table on stdout, plots in docs/img/
    python bench/capacity_table.py --latency 0,5,20 --runs 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from wdmreplay.capacity import (ReplayOptions, SearchPlan, find_capacity, matplotlib_missing, parse_slo,
                                plot_capacity, render_capacity_text)
from wdmreplay.workloads import generate
from wdmreplay.shop import ShopThread

IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", default="0,20", help="comma-separated --latency values (ms) of the shops")
    ap.add_argument("--runs", type=int, default=2, help="searches per shop")
    ap.add_argument("--rate", type=float, default=30.0, help="stress trace sessions/s")
    ap.add_argument("--duration", type=float, default=4.0, help="stress trace seconds")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--slo", default="p99<500ms,unanswered<1%")
    ap.add_argument("--max", type=float, default=32.0)
    ap.add_argument("--plots", default=str(IMG), help="directory of the plots ('' for none)")
    ap.add_argument("--verbose", action="store_true", help="print every search's step table")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="wdm-capacity-"))
    trace = d / "stress.wdmt"
    header = generate("stress", trace, seed=0, rate=a.rate, duration=a.duration)
    slo = parse_slo(a.slo)
    plan = SearchPlan(1.0, a.max, 2.0, 3)
    import os

    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"trace: stress {a.rate:g} sessions/s x {a.duration:g} s = {header['requests']} requests "
          f"({header['requests'] / header['duration']:.1f} requests/s at speed 1); SLO {slo.text}; "
          f"concurrency {a.concurrency}; search x2 from 1 to {a.max:g}, 3 bisection steps, confirmed\n")
    print("| shop | run | knee speed | offered req/s at knee | achieved req/s at knee | p99 ms at knee | "
          "one bisection step | steps | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    knees: dict[str, list[float]] = {}
    for lat in (float(x) for x in a.latency.split(",")):
        name = "reference" if lat == 0 else f"--latency {lat:g}"
        with ShopThread(latency_ms=lat) as shop:
            for run in range(1, a.runs + 1):
                t0 = time.monotonic()
                res = find_capacity(trace, d / f"lat{lat:g}-{run}", slo=slo, plan=plan,
                                    opts=ReplayOptions(shop.target, concurrency=a.concurrency))
                took = time.monotonic() - t0
                at = [s for s in res.steps if s.speed == res.speed]
                ach = max((s.achieved_rate or 0.0) for s in at) if at else None
                p99 = max((s.latency_ms.get("p99") or 0.0) for s in at) if at else None
                knees.setdefault(name, []).append(res.speed or 0.0)
                print(f"| {name} | {run} | {res.speed if res.speed is not None else '-'}"
                      f"{' (at --max)' if res.outcome == 'at_max' else ''} | "
                      f"{res.rate if res.rate is not None else '-'} | {ach:.1f} | {p99:.1f} | "
                      f"{'x%.3f' % res.resolution if res.resolution else '-'} | {len(res.steps)} | {took:.1f} |",
                      flush=True)
                if a.verbose:
                    print(render_capacity_text(res))
                if run == 1 and a.plots and matplotlib_missing() is None:
                    Path(a.plots).mkdir(parents=True, exist_ok=True)
                    out = Path(a.plots) / f"capacity-{'reference' if lat == 0 else f'latency{lat:g}'}.png"
                    plot_capacity(res, out)
                    print(f"<!-- plot: {out} -->")
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, ks in knees.items():
        if len(ks) > 1 and min(ks) > 0:
            print(f"{name}: knees {', '.join(f'{k:g}' for k in ks)}; highest/lowest = {max(ks) / min(ks):.3f}")
    ref = knees.get("reference")
    for name, ks in knees.items():
        if ref and name != "reference" and min(ks) > 0:
            print(f"{name} vs reference: knee ratio {min(ref) / max(ks):.2f}x lower (worst case of the runs)")


if __name__ == "__main__":
    main()
