"""Replay a trace against a target: scheduler, session runner, HTTP client, coordinator, workers.

The library entry is :func:`replay_trace`; :func:`format_summary` renders its summary dict. Layout:
``run`` (entry), ``checks`` (options, probe), ``coordinator`` (the one driver: phases, signals,
quiesce, final read), ``workers`` + ``messages`` (worker processes and their typed records),
``engine`` (sessions and rows), ``http`` (client), ``final`` (trace scan, final-state reads, settle
plan), ``schedule`` (pure timing), ``summary`` (tally and text).
"""

from __future__ import annotations

from .run import ReplayError, TargetUnreachable, check_output, format_summary, preflight, replay_trace
from .schedule import parse_shard, parse_speed

__all__ = ["ReplayError", "TargetUnreachable", "check_output", "format_summary", "parse_shard", "parse_speed",
           "preflight", "replay_trace"]
