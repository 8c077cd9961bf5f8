"""Schedule accuracy: does ``replay`` start sessions when the trace says, at 1,000 sessions/s?

A trace of one-step sessions (``find_item "1"``), one every 1/rate seconds for ``--duration``
seconds, is replayed at speed 1 against the raw loopback responder of bench/static_target.py
(its own process). From the results file:

- achieved start rate = (sessions - 1) / (last send - first send), compared with the scheduled rate
  (target: within 1 %);
- start lag = sent - intended per session (target: p99 <= 2 ms); also p50, p99.9 and max.

    python bench/schedule_accuracy.py                   # 1,000 sessions/s for 30 s
    python bench/schedule_accuracy.py --duration 10 --rate 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine  # noqa: E402
from static_target import StaticTarget  # noqa: E402

from wdmreplay.replayer import replay_trace  # noqa: E402
from wdmreplay.traces import TraceWriter, load_results, step  # noqa: E402


def build_trace(path: str, rate: float, duration: float) -> int:
    """One-step sessions at a constant rate; returns the number of sessions."""
    n = int(round(rate * duration))
    with TraceWriter(path, workload="bench", seed=0, params={"rate": rate, "duration": duration},
                     phases=["main"], scenarios=["bench"]) as w:
        for sid in range(n):
            w.write_session(sid, 0, sid / rate, [step("find_item", ["1"], scenario="bench")])
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="sessions per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of schedule")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--target", choices=["raw", "nginx", "aiohttp"], default="raw")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, StaticTarget(prefer=a.target) as target:
        trace, out = str(Path(tmp) / "sched.wdmt"), str(Path(tmp) / "sched.wdmr")
        n = build_trace(trace, a.rate, a.duration)
        print(f"machine: {machine()}")
        print(f"{n} one-step sessions at {a.rate:g}/s for {a.duration:g} s; concurrency {a.concurrency}; "
              f"cores {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}", flush=True)
        s = replay_trace(trace, out, target=target.url, speed=1.0, concurrency=a.concurrency, final_read=False)
        r = load_results(out)
    sent, intended = r.cols["sent"], r.cols["intended"]
    ok = ~np.isnan(sent)
    lag = (sent - intended)[ok]
    achieved = (ok.sum() - 1) / (np.nanmax(sent) - np.nanmin(sent))
    err = achieved / a.rate - 1
    p50, p99, p999 = np.percentile(lag, [50, 99, 99.9]) * 1000
    print(f"outcomes: {dict(s.outcomes)}")
    print(f"achieved start rate: {achieved:,.1f} sessions/s vs scheduled {a.rate:,.1f} ({err * 100:+.2f} %; "
          f"target within 1 %) -> {'OK' if abs(err) <= 0.01 else 'MISSED'}")
    print(f"start lag: p50 {p50:.3f} ms, p99 {p99:.3f} ms, p99.9 {p999:.3f} ms, max {lag.max() * 1000:.3f} ms "
          f"(target p99 <= 2 ms) -> {'OK' if p99 <= 2.0 else 'MISSED'}")
    print(f"response time p50 {s.p50 * 1000:.3f} ms, p99 {s.p99 * 1000:.3f} ms (from the intended time)")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other work on these cores skews the lag)")


if __name__ == "__main__":
    main()
