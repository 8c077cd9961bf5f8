"""Benchmark: generate-trace speed and memory (DESIGN §9: 1,000,000 requests in ≤ 5 s, flat memory).

Generates a 100,000-request and a 1,000,000-request stress trace, each in a fresh child process so
each peak RSS (``resource.getrusage``) is its own, and prints wall seconds, requests/s, peak RSS and
the 1M/100k ratios: time should scale ~10x (linear), peak memory ~1x (streaming).

    python bench/generate.py [--requests 1000000] [--seed 0] [--dialect 2024]
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


def one(requests: int, seed: int, dialect: str, path: str) -> dict:
    """Generate one trace in this process; wall seconds, requests, peak RSS (MiB), file size."""
    from wdmreplay.workloads import generate

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    h = generate("stress", path, seed=seed, dialect=dialect, requests=requests, rate=1000)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"requests": h["requests"], "sessions": h["sessions"], "wall": wall, "rss_mib": rss,
            "rss_before_mib": rss0, "bytes": os.path.getsize(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dialect", default="2024")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.one, a.seed, a.dialect, a.path)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for n in (a.requests // 10, a.requests):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(a.seed), "--dialect",
                                  a.dialect, "--path", os.path.join(d, f"t{n}.wdmt")],
                                 capture_output=True, text=True, check=True)
            r = results[n] = json.loads(out.stdout)
            print(f"stress {r['requests']:>9,} requests ({r['sessions']:,} sessions): {r['wall']:6.2f} s wall, "
                  f"{r['requests'] / r['wall']:>9,.0f} req/s, peak RSS {r['rss_mib']:6.1f} MiB "
                  f"(after imports {r['rss_before_mib']:.1f}), file {r['bytes'] / 2**20:.1f} MiB")
    small, big = results[a.requests // 10], results[a.requests]
    print(f"ratio {a.requests:,} / {a.requests // 10:,}: time {big['wall'] / small['wall']:.2f}x "
          f"(linear = 10x), peak RSS {big['rss_mib'] / small['rss_mib']:.2f}x (flat = 1x)")
    target = 5.0 * a.requests / 1_000_000
    print(f"target ≤ {target:g} s for {a.requests:,} requests: {'met' if big['wall'] <= target else 'NOT met'} "
          f"({big['wall']:.2f} s)")


if __name__ == "__main__":
    main()
