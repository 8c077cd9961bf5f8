"""bench/record_overhead.py runs end to end at a tiny size (loopback, bounded) and its capture is whole."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "record_overhead.py"


def test_record_overhead_bench_prints_its_figures_and_the_trace_holds_every_request():
    r = subprocess.run([sys.executable, str(BENCH), "--requests", "300", "--latency-requests", "200",
                        "--concurrency", "8", "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    added = re.search(r"added\s+(-?[\d.]+)\s+(-?[\d.]+)", r.stdout)
    rates = re.search(r"direct ([\d,]+) req/s\s+proxy ([\d,]+) req/s\s+ratio ([\d.]+)", r.stdout)
    assert added and rates, r.stdout
    assert all(float(x.replace(",", "")) > 0 for x in rates.groups())
    m = re.search(r"trace: ([\d,]+) requests recorded of ([\d,]+) sent", r.stdout)
    assert m and m.group(1) == m.group(2) == "500", r.stdout
