"""A replay worker process: one shard of the sessions, driven phase by phase by the parent.

Protocol over one ``multiprocessing`` pipe (parent → worker): ``("phase", p, start, t0, bindings)``
runs phase ``p`` from ``start`` seconds after the shared start clock ``t0`` after adding the
bindings other workers made in earlier phases; ``("stop",)`` stops sending (Ctrl-C at the parent);
``("final", entities, concurrency)`` reads back this worker's share of the final state;
``("end",)`` closes. Worker → parent: ``("final_done", state, missing, reads)``, ``("ready",)``, ``("chunk", cols, args, errors)`` (request
rows, ``args`` msgpack-packed, written by the parent into the one results file), ``("progress", done, errors)``,
``("bindings", {symbol: id})`` (every binding, in chunks as made; written by the parent),
``("phase_done", p, new_shared_bindings, stopped, bound, {kind: [ids bound]})`` (ids only when the
final read needs them), ``("bye", done, errors)``, ``("error", text)``.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import traceback
from typing import Any

from ..api import Dialect, Target


def worker_main(conn: Any, cfg: dict) -> None:
    """Process entry point (spawned): run this worker's shard until the parent says ``end``."""
    # The parent owns Ctrl-C: a terminal sends SIGINT to the whole process group, and the parent
    # then tells each worker to stop, so every worker still reports what it sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .run import run_async

    try:
        run_async(_serve(conn, cfg))
    except Exception as e:  # report instead of dying silently; the parent turns it into one line
        try:
            conn.send(("error", f"{e.__class__.__name__}: {e}\n{traceback.format_exc(limit=5)}"))
        except OSError:
            pass
    finally:
        conn.close()


async def _serve(conn: Any, cfg: dict) -> None:
    from ..traces.stream import packer
    from .engine import Engine, RowBuffer
    from .final import id_sets, read_state
    from .run import shard_keep

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    name, routes = cfg["dialect"]
    target = Target(cfg["target"]["ORDER_URL"], cfg["target"]["PAYMENT_URL"], cfg["target"]["STOCK_URL"])
    # Args go packed as the results file stores them: pickling 64k row tuples here and unpickling
    # them in the parent cost more CPU than the packing the parent would otherwise do.
    pack = packer().pack
    rows = RowBuffer(lambda cols, args, errors: conn.send(("chunk", cols, pack(args), errors)))
    engine = Engine(cfg["trace_path"], target=target, dialect=Dialect(name, routes), speed=cfg["speed"],
                    concurrency=cfg["concurrency"], timeout=cfg["timeout"], t0=0.0, rows=rows,
                    keep=shard_keep(cfg["shard"], (cfg["index"], cfg["workers"])),
                    scenarios=cfg["scenarios"], shared=cfg["shared"],
                    bind_sink=lambda m: conn.send(("bindings", m)), client=cfg["client"])

    def dispatch(msg: Any) -> None:
        if msg[0] == "stop":
            engine.request_stop()
        else:
            inbox.put_nowait(msg)

    def listen() -> None:
        # A thread does the blocking receives: registering the pipe with the event loop would make
        # it non-blocking, and a large message (chunks, bindings) would then fail half-sent.
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("end",)
                loop.call_soon_threadsafe(engine.request_stop)
            loop.call_soon_threadsafe(dispatch, msg)
            if msg[0] == "end":
                return

    await engine.open()
    threading.Thread(target=listen, name="wdm-replay-worker-inbox", daemon=True).start()
    ticker = None
    if cfg["progress"]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                conn.send(("progress", engine.done, engine.errors))
        ticker = asyncio.create_task(tick())
    conn.send(("ready",))
    try:
        while True:
            msg = await inbox.get()
            if msg[0] == "end":
                break
            if msg[0] == "final":
                _, entities, concurrency = msg
                state, missing, reads = await read_state(engine.client, target, engine.dialect, entities, concurrency)
                conn.send(("final_done", state, missing, reads))
                continue
            _, phase, start, t0, updates = msg
            engine.t0 = t0
            engine.bindings.update(updates)
            engine.bound_ids = id_sets() if cfg["final_read"] else None
            bound0 = engine.bound
            new = await engine.run_phase(phase, start)
            rows.flush()
            ids = {k: list(v.ids()) for k, v in engine.bound_ids.items()} if engine.bound_ids is not None else {}
            engine.bound_ids = None
            conn.send(("phase_done", phase, new, engine.stopping, engine.bound - bound0, ids))
    finally:
        if ticker is not None:
            ticker.cancel()
        await engine.close()
    conn.send(("bye", engine.done, engine.errors))
