"""What ``replay --ui`` costs a replay: request rate at ``--speed max`` with and without the live view, one run.

Against the fast static loopback target (bench/static_target.py: nginx when installed, else the raw
responder), one stress trace is replayed ``--rounds`` times each way, alternating which goes first
(ABBA), so machine drift falls on both. In the ``--ui`` runs a poller stands in for an open page: it
fetches ``/stats.json`` once a second (as the page does) and the page itself once. The rate is the
results file's (sent requests over first send to last answer, the summary's definition), so
start-up and the linger are outside it; the CPU is the replay process's with its workers
(``os.wait4``), less noisy than the rate on a shared machine. Last, in process, what the live
figures cost per request row (the tap of the results writer) and per ``/stats.json``, against the
replay's CPU per request: the share of the work the hook adds, which no machine noise changes. Prints each run, the median of each side, and the ratio
``--ui`` / plain (the target: at least 0.95). Bounded: a fixed trace, loopback only, every child
killed at the end.

    python bench/live_overhead.py                      # 100,000 requests, 3 rounds each way (~2 min)
    python bench/live_overhead.py --requests 30000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import install_cleanup, last_line, replay_window, stress_trace  # noqa: E402
from static_target import StaticTarget  # noqa: E402

TOOL = [sys.executable, "-m", "wdmreplay"]  # this checkout's wdm-replay, not whatever is on PATH
URL_LINE = re.compile(r"live view: (http://\S+/) ")


def _poll(url: str, stop: threading.Event, counts: list[int]) -> None:
    """Fetch the page once, then ``/stats.json`` once a second until ``stop`` (what an open page does)."""
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        return
    while not stop.wait(1.0):
        try:
            json.load(urllib.request.urlopen(url + "stats.json", timeout=5))
            counts[0] += 1
        except OSError:
            return


def replay_once(trace: Path, out: Path, target: str, *, ui: bool, concurrency: int, timeout: float) -> dict:
    """One ``--speed max`` replay (with the live view and a poller when ``ui``); its rate from the results file."""
    argv = TOOL + ["replay", str(trace), "--url", target, "--speed", "max", "--concurrency", str(concurrency),
                   "--no-final-read", "-q", "-o", str(out)]
    if ui:
        argv += ["--ui", "127.0.0.1:0", "--ui-linger", "0"]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stop, polls, poller, err = threading.Event(), [0], None, []
    code, cpu = None, 0.0
    try:
        if ui:
            line = p.stderr.readline()  # type: ignore[union-attr]
            m = URL_LINE.match(line)
            if not m:
                raise RuntimeError(f"no live view address on stderr: {line.strip()!r}")
            poller = threading.Thread(target=_poll, args=(m.group(1), stop, polls), daemon=True)
            poller.start()
        reader = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        timer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
        timer.start()
        # wait4: the child's CPU with that of the workers it waited for (the whole replay's cost)
        _, status, usage = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = code = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        reader.join(5)
    finally:
        stop.set()
        if code is None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if poller is not None:
            poller.join(5)
    if code != 0:
        raise RuntimeError(f"replay failed (exit {code}): {last_line(''.join(err))}")
    rows, seconds, bad = replay_window(out)
    return {"rows": rows, "seconds": seconds, "rate": rows / seconds, "bad": bad, "polls": polls[0], "cpu": cpu}


def hook_cost(rows: int = 200_000, chunk: int = 1000) -> tuple[float, float]:
    """In-process: CPU µs per request row of the live figures' accounting, and ms per /stats.json snapshot."""
    import numpy as np

    from wdmreplay.replayer.live import LiveStats

    rng = np.random.default_rng(1)
    chunks = []
    for i in range(rows // chunk):
        t = np.sort(rng.uniform(i * 0.05, i * 0.05 + 0.5, chunk))
        chunks.append({"outcome": rng.choice([0, 0, 0, 1, 2], chunk).astype("<u1").tobytes(),
                       "intended": t.tobytes(), "sent": t.tobytes(), "done": (t + 0.002).tobytes(),
                       "op": rng.integers(0, 10, chunk).astype("<u1").tobytes(),
                       "status": np.full(chunk, 200, "<u2").tobytes()})
    stats = LiveStats(rows)
    t0 = time.process_time()
    for c in chunks:
        stats.add_chunk(c)
    per_row = (time.process_time() - t0) / rows * 1e6
    t0 = time.process_time()
    for _ in range(50):
        stats.snapshot()
    return per_row, (time.process_time() - t0) / 50 * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100000, help="requests in the trace")
    ap.add_argument("--rounds", type=int, default=3, help="replays each way")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=300, help="seconds one replay may take before it is killed")
    args = ap.parse_args()
    install_cleanup()
    work = Path(tempfile.mkdtemp(prefix="wdm-live-bench-"))
    trace = work / "stress.wdmt"
    header, how = stress_trace(trace, args.requests)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    import shutil

    with StaticTarget(prefer="nginx" if shutil.which("nginx") else "raw") as target:
        for r in range(args.rounds):
            for ui in ((False, True) if r % 2 == 0 else (True, False)):
                res = replay_once(trace, work / f"r{r}-{int(ui)}.wdmr", target.url, ui=ui,
                                  concurrency=args.concurrency, timeout=args.timeout)
                runs[ui].append(res)
                print(f"  round {r + 1} {'--ui ' if ui else 'plain'}: {res['rows']:,} requests in "
                      f"{res['seconds']:.2f} s = {res['rate']:,.0f} req/s, CPU {res['cpu']:.2f} s"
                      + (f", {res['polls']} polls of /stats.json" if ui else "")
                      + (f"  (not ok: {res['bad']})" if res["bad"] else ""), flush=True)
    plain = statistics.median(x["rate"] for x in runs[False])
    live = statistics.median(x["rate"] for x in runs[True])
    print(f"live view overhead: {header['requests']:,} requests ({how}), --speed max --concurrency "
          f"{args.concurrency}, target {target.kind}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"  median rate: plain {plain:,.0f} req/s   --ui {live:,.0f} req/s   ratio --ui/plain {live / plain:.3f}"
          f"  (target >= 0.95)")
    cpu_plain = statistics.median(x["cpu"] for x in runs[False])
    cpu_live = statistics.median(x["cpu"] for x in runs[True])
    print(f"  median CPU of the replay (coordinator + workers): plain {cpu_plain:.2f} s   --ui {cpu_live:.2f} s   "
          f"ratio {cpu_live / cpu_plain:.3f}")
    per_row, snap_ms = hook_cost()
    cpu_per_request = cpu_plain / statistics.median(x["rows"] for x in runs[False]) * 1e6
    print(f"  hook, in process: {per_row:.2f} µs CPU per request row + {snap_ms:.2f} ms per /stats.json "
          f"(once a second) = {per_row / cpu_per_request:.2%} of the replay's {cpu_per_request:.1f} µs CPU per request")
    for f in work.iterdir():
        f.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
