"""``record``: the capture proxy over real loopback HTTP — forwarding, stopping, and the done-when test:
Locust's six scenarios through the proxy, the trace replayed on a fresh shop, checked CLEAN."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from replay_support import TinyTarget
from wdmreplay.analysis import check_results
from wdmreplay.operations import OP_NAMES
from wdmreplay.targets import Target, load_urls
from wdmreplay.capture.proxy import CaptureProxy
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import ShopThread
from wdmreplay.traces import TraceReader, load_results

ROOT = Path(__file__).resolve().parent.parent


class CaptureThread:
    """A :class:`CaptureProxy` on its own event loop in a background thread, as these tests drive it.

    ``with CaptureThread(target) as c:`` … point clients at ``c.url`` … ``c.stop()`` drains and
    closes; then ``c.write_trace(path)``.
    """

    def __init__(self, target: Target, *, max_requests: int | None = None, grace: float = 30.0,
                 host: str = "127.0.0.1", port: int = 0):
        self._args = (target, max_requests, grace, host, port)
        self.proxy: CaptureProxy | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        target, max_requests, grace, host, port = self._args
        loop = self._loop = asyncio.new_event_loop()
        try:
            self.proxy = CaptureProxy(target, max_requests=max_requests, grace=grace)
            self.url = loop.run_until_complete(self.proxy.start(host, port))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_until_complete(self.proxy.run_until_stopped())
        loop.close()

    def start(self) -> "CaptureThread":
        """Start the proxy; returns once it listens (or raises what stopped it)."""
        self._thread = threading.Thread(target=self._run, name="wdm-capture", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, reason: str = "stopped") -> None:
        """Stop the capture and wait until requests in flight are done and both sides are closed."""
        if self._loop is not None and self.proxy is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self.proxy.request_stop, reason)
            self._thread.join(60)

    def write_trace(self, output: str | Path, **kw: Any) -> dict:
        """Write the trace of what was captured (after :meth:`stop`)."""
        assert self.proxy is not None
        return self.proxy.write_trace(output, **kw)

    def __enter__(self) -> "CaptureThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _trace_ops(path) -> Counter:
    with TraceReader(path) as r:
        return Counter(st["op"] for s in r for st in s["steps"])


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_locust_six_scenarios_through_the_proxy_replay_clean_on_a_fresh_shop(tmp_path, dialect):
    trace = tmp_path / "locust.wdmt"
    with ShopThread() as live:
        with CaptureThread(live.target) as cap:
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       WDM_DIALECT=dialect)
            run = subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                 "-u", "8", "-r", "8", "-t", "3s", "--stop-timeout", "20", "--host", cap.url,
                 "--json", "--exit-code-on-error", "0", "FastShopUser"],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr[-2000:]
            cap.stop()
        live_stats = live.stats()
        header = cap.write_trace(trace)
    # Locust's own final count of what it sent, per operation (its request names are the operations).
    locust_counts = {e["name"]: e["num_requests"] for e in json.loads(run.stdout)}
    traced = _trace_ops(trace)
    forwarded = header["params"]["forwarded"]
    assert forwarded > 50, forwarded
    # Exactly the forwarded requests: what Locust sent, what the shop received, what the trace holds.
    assert header["requests"] == forwarded == sum(locust_counts.values()) == live_stats["requests"]
    assert dict(traced) == locust_counts
    for op, n in traced.items():
        assert live_stats["by_op"].get(op, 0) == n, op
    assert header["workload"] == "recorded" and header["dialect"] == dialect
    assert header["params"]["unmatched"] == 0 and header["params"]["symbols"] > 0
    assert set(traced) >= {"create_item", "add_stock", "create_user", "add_funds", "create_order", "add_item",
                           "checkout"}
    if dialect == "2023":  # scenario 4 (add, remove, add, checkout) exists only in 2023
        assert traced["remove_item"] > 0
    # The recorded trace states what it exercises, as a generated one does: the seed's six scenarios
    # check out (double charge, paid flag) but never add one item twice nor check out twice.
    ex = header["exercises"]
    assert ex["double_charge"] > 0 and ex["paid_flag_not_set"] == ex["double_charge"]
    assert ex["repeated_item_collapsed"] == 0 and ex["recheckout_charged"] == 0

    with ShopThread() as fresh:
        out = tmp_path / "replay.wdmr"
        summary = replay_trace(str(trace), str(out), target=fresh.target, speed=4.0, concurrency=64)
    res = load_results(out, with_args=True)
    assert summary.complete
    ops = res.cols["op"]
    replayed = Counter({OP_NAMES[c]: int(n) for c, n in zip(*np.unique(ops, return_counts=True))})
    assert replayed == traced
    assert int((res.cols["outcome"] == res.header["outcomes"].index("skipped")).sum()) == 0
    report = check_results(res)
    assert report.verdict.verdict == "CLEAN", report.verdict.reasons()
    assert report.bug_classes.stated and "repeated_item_collapsed" in report.bug_classes.not_exercised


def test_proxy_forwards_status_headers_and_body_unchanged_and_keeps_connections(tmp_path):
    big = bytes(range(256)) * 4096  # 1 MiB, streamed through

    def behave(method, path):
        if path == "/stock/big":
            return 200, big, 0
        if path.startswith("/payment/create_user"):
            return 201, b'{"user_id": "u7"}', 0
        return 418, b"teapot", 0

    with TinyTarget(behave) as tiny:
        with CaptureThread(Target.single(tiny.url)) as cap:
            async def client():
                conn = aiohttp.TCPConnector(limit=1)
                async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as s:
                    got = []
                    for method, path, data in (("GET", "/stock/big", None), ("POST", "/payment/create_user", b"x" * 70000),
                                               ("POST", "/orders/checkout/u7", None)):
                        async with s.request(method, cap.url + path, data=data) as r:
                            got.append((r.status, r.headers.get("Content-Type"), await r.read()))
                    return got, len(conn._conns)  # idle pooled connections: one, reused
            got, pooled = asyncio.run(client())
            cap.stop()
        header = cap.write_trace(tmp_path / "t.wdmt")
    assert got[0] == (200, "application/json", big)
    assert got[1][0] == 201 and got[1][2] == b'{"user_id": "u7"}'
    assert got[2][:1] == (418,) and got[2][2] == b"teapot"
    assert tiny.seen == [("GET", "/stock/big"), ("POST", "/payment/create_user"), ("POST", "/orders/checkout/u7")]
    assert pooled == 1 and header["params"]["connections"] == 1
    assert header["params"]["forwarded"] == 3 and header["params"]["unmatched"] == 1
    with TraceReader(tmp_path / "t.wdmt") as r:
        (session,) = list(r)
    assert [(s["op"], s["args"], s["expect"]) for s in session["steps"]] == [
        ("create_user", [], "ok"), ("checkout", ["u7"], "fail")]


def test_urls_route_each_service_to_its_own_base_url(tmp_path):
    urls = tmp_path / "urls.json"
    with ShopThread(split=True) as live:
        urls.write_text(json.dumps(live.target.as_dict()))
        with CaptureThread(load_urls(urls)) as cap:
            def post(path):
                req = urllib.request.Request(cap.url + path, method="POST", data=b"")
                with urllib.request.urlopen(req, timeout=10) as r:
                    return json.loads(r.read() or b"null") if r.headers.get("Content-Type", "").startswith(
                        "application/json") else r.status
            item = post("/stock/item/create/2")["item_id"]
            post(f"/stock/add/{item}/5")
            user = post("/payment/create_user")["user_id"]
            post(f"/payment/add_funds/{user}/10")
            order = post(f"/orders/create/{user}")["order_id"]
            post(f"/orders/addItem/{order}/{item}/2")
            post(f"/orders/checkout/{order}")
            post(f"/payment/pay/{user}/1")  # 2024's pay names no order
            cap.stop()
        header = cap.write_trace(tmp_path / "t.wdmt")
        snap, where = live.snapshot(), live.target.as_dict()
    assert len(set(where.values())) == 3  # three services, three ports
    assert snap["items"][item]["stock"] == 3 and snap["users"][user]["credit"] == 5
    assert header["requests"] == 8 and header["params"]["upstream"] == where
    with ShopThread(split=True) as fresh:
        out = tmp_path / "t.wdmr"
        replay_trace(str(tmp_path / "t.wdmt"), str(out), target=fresh.target, speed=None)
        again = fresh.snapshot()
    assert [u["credit"] for u in again["users"].values()] == [5]
    report = check_results(load_results(out, with_args=True))
    assert report.verdict.verdict == "CLEAN", report.verdict.reasons()
    with TraceReader(tmp_path / "t.wdmt") as r:
        steps = [st for s in r for st in s["steps"]]
    assert [st["op"] for st in steps if st["bind"]] == ["create_item", "create_user", "create_order"]
    assert steps[-2]["op"] == "checkout" and steps[-2]["args"] == ["$r4.order"]
    assert steps[-1]["op"] == "pay" and steps[-1]["args"] == ["$r2.user", None, 1]


def test_request_limit_stops_and_refuses_the_rest(tmp_path):
    with ShopThread() as live:
        with CaptureThread(live.target, max_requests=3) as cap:
            codes = []
            for _ in range(5):
                req = urllib.request.Request(cap.url + "/payment/create_user", method="POST", data=b"")
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        codes.append(r.status)
                except urllib.error.HTTPError as e:
                    codes.append(e.code)
                except (urllib.error.URLError, ConnectionError):
                    codes.append(0)  # the proxy stopped listening
            cap._thread.join(30)  # it stops by itself
            assert not cap._thread.is_alive()
        header = cap.write_trace(tmp_path / "t.wdmt")
        assert live.stats()["requests"] == 3
    assert codes[:3] == [200, 200, 200] and all(c != 200 for c in codes[3:])
    assert header["requests"] == 3 and header["params"]["stopped_by"] == "requests"


def _start_record(upstream: str, out: Path, cwd: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``wdm-replay record`` as a user starts it, on a free port; (the process, the URL it records on)."""
    proc = subprocess.Popen([sys.executable, "-m", "wdmreplay.cli", "record", "--upstream", upstream,
                             "--listen", "127.0.0.1:0", *extra, "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    line = proc.stdout.readline()
    if not line.startswith("recording on http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(line + proc.communicate()[1])
    return proc, line.split()[2]


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "terminate"), (signal.SIGINT, "interrupt")])
def test_cli_record_stops_on_a_signal_and_writes_a_trace_inspect_shows(tmp_path, sig, name):
    with ShopThread() as live:
        out = tmp_path / "cli.wdmt"
        proc, url = _start_record(live.url, out, tmp_path)
        try:
            req = urllib.request.Request(url + "/stock/item/create/4", method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=10) as r:
                item = json.loads(r.read())["item_id"]
            with urllib.request.urlopen(url + f"/stock/find/{item}", timeout=10) as r:
                assert json.loads(r.read()) == {"stock": 0, "price": 4}
            proc.send_signal(sig)
            rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0 and err == "", err
    assert "2 requests in 1 session," in rest and "0 unmatched" in rest
    shown = subprocess.run([sys.executable, "-m", "wdmreplay.cli", "inspect", str(out)], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "recorded" in shown.stdout and f"stopped_by={name}" in shown.stdout
    with ShopThread() as fresh:  # replay and check it through the CLI, like any trace
        run = tmp_path / "cli.wdmr"
        replayed = subprocess.run([sys.executable, "-m", "wdmreplay.cli", "replay", str(out), "--url", fresh.url,
                                   "-o", str(run), "--quiet"], capture_output=True, text=True, timeout=120)
        assert replayed.returncode == 0, replayed.stderr
    checked = subprocess.run([sys.executable, "-m", "wdmreplay.cli", "check", str(run)], capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0 and "CLEAN" in checked.stdout, checked.stdout + checked.stderr


def test_cli_record_user_errors_are_one_line(tmp_path):
    for args, text in ((["--upstream", "http://127.0.0.1:1", "--urls", "u.json"], "exactly one of"),
                       (["--upstream", "ftp://x"], "bad base URL"),
                       (["--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:99999"], "--listen"),
                       # a bare port: the same rule and advice as replay --ui (one parser for both)
                       (["--upstream", "http://127.0.0.1:1", "--listen", "9000"], "name the host too: --listen=127.0.0.1:9000"),
                       (["--upstream", "http://127.0.0.1:1", "--phase-gap", "nan"], "finite"),
                       (["--upstream", "http://127.0.0.1:1", "--requests", "1", "--duration", "0.2"], "nothing was captured")):
        r = subprocess.run([sys.executable, "-m", "wdmreplay.cli", "record", "--listen", "127.0.0.1:0", *args]
                           if "--listen" not in args else [sys.executable, "-m", "wdmreplay.cli", "record", *args],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert r.returncode != 0 and text in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("output", ["{file}/trace.wdmt", "{tmp}/no-such-dir/trace.wdmt", ""])
def test_cli_record_refuses_an_output_it_cannot_write_before_it_captures(tmp_path, output):
    # The trace is written when the capture stops: an -o it cannot write must fail before the proxy
    # listens, not after minutes of captured traffic are lost.
    (tmp_path / "a-file").write_text("x")
    out = output.format(file=tmp_path / "a-file", tmp=tmp_path)
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "record", "--upstream", "http://127.0.0.1:1",
                        "--listen", "127.0.0.1:0", "--duration", "2", "-o", out],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "recording on" not in r.stdout, r.stdout  # the proxy never started
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("cannot write here" in r.stderr) if out else ("output file name is empty" in r.stderr), r.stderr


class _BreakingUpstream:
    """A raw loopback server whose answers break off: ``create`` paths get 15 of 100 bytes of a small
    answer, ``find`` paths 20 KB of a 100 KB one (streamed by the proxy); then it closes the connection."""

    def __enter__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                if b"/find/" in head.split(b"\r\n")[0]:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 20000)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                                 b'{"item_id": "ab')

    def __exit__(self, *exc):
        self.sock.close()


