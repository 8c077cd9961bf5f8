"""``wdm-replay serve`` as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from shop_http import ShopClient
from wdmreplay.targets import Target


def _command() -> list[str]:
    exe = shutil.which("wdm-replay", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "wdmreplay"]


class Served:
    """A ``wdm-replay serve`` subprocess whose stdout is read line by line in the background."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(_command() + ["serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                m = re.search(pattern, line)
                if m:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}")
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                pass

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=20)
        return rc, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def served():
    started: list[Served] = []

    def start(*args: str) -> Served:
        s = Served(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def test_serve_port_0_prints_port_and_stops_cleanly_on_sigterm(served):
    s = served("--port", "0")
    url = s.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    c = ShopClient(Target.single(url))
    assert c.stock(c.item(2, stock=4)) == 4
    s.wait_for(r'"ORDER_URL": "http://127\.0\.0\.1:\d+"')
    rc, err = s.stop(signal.SIGTERM)
    assert rc == 0 and err == ""


def test_serve_split_prints_three_services_and_stops_on_ctrl_c(served):
    s = served("--split", "--port", "0", "--dialect", "2024")
    urls = {name: s.wait_for(rf"{name}\s+service on (http://\S+)").group(1) for name in ("orders", "stock", "payment")}
    assert len(set(urls.values())) == 3
    s.wait_for(r"urls.json")
    c = ShopClient(Target(urls["orders"], urls["payment"], urls["stock"]))
    item, user = c.item(3, stock=2), c.user(10)
    c.ok("checkout", c.order(user, (item, 2)))
    assert (c.stock(item), c.credit(user)) == (0, 4)
    rc, err = s.stop(signal.SIGINT)
    assert rc == 0 and err == ""


def test_serve_announces_an_injected_bug_loudly(served):
    s = served("--port", "0", "--inject", "double-charge", "--latency", "1", "--error-rate", "0.1")
    s.wait_for(r"BUG INJECTED: --inject double-charge")
    s.wait_for(r"charges the user twice")
    s.wait_for(r"faults: latency \+1 ms")
    rc, err = s.stop(signal.SIGTERM)
    assert rc == 0 and err == ""


def test_serve_port_in_use_is_a_one_line_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        r = subprocess.run(_command() + ["serve", "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in r.stderr


def test_serve_rejects_bad_options_without_traceback():
    r = subprocess.run(_command() + ["serve", "--inject", "nonsense"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nonsense" in r.stderr
    r = subprocess.run(_command() + ["serve", "--error-rate", "2"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_serve_help_shows_examples():
    r = subprocess.run(_command() + ["serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "wdm-replay serve --split --port 8000" in r.stdout
    assert "--inject KIND[:RATE]" in r.stdout and "apply-then-500" in r.stdout
    assert "wdm-replay serve --inject apply-then-500:0.2" in r.stdout


@pytest.mark.parametrize("ms", [0.3, 0.8, 5.0])
def test_added_latency_is_what_was_asked_even_below_a_millisecond(ms):
    # uvloop's timers step in milliseconds: a plain sleep(0.0003) would add nothing at all.
    import time

    from wdmreplay.shop.app import added_latency

    async def measure() -> float:
        t = time.perf_counter()
        for _ in range(20):
            await added_latency(ms / 1000)
        return (time.perf_counter() - t) / 20 * 1000

    import uvloop  # the test extra has it; the shop runs on it when installed

    took = uvloop.run(measure())
    assert ms * 0.95 <= took <= ms + 2.0
