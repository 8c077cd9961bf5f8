"""Benchmark: what the file formats cost — generate, read and skip a trace, load a results file (CPU seconds).

CPU seconds (``time.process_time``) rather than wall: on a shared, busy machine they are the fairer
figure. To compare two commits, run this script from each (e.g. a second checkout on PYTHONPATH),
alternately, in one session: docs/formats.md ("What version 2 costs") shows such a comparison.

    python bench/formats.py                    # 1,000,000 requests and 1,000,000 rows
    python bench/formats.py --requests 200000 --rows 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from analysis import synthesize, synthesize_with_args  # noqa: E402  (bench/analysis.py)

import wdmreplay  # noqa: E402
from wdmreplay.workloads import generate  # noqa: E402
from wdmreplay.traces import TraceReader, load_results  # noqa: E402


def cpu(fn: Callable[[], object]) -> float:
    """CPU seconds one call of ``fn`` takes."""
    c = time.process_time()
    fn()
    return time.process_time() - c


def read_trace(path: str, keep: Callable[[int], bool] | None) -> int:
    """Read every session of a trace (or only those ``keep`` passes); return how many."""
    with TraceReader(path) as r:
        return sum(1 for _ in r.sessions(keep))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000, help="requests of the stress trace")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the results files")
    ap.add_argument("--rounds", type=int, default=2, help="repetitions of each read/load (the best is shown)")
    a = ap.parse_args()
    print(f"wdm-replay {wdmreplay.__version__} from {os.path.dirname(os.path.dirname(wdmreplay.__file__))}")
    with tempfile.TemporaryDirectory() as d:
        trace, rows, args = (os.path.join(d, n) for n in ("t.wdmt", "r.wdmr", "a.wdmr"))
        g = cpu(lambda: generate("stress", trace, seed=0, requests=a.requests, rate=1000))
        print(f"generate stress {a.requests:,} requests: {g:.2f} s cpu, file {os.path.getsize(trace):,} bytes")
        full = min(cpu(lambda: read_trace(trace, None)) for _ in range(a.rounds))
        half = min(cpu(lambda: read_trace(trace, lambda sid: sid % 2 == 0)) for _ in range(a.rounds))
        print(f"read the trace: every session {full:.2f} s cpu; half of them, skipping the rest {half:.2f} s cpu")
        synthesize(rows, a.rows)
        synthesize_with_args(args, a.rows)
        cols = min(cpu(lambda: load_results(rows)) for _ in range(a.rounds))
        with_args = min(cpu(lambda: load_results(args, with_args=True)) for _ in range(a.rounds))
        print(f"load_results {a.rows:,} rows: columns {cols:.3f} s cpu ({os.path.getsize(rows):,} bytes); "
              f"with args {with_args:.2f} s cpu ({os.path.getsize(args):,} bytes)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
