"""What ``replay --workers N`` costs per request, counted in CPU instructions (callgrind), per process.

A 2-core machine cannot show the speed-up of two workers by the clock: the coordinator, the workers
and the target share its cores. Instructions can be counted instead, and they do not depend on what
else the machine is doing. This bench replays a stress trace with ``--speed max`` against the static
loopback target under ``valgrind --tool=callgrind``, once with ``--workers 1`` and once with
``--workers N``, each at two trace sizes; the difference between the sizes divided by the
difference in requests is the cost per request with the start-up taken out. Callgrind dumps a
profile part before every ``fork``, so each forked worker counts only its own instructions and the
coordinator's count is split into "before the workers start" (trace scan) and "while they run".

From that it prints:
  - CPU per request, ``--workers N`` over ``--workers 1`` (1.00 = the workers add no work);
  - the speed-up the instruction counts allow in the replay window (first send to last response,
    what ``compare_generators.py`` rates) when every process has a core of its own: one worker's
    work there over the busiest process's with N (instructions stand in for time; cache and
    scheduling effects are not in the count);
  - the trace scan that runs before the workers start (serial, outside the window).

    apt-get install -y valgrind nginx
    python bench/worker_cost.py                   # 4,000 and 12,000 requests, --workers 1 and 2, ~2-3 min
    python bench/worker_cost.py --requests 2000   # quicker
    python bench/worker_cost.py --requests 2000 --speed 0.0025   # at a fixed rate (100 req/s here)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import install_cleanup, last_line, machine, replay_window, run_child, stress_trace  # noqa: E402
from static_target import StaticTarget  # noqa: E402

from wdmreplay.targets import Target  # noqa: E402

_HEAD = re.compile(rb"^(pid|part|summary|totals): *(\d+)", re.M)


def profile_parts(directory: Path) -> list[tuple[int, int, int]]:
    """(pid, part, instructions) of every callgrind output file in ``directory``."""
    parts = []
    for f in directory.glob("cg.*"):
        with f.open("rb") as fh:
            fields = {k.decode(): int(v) for k, v in _HEAD.findall(fh.read())}
        parts.append((fields["pid"], fields.get("part", 1), fields.get("summary", fields.get("totals", 0))))
    return parts


def callgrind(out: Path) -> list[str]:
    """The valgrind prefix: count instructions into ``out``/cg.PID[.PART], a new part before every fork.

    A forked child inherits its parent's counters; with the dump before ``fork`` they are zero at
    the fork, so each child's files hold only its own work.
    """
    return ["valgrind", "--tool=callgrind", "--dump-before=_Fork", "--dump-before=fork",
            f"--callgrind-out-file={out}/cg.%p"]


def measure(work: Path, trace: Path, urls: Path, workers: int, concurrency: int, timeout: float,
            speed: str = "max", final_read: bool = False) -> dict[str, int]:
    """Run one replay under callgrind; instructions per process role: 'before fork', 'coordinator', 'worker i'."""
    out = work / f"cg-{trace.stem}-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    results = out / "run.wdmr"
    argv = callgrind(out) + [sys.executable, "-m", "wdmreplay", "replay", str(trace), "--speed", speed,
            *([] if final_read else ["--no-final-read"]), "--quiet", "--timeout", "120",
            "--concurrency", str(concurrency), "--workers", str(workers),
            "--urls", str(urls), "-o", str(results)]
    run = run_child(argv, timeout=timeout)
    if run.returncode != 0 or run.timed_out:
        raise RuntimeError(f"replay under callgrind failed (exit {run.returncode}"
                           f"{', timed out' if run.timed_out else ''}): {last_line(run.stderr)}")
    n, _, bad = replay_window(results)
    if bad:
        raise RuntimeError(f"not every request succeeded against the static target ({bad} of {n}); "
                           "the counts would not be comparable")
    parts = profile_parts(out)
    coordinator = min(pid for pid, _, _ in parts)  # valgrind runs the replay in the pid it started
    by_pid: dict[int, dict[int, int]] = defaultdict(dict)
    for pid, part, instructions in parts:  # not `n`: that is the request count returned below
        by_pid[pid][part] = instructions
    roles = {"requests": n}
    coord = by_pid.pop(coordinator)
    if not by_pid:  # a replay that ran in one process (builds before the one driver)
        roles["coordinator"] = sum(coord.values())
    else:
        # Part 1 ends at the first fork; the parts after it are the coordinator while workers run.
        roles["before fork"] = coord.get(1, 0)
        roles["coordinator"] = sum(n for part, n in coord.items() if part > 1)
        for i, pid in enumerate(sorted(by_pid)):
            roles[f"worker {i}"] = sum(by_pid[pid].values())
    return roles


def per_request(small: dict[str, int], large: dict[str, int]) -> dict[str, float]:
    """Instructions per request of each role: the difference between two sizes over their requests."""
    dn = large["requests"] - small["requests"]
    return {k: (large[k] - small.get(k, 0)) / dn for k in large if k != "requests"}


def main() -> None:
    """Count instructions of --workers 1 and --workers N at two sizes; print per-request costs and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--requests", type=int, default=4000, help="the smaller trace (the larger is 3x; default 4000)")
    ap.add_argument("--workers", type=int, default=2, help="workers to compare with one (default 2)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--speed", default="max",
                    help="replay speed: max (default) or a factor of the trace's schedule (a fixed rate)")
    ap.add_argument("--final-read", action="store_true",
                    help="keep the final read (default: --no-final-read, only the replayed requests are counted)")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop one replay after this long (default 600)")
    a = ap.parse_args()
    if a.workers < 2 or a.requests < 100:
        ap.error("--workers must be >= 2 and --requests >= 100")
    if not shutil.which("valgrind"):
        sys.exit("worker_cost: valgrind not found (apt-get install -y valgrind)")
    install_cleanup()
    work = Path(tempfile.mkdtemp(prefix="wdm-bench-workers-"))
    t_start = time.monotonic()
    try:
        with StaticTarget(prefer="nginx") as target:
            urls = work / "urls.json"
            urls.write_text(json.dumps(Target.single(target.url).as_dict()))
            print(f"machine: {machine()}")
            print(f"target: {target.kind} at {target.url}  {target.note}".rstrip(), flush=True)
            runs: dict[int, list[dict[str, int]]] = {1: [], a.workers: []}
            for n in (a.requests, 3 * a.requests):
                trace = work / f"stress-{n}.wdmt"
                stress_trace(trace, n)
                for w in runs:
                    print(f"callgrind: {n:,} requests, --workers {w} ...", flush=True)
                    runs[w].append(measure(work, trace, urls, w, a.concurrency, a.max_seconds, a.speed, a.final_read))
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the replay and the target were stopped")
    except RuntimeError as e:
        sys.exit(f"worker_cost: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    one = per_request(*runs[1])
    many = per_request(*runs[a.workers])
    total1, totaln = sum(one.values()), sum(many.values())
    small, large = runs[1][0]["requests"], runs[1][1]["requests"]
    print(f"\ninstructions per request (k), from {small:,} and {large:,} requests (start-up taken out):")
    roles = list(many)
    print(f"{'':<14}" + "".join(f"{r:>14}" for r in roles) + f"{'total':>14}")
    print(f"{'--workers 1':<14}" + "".join(f"{one[r] / 1e3:>14.1f}" if r in one else f"{'-':>14}" for r in roles)
          + f"{total1 / 1e3:>14.1f}")
    print(f"{f'--workers {a.workers}':<14}" + "".join(f"{many[r] / 1e3:>14.1f}" for r in roles)
          + f"{totaln / 1e3:>14.1f}")
    # The replay window (first send to last response) starts after the trace scan: take that scan
    # (the coordinator's work before it forks) out of the one-worker run too, where it is the same code.
    scan = many.get("before fork", 0.0)
    busiest = max(v for k, v in many.items() if k != "before fork")
    print(f"\nCPU per request, --workers {a.workers} / --workers 1:           {totaln / total1:6.2f}x"
          "   (1.00 = the workers add no work)")
    print(f"speed-up with a free core per process (replay window):  {(total1 - scan) / busiest:6.2f}x"
          f"   (one worker's work after the scan / the busiest of {a.workers} workers + coordinator)")
    print(f"the trace scan before the workers start: {scan / 1e3:.1f}k instructions per request, serial, outside "
          "the replay window")
    print(f"\nbench wall time: {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
