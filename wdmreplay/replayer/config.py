"""The replay's options as one typed record: :class:`ReplayConfig`, checked once, in ``__post_init__``.

The CLI builds it (one shared click decorator, :func:`wdmreplay.cli.replay_options`), the library
takes it (:func:`~wdmreplay.replayer.run.replay_trace`), the results header's run fields are written
from it, and every worker process receives it inside a :class:`WorkerSetup`. A new replay option is
a field here (with its limit) and its click option in the decorator.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from ..errors import WdmError

# The one set of limits: the click options use these bounds too.
MAX_CONCURRENCY = 65536
MAX_WORKERS = 1024
MAX_SECONDS = 86400.0  # a day: the longest timeout / settle an option takes
CLIENT_NAMES = ("lean", "aiohttp")
DIALECT_NAMES = ("2024", "2023")
WORKERS_PER_CPU = 4  # more sending processes than this per CPU only add memory and context switches
BATCH_SAMPLE_DEFAULT = 1000  # batch_init entities not touched, read back per kind (replayer.final.BATCH_SAMPLE)


class ReplayError(WdmError):
    """A replay that cannot start (bad option, unreachable target) or whose workers failed."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """The most ``--workers`` this machine can hold: :data:`WORKERS_PER_CPU` per usable CPU."""
    return WORKERS_PER_CPU * usable_cpus()


@dataclass(frozen=True)
class ReplayConfig:
    """Every option of one replay; an invalid value raises :class:`ReplayError` (one line) when built.

    ``speed``: multiple of the recorded pace, None = as fast as ``concurrency`` allows (``"max"``
    and numeric strings are accepted and normalised). ``dialect``: a dialect name, None = the
    trace's. ``settle``: None = a short settle only after indeterminate requests. ``shard``:
    ``(i, N)``. ``start_at``: unix time. ``faults``: a fault schedule file. ``final_sample``: None
    reads every batch_init entity back.
    """

    speed: float | None = 1.0
    concurrency: int = 256
    timeout: float = 10.0
    workers: int = 1
    client: str = "lean"
    dialect: str | None = None
    settle: float | None = None
    label: str | None = None
    shard: tuple[int, int] | None = None
    start_at: float | None = None
    faults: str | None = None
    final_read: bool = True
    final_sample: int | None = BATCH_SAMPLE_DEFAULT

    def __post_init__(self) -> None:
        from .schedule import parse_speed  # lazy: .schedule loads numpy; the CLI imports this module at start-up

        try:
            object.__setattr__(self, "speed", parse_speed(self.speed))
        except (ValueError, TypeError) as e:
            raise ReplayError(str(e)) from None
        if not _is_int(self.concurrency) or not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ReplayError(f"concurrency must be 1 to {MAX_CONCURRENCY}, got {self.concurrency}")
        if not _is_number(self.timeout) or not 0 < self.timeout <= MAX_SECONDS:
            raise ReplayError(f"timeout must be a positive finite number of seconds (at most {MAX_SECONDS:g}), "
                              f"got {self.timeout}")
        if not _is_int(self.workers) or not 1 <= self.workers <= MAX_WORKERS:
            raise ReplayError(f"workers must be 1 to {MAX_WORKERS}, got {self.workers}")
        if self.concurrency < self.workers:  # split_concurrency: every worker needs a connection
            raise ReplayError(f"--concurrency {self.concurrency} is less than --workers {self.workers}: each worker "
                              "needs at least one connection")
        if self.client not in CLIENT_NAMES:
            raise ReplayError(f"client must be one of {', '.join(CLIENT_NAMES)}, got {self.client!r}")
        if self.dialect is not None and self.dialect not in DIALECT_NAMES:
            raise ReplayError(f"dialect must be one of {', '.join(DIALECT_NAMES)}, got {self.dialect!r}")
        if self.settle is not None and (not _is_number(self.settle) or not 0 <= self.settle <= MAX_SECONDS):
            raise ReplayError(f"settle must be 0 or more seconds (at most {MAX_SECONDS:g}), got {self.settle}")
        if self.final_sample is not None and (not _is_int(self.final_sample) or self.final_sample < 0):
            raise ReplayError(f"final_sample must be 0 or more (None: every entity), got {self.final_sample}")
        if self.shard is not None:
            shard = tuple(self.shard)
            if len(shard) != 2 or not all(_is_int(v) for v in shard) or not 0 <= shard[0] < shard[1]:
                raise ReplayError(f"shard must be (i, N) with 0 <= i < N, got {self.shard!r}")
            object.__setattr__(self, "shard", shard)
        if self.start_at is not None and not _is_number(self.start_at):
            raise ReplayError(f"start_at must be a unix time in seconds, got {self.start_at!r}")
        most = max_workers()
        if self.workers > most:
            raise ReplayError(f"--workers {self.workers} is more than this machine can hold: {usable_cpus()} CPU(s), "
                              f"at most {most} workers ({WORKERS_PER_CPU} per CPU; each is a process with its own "
                              "event loop and client)")

    def replace(self, **changes: Any) -> "ReplayConfig":
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def run_fields(self) -> dict:
        """The results header's run fields this config writes (the header's JSON edge)."""
        return {
            "speed": self.speed, "concurrency": self.concurrency, "timeout": self.timeout, "label": self.label,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None, "workers": self.workers,
            "final_read": self.final_read, "settle": self.settle, "client": self.client, "start_at": self.start_at,
        }


@dataclass(frozen=True)
class WorkerSetup:
    """What one worker process receives (picklable, for spawn too): the run's config and its own share."""

    config: ReplayConfig
    trace_path: str
    target: dict
    dialect: tuple[str, dict]
    scenarios: tuple[str, ...]
    shared: frozenset
    grace: float = 0.0
    progress: bool = False
    index: int = 0
    concurrency: int = 1  # this worker's share of config.concurrency

    @property
    def workers(self) -> int:
        """The number of worker processes of the run."""
        return self.config.workers


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
