"""The reference shop's ``--inject`` vocabulary: deliberate bugs, and faults of a correct shop.

A *bug* (``INJECT_KINDS``) makes the shop wrong: a checker must report it. A *fault*
(``FAULT_KINDS``) keeps the shop correct but slow or unhelpful in the ways real systems are: the
effect of a request happens and the answer is a 500 or comes too late, or a checkout's payment leg
lands seconds after its stock leg. A correct checker reports no anomaly on a fault.

On the command line each ``--inject`` value is ``KIND`` or ``KIND:RATE`` (the share of requests it
hits, default 1); faults combine, a shop carries at most one bug::

    wdm-replay serve --inject apply-then-500:0.2 --inject slow-saga:0.5 --saga-delay 3
"""

from __future__ import annotations

import math
from typing import Iterable

from ..errors import WdmError
from ..bugclasses import DURABLE_BUGS, INJECT_KINDS  # DURABLE_BUGS: a bug of the durable shop only (serve --data)

FAULT_KINDS = ("apply-then-500", "apply-then-hang", "slow-saga")

FAULT_EFFECTS = {
    "apply-then-500": "a state-changing request takes effect, then is answered 500",
    "apply-then-hang": "a state-changing request takes effect, then its answer waits --hang seconds",
    "slow-saga": "a checkout takes its stock, waits --saga-delay seconds, then charges the user "
                 "(the saga finishes even when the client gave up)",
}


class InjectError(WdmError):
    """An ``--inject`` value the shop cannot use."""


def parse_inject(specs: Iterable[str] | str | None) -> tuple[str | None, tuple[tuple[str, float], ...]]:
    """``(bug or None, ((fault kind, rate), …))`` from ``--inject`` values ``KIND`` or ``KIND:RATE``.

    A string may hold several values separated by commas. Bugs take no rate (they are always on);
    a fault's rate is in (0, 1]; a kind given twice, or two bugs, is an error.
    """
    if specs is None:
        return None, ()
    if isinstance(specs, str):
        specs = [specs]
    bug: str | None = None
    faults: dict[str, float] = {}
    for spec in (s.strip() for raw in specs for s in raw.split(",")):
        if not spec:
            continue
        kind, sep, rate_text = spec.partition(":")
        if kind in INJECT_KINDS or kind in DURABLE_BUGS:
            if sep:
                raise InjectError(f"--inject {spec!r}: the bug {kind!r} takes no rate (it is always on)")
            if bug is not None and bug != kind:
                raise InjectError(f"--inject: only one bug at a time, got {bug!r} and {kind!r}")
            bug = kind
            continue
        if kind not in FAULT_KINDS:
            raise InjectError(f"unknown --inject {kind!r}; choose one of: {', '.join(INJECT_KINDS + DURABLE_BUGS + FAULT_KINDS)}")
        rate = _rate(spec, rate_text) if sep else 1.0
        if kind in faults:
            raise InjectError(f"--inject: {kind!r} given twice")
        faults[kind] = rate
    return bug, tuple(sorted(faults.items()))


def _rate(spec: str, text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise InjectError(f"--inject {spec!r}: the rate must be a number in (0, 1]") from None
    if not (math.isfinite(rate) and 0.0 < rate <= 1.0):
        raise InjectError(f"--inject {spec!r}: the rate must be a number in (0, 1]")
    return rate


def describe_faults(faults: tuple[tuple[str, float], ...], hang_s: float, saga_delay_s: float) -> list[str]:
    """One human line per configured fault, for the ``serve`` banner."""
    out = []
    for kind, rate in faults:
        detail = {"apply-then-hang": f" (answer after {hang_s:g} s)",
                  "slow-saga": f" (payment {saga_delay_s:g} s after stock)"}.get(kind, "")
        out.append(f"{kind} on {rate:.0%} of requests{detail}: {FAULT_EFFECTS[kind]}")
    return out
