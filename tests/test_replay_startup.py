"""The replay's fixed costs (issue 24): the quick exit of the command line, the probe through the lean
client, and the modules a replay without ``--faults`` never loads.

The probe talks to purpose-built raw servers on 127.0.0.1 — one that answers and one wrong in each
way a target can be (refusing, silent, hanging up, not speaking HTTP); the command line runs in
subprocesses, as a user runs it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from replay_support import closed_port
from wdmreplay.operations import get_dialect
from wdmreplay.replayer import TargetUnreachable
from wdmreplay.replayer.checks import probe_target
from wdmreplay.targets import Target

ROOT = Path(__file__).resolve().parent.parent


class RawTarget:
    """A socket server on 127.0.0.1 doing one thing to every connection (``answer``, ``garbage``,
    ``hang-up``, ``silent``); it records the first request line it read."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "RawTarget":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        try:  # wakes the thread's accept() (closing alone does not, and the join then waited 5 s)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(65536)
                self.lines.append(head.split(b"\r\n")[0].decode())
                if self.behaviour == "answer":  # any HTTP answer will do, even a 404
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    self.stop.wait(0.2)
                elif self.behaviour == "garbage":
                    conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                elif self.behaviour == "silent":
                    self.stop.wait(3)


def probe(url: str, timeout: float = 0.5) -> int:
    return probe_target(Target.single(url), get_dialect("2024"), {"stock"}, timeout)


def test_probe_sends_one_get_of_the_find_route_and_takes_any_answer():
    with RawTarget("answer") as t:
        assert probe(t.url) == 1
    assert t.lines == ["GET /stock/find/wdm-replay-probe HTTP/1.1"]


@pytest.mark.parametrize("behaviour,words", [("garbage", ": invalid HTTP response"),
                                             ("hang-up", ": server disconnected"),
                                             ("silent", None)])
def test_probe_names_each_way_a_target_fails_in_one_line(behaviour, words):
    with RawTarget(behaviour) as t:
        with pytest.raises(TargetUnreachable) as e:
            probe(t.url)
    message = str(e.value)
    assert "\n" not in message
    if words is None:
        assert message == f"target {t.url} did not answer within 0.5 s"
    else:
        assert message.startswith(f"cannot reach target {t.url}{words}")


def test_probe_of_a_closed_port_says_cannot_reach():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TargetUnreachable, match=f"^cannot reach target {url}: ") as e:
        probe(url)
    assert "\n" not in str(e.value)


def test_probe_and_final_read_module_load_no_aiohttp():
    # A fresh interpreter: pytest itself has aiohttp loaded.
    with RawTarget("answer") as t:
        code = textwrap.dedent(f"""
            import sys
            from wdmreplay.operations import get_dialect
            from wdmreplay.replayer.checks import probe_target
            from wdmreplay.replayer.final import scan_trace
            from wdmreplay.targets import Target
            assert probe_target(Target.single({t.url!r}), get_dialect("2024"), {{"stock"}}, 1.0) == 1
            print(sorted(m for m in ("aiohttp", "wdmreplay.replayer.fault_schedule") if m in sys.modules))
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == "[]\n"


def test_replay_without_faults_loads_no_fault_runner(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    gen = subprocess.run([sys.executable, "-m", "wdmreplay", "generate-trace", "stress", "--requests", "20",
                          "--quiet", "-o", str(trace)], capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "wdmreplay", "replay", str(trace), "--url", shop.url,
                        "--speed", "max", "--quiet", "-o", str(out)], capture_output=True, text=True, timeout=120)
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    others = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 0 and others == [], others
    assert "wdmreplay.replayer.coordinator" in imported  # the listing is the replay's own
    assert "wdmreplay.replayer.fault_schedule" not in imported
    assert out.exists()


# --- the coordinator's wait -----------------------------------------------------------------------------------


def test_a_signal_wakes_the_coordinator_at_once_not_at_its_next_poll(shop, tmp_path, monkeypatch):
    import os
    import signal
    import time

    from replay_support import write_trace
    from wdmreplay.replayer import coordinator, replay_trace
    from wdmreplay.traces import load_results, step

    # A poll far longer than the test: only the signal's wake-up can end the wait in time.
    monkeypatch.setattr(coordinator, "POLL", 60.0)
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [5], bind="$s0.item")]),
                         (3600.0, [step("create_item", [5], bind="$s1.item")])]])  # an hour away
    sent: list[float] = []

    def interrupt_after_the_first() -> None:
        deadline = time.monotonic() + 30
        while not (out.with_name(out.name + ".part").exists() or out.exists()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.2)  # the first request answered and its row and binding sent (0.5 s ticks): all quiet
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_after_the_first)
    t.start()
    s = replay_trace(trace, out, target=shop.url, speed=1.0, final_read=False)
    took = time.monotonic() - sent[0]
    t.join()
    assert not s.complete and s.reason == "interrupted"
    assert took < 5.0, took  # a wait that noticed the signal only at its next poll would take a minute
    assert load_results(out).n == 1


# --- the quick exit -------------------------------------------------------------------------------------------


def run_entry(body: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``body`` then ``wdmreplay.cli.entry()`` with ``argv`` in a fresh interpreter (the console script's way)."""
    code = "import sys\n" + textwrap.dedent(body) + "\nfrom wdmreplay.cli import entry\nsys.argv[1:] = " + \
        repr(list(argv)) + "\nentry()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_quick_exit_keeps_the_exit_code_the_error_line_and_runs_exit_handlers(tmp_path):
    marker = tmp_path / "atexit-ran"
    body = f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')"
    r = run_entry(body, "replay", str(tmp_path / "missing.wdmt"), "--quiet")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("wdm-replay: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert marker.read_text() == "yes"


def test_quick_exit_flushes_everything_printed_to_a_pipe():
    r = run_entry("", "--help")
    # the same command ended by the interpreter's own exit (main, not entry)
    normal = subprocess.run([sys.executable, "-c", "import sys\nfrom wdmreplay.cli import main\nmain(['--help'])\n"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == normal.returncode == 0 and r.stderr == normal.stderr == ""
    assert r.stdout == normal.stdout and "Usage: wdm-replay" in r.stdout and len(r.stdout) > 1000


def test_quick_exit_waits_for_a_running_thread_as_a_normal_exit_does(tmp_path):
    marker = tmp_path / "thread-done"
    body = f"""
        import threading, time, pathlib
        def late():
            time.sleep(0.3)
            pathlib.Path({str(marker)!r}).write_text("done")
        threading.Thread(target=late).start()
    """
    r = run_entry(body, "--version")
    assert r.returncode == 0 and r.stdout.startswith("wdm-replay, version")
    assert marker.read_text() == "done"


def test_sys_exit_with_a_message_prints_it_and_exits_1():
    code = "import sys\nimport wdmreplay.cli as c\n" \
           "c.main = lambda: sys.exit('wdm-replay: something went wrong')\nc.entry()\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1 and r.stderr == "wdm-replay: something went wrong\n" and r.stdout == ""