def test_an_upstream_that_breaks_off_its_answer_is_recorded_unanswered_without_a_traceback(tmp_path, caplog):
    # aiohttp's ClientPayloadError escaped the proxy's handler: a traceback on stderr ("Error handling
    # request"), the client answered 500 by aiohttp, and the request recorded as answered 200 (the
    # status line was all that came), so the trace expected "ok" of a request that never succeeded.
    import logging

    caplog.set_level(logging.ERROR)
    with _BreakingUpstream() as up:
        with CaptureThread(Target.single(up.url), grace=5) as cap:
            async def client():
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                    async with s.post(cap.url + "/stock/item/create/5") as r:
                        small = (r.status, await r.read())
                    try:
                        async with s.get(cap.url + "/stock/find/x") as r:
                            await r.read()
                        streamed = "complete"
                    except aiohttp.ClientPayloadError:
                        streamed = "cut off"
                    return small, streamed
            small, streamed = asyncio.run(client())
            cap.stop()
        header = cap.write_trace(tmp_path / "t.wdmt")
    assert small[0] == 502 and b"broke off" in small[1]
    assert streamed == "cut off"  # the status line had gone out: the client sees the answer incomplete
    assert header["params"]["answers"] == {"none": 2}
    with TraceReader(tmp_path / "t.wdmt") as r:
        steps = [st for s in r for st in s["steps"]]
    assert [(st["op"], st["expect"]) for st in steps] == [("create_item", "any"), ("find_item", "any")]
    assert not [rec for rec in caplog.records if rec.exc_info], [rec.getMessage() for rec in caplog.records]


