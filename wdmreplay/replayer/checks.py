"""What a replay checks before it sends anything: its options, and that the target answers at all."""

from __future__ import annotations

import asyncio

import aiohttp

from ..api import FIND_OP, OPERATIONS, Dialect, Target, WdmError
from .engine import CLIENTS, make_client


class ReplayError(WdmError):
    """A replay that cannot start (bad option, unreachable target) or whose workers failed."""


class TargetUnreachable(ReplayError):
    """The target did not answer the probe request."""


def check_options(*, concurrency: int, timeout: float, workers: int, client: str, settle: float | None,
                  speed: float | None) -> None:
    """Refuse option values a replay cannot run with, one line each (the library's own guard; the CLI checks too)."""
    if concurrency < 1:
        raise ReplayError(f"concurrency must be at least 1, got {concurrency}")
    if not 0 < timeout < float("inf"):
        raise ReplayError(f"timeout must be a positive finite number of seconds, got {timeout}")
    if workers < 1:
        raise ReplayError(f"workers must be at least 1, got {workers}")
    if concurrency < workers:  # split_concurrency: every worker needs a connection
        raise ReplayError(f"--concurrency {concurrency} is less than --workers {workers}: each worker needs at least one connection")
    if client not in CLIENTS:
        raise ReplayError(f"client must be one of {', '.join(CLIENTS)}, got {client!r}")
    if settle is not None and not 0 <= settle < float("inf"):
        raise ReplayError(f"settle must be 0 or more seconds, got {settle}")
    if speed is not None and not speed > 0:
        raise ReplayError(f"speed must be positive or None (max), got {speed}")


def probe_target(target: Target, dialect: Dialect, services: set[str], timeout: float) -> int:
    """Send one cheap GET per distinct base URL; any HTTP answer will do. Returns the number sent."""
    from .run import run_async

    urls: dict[str, str] = {}
    for service in sorted(services):
        base = target.base(service)
        if base in urls:
            continue
        find = next((n for n, o in OPERATIONS.items() if o.service == service and n in FIND_OP.values()), None)
        if find and dialect.supports(find):
            urls[base] = base + dialect.route(find).fmt.format("wdm-replay-probe")
        else:
            urls[base] = base + "/"

    async def probe() -> None:
        async with make_client(4, min(timeout, 5.0)) as client:
            for base, url in urls.items():
                try:
                    async with client.get(url, allow_redirects=False) as resp:
                        await resp.read()
                except asyncio.TimeoutError:
                    raise TargetUnreachable(f"target {base} did not answer within {min(timeout, 5.0):g} s") from None
                except (aiohttp.ClientError, OSError, ValueError) as e:
                    reason = getattr(e, "os_error", None) or e
                    raise TargetUnreachable(f"cannot reach target {base}: {getattr(reason, 'strerror', None) or reason}") from None

    run_async(probe())
    return len(urls)


def services_of(ops: set[str]) -> set[str]:
    """The services a trace's operations talk to (stock when it has none)."""
    return {OPERATIONS[n].service for n in ops} or {"stock"}
