"""Shared pytest fixtures (a running reference shop on 127.0.0.1, real HTTP, port 0) and the CI rule.

The CI rule: with the environment variable ``CI`` set (not 0/false), a skipped test is a failure.
"""

from __future__ import annotations

import os
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


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and every later test that runs asyncio there (replay_trace's probe, asyncio.run)
# then fails with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (see tests/browser_support.py); one per test module."""
    from playwright.sync_api import sync_playwright

    from browser_support import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()



# --- end shop fixtures ------------------------------------------------------------------------


# --- CI: a skip is a failure --------------------------------------------------------------------
# A test (or a whole module) that skips in CI tests nothing while the run stays green: the CLI tests
# once skipped for months because the console script was not on PATH. With CI set (as .ci/run and
# hosted CI runners do), every skip — a skip mark, pytest.skip(), importorskip, a module skipped at
# collection — is reported as a failure naming the reason. xfail is left alone.


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _fail_skip(report: Any) -> None:
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (CI={os.environ['CI']}): a skip is a failure here — {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    """Under CI, a skipped test is reported as failed."""
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: Any) -> Iterator[None]:
    """Under CI, a module skipped at collection (``allow_module_level`` skip, importorskip) fails."""
    outcome = yield
    _fail_skip(outcome.get_result())
