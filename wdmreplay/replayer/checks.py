"""What a replay checks before it sends anything: its options, and that the target answers at all."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from ..api import FIND_OP, OPERATIONS, Dialect, Target, WdmError
from ..eventloop import run_async
from .engine import CLIENTS, make_client
from .schedule import parse_speed


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
    if speed is not None:
        try:
            parse_speed(speed)
        except ValueError as e:
            raise ReplayError(str(e)) from None
    most = max_workers()
    if workers > most:
        raise ReplayError(f"--workers {workers} is more than this machine can hold: {usable_cpus()} CPU(s), at most "
                          f"{most} workers ({WORKERS_PER_CPU} per CPU; each is a process with its own event loop "
                          f"and client)")


WORKERS_PER_CPU = 4  # more sending processes than this per CPU only add memory and context switches


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most ``--workers`` this machine can hold: :data:`WORKERS_PER_CPU` per usable CPU."""
    return WORKERS_PER_CPU * usable_cpus()


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
