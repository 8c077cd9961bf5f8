"""Replay memory vs trace length: peak RSS of ``replay --speed max`` at two (or more) trace sizes.

For each size, a stress trace of that many requests is generated (``wdm-replay generate-trace
stress --requests N``) and replayed with ``--speed max --no-final-read --quiet`` against the static
loopback target (bench/static_target.py). The replay's peak RSS is its ``ru_maxrss`` (``os.wait4``).
Memory is flat in trace length when the largest size's peak over the smallest's stays < 1.5.

The default sizes are the design's 0.5M and 5M requests (about 3 minutes here; smaller sizes are
quicker):

    python bench/replay_memory.py                              # 500000,5000000, ~3 minutes
    python bench/replay_memory.py --sizes 500000,2000000       # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import command_available, install_cleanup, last_line, machine, run_child, stress_trace, wdm_replay  # noqa: E402
from static_target import StaticTarget  # noqa: E402

from wdmreplay.targets import Target  # noqa: E402

GOAL = 1.5


def main() -> None:
    """Generate and replay each size, print peak RSS per size and the largest/smallest ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--sizes", default="500000,5000000", help="trace sizes in requests, comma-separated")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--target", default="nginx", choices=("nginx", "aiohttp"))
    ap.add_argument("--max-seconds", type=float, default=1200, help="stop a replay after this long (default 1200)")
    a = ap.parse_args()
    sizes = sorted(int(float(x)) for x in a.sizes.split(","))
    install_cleanup()
    if not command_available("replay"):
        print("replay_memory: wdm-replay replay not available yet; nothing to measure")
        return
    work = Path(tempfile.mkdtemp(prefix="wdm-bench-memory-"))
    rows = []
    t_start = time.monotonic()
    try:
        with StaticTarget(prefer=a.target) as target:
            urls = work / "urls.json"
            urls.write_text(json.dumps(Target.single(target.url).as_dict()))
            print(f"machine: {machine()}")
            print(f"target: {target.kind} at {target.url}  {target.note}".rstrip())
            print(f"sizes: {', '.join(f'{n:,}' for n in sizes)} requests; concurrency {a.concurrency}", flush=True)
            for n in sizes:
                trace, out = work / f"stress-{n}.wdmt", work / f"stress-{n}.wdmr"
                t0 = time.perf_counter()
                h, how = stress_trace(trace, n)
                gen = time.perf_counter() - t0
                print(f"{h['requests']:,} requests: generated in {gen:.1f} s ({how}); replaying ...", flush=True)
                argv = wdm_replay() + ["replay", str(trace), "--speed", "max", "--no-final-read", "--quiet",
                                       "--concurrency", str(a.concurrency), "--urls", str(urls), "-o", str(out),
                                       "--force"]
                run = run_child(argv, timeout=a.max_seconds)
                if run.returncode != 0 or run.timed_out:
                    print(f"  replay failed (exit {run.returncode}{', timed out' if run.timed_out else ''}): "
                          f"{last_line(run.stderr)}")
                    break
                rows.append((h["requests"], trace.stat().st_size / 2**20, out.stat().st_size / 2**20, gen,
                             run.wall, run.cpu, run.maxrss_mb))
                print(f"  {run.wall:.1f} s, peak RSS {run.maxrss_mb:.0f} MB", flush=True)
                trace.unlink()
                out.unlink()
    except KeyboardInterrupt:
        print("\ninterrupted: the replay and the target were stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'requests':>10}{'trace MB':>10}{'results MB':>12}{'generate s':>12}{'replay s':>10}{'req/s':>8}"
          f"{'CPU s':>8}{'peak RSS MB':>13}")
    for n, tmb, rmb, gen, wall, cpu, rss in rows:
        print(f"{n:>10}{tmb:>10.1f}{rmb:>12.1f}{gen:>12.1f}{wall:>10.1f}{n / wall:>8.0f}{cpu:>8.1f}{rss:>13.0f}")
    if len(rows) >= 2:
        (n0, *_, r0), (n1, *_, r1) = rows[0], rows[-1]
        verdict = "flat" if r1 / r0 < GOAL else "NOT flat"
        print(f"\npeak RSS at {n1:,} / at {n0:,} requests: {r1 / r0:.2f}x  (target < {GOAL}: {verdict})")
    print(f"bench wall time: {time.monotonic() - t_start:.0f} s  (replay s includes process start-up; "
          f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
