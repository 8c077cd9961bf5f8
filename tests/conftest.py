"""Shared pytest fixtures: a running reference shop on 127.0.0.1 (real HTTP, port 0)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest


# --- shop fixtures (shop area) ----------------------------------------------------------------


@pytest.fixture
def shop() -> Iterator[Any]:
    """A running one-port reference shop (both dialects) on 127.0.0.1; ``.target``, ``.url``."""
    from wdmreplay.shop import ShopThread

    with ShopThread() as s:
        yield s


@pytest.fixture
def shop_factory() -> Iterator[Callable[..., Any]]:
    """Start a :class:`ShopThread` with the given kwargs (``split``, ``inject``, ``latency_ms``…).

    Every shop started is stopped at teardown. Example: ``s = shop_factory(split=True)``.
    """
    from wdmreplay.shop import ShopThread

    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        s = ShopThread(**kwargs)
        s.start()
        started.append(s)
        return s

    yield start
    for s in reversed(started):
        s.stop()


# --- end shop fixtures ------------------------------------------------------------------------
