"""The event-loop helper every layer may import (a leaf: it imports nothing of the project).

:func:`run_async` runs a coroutine on a fresh event loop — uvloop's when importable. The replayer's
workers and probe and the ``record`` proxy use it; it lives here, not in the replayer's ``run``
module, so that none of them imports it inside a function to hide an import cycle.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

__all__ = ["run_async"]


def run_async(coro: Any) -> Any:
    """Run a coroutine on a fresh event loop — uvloop's when importable (``WDM_REPLAY_UVLOOP=0`` turns it off)."""
    use_uvloop = os.environ.get("WDM_REPLAY_UVLOOP", "1") != "0"
    if use_uvloop:
        try:
            import uvloop  # installed by default on CPython outside Windows (setup.cfg)
        except ImportError:
            use_uvloop = False
    if not use_uvloop:
        return asyncio.run(coro)
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    loop = uvloop.new_event_loop()  # pragma: no cover - Python 3.10
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
