"""The sending machinery of one process: HTTP clients, session runner, row buffer.

One :class:`Engine` replays the sessions of its shard, phase by phase, against one target. The
hot path (one request) does: resolve symbols, format the path, send through the lean keep-alive
client of :mod:`.http` (or, with ``client="aiohttp"``, an ``aiohttp.ClientSession``), classify,
append one row (one packed record). No per-request logging, no per-request objects beyond what the
client needs. The final read goes through an aiohttp session, made when it starts (:meth:`Engine.final_client`).

``concurrency`` is a hard limit for either client: at most that many replayed requests in flight
and connections open (:class:`.http.Slots`; with ``--workers`` each process gets its share,
:func:`split_concurrency`). A request waiting for a slot waits inside its response time
(``intended`` → ``done``); ``sent`` is when it was written to the socket.
"""

from __future__ import annotations

import asyncio
import gc
import json
import string
import time
from json.scanner import make_scanner
from typing import TYPE_CHECKING, Any, Callable, Iterator

import msgspec

from ..operations import OP_CODES, OP_NAMES, OPERATIONS, Dialect
from ..targets import Target
from ..traces.results import (CONN_ERROR, ERROR, EXPECT_CODES, FAIL, MAX_ERROR_TEXT, OK,
                              SKIPPED, TIMEOUT)
from ..traces.results import pack_row as _pack_row, row_columns
from ..traces.stream import FormatError
from ..traces.trace import TraceReader
from .final import IdSet
from .compiled import adopt, adopted, twin
from .http import HttpClient, NotSent, Slots
from .schedule import may_launch, pace, session_cap, session_due, step_due
from .config import CLIENT_NAMES

if TYPE_CHECKING:
    import aiohttp

    from ..traces.wire import ReplaySession as Session

CHUNK_ROWS = 65536
# The young generation's collection threshold while the engine is open (the interpreter's default
# is 700): each young collection walks the sessions and requests alive at the time, and a replay
# makes few reference cycles, so it collects young objects 1/50 as often (docs/performance.md).
GC_YOUNG = 35_000
UNKNOWN_SCENARIO = 65535
NAN = float("nan")
_NOTHING = object()  # no value yet (None is one a trace or a response may hold)
# The JSON scanner json.loads itself uses (C when available), called directly on a create's
# response: json.loads wraps it in two Python calls and two whitespace regex matches per body.
_scan_json = make_scanner(json.JSONDecoder())
# A create's response is read by :func:`id_reader` first; a body it refuses, and an id it reads as a
# float, go to the scanner and json.loads, which decide exactly as before. Only ASCII bodies this
# short take the fast path: they nest at most 512 deep, where json.loads cannot run out of recursion
# either, and they cannot hold the invalid UTF-8 that json.loads refuses (msgspec does not check the
# UTF-8 of the strings it skips).
FAST_JSON_MAX = 1024


def id_reader(key: str) -> Callable[[bytes], Any]:
    """A reader of the value under ``key`` in a JSON object's bytes: ``reader(body).value``.

    msgspec decodes the one member into a struct and skips the others without building them (about
    half the CPU of orjson building the whole document, and a fifth of json.loads'); the value is
    ``msgspec.UNSET`` when the object has no such key. It raises a ValueError for what is not a
    JSON object, for a document msgspec refuses (NaN, Infinity, a lone surrogate escape, ...) and
    for a number beyond a float's range; for every ASCII document it accepts, the value is the one
    ``json.loads(body)[key]`` gives (the last of duplicate keys, escaped keys matched, integers of
    any size): tests/test_engine_hot_path.py checks that over generated bodies.
    """
    created = msgspec.defstruct("CreatedId", [("value", Any, msgspec.UNSET)], rename={"value": key})
    return msgspec.json.Decoder(created).decode

ChunkSink = Callable[[dict, list, list], None]


