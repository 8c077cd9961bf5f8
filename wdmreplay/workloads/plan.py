"""What a workload hands the generator: phases, scenario names, expectations and a session stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

# A session as a workload yields it: (phase index, start time within the phase, steps).
PlannedSession = tuple[int, float, list]


@dataclass
class Plan:
    """A workload's trace, ready to stream: header parts plus an iterator of sessions in order."""

    phases: list[str]
    scenarios: list[str]
    sessions: Iterator[PlannedSession]
    expect: dict = field(default_factory=dict)
    extra_header: dict = field(default_factory=dict)  # optional header keys (e.g. expect_range)
    estimate: int | None = None  # expected request count, for the progress bar only
    final_expect: Callable[[], dict] | None = None  # the expect known once sessions are exhausted
    final_header: Callable[[], dict] | None = None  # other header keys known then (e.g. expect_range)


def step(op: str, args: list, bind: str | None, expect: str, think: float, scenario: str) -> dict:
    """A step map in the trace's key order (positional for speed in generators' hot loops)."""
    return {"op": op, "args": args, "bind": bind, "expect": expect, "think": think, "scenario": scenario}
