"""Option parsing and validation shared by the workloads: one-line errors naming the option."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import WdmError


MAX_INT = 2**53  # ids, amounts and counts stay exact as floats and fit msgpack's int64


class WorkloadError(WdmError):
    """Options a workload cannot generate from (the message names the option)."""


def _num(text: Any, opt: str) -> float:
    if isinstance(text, bool):
        raise WorkloadError(f"{opt}: expected a number, got {text!r}")
    if isinstance(text, (int, float)):
        v = float(text)
    else:
        try:
            v = float(str(text).strip())
        except ValueError:
            raise WorkloadError(f"{opt}: expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise WorkloadError(f"{opt}: expected a finite number, got {text!r}")
    return v


def parse_list(value: Any, opt: str) -> list[float]:
    """Numbers from ``"5,30,25"`` or a sequence."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",")]
        if any(p == "" for p in parts):
            raise WorkloadError(f"{opt}: expected comma-separated numbers, got {value!r}")
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise WorkloadError(f"{opt}: expected comma-separated numbers, got {value!r}")
    return [_num(p, opt) for p in parts]


def as_float(value: Any, opt: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """A float option, checked."""
    v = _num(value, opt)
    if positive and v <= 0:
        raise WorkloadError(f"{opt}: must be > 0, got {value!r}")
    if minimum is not None and v < minimum:
        raise WorkloadError(f"{opt}: must be >= {minimum:g}, got {value!r}")
    return v


def as_int(value: Any, opt: str, *, minimum: int = 0) -> int:
    """An integer option, checked (``"10"``, ``10`` and ``10.0`` are all 10)."""
    v = _num(value, opt)
    if v != int(v):
        raise WorkloadError(f"{opt}: expected a whole number, got {value!r}")
    if v < minimum:
        raise WorkloadError(f"{opt}: must be >= {minimum}, got {value!r}")
    if v > MAX_INT:
        raise WorkloadError(f"{opt}: must be <= {MAX_INT}, got {value!r}")
    return int(v)


def int_range(value: Any, opt: str, *, minimum: int = 0) -> list[int]:
    """An inclusive integer range ``"LO,HI"`` → ``[lo, hi]``."""
    lo, hi = _pair(value, opt)
    lo_i, hi_i = as_int(lo, opt, minimum=minimum), as_int(hi, opt, minimum=minimum)
    if lo_i > hi_i:
        raise WorkloadError(f"{opt}: low end {lo_i} is above high end {hi_i}")
    return [lo_i, hi_i]


def float_range(value: Any, opt: str) -> list[float]:
    """A non-negative range ``"MIN,MAX"`` of seconds → ``[min, max]``."""
    lo, hi = _pair(value, opt)
    lo_f, hi_f = as_float(lo, opt, minimum=0), as_float(hi, opt, minimum=0)
    if lo_f > hi_f:
        raise WorkloadError(f"{opt}: minimum {lo_f:g} is above maximum {hi_f:g}")
    return [lo_f, hi_f]


def _pair(value: Any, opt: str) -> tuple[Any, Any]:
    vals = parse_list(value, opt)
    if len(vals) != 2:
        raise WorkloadError(f"{opt}: expected two numbers 'MIN,MAX', got {value!r}")
    return vals[0], vals[1]


def choice(value: Any, opt: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise WorkloadError(f"{opt}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def stop_condition(duration: Any, sessions: Any, requests: Any, *, default_duration: float) -> dict:
    """Exactly one of duration/sessions/requests (duration by default), normalized for ``params``."""
    given = [n for n, v in (("--duration", duration), ("--sessions", sessions), ("--requests", requests))
             if v is not None]
    if len(given) > 1:
        raise WorkloadError(f"give only one of {', '.join(given)}")
    out: dict[str, Any] = {"duration": None, "sessions": None, "requests": None}
    if sessions is not None:
        out["sessions"] = as_int(sessions, "--sessions", minimum=0)
    elif requests is not None:
        out["requests"] = as_int(requests, "--requests", minimum=0)
    else:
        out["duration"] = as_float(default_duration if duration is None else duration, "--duration",
                                   minimum=0)
    return out