def percent_template(fmt: str) -> tuple[str, int] | None:
    """``fmt`` (a ``str.format`` template of positional fields) as a ``%`` template and its field count.

    ``(pct, k)`` such that ``pct % args == fmt.format(*args)`` for every tuple ``args`` of ``k``
    values (``%s`` and an empty format spec both give ``str(value)`` for the values a trace holds);
    None when ``fmt`` is not fields ``{0}``, ``{1}``, ... in that order without conversion or spec
    (the engine then formats with ``str.format``, as before). ``%`` formatting is about 40 % cheaper
    per request than ``str.format``, which parses its template on every call.
    """
    parts = []
    k = 0
    try:
        for literal, field, spec, conversion in string.Formatter().parse(fmt):
            parts.append(literal.replace("%", "%%"))
            if field is None:
                continue
            if field != str(k) or spec or conversion is not None:
                return None
            parts.append("%s")
            k += 1
    except ValueError:  # not a valid template: str.format raises as before
        return None
    return "".join(parts), k


class RowBuffer:
    """Request rows, one packed record each (:data:`ROW`), flushed in chunks to a sink as columns."""

    __slots__ = ("sink", "limit", "buf", "args", "errors", "n", "flushed")

    def __init__(self, sink: ChunkSink, limit: int = CHUNK_ROWS):
        self.sink = sink
        self.limit = limit
        self.flushed = 0  # rows handed to the sink so far
        self._reset()

    @property
    def total(self) -> int:
        """Rows added so far (flushed or buffered)."""
        return self.flushed + self.n

    def _reset(self) -> None:
        self.buf = bytearray()
        self.args: list = []
        self.errors: list = []
        self.n = 0

    def add(self, sid: int, step: int, phase: int, op: int, scenario: int, expect: int, outcome: int,
            status: int, intended: float, sent: float, done: float, args: list, error: str | None) -> None:
        """Append one row; flushes a full chunk to the sink."""
        # One C call per row (struct), not one array append per column: measured 2x cheaper.
        self.buf += _pack_row(sid, step, phase, op, scenario, expect, outcome, status, intended, sent, done)
        self.args.append(args)
        if error is not None:
            self.errors.append((self.n, error[:MAX_ERROR_TEXT]))
        self.n += 1
        if self.n >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Hand the rows so far to the sink as one chunk (column name → little-endian bytes)."""
        if self.n:
            cols = row_columns(self.buf)
            args, errors = self.args, self.errors
            self.flushed += self.n
            self._reset()
            self.sink(cols, args, errors)


class PhaseStream:
    """The sessions of one shard, handed out phase by phase from one streaming trace reader."""

    def __init__(self, reader: TraceReader, keep: Callable[[int], bool] | None):
        # msgspec Structs (attributes, no dict per step); the reader passes over the other shards'
        # sessions reading only their sid and number of steps. Args are tuples: the results row's
        # ``tuple(args)`` is then the decoded tuple itself.
        self._it: Iterator[Session] = reader.replay_sessions(keep)
        self._peek: Session | None = None
        self._done = False

    def sessions(self, phase: int) -> Iterator[Session]:
        """Sessions of ``phase`` in trace order (sessions of earlier phases left unread are skipped)."""
        s = self._peek
        if s is not None:  # the first session of a later phase, read when the previous phase ended
            if s.phase > phase:
                return
            self._peek = None
            if s.phase == phase:
                yield s
        if self._done:
            return
        # The reader's own iteration, one generator frame per session (a method call per session
        # to fetch the next one cost more than the phase test).
        for s in self._it:
            p = s.phase
            if p == phase:
                yield s
            elif p > phase:
                self._peek = s
                return
        self._done = True


def split_concurrency(concurrency: int, workers: int) -> list[int]:
    """Each of ``workers`` processes' share of ``concurrency`` connections: as even as can be, summing to it.

    ``split_concurrency(10, 4) == [3, 3, 2, 2]``. Every worker needs at least one connection, so
    ``concurrency`` below ``workers`` is refused (ValueError).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if concurrency < workers:
        raise ValueError(f"--concurrency {concurrency} is less than --workers {workers}: "
                         "each worker needs at least one connection")
    base, extra = divmod(concurrency, workers)
    return [base + (i < extra) for i in range(workers)]


