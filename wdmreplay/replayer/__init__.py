"""Replay a trace against a target: scheduler, session runner, HTTP client, coordinator, workers.

The library entry is :func:`replay_trace`; it returns a :class:`ReplaySummary` (typed, in
``summary``) that :func:`format_summary` renders. Layout:
``run`` (entry), ``checks`` (options, probe), ``coordinator`` (the one driver: phases, signals,
quiesce, final read), ``workers`` + ``messages`` (worker processes and their typed records),
``engine`` (sessions and rows), ``http`` (client), ``compiled`` (the two's compiled twins), ``final`` (trace scan, final-state reads, settle
plan), ``schedule`` (pure timing), ``summary`` (tally and text).
"""

from __future__ import annotations

from typing import Any

from .config import ReplayConfig

# Lazy: ``wdmreplay.replayer.config`` is read by the CLI at start-up (its option limits), and loading
# this package must not load numpy and aiohttp with it (``wdm-replay --help`` stays fast).
_FROM_RUN = {"ReplayError", "ReplaySummary", "TargetUnreachable", "check_output", "format_summary", "interrupt_replays",
             "preflight", "replay_trace"}
_FROM_SCHEDULE = {"parse_shard", "parse_speed"}

__all__ = ["ReplayConfig", "ReplayError", "ReplaySummary", "TargetUnreachable", "check_output", "format_summary",
           "interrupt_replays", "parse_shard", "parse_speed", "preflight", "replay_trace"]


def __getattr__(name: str) -> Any:
    if name in _FROM_RUN:
        from . import run  # lazy for start-up time (see above); no cycle: run never imports this package
        return getattr(run, name)
    if name in _FROM_SCHEDULE:
        from . import schedule  # lazy: numpy
        return getattr(schedule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