def test_cli_record_second_ctrl_c_ends_the_grace_at_once(tmp_path):
    # An upstream that never answers held `record` for the whole --grace after Ctrl-C, and a second
    # Ctrl-C (or SIGTERM) did nothing: the user waited out the grace (30 s by default) or killed it -9,
    # losing the trace. Now the second signal cuts the wait; the request in flight is recorded unanswered.
    import socket
    import threading
    import time

    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(4)
    got = threading.Event()
    held = []

    def silent():
        conn, _ = upstream.accept()
        held.append(conn)
        conn.recv(65536)
        got.set()

    threading.Thread(target=silent, daemon=True).start()
    out = tmp_path / "hung.wdmt"
    proc, url = _start_record(f"http://127.0.0.1:{upstream.getsockname()[1]}", out, tmp_path, "--grace", "120")
    try:
        def client():
            try:
                urllib.request.urlopen(urllib.request.Request(url + "/stock/item/create/4", method="POST", data=b""),
                                       timeout=60).read()
            except (OSError, urllib.error.URLError):
                pass

        threading.Thread(target=client, daemon=True).start()
        assert got.wait(30)  # the request is upstream, unanswered
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the first signal: the grace wait for the request in flight
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)  # not the 120 s of --grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        upstream.close()
        for c in held:
            c.close()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "1 request in 1 session," in rest
    with TraceReader(out) as r:
        assert r.header["params"]["answers"] == {"none": 1}


