"""What a replay checks before it sends anything: that the target answers at all (its options: ReplayConfig)."""

from __future__ import annotations

import asyncio

from ..operations import FIND_OP, OPERATIONS, Dialect
from ..targets import Target
from ..eventloop import run_async
from .config import WORKERS_PER_CPU, ReplayError, max_workers, usable_cpus
from .http import HttpClient

__all__ = ["WORKERS_PER_CPU", "ReplayError", "TargetUnreachable", "max_workers", "probe_target",
           "services_of", "usable_cpus"]


class TargetUnreachable(ReplayError):
    """The target did not answer the probe request."""


def probe_target(target: Target, dialect: Dialect, services: set[str], timeout: float) -> int:
    """Send one cheap GET per distinct base URL; any HTTP answer will do. Returns the number sent.

    Through the replay's own lean client (:mod:`.http`, the client the replayed requests use), not
    aiohttp — start-up cost: aiohttp's import (its TLS contexts included) is 0.1–0.15 s of CPU, a
    quarter of a short replay's, and only the final read, in the workers, needs it.
    """
    paths: dict[str, str] = {}  # base URL -> the path probed there
    for service in sorted(services):
        base = target.base(service)
        if base in paths:
            continue
        find = next((n for n, o in OPERATIONS.items() if o.service == service and n in FIND_OP.values()), None)
        if find and dialect.supports(find):
            paths[base] = dialect.route(find).fmt.format("wdm-replay-probe")
        else:
            paths[base] = "/"
    wait = min(timeout, 5.0)

    async def probe() -> None:
        client = HttpClient(wait, 4)
        try:
            for base, path in paths.items():
                try:
                    await client.origin(base).exchange("GET", path)
                except asyncio.TimeoutError:
                    raise TargetUnreachable(f"target {base} did not answer within {wait:g} s") from None
                except (OSError, ValueError) as e:
                    raise TargetUnreachable(f"cannot reach target {base}: {getattr(e, 'strerror', None) or e}") from None
        finally:
            await client.close()

    run_async(probe())
    return len(paths)


def services_of(ops: set[str]) -> set[str]:
    """The services a trace's operations talk to (stock when it has none)."""
    return {OPERATIONS[n].service for n in ops} or {"stock"}