async def _stamp_headers_sent(session: aiohttp.ClientSession, ctx, params) -> None:
    # aiohttp's on_request_headers_sent: the request head goes to the socket right after this.
    stamp = ctx.trace_request_ctx
    if stamp is not None:
        stamp[0] = time.perf_counter()


def make_client(concurrency: int, timeout: float, stamp_sent: bool = False) -> "aiohttp.ClientSession":
    """An aiohttp client with an explicit connection limit and timeout (aiohttp's defaults shape benchmarks).

    ``stamp_sent``: requests given ``trace_request_ctx=[nan]`` get the ``time.perf_counter()`` at
    which their head was written stored in it (the ``sent`` of ``replay --client aiohttp``).
    """
    import aiohttp  # start-up cost (~0.1 s of CPU): only the final read and --client aiohttp need it
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), limit_per_host=0, force_close=False,
                                     enable_cleanup_closed=False, ttl_dns_cache=None)
    traces = []
    if stamp_sent:
        tc = aiohttp.TraceConfig()
        tc.on_request_headers_sent.append(_stamp_headers_sent)
        traces.append(tc)
    # Everything else stays at aiohttp's defaults on purpose: its fast paths are the defaults
    # (measured: skip_auto_headers and DummyCookieJar each cost more per request than they save).
    return aiohttp.ClientSession(connector=connector, trace_configs=traces or None,
                                 timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout))


def _written(exc: BaseException, done: float, t0: float) -> float:
    """The ``sent`` of a failed request: when it was written, else (never written, e.g. refused) ``done``."""
    sent = getattr(exc, "sent", None)
    return done if sent is None else sent - t0


