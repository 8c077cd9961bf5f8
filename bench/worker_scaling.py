"""``replay --workers 2`` vs ``--workers 1`` by the clock, with every replay process capped at a share of a core.

On a 2-core machine two workers cannot get a core each: the coordinator, the workers and the
target share both. This bench gives each replay process the same CPU budget instead — a Linux
cgroup CPU quota of ``--cap`` cores (default 0.4) per process, coordinator and every worker alike,
as if each ran on a core of its own that is ``--cap`` times as fast — so that two workers have twice
the CPU of one while the machine keeps enough room for the target (nginx) and the rest. Then it
clocks both against the same trace: requests / (first send to last response), from the results file.
Under the caps, a perfect split gives 2.0x; the issue's target is 1.7x.

The caps are cgroup v1 ``cpu.cfs_quota_us`` or cgroup v2 ``cpu.max`` groups made for the run and
removed after it; this needs root (a container or CI machine as root will do). The coordinator is
started in its group; every process it forks (the workers) is moved into a group of its own within
a few milliseconds of its birth, long before the replay window starts. The "throttled" column counts
the 100 ms periods in which a process used up its budget: it shows the cap, not the target or the
machine, was what limited the rate.

    python bench/worker_scaling.py                         # cap 0.4 core, 3 rounds, ~1 min
    python bench/worker_scaling.py --cap 0.3 --repeat 5
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

from harness import CpuCaps, capped_run, install_cleanup, last_line, machine, replay_window, stress_trace, wdm_replay  # noqa: E402
from static_target import StaticTarget, machine_busy_seconds  # noqa: E402

from wdmreplay.targets import Target  # noqa: E402

GOAL = 1.7


def main() -> None:
    """Replay one trace with --workers 1 and N under per-process CPU caps; print rates and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--cap", type=float, default=0.4, help="cores per replay process (default 0.4)")
    ap.add_argument("--workers", type=int, default=2, help="workers to compare with one (default 2)")
    ap.add_argument("--requests", type=int, default=0,
                    help="trace size (default: about 8 s of --workers 1 at the cap, ~40k req/s per core)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds, interleaved; the best of each is compared")
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    if not 0.05 <= a.cap <= 1.0 or a.workers < 2 or a.repeat < 1:
        ap.error("--cap must be within 0.05..1, --workers >= 2, --repeat >= 1")
    cores = os.cpu_count() or 1
    if (a.workers + 1) * a.cap > cores - 0.5:
        ap.error(f"{a.workers + 1} processes at {a.cap} core leave too little of {cores} cores for the target")
    install_cleanup()
    requests = a.requests or int(a.cap * 40_000 * 8)
    work = Path(tempfile.mkdtemp(prefix="wdm-bench-scaling-"))
    rows: dict[int, list[tuple]] = {1: [], a.workers: []}  # per round: rate, n, seconds, CPU, target CPU, procs, throttled, busy
    t_start = time.monotonic()
    try:
        caps = CpuCaps(a.cap)
        with StaticTarget(prefer="nginx", workers=2) as target:
            urls = work / "urls.json"
            urls.write_text(json.dumps(Target.single(target.url).as_dict()))
            trace = work / "stress.wdmt"
            h, how = stress_trace(trace, requests)
            print(f"machine: {machine()}")
            print(f"cap: {a.cap} core per replay process (cgroup v{caps.version} CPU quota); "
                  f"target: {target.kind} at {target.url}; {cores} CPUs", flush=True)
            print(f"trace: {h['requests']:,} requests ({how}); concurrency {a.concurrency}", flush=True)
            for r in range(a.repeat):
                for w in rows:
                    print(f"round {r + 1}/{a.repeat}: --workers {w} ...", flush=True)
                    out = work / f"w{w}.wdmr"
                    argv = wdm_replay() + ["replay", str(trace), "--speed", "max", "--no-final-read", "--quiet",
                                           "--concurrency", str(a.concurrency), "--workers", str(w),
                                           "--urls", str(urls), "-o", str(out), "--force"]
                    c0, m0 = target.cpu_seconds(), machine_busy_seconds()
                    run, procs, throttled = capped_run(caps, argv, timeout=300)
                    tcpu, busy = target.cpu_seconds() - c0, machine_busy_seconds() - m0
                    if run.returncode != 0 or run.timed_out:
                        raise RuntimeError(f"replay --workers {w} failed (exit {run.returncode}): "
                                           f"{last_line(run.stderr)}")
                    n, seconds, bad = replay_window(out)
                    if bad:
                        raise RuntimeError(f"replay --workers {w}: not every request succeeded: {bad}")
                    rows[w].append((n / seconds, n, seconds, run.cpu, tcpu, procs, throttled,
                                    busy / run.wall / cores))
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the replays and the target were stopped")
    except RuntimeError as e:
        sys.exit(f"worker_scaling: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'run':<14}{'requests':>9}{'seconds':>9}{'req/s':>8}{'client CPU s':>14}{'target CPU s':>14}"
          f"{'capped procs':>14}{'throttled':>11}{'machine busy':>14}  rounds (req/s)")
    best = {}
    for w, rs in rows.items():
        b = max(rs)
        best[w] = b[0]
        rate, n, seconds, cpu, tcpu, procs, throttled, busy = b
        print(f"{f'--workers {w}':<14}{n:>9}{seconds:>9.2f}{rate:>8.0f}{cpu:>14.2f}{tcpu:>14.2f}{procs:>14}"
              f"{throttled:>11}{100 * busy:>13.0f}%  {', '.join(f'{r[0]:.0f}' for r in rs)}")
    ratio = best[a.workers] / best[1]
    print(f"\n--workers {a.workers} / --workers 1 (req/s, each process capped at {a.cap} core): {ratio:.2f}x"
          f"   target >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}; a perfect split: {a.workers:.1f}x")
    print(f"machine busy = all {cores} cores' busy time over the replay's wall time (start-up included); "
          "well below 100 %: the target and the machine had room, the caps set the pace")
    print(f"bench wall time: {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
