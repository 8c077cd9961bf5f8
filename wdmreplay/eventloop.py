"""The event-loop helper every layer may import (a leaf: it imports nothing of the project).

:func:`run_async` runs a coroutine on a fresh event loop — uvloop's when importable. The replayer's
workers and probe and the ``record`` proxy use it; it lives here, not in the replayer's ``run``
module, so that none of them imports it inside a function to hide an import cycle.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["loop_name", "run_async"]


def _uvloop() -> Any:
    """uvloop's module when the replay runs on it, else None: not importable (it is installed by
    default on CPython outside Windows, setup.cfg) or turned off with ``WDM_REPLAY_UVLOOP=0``."""
    if os.environ.get("WDM_REPLAY_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def loop_name() -> str:
    """The event loop :func:`run_async` runs on now: "uvloop" or "asyncio" (what a bench reports)."""
    return "asyncio" if _uvloop() is None else "uvloop"


def run_async(coro: Any) -> Any:
    """Run a coroutine on a fresh event loop — uvloop's when importable (``WDM_REPLAY_UVLOOP=0`` turns it off)."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(coro)
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    loop = uvloop.new_event_loop()  # Python 3.10: no asyncio.Runner
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