def error_text(exc: BaseException) -> str:
    """A short, one-line description of an exception for the results file."""
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:MAX_ERROR_TEXT]


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class Engine:
    """Replays one shard of a trace, phase by phase, recording every request into a :class:`RowBuffer`.

    ``clock()`` is seconds since the run's shared start clock ``t0`` (``time.perf_counter`` is
    CLOCK_MONOTONIC on Linux, the same in every process of the machine).
    """

    def __init__(self, trace_path: str, *, target: Target, dialect: Dialect, speed: float | None,
                 concurrency: int, timeout: float, t0: float, rows: RowBuffer,
                 keep: Callable[[int], bool] | None = None, scenarios: list[str] | None = None,
                 shared: set[str] | frozenset[str] | None = None,
                 bind_sink: Callable[[dict[str, str]], None] | None = None,
                 bound_ids: dict[str, IdSet] | None = None, bind_chunk: int = CHUNK_ROWS,
                 client: str = "lean"):
        if client not in CLIENT_NAMES:
            raise ValueError(f"unknown HTTP client {client!r}; choose one of {', '.join(CLIENT_NAMES)}")
        self.trace_path = trace_path
        self.speed = speed
        self.concurrency = concurrency
        self.timeout = timeout
        self.t0 = t0
        self.rows = rows
        self.keep = keep
        self.dialect = dialect
        # Symbols that outlive their session (``shared``: referenced by another session, per the
        # pre-pass scan; None = keep every symbol): bound here or by other workers in earlier phases.
        # A session's other symbols live in the session only — memory stays flat in trace length.
        self.shared = shared
        self.bindings: dict[str, str] = {}
        self.new_bindings: dict[str, str] = {}  # shared symbols bound in the current phase
        # Every binding goes to the results file in chunks as it is made (not held for the phase).
        self.bind_sink = bind_sink
        self.bind_chunk = bind_chunk
        self._bind_buf: dict[str, str] = {}
        self.bound = 0  # symbols bound so far
        self.bound_ids = bound_ids  # per entity kind, every id bound (only kept for a final read)
        self.stopping = False
        self.errors = 0  # error + timeout + conn_error
        self.in_flight = 0
        self._slot = asyncio.Event()
        self._sleepers: set[asyncio.Future] = set()  # schedule sleeps that a stop request cuts short
        self._tasks: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._scen = {name: i for i, name in enumerate(scenarios or [])}
        self.target = target
        self.client_kind = client
        # Per op name: op code, method, URL template, its % form and field count (percent_template),
        # JSON key of a created id, entity kind created, send (all None but the code for an op the
        # dialect lacks: refused before the replay).
        self._routes: dict[str, tuple] = {}
        self._id_readers: dict[str, Callable[[bytes], Any]] = {}  # a create's id key -> its id_reader
        self.http: HttpClient | None = None
        self.client: aiohttp.ClientSession | None = None  # the final read's: see final_client()
        self.replay_client: aiohttp.ClientSession | None = None  # replayed requests with client="aiohttp"
        # The limit on replayed requests in flight (and, for the lean client, open connections).
        self.slots = Slots(concurrency)
        self._reader: TraceReader | None = None
        self._stream: PhaseStream | None = None
        self._gc_threshold: tuple[int, ...] | None = None  # the collector's thresholds before open()
        # What a failed send may raise besides a timeout: the lean client's errors are OSError and
        # ValueError; aiohttp's ClientError joins them with --client aiohttp (see open()).
        self._send_errors: tuple[type[BaseException], ...] = (OSError, ValueError)

    @property
    def done(self) -> int:
        """Requests recorded so far (sent or skipped): the rows added, one per request (no counter per request)."""
        return self.rows.total

    @property
    def conn_waits(self) -> int:
        """Replayed requests so far that waited for one of the ``concurrency`` connections (all were busy)."""
        return self.slots.waited

    def clock(self) -> float:
        """Seconds since the run's start clock."""
        return time.perf_counter() - self.t0

    def _build_routes(self) -> None:
        # lean: the template is the path and ``send`` the origin's request; aiohttp: the full URL.
        for name in OP_NAMES:
            code = OP_CODES[name]
            if not self.dialect.supports(name):
                self._routes[name] = (code, None, None, None, -1, None, None, None)
                continue
            r = self.dialect.route(name)
            op = OPERATIONS[name]
            base = self.target.base(op.service)
            url, send = (r.fmt, self.http.origin(base).exchange) if self.http is not None else \
                (base + r.fmt, self._aiohttp_send)
            pct, nargs = percent_template(url) or (None, -1)
            self._routes[name] = (code, r.method, url, pct, nargs, op.id_key, op.creates, send)
            if op.id_key is not None and op.id_key not in self._id_readers:
                self._id_readers[op.id_key] = id_reader(op.id_key)

    async def _aiohttp_send(self, method: str, url: str) -> tuple[int, bytes, float]:
        """``method url`` through aiohttp once a slot is free: (status, body, when the head was written).

        Errors carry ``sent`` like :meth:`.http.Origin.exchange`'s. The connector's limit equals the
        slots, so aiohttp itself never queues a request (its timeout would count the wait).
        """
        slots = self.slots
        if slots.free:
            slots.free -= 1
        else:
            await slots.wait()  # an error raised while waiting carries sent = None
        stamp = [NAN]
        try:
            async with self.replay_client.request(method, url, allow_redirects=False,  # type: ignore[union-attr]
                                                  trace_request_ctx=stamp) as resp:
                result = resp.status, await resp.read(), stamp[0]
        except BaseException as e:
            e.sent = None if stamp[0] != stamp[0] else stamp[0]  # type: ignore[attr-defined]
            raise
        finally:
            slots.release()
        return result

    async def open(self) -> None:
        """Open the replay's HTTP client and the trace."""
        if self.client_kind == "lean":
            self.http = HttpClient(self.timeout, self.concurrency)
            self.slots = self.http.slots
        else:
            import aiohttp  # start-up cost: see make_client
            self.replay_client = make_client(self.concurrency, self.timeout, stamp_sent=True)
            self._send_errors = (aiohttp.ClientError, OSError, ValueError)
        self._build_routes()
        self._reader = TraceReader(self.trace_path)
        self._stream = PhaseStream(self._reader, self.keep)
        # Everything alive now (modules, the client) lives for the whole run: keep it out of the
        # collector's full passes, which otherwise cost several % of a fast replay's CPU.
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(GC_YOUNG, *self._gc_threshold[1:])

    def final_client(self) -> "aiohttp.ClientSession":
        """The final read's aiohttp client, made on first use (a replay without a final read never imports aiohttp)."""
        if self.client is None:
            self.client = make_client(self.concurrency, self.timeout)
        return self.client

    async def close_replay_pool(self) -> None:
        """Close the replayed requests' connections (the phases are over): the final read then opens its own.

        ``--concurrency N`` is a cap for the whole run: without this the replay's N idle
        keep-alive connections stayed open while the final read opened N more (2N at the server).
        """
        if self.http is not None:
            await self.http.close()
        if self.replay_client is not None:
            await self.replay_client.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run before the final read connects

    async def close(self) -> None:
        """Close the client and the trace; flush buffered rows and bindings."""
        self.rows.flush()
        self.flush_bindings()
        self.slots.stop()
        if self.http is not None:
            await self.http.close()
        if self.replay_client is not None:
            await self.replay_client.close()
        if self.client is not None:
            await self.client.close()
        if self._reader is not None:
            self._reader.close()
        gc.unfreeze()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    def flush_bindings(self) -> None:
        """Hand the bindings made since the last flush to the sink (the results file, or the parent)."""
        if self._bind_buf and self.bind_sink is not None:
            buf, self._bind_buf = self._bind_buf, {}
            self.bind_sink(buf)

    def request_stop(self) -> None:
        """Stop sending: no new sessions, no further steps (in-flight requests may finish)."""
        self.stopping = True
        self._slot.set()
        self.slots.stop()  # requests waiting for a connection are not sent any more
        for f in self._sleepers:
            if not f.done():
                f.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        # asyncio.sleep's own mechanism (a future and a timer), but a stop request wakes it: at
        # --speed 0.0001 the next session may be hours away, and Ctrl-C must not wait for it.
        if self.stopping:
            return
        fut = asyncio.get_running_loop().create_future()
        timer = fut.get_loop().call_later(seconds, _wake, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._sleepers.discard(fut)

    # --- phases -------------------------------------------------------------------------------

    async def run_phase(self, phase: int, phase_start: float, grace: float = 2.0) -> dict[str, str]:
        """Run every session of ``phase`` of this shard; return the symbols bound in it."""
        assert self._stream is not None
        self.new_bindings = {}
        sessions = self._stream.sessions(phase)
        if self.speed is None:
            await self._run_pool(sessions)
        else:
            await self._run_scheduled(sessions, phase_start)
        if self._tasks:
            # Only left over after a stop request: give in-flight requests a moment, then cancel.
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        self.flush_bindings()
        if self._failure is not None:
            raise self._failure
        return self.new_bindings

    async def _run_scheduled(self, sessions: Iterator[Session], phase_start: float) -> None:
        speed = self.speed
        cap = session_cap(self.concurrency, speed)
        perf, t0 = time.perf_counter, self.t0
        tasks = self._tasks
        for s in sessions:
            if self.stopping:
                break
            due = session_due(phase_start, s.at, speed)
            wait = pace(perf() - t0, due)
            if wait > 0.0:
                await self._sleep(wait)
            while not may_launch(self.in_flight, cap) and not self.stopping:
                self._slot.clear()
                await self._slot.wait()
            if self.stopping:
                break
            self.in_flight += 1
            t = asyncio.create_task(self.run_session(s, due))
            tasks.add(t)
            t.add_done_callback(self._session_done)
        # Barrier: the phase ends when its last session has.
        while tasks and not self.stopping:
            self._slot.clear()
            await self._slot.wait()

    def _session_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            # A bug in the runner must not pass silently; surface it at the barrier.
            self.stopping = True
            self.slots.stop()
            self._failure = task.exception()

    async def _run_pool(self, sessions: Iterator[Session]) -> None:
        # As fast as possible: `concurrency` runners pull sessions from one iterator (no task per session).
        async def runner() -> None:
            for s in sessions:
                await self.run_session(s, self.clock())
                if self.stopping:
                    return

        for _ in range(max(1, self.concurrency)):
            t = asyncio.create_task(runner())
            self._tasks.add(t)
            t.add_done_callback(self._runner_done)
        # Until every runner is done, or a stop request (run_phase then gives the rest a grace period).
        while self._tasks and not self.stopping:
            self._slot.clear()
            await self._slot.wait()

    def _runner_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            self.stopping = True
            self.slots.stop()
            self._failure = task.exception()

    # --- one session --------------------------------------------------------------------------

    def _odd_path(self, url_fmt: str | None, args: tuple, sid: Any, index: int, op: str) -> str:
        """The path of a step its route's ``%`` template does not fit (see :func:`percent_template`).

        With more arguments than the operation's, ``str.format`` leaves the extra ones out, as
        always. A step no path can be made of is bad trace content, refused in one line
        (:class:`FormatError`) before anything is sent for it: too few arguments, or an operation
        the dialect lacks — what only a trace edited by hand can hold, since a written trace's
        index names its operations and the coordinator checks them against the dialect.
        """
        try:
            return url_fmt.format(*args)  # type: ignore[union-attr]
        except (IndexError, KeyError, AttributeError):
            where = f"{self.trace_path}: session {sid} step {index}"
            if url_fmt is None:
                raise FormatError(f"{where}: the {self.dialect.name} dialect has no route for {op}") from None
            raise FormatError(f"{where}: {op} takes more arguments than the {len(args)} it has") from None

    async def run_session(self, s: Session, due: float) -> None:
        """Send a session's steps one after another, each after the previous response plus think time.

        One long function on purpose: it runs once per request, and each helper call it used to make
        (row append, binding, ``json.loads``) cost measurable instructions (docs/performance.md).
        """
        sid, phase, speed = s.sid, s.phase, self.speed
        bindings, rows, routes, scen, shared = self.bindings, self.rows, self._routes, self._scen, self.shared
        local: dict[str, str] = {}  # this session's symbols; dropped when it ends
        perf, t0 = time.perf_counter, self.t0
        scan_json, id_readers, pack_row, expects, unset = _scan_json, self._id_readers, _pack_row, EXPECT_CODES, msgspec.UNSET
        prev = due
        scen_name = expect_name = _NOTHING  # no step's value: the first step looks both up
        scenario = expect = 0
        for index, st in enumerate(s.steps):
            if self.stopping:
                return
            if speed is None:  # as fast as possible: due now
                intended = prev if index == 0 else perf() - t0
            else:
                intended = step_due(prev, st.think, speed)
                # Never early: the event loop's timers have millisecond granularity and may wake
                # up to a millisecond before perf_counter says the time has come (2,504 of 96,651
                # requests once went out early), so sleep again until it has.
                wait = intended - (perf() - t0)
                while wait > 0.0:
                    await self._sleep(wait)
                    if self.stopping:
                        return
                    wait = intended - (perf() - t0)
            # One lookup per step for everything about its operation.
            code, method, url_fmt, pct, nargs, id_key, creates, send = routes[st.op]
            args = st.args
            resolved = args
            missing = None
            for j, a in enumerate(args):
                if a.__class__ is str and a[:1] == "$":
                    if resolved is args:
                        resolved = list(args)
                    real = local.get(a)
                    if real is None:
                        real = bindings.get(a)
                    if real is None:
                        missing = a
                        break
                    resolved[j] = real
            # A session's steps mostly repeat the previous step's scenario and expect: comparing
            # with it is cheaper than hashing the freshly decoded name for a dict lookup.
            name = st.scenario
            if name != scen_name:
                scenario = scen.get(name, UNKNOWN_SCENARIO)
                scen_name = name
            name = st.expect
            if name != expect_name:
                expect = expects.get(name, 2)
                expect_name = name
            if missing is not None:
                rows.add(sid, index, phase, code, scenario, expect, SKIPPED, 0, intended, NAN, NAN, tuple(args),
                         f"skipped: {missing} was never bound")
                prev = intended
                continue
            status = 0
            error = None
            if resolved.__class__ is not tuple:  # symbols filled in (or a version-1 trace's list)
                resolved = tuple(resolved)
            try:
                status, body, sent = await send(method, pct % resolved if len(resolved) == nargs
                                                else self._odd_path(url_fmt, resolved, sid, index, st.op))
                done = perf() - t0
                sent -= t0
                if 200 <= status < 300:
                    outcome = OK
                    if id_key is not None:
                        try:
                            real_id = _NOTHING
                            if len(body) <= FAST_JSON_MAX and body.isascii():
                                try:  # an ASCII document id_reader accepts is the one json.loads makes of it
                                    real_id = id_readers[id_key](body).value
                                except ValueError:  # refused (not an object, NaN, a lone surrogate, ...)
                                    pass
                                else:
                                    if real_id is unset:
                                        raise KeyError(id_key)
                            if real_id is _NOTHING or real_id.__class__ is float:
                                # json.loads decides, as before (a float's text is json's to read).
                                text = body.decode("utf-8")
                                try:
                                    doc, end = scan_json(text, 0)
                                except StopIteration:  # not a JSON value at 0 (space first, or invalid)
                                    doc = end = None
                                if end != len(text):  # json.loads decides: space around it, extra data, errors
                                    doc = json.loads(text)
                                real_id = doc[id_key]
                            if real_id is None or isinstance(real_id, (dict, list, bool)):
                                raise TypeError("not an id")
                        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
                            outcome = ERROR
                            error = f"create response without {id_key}: {body[:MAX_ERROR_TEXT].decode('utf-8', 'replace')}"
                        else:
                            sym = st.bind
                            if sym:  # Engine._bind inline
                                real_id = str(real_id)
                                local[sym] = real_id
                                self.bound += 1
                                if shared is None or sym in shared:
                                    bindings[sym] = real_id
                                    self.new_bindings[sym] = real_id
                                bind_buf = self._bind_buf
                                bind_buf[sym] = real_id
                                if len(bind_buf) >= self.bind_chunk:
                                    self.flush_bindings()
                                if self.bound_ids is not None and creates is not None:
                                    self.bound_ids[creates].add(real_id)
                elif 400 <= status < 500:
                    outcome = FAIL
                    error = body[:MAX_ERROR_TEXT].decode("utf-8", "replace") or f"HTTP {status}"
                else:
                    outcome = ERROR
                    error = body[:MAX_ERROR_TEXT].decode("utf-8", "replace") or f"HTTP {status}"
            except asyncio.TimeoutError as e:
                done = perf() - t0
                sent = _written(e, done, t0)
                outcome, error = TIMEOUT, f"no response within {self.timeout:g} s"
            except NotSent:
                return  # stopped while it waited for a connection: like a step never reached
            except self._send_errors as e:
                done = perf() - t0
                sent = _written(e, done, t0)
                outcome, error = CONN_ERROR, error_text(e)
            except asyncio.CancelledError as e:
                if getattr(e, "sent", None) is None:
                    raise  # never written (it waited for a connection): no effect, no row
                # Interrupted with the request out: its effect is unknown, like a timeout.
                rows.add(sid, index, phase, code, scenario, expect, TIMEOUT, 0, intended, e.sent - t0,  # type: ignore[attr-defined]
                         perf() - t0, tuple(resolved), "interrupted before the response")
                self.errors += 1
                raise
            if outcome >= ERROR:
                self.errors += 1
            # RowBuffer.add inline (one row per request: the call with its 13 arguments cost more
            # than the row itself). Tuples of ids and ints are untracked by the garbage collector:
            # 64k buffered rows of lists would make every full collection walk them all.
            rows.buf += pack_row(sid, index, phase, code, scenario, expect, outcome, status, intended, sent, done)
            rows.args.append(resolved)
            n = rows.n
            if error is not None:
                rows.errors.append((n, error[:MAX_ERROR_TEXT]))
            rows.n = n = n + 1
            if n >= rows.limit:
                rows.flush()
            prev = done


# The compiled twin, only with the client's (its typed fields hold the client's C types): see .compiled.
COMPILED = adopt(globals(), twin(__name__, __file__) if adopted("http") else None)
