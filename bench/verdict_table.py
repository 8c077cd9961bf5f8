"""The judge's table: every injected bug and fault mode of the reference shop × workload → verdict.

Each cell is a real replay over loopback HTTP against the reference shop (in a thread) with one
``--inject`` bug or fault (or ``--error-rate``), then the full ``check``: verdict, the sections
that decided it, the anomaly counts and the exit code ``check`` would return. A bug shows only
where the workload exercises it (stress has no same-entity concurrency, consistency no repeated
order lines); every fault mode must give no anomaly (it may be unavailable). About 2–3 minutes.

    python bench/verdict_table.py            # markdown table on stdout
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
from wdmreplay.traces import load_results

MODES = [
    ("correct", {}),
    ("lost-update", {"inject": "lost-update"}), ("oversell", {"inject": "oversell"}),
    ("no-rollback", {"inject": "no-rollback"}), ("double-charge", {"inject": "double-charge"}),
    ("lost-line", {"inject": "lost-line"}), ("wrong-total", {"inject": "wrong-total"}),
    ("apply-then-500:0.2", {"faults": (("apply-then-500", 0.2),)}),
    ("apply-then-hang:0.1 (hang 2 s)", {"faults": (("apply-then-hang", 0.1),), "hang_s": 2.0}),
    ("slow-saga:0.3 (1 s)", {"faults": (("slow-saga", 0.3),), "saga_delay_s": 1.0}),
    ("--error-rate 0.1", {"error_rate": 0.1}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated traces")
    ap.add_argument("--timeout", type=float, default=0.5, help="replay's --timeout (s): apply-then-hang exceeds it")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="wdm-verdicts-"))
    traces = {"consistency": (d / "c.wdmt", None), "contention": (d / "k.wdmt", None), "stress": (d / "s.wdmt", 1.0)}
    generate("consistency", traces["consistency"][0], seed=a.seed, items=8, stock=3, users=20, credit=2, orders=60)
    generate("contention", traces["contention"][0], seed=a.seed)
    generate("stress", traces["stress"][0], seed=a.seed, rate=30, duration=4)
    t0 = time.monotonic()
    print("| shop | workload | verdict | decided by | anomalies | exit |")
    print("|---|---|---|---|---|---|")
    for name, kw in MODES:
        for wl, (trace, speed) in traces.items():
            out = d / f"{name.split()[0].replace(':', '_')}-{wl}.wdmr"
            with ShopThread(seed=3, **kw) as shop:
                replay_trace(str(trace), str(out), target=shop.target, speed=speed, timeout=a.timeout)
            rep = check_results(load_results(out, with_args=True))
            v = rep.verdict
            counts = ", ".join(f"{k} {n}" for k, n in rep.anomaly_counts.items() if n) or "none"
            print(f"| {name} | {wl} | {v.verdict} | {', '.join(v.decided_by) or '-'} | {counts} | {v.exit_code} |",
                  flush=True)
    print(f"\n{len(MODES) * len(traces)} replays and checks in {time.monotonic() - t0:.0f} s (files in {d})")


if __name__ == "__main__":
    main()
