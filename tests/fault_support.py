"""A reference shop as a real subprocess that fault schedules kill (-9) and restart on the same port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RESTART = '''
import socket, subprocess, sys, time
port, pidfile, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = subprocess.Popen([sys.executable, "-m", "wdmreplay", "serve", "--port", str(port)],
                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True)
open(pidfile, "w").write(str(p.pid))
if sys.argv[4:] == ["nowait"]:  # like `docker compose start`: back before the service listens
    sys.exit(0)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        if p.poll() is not None:
            sys.exit(4)
        time.sleep(0.05)
sys.exit(5)
'''


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProcessShop:
    """``wdm-replay serve --port P`` in a subprocess, its pid in a file; started/restarted by a script."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.pidfile = tmp / "shop.pid"
        self.log = tmp / "shop.log"
        self.script = tmp / "restart_shop.py"
        self.script.write_text(RESTART)
        self.url = f"http://127.0.0.1:{self.port}"

    def start_command(self, wait: bool = True) -> list[str]:
        """The argv that starts the shop (a fault's ``undo``): returns once it listens, or at once."""
        return [sys.executable, str(self.script), str(self.port), str(self.pidfile), str(self.log),
                *([] if wait else ["nowait"])]

    def kill_command(self) -> str:
        """The shell line that kills the shop with SIGKILL (a fault's ``do``)."""
        return f"kill -9 $(cat {self.pidfile})"

    def start(self) -> None:
        """Start the shop; it listens when this returns."""
        subprocess.run(self.start_command(), check=True, timeout=90, env=_env())

    def stop(self) -> None:
        """Kill the shop's current process, if any."""
        try:
            os.kill(int(self.pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        """Whether the shop accepts connections now."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False


def _env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_schedule(path: Path, faults: list[dict]) -> Path:
    """Write a fault schedule file; its path."""
    path.write_text(json.dumps({"faults": faults}))
    return path


def wait_for(cond, timeout: float = 60.0, step: float = 0.05) -> bool:
    """Poll ``cond`` until true or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False
