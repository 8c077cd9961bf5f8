"""``--concurrency N`` is a hard limit for both HTTP clients: connections open and requests in flight.

A slow raw TCP server (:class:`SlowServer`, real loopback sockets, a fixed delay per answer) counts
the connections open at once and the requests it is working on at once. More sessions are due at
once than N; both clients (``lean`` and ``aiohttp``), at a finite speed and at ``max``, and with
``--workers 2``, must stay within N, put the same load on the server, show the wait for a
connection as schedule lag (``sent - intended``) and a service time (``done - sent``) of about the
server's delay.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from replay_support import LoopThread, abort_all, write_trace
from wdmreplay.replayer import ReplayError, replay_trace
from wdmreplay.replayer.engine import split_concurrency
from wdmreplay.replayer.http import HttpClient, NotSent, Slots
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import OK, TIMEOUT

PROBE = "wdm-replay-probe"  # replay_trace's reachability probe: not counted
DELAY = 0.2  # seconds per answer


class SlowServer(LoopThread):
    """A raw HTTP/1.1 server on 127.0.0.1 (``ports`` listening sockets sharing counters) in a thread.

    Every request is answered ``{}`` after ``delay`` seconds, on a keep-alive connection.
    ``max_open`` is the most connections open at once, ``max_busy`` the most requests being
    answered at once, ``accepted`` the connections accepted and ``requests`` the requests answered —
    the probe's connection and request excluded.
    """

    def __init__(self, delay: float = DELAY, ports: int = 1):
        self.delay = delay
        self.nports = ports
        self.ports: list[int] = []
        self.open = self.max_open = self.busy = self.max_busy = 0
        self.accepted = self.requests = 0
        self._lock = threading.Lock()
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def _count(self, attr: str, delta: int) -> None:
        with self._lock:
            v = getattr(self, attr) + delta
            setattr(self, attr, v)
            peak = "max_" + attr
            if getattr(self, peak) < v:
                setattr(self, peak, v)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        counted = False
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if PROBE in head.split(b"\r\n", 1)[0].decode():
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if not counted:  # counted from its first replayed request
                    counted = True
                    self._count("open", 1)
                    with self._lock:
                        self.accepted += 1
                self._count("busy", 1)
                await asyncio.sleep(self.delay)
                self._count("busy", -1)
                with self._lock:
                    self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            if counted:
                self._count("open", -1)
            writer.close()

    async def _start(self) -> None:
        self._servers = [await asyncio.start_server(self._serve, "127.0.0.1", 0) for _ in range(self.nports)]
        self.ports = [s.sockets[0].getsockname()[1] for s in self._servers]

    async def _stop(self) -> None:
        for s in self._servers:
            s.close()
        abort_all(self._writers)
        await asyncio.sleep(0.05)


def burst_trace(path, sessions: int, steps: int = 2) -> int:
    """``sessions`` sessions all due at 0, each ``steps`` find_item requests; the request count."""
    write_trace(path, [[(0.0, [step("find_item", [str(i)], expect="any") for _ in range(steps)])
                        for i in range(sessions)]])
    return sessions * steps


# --- pure parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, workers, shares", [
    (4, 1, [4]), (4, 2, [2, 2]), (10, 4, [3, 3, 2, 2]), (5, 5, [1] * 5), (256, 3, [86, 85, 85]),
])
def test_split_concurrency_shares_sum_to_n(n, workers, shares):
    got = split_concurrency(n, workers)
    assert got == shares and sum(got) == n and min(got) >= 1


def test_split_concurrency_refuses_fewer_connections_than_workers():
    with pytest.raises(ValueError, match="less than --workers"):
        split_concurrency(2, 3)


def test_replay_refuses_fewer_connections_than_workers(tmp_path):
    trace = tmp_path / "t.wdmt"
    burst_trace(trace, 2)
    with pytest.raises(ReplayError, match="--concurrency 1 is less than --workers 2"):
        replay_trace(trace, tmp_path / "r.wdmr", target="http://127.0.0.1:9", concurrency=1, workers=2)
    assert not (tmp_path / "r.wdmr").exists()


def test_slots_hand_over_in_arrival_order_and_stop_fails_waiters():
    async def go() -> tuple[list[int], int, bool]:
        slots = Slots(1)
        slots.free -= 1  # taken
        order: list[int] = []

        async def waiter(i: int) -> None:
            await slots.wait()
            order.append(i)
            slots.release()

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0)
        tasks[1].cancel()  # a cancelled waiter neither gets nor loses a slot
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(tasks[0], tasks[2])
        free_after = slots.free
        slots.free -= 1
        late = asyncio.create_task(slots.wait())
        await asyncio.sleep(0)
        slots.stop()
        try:
            await late
        except NotSent:
            stopped = True
        else:
            stopped = False
        return order, free_after, stopped

    order, free_after, stopped = asyncio.run(go())
    assert order == [0, 2] and free_after == 1 and stopped


# --- the lean client directly ---------------------------------------------------------------------


def test_lean_client_limit_holds_across_origins():
    """Two origins share the limit: idle connections to one are closed to open one to the other."""
    with SlowServer(delay=0.05, ports=2) as srv:
        async def go() -> tuple[list, int, int]:
            client = HttpClient(5.0, limit=3)
            origins = [client.origin(srv.url(0)), client.origin(srv.url(1))]

            async def one(i: int) -> tuple[int, bytes]:
                return await origins[(i // 3) % 2].request("GET", f"/stock/find/{i}")

            got = await asyncio.gather(*(one(i) for i in range(24)))
            most = client.most_open
            await client.close()
            return got, most, client.slots.waited

        got, most, waited = asyncio.run(go())
    assert got == [(200, b"{}")] * 24
    assert srv.max_open <= 3 and srv.max_busy <= 3 and most <= 3
    assert srv.max_busy == 3 and waited >= 24 - 3  # the limit was reached, and the rest queued
    assert srv.accepted > 3  # connections were closed and reopened to switch origins


# --- whole replays --------------------------------------------------------------------------------


def replay_burst(tmp_path, client: str, speed: float | None, concurrency: int, workers: int = 1,
                 sessions: int = 12) -> tuple[SlowServer, Any, int, float]:
    """Replay a burst trace against a fresh :class:`SlowServer`: (server, results, requests, wall)."""
    trace, out = tmp_path / f"{client}.wdmt", tmp_path / f"{client}-{speed}-{workers}.wdmr"
    n = burst_trace(trace, sessions)
    with SlowServer() as srv:
        start = time.monotonic()
        s = replay_trace(trace, out, target=srv.url(), speed=speed, concurrency=concurrency, workers=workers,
                         timeout=30.0, final_read=False, client=client)
        wall = time.monotonic() - start
    assert s.complete
    return srv, load_results(out), n, wall


def check_capped_run(srv: SlowServer, r: Any, n: int, concurrency: int) -> None:
    """Every request answered once, at most ``concurrency`` connections and requests at once, and all of them used."""
    assert srv.requests == n and len(r.cols["outcome"]) == n
    assert (r.cols["outcome"] == OK).all()
    assert srv.max_open <= concurrency and srv.max_busy <= concurrency
    assert srv.max_busy == concurrency  # the same load: the cap, not less
    service = r.cols["done"] - r.cols["sent"]
    # The server's delay is all a request waits once written (a loaded machine adds a little).
    assert service.min() >= DELAY * 0.9
    assert np.quantile(service, 0.9) < DELAY + 0.25  # no wait for a connection in it (old aiohttp path: p90 1.05 s)


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_finite_speed_burst_is_capped_and_queueing_is_lag(tmp_path, client):
    srv, r, n, wall = replay_burst(tmp_path, client, speed=1.0, concurrency=4)
    check_capped_run(srv, r, n, 4)
    assert srv.accepted <= 4  # connections are reused, not one per due session
    lag = r.cols["sent"] - r.cols["intended"]
    response = r.cols["done"] - r.cols["intended"]
    # 24 requests, 4 at a time, 0.2 s each: six rounds. Whatever is not in the first round waited
    # for a connection, and that wait is in its response time, not its service time.
    assert (lag >= DELAY * 0.8).sum() >= n - 2 * 4
    assert lag.max() >= 2 * DELAY * 0.9
    assert response.max() >= 3 * DELAY * 0.9
    assert wall >= (n / 4) * DELAY * 0.9


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_max_speed_is_capped(tmp_path, client):
    srv, r, n, _ = replay_burst(tmp_path, client, speed=None, concurrency=3)
    check_capped_run(srv, r, n, 3)
    assert srv.accepted <= 3


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_workers_share_the_cap(tmp_path, client):
    srv, r, n, _ = replay_burst(tmp_path, client, speed=1.0, concurrency=4, workers=2)
    check_capped_run(srv, r, n, 4)
    assert srv.accepted <= 4
    lag = r.cols["sent"] - r.cols["intended"]
    assert lag.max() >= 2 * DELAY * 0.9  # each worker queued on its share (2 connections)


def test_both_clients_put_the_same_load(tmp_path):
    """Same trace, same cap: same requests, same peak, about the same wall time (the server sets the pace)."""
    runs = {c: replay_burst(tmp_path, c, speed=1.0, concurrency=4) for c in ("lean", "aiohttp")}
    (sl, rl, n, wl), (sa, ra, _, wa) = runs["lean"], runs["aiohttp"]
    assert sl.requests == sa.requests == n
    assert sl.max_busy == sa.max_busy == 4 and sl.accepted == sa.accepted == 4
    assert abs(wl - wa) < 0.5 * max(wl, wa)
    lag_l = np.sort(rl.cols["sent"] - rl.cols["intended"])
    lag_a = np.sort(ra.cols["sent"] - ra.cols["intended"])
    assert np.abs(lag_l - lag_a).max() < DELAY  # the same queue, request for request


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
def test_interrupt_sends_none_of_the_requests_waiting_for_a_connection(tmp_path, client):
    """Ctrl-C with 4 requests out and 6 waiting: the 4 finish (within the grace period), the 6 are never sent."""
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("find_item", [str(i)], expect="any")]) for i in range(10)]])
    # Answers in 0.3 s, inside the 0.5 s grace (coordinator.STOP_GRACE) counted from the stop: at
    # 0.5 s this passed only because the coordinator noticed the signal up to 50 ms late.
    with SlowServer(delay=0.3) as srv:
        def interrupt_when_four_are_out() -> None:
            srv.wait_for(lambda: srv.busy >= 4)
            os.kill(os.getpid(), signal.SIGINT)

        timer = threading.Thread(target=interrupt_when_four_are_out)
        timer.start()
        s = replay_trace(trace, out, target=srv.url(), speed=1.0, concurrency=4, timeout=30.0, client=client)
        timer.join()
        time.sleep(0.3)  # anything sent after the stop would have arrived by now
        assert srv.requests + srv.busy == 4 and srv.max_busy == 4
    assert not s.complete and s.reason == "interrupted"
    r = load_results(out)
    # The four out were answered within the grace; the six waiting left no row and no request.
    assert r.n == 4 and set(r.cols["outcome"]) <= {OK, TIMEOUT} and (r.cols["outcome"] == OK).all()
