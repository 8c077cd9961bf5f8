"""The trace format's step keys and expect values, defined once, and the check of one step.

Both :mod:`.trace` (the format, its reader and writer) and :mod:`.wire` (the replay's msgspec
decoders, which :mod:`.trace` imports when a replay reads sessions) need them; here, neither module
imports the other at load time to get them (no import cycle).
"""

from __future__ import annotations

from typing import Any

EXPECT_VALUES = ("ok", "fail", "any")  # a step's expect; the results file codes them in this order
STEP_KEYS = ("op", "args", "bind", "expect", "think", "scenario")  # every step has each (see trace.Step)
_STEP_KEY_SET = frozenset(STEP_KEYS)


def is_step(value: Any) -> bool:
    """Whether ``value`` is a step map with every key of the format (what readers that index steps check first)."""
    return isinstance(value, dict) and value.keys() >= _STEP_KEY_SET


def step_problem(st: Any) -> str | None:
    """What keeps ``st`` from being a step the replay can send, in words; None when nothing does.

    A step is a map with every key of :data:`STEP_KEYS`, whose op, expect and scenario are
    strings, args an array, bind a string or nil and think a number. Other keys, and args of any
    type, are taken as they are.
    """
    if not is_step(st):
        return f"is not a step map ({', '.join(STEP_KEYS)})"
    if not (isinstance(st["op"], str) and isinstance(st["expect"], str) and isinstance(st["scenario"], str)
            and isinstance(st["args"], (list, tuple)) and (st["bind"] is None or isinstance(st["bind"], str))
            and isinstance(st["think"], (int, float))):
        return ("has values not of the format's types (op, expect and scenario strings, args an array, "
                "bind a string or nil, think a number)")
    return None


def steps_problem(steps: Any) -> str | None:
    """What keeps a session's steps from being sent, in words naming the first such step
    (``"step 3 is not a step map ..."``); None when nothing does. The words both the coordinator's
    scan and a worker's reader give."""
    for k, st in enumerate(steps):
        problem = step_problem(st)
        if problem is not None:
            return f"step {k} {problem}"
    return None
