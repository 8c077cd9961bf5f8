"""In-step starts for many machines: ``--start-at``, ``--shard auto/N`` and the host's clock offset.

N replays of one trace (one shard each, on N machines or N pods of a Kubernetes Indexed Job)
fire the trace at its intended rate only if their schedules start at the same instant. Each shard
waits until ``--start-at`` (a wall-clock time) and anchors its schedule there; how far apart the
shards really started is measured afterwards by ``merge`` (the spread of their first sends). The
wall clocks themselves are only as close as the hosts' time synchronisation makes them, so the
results header records this host's clock state as the kernel reports it (:func:`host_clock`).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from datetime import datetime, timezone
from typing import Mapping

# A start this many seconds in the past is still taken (the schedule starts at the given instant
# and the first sessions are sent late, their lag recorded); later than that is an error, since
# such a shard would fire its share out of step with the others.
START_LATE_TOLERANCE = 1.0
# A start further ahead than this is a typo (an epoch in milliseconds, a wrong year), not a plan.
START_MAX_AHEAD = 7 * 86_400.0
# A fraction of a second of any length, written with "." or ",": Python 3.10's fromisoformat reads
# only 3 or 6 digits after a ".", so it is written as 6 (to the microsecond) before parsing.
_FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")
INDEX_ENV = "JOB_COMPLETION_INDEX"  # the variable a Kubernetes Indexed Job sets in each pod


def parse_start_at(text: str) -> float:
    """``--start-at`` as unix seconds: epoch seconds (``1767225600.5``) or ISO-8601 with a zone
    (``2026-12-02T01:00:00Z``, ``…+01:00``); ValueError (one line) otherwise.

    An ISO time without a zone is refused: read as UTC on one machine and as local time by the
    user on another, it would start shards an hour apart.
    """
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"--start-at {text!r}: not a time (epoch seconds must be positive and finite)")
        return value
    iso = s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s
    iso = _FRACTION.sub(lambda m: "." + (m[1] + "00000")[:6], iso, count=1)
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"--start-at {text!r}: not epoch seconds or an ISO-8601 time "
                         "(e.g. 2026-12-02T01:00:00Z)") from None
    if when.tzinfo is None:
        raise ValueError(f"--start-at {text!r}: give the zone (append Z for UTC, e.g. {s}Z)")
    return when.timestamp()


def check_start_at(start_at: float, now: float) -> None:
    """Refuse (ValueError, one line) a start more than :data:`START_LATE_TOLERANCE` s past or a week ahead."""
    late = now - start_at
    if late > START_LATE_TOLERANCE:
        raise ValueError(f"--start-at {format_utc(start_at)} is {late:.1f} s in the past "
                         f"(tolerance {START_LATE_TOLERANCE:g} s); choose a later start for every shard")
    if -late > START_MAX_AHEAD:
        raise ValueError(f"--start-at {format_utc(start_at)} is more than {START_MAX_AHEAD / 86_400:g} days ahead")


def format_utc(t: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds (``2026-12-02T01:00:00.000Z``); a time no date
    holds (past the year 9999, e.g. ``--start-at 1e22``) as its epoch seconds."""
    try:
        return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{t:g} (epoch seconds)"


def resolve_shard(text: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``--shard`` with ``auto/N`` resolved to ``i/N`` from ``$JOB_COMPLETION_INDEX``; other values unchanged.

    ValueError (one line) when the variable is unset or not an index below N.
    """
    if text is None or not str(text).startswith("auto/"):
        return text
    env = os.environ if environ is None else environ
    n_text = str(text)[len("auto/"):]
    try:
        n = int(n_text)
    except ValueError:
        raise ValueError(f"shard must look like auto/N (e.g. auto/4), got {text!r}") from None
    if n < 1:
        raise ValueError(f"shard {text!r}: need N >= 1")
    raw = env.get(INDEX_ENV)
    if raw is None or not raw.strip():
        raise ValueError(f"--shard {text}: ${INDEX_ENV} is not set (a Kubernetes Indexed Job sets it; "
                         "elsewhere give --shard i/N)")
    try:
        i = int(raw.strip())
    except ValueError:
        raise ValueError(f"--shard {text}: ${INDEX_ENV}={raw!r} is not an integer") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: ${INDEX_ENV}={i} is not in 0..{n - 1}")
    return f"{i}/{n}"


# --- the host's clock, as the kernel's NTP discipline sees it -------------------------------------

class _Timex(ctypes.Structure):
    # The leading fields of Linux's struct timex (the rest is reserved space, padded generously).
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]


_STA_UNSYNC = 0x0040
_STA_NANO = 0x2000
_TIME_ERROR = 5


def host_clock() -> dict | None:
    """This host's clock offset as the kernel knows it (``adjtimex``, read-only), or None if unknown.

    ``{"source": "adjtimex", "offset": s, "maxerror": s, "esterror": s}``: ``offset`` is what the
    NTP daemon (chrony, ntpd, systemd-timesyncd) is still slewing away, ``maxerror`` the kernel's
    bound on the clock's error. None when the clock is not synchronised or the call is not available
    (not Linux, or a sandbox that forbids it) — then the offset is not known, not zero.
    """
    try:
        # The process's own symbols (libc's among them): start-up cost — find_library("c") runs
        # ``ldconfig -p`` in a child process to find the same library.
        libc = ctypes.CDLL(None, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0 or state == _TIME_ERROR or tx.status & _STA_UNSYNC:
        return None
    unit = 1e-9 if tx.status & _STA_NANO else 1e-6
    return {"source": "adjtimex", "offset": tx.offset * unit, "maxerror": tx.maxerror * 1e-6,
            "esterror": tx.esterror * 1e-6}
