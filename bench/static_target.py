"""The fast loopback target of every bench: each shop route answers 200 with one fixed JSON body.

The load generators are what is measured, so the target must cost next to nothing. Three kinds:

- ``nginx`` (default): a private nginx (Debian's package) with a generated config in a temporary
  prefix directory, on 127.0.0.1 and a free port, ``workers`` worker processes;
- ``raw``: a raw asyncio (uvloop) responder in its own process — one fixed response per request
  head, no request bodies (what every generator here sends); cheaper than nginx per request on one
  core, used by the in-process checks (bench/schedule_accuracy.py);
- ``aiohttp``: a minimal aiohttp server in its own process (the slowest; the fallback when nginx
  is not installed — the benches say which one they used).

Every id the body carries is ``"1"``, so a replayer binds every symbol to ``"1"`` and every later
request of a session is well formed.

Run it by hand::

    python bench/static_target.py            # serves until Ctrl-C, prints the URL
    python bench/static_target.py --kind raw # the raw asyncio responder
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = {"item_id": "1", "user_id": "1", "order_id": "1", "stock": 100, "price": 1, "credit": 100000,
        "paid": False, "items": [], "total_cost": 0}
BODY_TEXT = json.dumps(BODY, separators=(",", ":"))

KINDS = ("nginx", "raw", "aiohttp")
_CLK_TCK = os.sysconf("SC_CLK_TCK")

_NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    # One connection per client slot for the whole run: no reconnects in the measurement.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat), 0.0 if unknown."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (from /proc), 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" of the comm field, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


class StaticTarget:
    """A running static-response target (nginx, raw responder or aiohttp); a context manager.

    ``url`` is its base URL, ``kind`` says which server it is, :meth:`cpu_seconds` is the CPU
    the serving processes have used so far (nginx: its workers), for "was the target saturated?".
    """

    def __init__(self, *, prefer: str = "nginx", workers: int = 1):
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kind = ""
        self.note = ""
        self._proc: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="wdm-bench-target-")
        nginx = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
        if prefer == "nginx" and nginx:
            self._start_nginx(nginx)
        elif prefer == "raw":
            self._start_server("raw", "raw asyncio responder (1 process)")
        else:
            if prefer == "nginx":
                self.note = "nginx not found (apt-get install nginx); using the slower aiohttp fallback"
            self._start_server("aiohttp", "aiohttp fallback (1 process)")

    def _start_nginx(self, nginx: str) -> None:
        prefix = Path(self._dir)
        (prefix / "tmp").mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(workers=self.workers, prefix=prefix, port=self.port,
                                           body=BODY_TEXT))
        # -e: where to log before the config is read (the default /var/log path may not be writable).
        self._proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "startup.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        self.kind = f"nginx ({self.workers} worker{'s' if self.workers > 1 else ''})"
        self._wait_ready(prefix / "error.log")

    def _start_server(self, kind: str, label: str) -> None:
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(self.port)],
                                      stdout=subprocess.DEVNULL, start_new_session=True)
        self.kind = label
        self._wait_ready(None)

    def _wait_ready(self, log: Path | None) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                detail = log.read_text()[-500:] if log and log.exists() else ""
                self.close()
                raise RuntimeError(f"static target ({self.kind}) exited at start: {detail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"static target ({self.kind}) did not listen on port {self.port} within 10 s")

    def serving_pids(self) -> list[int]:
        """The processes that answer requests (nginx workers, or the fallback server itself)."""
        if self._proc is None:
            return []
        if self.kind.startswith("nginx"):
            return child_pids(self._proc.pid)
        return [self._proc.pid]

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the serving processes."""
        return sum(process_cpu_seconds(p) for p in self.serving_pids())

    def close(self) -> None:
        """Stop the server (and its workers) and remove the temporary directory."""
        p, self._proc = self._proc, None
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # nginx: fast shutdown of master and workers
                p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "StaticTarget":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Responder(asyncio.Protocol):
    """HTTP/1.1 keep-alive responder: one fixed 200 JSON answer per request head (no request bodies)."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(BODY_TEXT)).encode() + b"\r\n\r\n" + BODY_TEXT.encode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:  # pipelined heads in one chunk get their answers in one write
            self.transport.write(self.RESPONSE * n)  # type: ignore[attr-defined]
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
        self.buf = buf


def serve(kind: str, port: int) -> None:
    """Serve the fixed body on 127.0.0.1:``port`` with the raw responder or aiohttp (blocks)."""
    try:
        import uvloop  # the target should be as fast as it can be

        uvloop.install()
    except ImportError:
        pass
    if kind == "raw":
        async def run() -> None:
            await asyncio.get_running_loop().create_server(_Responder, "127.0.0.1", port, backlog=4096)
            await asyncio.Event().wait()

        asyncio.run(run())
        return
    from aiohttp import web

    body = BODY_TEXT.encode()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    """Serve until Ctrl-C (or run the raw/aiohttp server itself when called with --serve KIND PORT)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=KINDS, default="nginx", help="which server (default nginx)")
    ap.add_argument("--workers", type=int, default=1, help="nginx worker processes (default 1)")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve[0], int(a.serve[1]))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so nginx is stopped too
    with StaticTarget(prefer=a.kind, workers=a.workers) as t:
        print(f"{t.kind} serving {t.url}  {t.note}".rstrip(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
