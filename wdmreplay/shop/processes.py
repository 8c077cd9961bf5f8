"""The durable split shop as three real processes (``serve --split --only S --data DIR``), for fault runs.

Each service runs in its own ``wdm-replay serve`` process on a fixed loopback port, so one can be
killed (SIGKILL) and restarted on the same URL while the others keep serving — what
``demo --faults`` and the kill tests need. Example::

    with SplitProcesses(data_dir) as shop:
        replay_trace(..., target=shop.target)
        shop.kill("stock")
        shop.start("stock")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from ..api import Target
from .app import ShopError

SERVICES = ("stock", "payment", "orders")  # start order: the order service's peers first


def serve_command() -> list[str]:
    """The argv prefix that runs this installation's ``wdm-replay``."""
    exe = shutil.which("wdm-replay", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "wdmreplay"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SplitProcesses:
    """Order, stock and payment services, each a ``serve --split --only`` process sharing ``data``."""

    def __init__(self, data: str, extra: tuple[str, ...] = (), start_timeout_s: float = 60.0):
        self.data = data
        self.extra = list(extra)
        self.start_timeout_s = start_timeout_s
        self.ports = {s: _free_port() for s in SERVICES}
        self.procs: dict[str, subprocess.Popen] = {}

    def url(self, service: str) -> str:
        """Base URL of ``service``."""
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def target(self) -> Target:
        """The shop as a replay target."""
        return Target(self.url("orders"), self.url("payment"), self.url("stock"))

    def argv(self, service: str) -> list[str]:
        """The command line that starts ``service`` (a fault schedule's ``undo`` may run it)."""
        args = serve_command() + ["serve", "--split", "--only", service, "--port", str(self.ports[service]),
                                  "--data", self.data, *self.extra]
        if service == "orders":
            args += ["--stock-url", self.url("stock"), "--payment-url", self.url("payment")]
        return args

    def pid(self, service: str) -> int:
        """The process id of the running ``service`` (for ``kill -9 PID`` in a fault schedule)."""
        return self.procs[service].pid

    def start(self, service: str | None = None) -> "SplitProcesses":
        """Start ``service`` (default: all three) and wait until it listens."""
        for name in (service,) if service else SERVICES:
            proc = subprocess.Popen(self.argv(name), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.procs[name] = proc
            end = time.monotonic() + self.start_timeout_s
            while True:
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                    raise ShopError(f"the {name} service exited at start: {err[-1] if err else proc.returncode}")
                try:
                    with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > end:
                        self.stop()
                        raise ShopError(f"the {name} service did not listen within {self.start_timeout_s:g} s")
                    time.sleep(0.05)
        return self

    def kill(self, service: str) -> None:
        """SIGKILL ``service`` and reap it (no clean shutdown: what a crash looks like)."""
        proc = self.procs[service]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop every service cleanly (SIGTERM; SIGKILL after 15 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            if proc.stderr:
                proc.stderr.close()

    def __enter__(self) -> "SplitProcesses":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
