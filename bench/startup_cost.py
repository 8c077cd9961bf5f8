"""The replay's fixed cost: CPU of a trivial replay (start-up, probe, fork, results, exit), and what it imports.

A 10-request stress trace is replayed ``--speed max --workers 1 --no-final-read --quiet`` against a
private nginx (bench/static_target.py) ``--runs`` times; each run's CPU is user + system of the
``replay`` process and every process it waited for (``os.wait4``: the coordinator and its worker).
The figure is the median, for each way of starting the command line: as the console script
``wdm-replay`` starts it ("script") and as ``python -m wdmreplay`` ("-m"). With ``--against DIR`` (a checkout or ``git archive`` of other code, put
first on ``PYTHONPATH``), the two versions run alternately in the same session — start-up CPU moves
with the machine's load, so only figures measured side by side compare. ``--importtime`` also
prints the heaviest cumulative imports of one run (``python -X importtime``, coordinator only).

    python bench/startup_cost.py                              # ~10 s: 5 runs of this code, each way
    python bench/startup_cost.py --against /tmp/old --runs 7  # old and new alternately
    python bench/startup_cost.py --importtime                 # + the top imports

Loopback only; nginx and every child are stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import bench_run, install_cleanup, last_line, machine, run_child, stress_trace  # noqa: E402
from static_target import StaticTarget  # noqa: E402


# The console script pip writes for ``wdm-replay`` (its entry point: ``entry`` where the code has
# one, else ``main``), as a file: a command line started from a script file, not ``-c``, is what a
# user runs (and its interpreter teardown differs: docs/performance.md).
CONSOLE_SCRIPT = """import sys
import wdmreplay.cli as c
if __name__ == "__main__":
    sys.exit(getattr(c, "entry", c.main)())
"""


def launchers(work: Path) -> dict[str, list[str]]:
    """How the command line is started: as the console script ``wdm-replay`` and as ``python -m wdmreplay``."""
    script = work / "wdm-replay"
    script.write_text(CONSOLE_SCRIPT)
    return {"script": [sys.executable, str(script)], "-m": [sys.executable, "-m", "wdmreplay"]}


def replay_argv(launcher: list[str], trace: Path, out: Path, url: str) -> list[str]:
    """The trivial replay every run makes, started by ``launcher`` (whatever PATH holds)."""
    return launcher + ["replay", str(trace), "--url", url, "--speed", "max", "--workers", "1",
                       "--no-final-read", "--quiet", "--force", "-o", str(out)]


def env_for(pythonpath: str | None) -> dict[str, str]:
    """The environment of a run: ``pythonpath`` first on PYTHONPATH (None: the installed code)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def top_imports(stderr: str, n: int = 12) -> list[tuple[int, str]]:
    """The ``n`` largest cumulative import times (µs, module) from ``-X importtime`` output, top-level first."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), len(m.group(2)), m.group(3)))
    rows.sort(key=lambda r: -r[0])
    return [(us, "  " * ((depth - 1) // 2) + name) for us, depth, name in rows[:n]]


def main(argv: list[str] | None = None) -> None:
    """Parse options, start the target, run the trivial replay alternately, print the medians."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--runs", type=int, default=5, help="runs of each version (default 5)")
    ap.add_argument("--against", metavar="DIR", help="other code to run alternately (put first on PYTHONPATH)")
    ap.add_argument("--importtime", action="store_true", help="also print the top cumulative imports of each version")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be >= 1")
    if a.against and not (Path(a.against) / "wdmreplay").is_dir():
        ap.error(f"--against {a.against}: no wdmreplay package in it")
    install_cleanup()
    versions = [("this code", None)] + ([(f"--against {a.against}", a.against)] if a.against else [])
    with bench_run("startup_cost", "wdm-bench-startup-") as work:
        with StaticTarget(prefer="nginx", workers=1) as target:
            trace = work / "tiny.wdmt"
            stress_trace(trace, 10)
            how_to = launchers(work)
            cpu: dict[tuple[str, str], list[float]] = {(name, how): [] for name, _ in versions for how in how_to}
            print(f"machine: {machine()}")
            print(f"target: {target.kind} at {target.url}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
            for i in range(a.runs):
                for (name, how), xs in cpu.items():  # alternately: a slow spell hits every version alike
                    path = dict(versions)[name]
                    r = run_child(replay_argv(how_to[how], trace, work / "out.wdmr", target.url), timeout=60,
                                  env=env_for(path), cwd=str(work))  # not here: -m puts the cwd first on sys.path
                    if r.returncode != 0:
                        sys.exit(f"startup_cost: {name}: replay failed (exit {r.returncode}): {last_line(r.stderr)}")
                    xs.append(r.cpu)
            print(f"\nCPU of a 10-request replay (user + system, coordinator + worker), {a.runs} runs each:")
            for (name, how), xs in cpu.items():
                print(f"  {name:<32} {how:<7} median {statistics.median(xs):.3f} s   runs: "
                      + ", ".join(f"{x:.3f}" for x in xs))
            if a.against:
                for how in how_to:
                    new, old = (statistics.median(cpu[(n, how)]) for n, _ in versions)
                    print(f"  this code / other, {how}: {new / old:.2f}x")
            if a.importtime:
                for name, path in versions:
                    argv = replay_argv(how_to["-m"], trace, work / "out.wdmr", target.url)
                    r = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]],
                                       capture_output=True, text=True, timeout=60, env=env_for(path), cwd=str(work))
                    print(f"\ntop cumulative imports (µs), {name}:")
                    for us, mod in top_imports(r.stderr):
                        print(f"  {us:>9,}  {mod}")
            print(f"\nload average at end {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; "
                  f"{time.strftime('%H:%M:%S', time.gmtime())} UTC")


if __name__ == "__main__":
    main()
