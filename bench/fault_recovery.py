"""Benchmark: recovery of the reference shop (a process on loopback) killed -9 mid-replay and restarted.

Serves ``wdm-replay serve`` (in memory, or ``--data DIR`` when the durable shop is installed and
``--durable`` is given) as a subprocess, generates a stress trace, and replays it with a fault
schedule that kills the shop at ``--at`` seconds and restarts it ``--for`` seconds later — once with
an ``undo`` that returns at once (like ``docker compose start``) and once with one that waits until
the shop listens. Prints per variant: the window, its requests and error share, time to first
success, recovery time (docs/faults.md) and the ``check`` verdict.

    python bench/fault_recovery.py
    python bench/fault_recovery.py --rate 80 --duration 20 --at 5 --for 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

RESTART = '''
import socket, subprocess, sys, time
port, pidfile, log, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "wait"
extra = sys.argv[5:]
p = subprocess.Popen([sys.executable, "-m", "wdmreplay", "serve", "--port", str(port), *extra],
                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
open(pidfile, "w").write(str(p.pid))
while wait:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        break
    except OSError:
        if p.poll() is not None:
            sys.exit(4)
        time.sleep(0.05)
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--at", type=float, default=3.0)
    ap.add_argument("--for", dest="duration_for", type=float, default=2.0)
    ap.add_argument("--durable", action="store_true", help="serve --data DIR (needs the durable shop)")
    a = ap.parse_args()
    py = [sys.executable, "-m", "wdmreplay"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script, pidfile, log = tmp / "restart.py", tmp / "shop.pid", tmp / "shop.log"
        script.write_text(RESTART)
        extra = ["--data", str(tmp / "data")] if a.durable else []
        start = [sys.executable, str(script), str(port), str(pidfile), str(log)]
        subprocess.run(start + ["wait", *extra], check=True, timeout=120)
        try:
            subprocess.run(py + ["generate-trace", "stress", "--rate", str(a.rate), "--duration", str(a.duration),
                                 "--seed", "3", "-o", str(tmp / "t.wdmt")], check=True, capture_output=True)
            print(f"stress {a.rate:g} sessions/s for {a.duration:g} s; kill -9 at {a.at:g} s, restart "
                  f"{a.duration_for:g} s later; {'durable' if a.durable else 'in-memory'} shop")
            print(f"{'undo':<22}{'window s':>16}{'requests':>10}{'err%':>7}{'first ok s':>12}{'recovery s':>12}  verdict")
            for wait in ("nowait", "wait"):
                sched = tmp / "faults.json"
                sched.write_text(json.dumps({"faults": [{
                    "name": "kill-shop", "at": a.at, "for": a.duration_for, "do": f"kill -9 $(cat {pidfile})",
                    "undo": start + [wait, *extra]}]}))
                out = tmp / f"{wait}.wdmr"
                r = subprocess.run(py + ["replay", str(tmp / "t.wdmt"), "--url", f"http://127.0.0.1:{port}",
                                         "--faults", str(sched), "--timeout", "5", "--settle", "1", "-q",
                                         "-o", str(out)], capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"replay failed: {r.stderr.strip()}")
                rep = json.loads(subprocess.run(py + ["report", str(out), "--format", "json"], capture_output=True,
                                                text=True, check=True).stdout)
                (w,) = rep["faults"]["windows"]
                verdict = rep["check"]["verdict"] if rep["check"] else "-"

                def s(x: float | None) -> str:
                    return "not recovered" if x is None else f"{x:.2f}"

                label = "returns at once" if wait == "nowait" else "waits until listening"
                print(f"{label:<22}{w['start']:>7.2f} -> {w['end']:>5.2f}{w['requests']:>10}"
                      f"{100 * (w['error_share'] or 0):>7.1f}{s(w['first_success_s']):>12}{s(w['recovery_s']):>12}  {verdict}")
        finally:
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


if __name__ == "__main__":
    main()
