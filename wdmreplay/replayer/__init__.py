"""Replay a trace against a target: scheduler, session runner, HTTP client, results writer, workers.

The library entry is :func:`replay_trace`; :func:`format_summary` renders its summary dict.
"""

from __future__ import annotations

from .run import ReplayError, TargetUnreachable, format_summary, replay_trace
from .schedule import parse_shard, parse_speed

__all__ = ["ReplayError", "TargetUnreachable", "format_summary", "parse_shard", "parse_speed", "replay_trace"]
