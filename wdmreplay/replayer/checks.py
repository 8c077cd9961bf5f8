"""What a replay checks before it sends anything: that the target answers at all (its options: ReplayConfig)."""

from __future__ import annotations

import asyncio

import aiohttp

from ..operations import FIND_OP, OPERATIONS, Dialect
from ..targets import Target
from ..eventloop import run_async
from .config import WORKERS_PER_CPU, ReplayError, max_workers, usable_cpus
from .engine import make_client

__all__ = ["WORKERS_PER_CPU", "ReplayError", "TargetUnreachable", "max_workers", "probe_target",
           "services_of", "usable_cpus"]


class TargetUnreachable(ReplayError):
    """The target did not answer the probe request."""


def probe_target(target: Target, dialect: Dialect, services: set[str], timeout: float) -> int:
    """Send one cheap GET per distinct base URL; any HTTP answer will do. Returns the number sent."""
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
