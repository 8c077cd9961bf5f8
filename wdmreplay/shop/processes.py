"""The durable split shop as three real processes (``serve --split --only S --data DIR``), for fault runs.

Each service runs in its own ``wdm-replay serve`` process on a fixed loopback port, so one can be
killed (SIGKILL) and restarted on the same URL while the others keep serving — what
``demo --faults`` and the kill tests need. Example::

    with SplitProcesses(data_dir) as shop:
        replay_trace(..., target=shop.target)
        shop.kill("stock")
        shop.start("stock")

Each service's current process id is kept in ``DIR/<service>.pid`` and its output appended to
``DIR/<service>.log``, so a fault schedule can do what the tests and ``demo --faults`` do with
plain shell lines: ``kill_command(service)`` (``kill -9 $(cat DIR/stock.pid)``) and
``restart_command(service)`` (runs ``DIR/restart-stock.sh``: starts the service in the background,
records its pid, and returns once it listens — ``docker compose start`` followed by a readiness
wait). :meth:`SplitProcesses.stop` stops whichever process the pid file names, restarted or not.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from ..targets import Target
from .app import ShopError

SERVICES = ("stock", "payment", "orders")  # start order: the order service's peers first

# What a restart script runs after starting the service in the background: waits (bounded) until
# the service listens, failing if it exits first. Exec'd by the script's shell, so the service
# stays its child and os.waitpid sees it die.
_WAIT_LISTENING = (
    "import os, socket, sys, time\n"
    "pid, port, end = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])\n"
    "while time.monotonic() < end:\n"
    "    if os.waitpid(pid, os.WNOHANG)[0]:\n"
    "        sys.exit(\"the service exited at start (see its log)\")\n"
    "    try:\n"
    "        socket.create_connection((\"127.0.0.1\", port), 0.5).close()\n"
    "        sys.exit(0)\n"
    "    except OSError:\n"
    "        time.sleep(0.05)\n"
    "sys.exit(\"the service did not listen in time\")\n"
)


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

    services: tuple[str, ...] = SERVICES

    def __init__(self, data: str, extra: tuple[str, ...] = (), start_timeout_s: float = 60.0):
        self.data = data
        self.extra = list(extra)
        self.start_timeout_s = start_timeout_s
        self.ports = {s: _free_port() for s in self.services}
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

    def pidfile(self, service: str) -> str:
        """The file holding ``service``'s current process id."""
        return os.path.join(self.data, f"{service}.pid")

    def log(self, service: str) -> str:
        """The file ``service``'s output is appended to (every start and restart)."""
        return os.path.join(self.data, f"{service}.log")

    def pid(self, service: str) -> int:
        """The process id of the running ``service``, restarted or not (from its pid file)."""
        try:
            with open(self.pidfile(service)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return self.procs[service].pid

    def kill_command(self, service: str) -> str:
        """The shell line that kills ``service`` with SIGKILL (a fault schedule's ``do``)."""
        return f"kill -9 $(cat {shlex.quote(self.pidfile(service))})"

    def restart_script(self, service: str, wait: bool = True) -> str:
        """Write the script that restarts ``service`` in the background and records its pid; its path.

        ``DIR/restart-<service>.sh`` returns once the service listens (non-zero if it exits or does
        not listen in time); with ``wait=False``, ``DIR/start-<service>.sh`` returns at once.
        """
        path = os.path.join(self.data, f"{'restart' if wait else 'start'}-{service}.sh")
        text = (f"#!/bin/sh\n"
                f"# Restart the {service} service of the durable shop in the background (what\n"
                f"# `docker compose start` does)"
                + (" and return once it listens (a readiness wait, as\n"
                   "# `kubectl wait --for=condition=Ready`); non-zero exit if it does not come up.\n" if wait else
                   ", returning at once.\n")
                + f"{shlex.join(self.argv(service))} >> {shlex.quote(self.log(service))} 2>&1 < /dev/null &\n"
                f"echo $! > {shlex.quote(self.pidfile(service))}\n")
        if wait:
            text += (f"exec {shlex.quote(sys.executable)} -c {shlex.quote(_WAIT_LISTENING)} $! {self.ports[service]} "
                     f"{self.start_timeout_s:g}\n")
        with open(path, "w") as f:
            f.write(text)
        return path

    def restart_command(self, service: str, wait: bool = True) -> str:
        """The shell line that restarts ``service`` (a fault schedule's ``undo``); by default it waits until it listens."""
        return f"sh {shlex.quote(self.restart_script(service, wait))}"

    def start(self, service: str | None = None) -> "SplitProcesses":
        """Start ``service`` (default: all three) and wait until it listens.

        When starting them all fails or is interrupted (a service that exits at start, Ctrl-C), the
        ones already started are stopped before the error goes on: ``with`` never ran ``__exit__``
        for them, and they were left running.
        """
        os.makedirs(self.data, exist_ok=True)
        if service:
            return self._start_one(service)
        try:
            for name in self.services:
                self._start_one(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_one(self, name: str) -> "SplitProcesses":
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(self.argv(name), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs[name] = proc
        with open(self.pidfile(name), "w") as f:
            f.write(f"{proc.pid}\n")
        end = time.monotonic() + self.start_timeout_s
        while True:
            if proc.poll() is not None:
                err = _last_line(self.log(name))
                raise ShopError(f"the {name} service exited at start: {err or proc.returncode}")
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
        """SIGKILL ``service`` (whichever process its pid file names) and reap it: what a crash looks like."""
        pid = self.pid(service)
        _signal(pid, signal.SIGKILL)
        self._wait_gone(service, pid, 30.0)

    def stop(self) -> None:
        """Stop every service cleanly (SIGTERM; SIGKILL after 15 s), restarted ones included."""
        pids = {name: self.pid(name) for name in self.procs}
        for pid in pids.values():
            _signal(pid, signal.SIGTERM)
        for name, pid in pids.items():
            if not self._wait_gone(name, pid, 15.0):
                _signal(pid, signal.SIGKILL)
                self._wait_gone(name, pid, 15.0)
        for proc in self.procs.values():  # the first processes, when a restart replaced them
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)

    def __enter__(self) -> "SplitProcesses":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _wait_gone(self, service: str, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` has exited (reaping it when it is our child); whether it did in time."""
        proc = self.procs.get(service)
        if proc is not None and proc.pid == pid:
            try:
                proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        end = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True



class ShopProcess(SplitProcesses):
    """The one-port durable shop (``serve --data``) as one process, with the same pid file, kill and restart."""

    services = ("shop",)

    def url(self, service: str = "shop") -> str:
        """Base URL of the shop (every service answers on it)."""
        return f"http://127.0.0.1:{self.ports['shop']}"

    @property
    def target(self) -> Target:
        """The shop as a replay target."""
        return Target.single(self.url())

    def argv(self, service: str = "shop") -> list[str]:
        """The command line that starts the shop."""
        return serve_command() + ["serve", "--port", str(self.ports["shop"]), "--data", self.data, *self.extra]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass  # already gone


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
