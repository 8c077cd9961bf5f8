"""A replay worker process: one shard of the sessions, driven phase by phase by the coordinator.

Every replay runs its requests in worker processes (``--workers 1`` is one of them), as pyperf
always runs workers: one code path. The protocol is the typed records of :mod:`.messages`, over one
``multiprocessing`` pipe per worker. Rows and bindings go to the coordinator at least every
:data:`~.messages.FLUSH_EVERY` seconds, whatever the rate.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import traceback
from typing import Any

from ..errors import WdmError
from ..operations import Dialect
from ..targets import Target
from ..eventloop import run_async
from .config import WorkerSetup
from .messages import (FLUSH_EVERY, Bindings, Bye, Chunk, End, Failed, FinalDone, FinalProgress,
                       PhaseDone, Progress, ReadFinal, Ready, RunPhase, Stop)


def worker_main(conn: Any, cfg: WorkerSetup, inherited: list | tuple = ()) -> None:
    """Process entry point: run this worker's shard until the coordinator says :class:`End`.

    ``inherited``: the coordinator's pipe ends a forked worker holds copies of (closed here).
    """
    for c in inherited:
        c.close()
    # The coordinator owns Ctrl-C and SIGTERM: a terminal sends SIGINT to the whole process group,
    # and the coordinator then tells each worker to stop, so every worker still reports what it sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        run_async(_serve(conn, cfg))
    except Exception as e:  # report instead of dying silently; the coordinator raises it as a ReplayError
        # Bad input (a corrupt trace, ...) is the tool's own error: one line. Anything else is a
        # bug, reported with where it happened.
        if isinstance(e, WdmError):
            text = str(e)
        else:
            text = f"{e.__class__.__name__}: {e}\n{traceback.format_exc(limit=5)}"
        try:
            conn.send(Failed(text))
        except OSError:
            pass
    finally:
        conn.close()


async def _serve(conn: Any, cfg: WorkerSetup) -> None:
    from ..traces.results import bindings_record, requests_record_at
    from ..traces.stream import packer
    from .engine import Engine, RowBuffer
    from .final import ReadCounter, id_sets, read_state
    from .schedule import shard_keep

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    name, routes = cfg.dialect
    config = cfg.config
    target = Target(cfg.target["ORDER_URL"], cfg.target["PAYMENT_URL"], cfg.target["STOCK_URL"])
    # Each chunk goes as the results file's record, packed here: the coordinator writes the bytes
    # as they come (it used to decode the args again, build their columns and re-pack: per-row
    # Python in the one process every worker feeds). Pickling the row tuples instead cost more still.
    pack = packer()

    def send_rows(cols: dict, args: list, errors: list) -> None:
        record, at = requests_record_at(cols, args, errors, pack)
        conn.send(Chunk(record, len(args), at))

    rows = RowBuffer(send_rows)
    engine = Engine(cfg.trace_path, target=target, dialect=Dialect(name, routes), speed=config.speed,
                    concurrency=cfg.concurrency, timeout=config.timeout, t0=0.0, rows=rows,
                    keep=shard_keep(config.shard, (cfg.index, cfg.workers)),
                    scenarios=list(cfg.scenarios), shared=set(cfg.shared),
                    bind_sink=lambda m: conn.send(Bindings(bindings_record(m, pack))), client=config.client)
    reading: list[asyncio.Task] = []  # the final-read snapshot in progress (a Stop cancels it)
    counter = ReadCounter()

    def dispatch(msg: Any) -> None:
        if isinstance(msg, Stop):
            engine.request_stop()
            for t in reading:
                t.cancel()
        else:
            inbox.put_nowait(msg)

    def listen() -> None:
        # A thread does the blocking receives: registering the pipe with the event loop would make
        # it non-blocking, and a large message (chunks, bindings) would then fail half-sent.
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the coordinator is gone, or this worker is ending: stop and close
                msg = End()
                try:
                    loop.call_soon_threadsafe(dispatch, Stop())
                except RuntimeError:  # the worker's event loop has closed: nothing left to stop
                    return
            try:
                loop.call_soon_threadsafe(dispatch, msg)
            except RuntimeError:
                return
            if isinstance(msg, End):
                return

    async def tick() -> None:
        # Timely flushing: rows and bindings reach the coordinator (and the file) within
        # FLUSH_EVERY seconds at any rate, not only when a chunk fills up.
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            engine.flush_bindings()
            rows.flush()
            if cfg.progress:
                conn.send(FinalProgress(counter.n) if reading else Progress(engine.done, engine.errors))

    await engine.open()
    threading.Thread(target=listen, name="wdm-replay-worker-inbox", daemon=True).start()
    ticker = asyncio.create_task(tick())
    conn.send(Ready())
    pool_closed = False
    try:
        while True:
            msg = await inbox.get()
            if isinstance(msg, End):
                break
            if isinstance(msg, ReadFinal):
                if not pool_closed:  # one cap for the whole run: the replay's connections go first
                    pool_closed = True
                    await engine.close_replay_pool()
                counter.n = 0
                task = asyncio.ensure_future(read_state(engine.final_client(), target, engine.dialect, msg.entities,
                                                        msg.concurrency, counter))
                reading.append(task)
                try:
                    state, missing, reads = await task
                except asyncio.CancelledError:
                    if not task.cancelled():
                        raise
                    conn.send(FinalDone({}, {}, 0, cancelled=True))
                else:
                    conn.send(FinalDone(state, missing, reads))
                finally:
                    reading.clear()
                continue
            assert isinstance(msg, RunPhase), msg
            engine.t0 = msg.t0
            engine.bindings.update(msg.bindings)
            engine.bound_ids = id_sets() if config.final_read else None
            bound0 = engine.bound
            new = await engine.run_phase(msg.phase, msg.start, grace=cfg.grace)
            engine.flush_bindings()
            rows.flush()
            ids = {k: list(v.ids()) for k, v in engine.bound_ids.items()} if engine.bound_ids is not None else {}
            engine.bound_ids = None
            conn.send(PhaseDone(msg.phase, new, engine.stopping, engine.bound - bound0, ids))
    finally:
        ticker.cancel()
        await engine.close()
    conn.send(Bye(engine.done, engine.errors, engine.conn_waits))