def test_cli_record_signals_while_the_trace_is_written_do_not_lose_the_capture(tmp_path):
    # After the capture stopped, asyncio's signal handlers were removed before the trace was written,
    # which put SIGTERM back to its default: a SIGTERM then (a second `docker stop`, a supervisor)
    # killed the process mid-write and everything captured was lost. Now the write happens while the
    # loop still owns the signals. SIGTERMs are sent every 2 ms from the stop until the trace is in
    # place (written as .part and renamed), so some land while a capture of a few thousand requests is
    # turned into a trace.
    import threading
    import time

    from wdmreplay.workloads import generate

    source = tmp_path / "src.wdmt"
    generate("stress", source, seed=2, rate=400.0, duration=5.0)
    with ShopThread() as live:
        out = tmp_path / "big.wdmt"
        proc, url = _start_record(live.url, out, tmp_path)
        try:
            summary = replay_trace(str(source), str(tmp_path / "through.wdmr"), target=Target.single(url),
                                   speed=None, final_read=False, progress=False)
            assert summary.outcomes["ok"] > 1000
            def spam():
                end = time.monotonic() + 30
                while not out.exists() and time.monotonic() < end and proc.poll() is None:
                    try:
                        proc.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        return
                    time.sleep(0.002)

            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
            threading.Thread(target=spam, daemon=True).start()
            rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err)
    with TraceReader(out) as r:  # the whole capture was written: every replayed request (and the replay's probe)
        assert r.header["requests"] >= summary.sent and r.header["params"]["stopped_by"] == "interrupt"
        assert f"{r.header['requests']} requests in" in rest
