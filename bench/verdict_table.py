"""The judge's table: every injected bug and fault mode of the reference shop × workload → verdict.

Each cell is a real replay over loopback HTTP against the reference shop (in a thread) with one
``--inject`` bug or fault (or ``--error-rate``), then the full ``check``: verdict, the sections
that decided it, the anomaly counts and the exit code ``check`` would return. A bug shows only
where the workload exercises it (stress has no same-entity concurrency, consistency no repeated
order lines); every fault mode must give no anomaly (it may be unavailable).

Then the rows of issue 19: **data loss** — the stress trace with a ``--faults`` action at 3.6 s that
wipes the shop's store (its admin reset, as a store restarted empty does), against the same schedule
shape whose action wipes nothing; and **one fault history, one verdict** — ``demo --faults`` (the
durable split shop, its stock service killed -9 and restarted mid-run) repeated 5 times, each run
judged as ``check`` and as ``check --strict-faults``. About 4–5 minutes in all.

    python bench/verdict_table.py            # markdown table on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from wdmreplay.analysis import check_results
from wdmreplay.demo import fault_plan, run_fault_demo
from wdmreplay.workloads import generate
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
    data_loss_rows(d, traces["stress"][0], a.timeout)
    repeated_fault_rows(d, a.seed)
    print(f"\n{len(MODES) * len(traces) + 7} replays and checks in {time.monotonic() - t0:.0f} s (files in {d})")


def _request(url: str, method: str) -> list[str]:
    data = "b''" if method == "POST" else "None"
    return [sys.executable, "-c", f"import urllib.request as u; u.urlopen(u.Request({url!r}, data={data}, "
                                  f"method={method!r}), timeout=5).read()"]


def _row(name: str, wl: str, rep) -> None:
    v = rep.verdict
    counts = ", ".join(f"{k} {n}" for k, n in rep.anomaly_counts.items() if n) or "none"
    print(f"| {name} | {wl} | {v.verdict} | {', '.join(v.decided_by) or '-'} | {counts} | {v.exit_code} |", flush=True)


def data_loss_rows(d: Path, trace: Path, timeout: float) -> None:
    """The stress trace with an action at 3.6 s that wipes the store, and the same shape wiping nothing."""
    for wipe in (True, False):
        out = d / f"data-loss-{wipe}.wdmr"
        with ShopThread(seed=3) as shop:
            action = _request(shop.url + "/_shop/reset", "POST") if wipe else _request(shop.url + "/_shop/stats", "GET")
            sched = d / f"wipe-{wipe}.json"
            sched.write_text(json.dumps({"faults": [{"name": "wipe" if wipe else "look", "at": 3.6, "for": 0.1,
                                                     "do": action, "undo": [sys.executable, "-c", "pass"]}]}))
            replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=timeout, faults=str(sched))
        rep = check_results(load_results(out, with_args=True))
        _row("correct, store wiped by a --faults action at 3.6 s" if wipe else
             "correct, a --faults action at 3.6 s that wipes nothing", "stress", rep)


def repeated_fault_rows(d: Path, seed: int, repeats: int = 5) -> None:
    """``demo --faults`` (kill -9 of the stock service, restart) repeated: one verdict, with and without --strict-faults."""
    plan = fault_plan("stock", 8.0, 15.0, None, down=1.5)
    verdicts, strict, wrong, decided = Counter(), Counter(), [], set()
    for k in range(repeats):
        r = run_fault_demo(d / f"fault-{k}", plan, seed=seed, echo=lambda _line: None)
        run = load_results(r.results_path, with_args=True)
        rep = check_results(run, max_recovery=5)
        verdicts[rep.verdict.verdict] += 1
        sv = check_results(run, max_recovery=5, strict_faults=True).verdict
        strict[sv.verdict] += 1
        decided.update(sv.decided_by)
        wrong.append(rep.expectations.during_faults)
    said = lambda c: " / ".join(f"{v} ×{n}" for v, n in c.items())  # noqa: E731
    print(f"| correct durable split shop, stock killed -9 for 1.5 s, ×{repeats} | stress (8 s) | {said(verdicts)} | "
          f"- | wrong answers during faults per run: {', '.join(map(str, wrong))} | - |")
    print(f"| the same {repeats} runs, `check --strict-faults` | stress (8 s) | {said(strict)} | "
          f"{', '.join(sorted(decided)) or '-'} | - | - |", flush=True)


if __name__ == "__main__":
    main()
