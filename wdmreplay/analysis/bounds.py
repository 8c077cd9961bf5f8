"""The trace header's aggregate expectations and proven bounds, checked as far as the run allows.

A trace header may carry ``expect`` (exact values a correct shop reaches when every request is
answered: ``checkout_ok``, ``stock_total``, ``credit_total``) and ``expect_range`` (``[lo, hi]``
ranges the workload proves over every interleaving, e.g. the consistency workload's
``checkout_ok`` ≤ the units and credit available). What still holds when some requests were
indeterminate or skipped:

- ``checkout_ok`` upper bounds (``expect_range`` hi) hold whatever the indeterminate requests did,
  counted over the orders that hold what the trace put in them: a 2xx checkout of an order with a
  2xx add_item takes a unit and its price, and no request adds more stock or credit than the trace
  says — so more of them than the trace allows is proven wrong. (An order whose add_item got no
  answer may be empty, and an empty order checks out for free: those are not counted.)
- lower bounds and exact values only hold when every request got an answer (a 5xx may have had no
  effect, a skipped checkout never happened): otherwise they are "not evaluated".
- totals (``stock_total``, ``credit_total``) need every item / user read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..traces.records import TraceHeaderCopy
from .consistency import Anomaly


@dataclass(frozen=True, slots=True)
class BoundCheck:
    """One aggregate expectation or bound: what the trace says, what the run has, and its status.

    Named the *trace bound* wherever it is shown (JSON ``trace_bound``): the trace header's proven
    value or range, apart from the run's own figures (``totals``: what the history allows, what the
    2xx answers imply), so no figure has two "expected" values.
    """

    key: str
    expected: Any  # an int (exact) or [lo, hi]
    actual: int
    status: str  # "met" | "unmet" | "not evaluated"
    note: str

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"key": self.key, "trace_bound": self.expected, "actual": self.actual, "status": self.status,
                "note": self.note}


KEYS = ("checkout_ok", "stock_total", "credit_total")


@dataclass(frozen=True, slots=True)
class RunTotals:
    """What a run did, for the trace's aggregate bounds (:data:`KEYS`)."""

    checkout_ok: int  # checkouts answered 2xx
    checkout_ok_loaded: int  # 2xx checkouts of orders with a 2xx add_item (the robust upper bound's count)
    stock_total: int  # the final state's stock, summed over the items
    credit_total: int  # the final state's credit, summed over the users

    def of(self, key: str) -> int:
        """The figure a bound of :data:`KEYS` is checked on."""
        return {"checkout_ok": self.checkout_ok, "stock_total": self.stock_total, "credit_total": self.credit_total}[key]


def check_bounds(trace_header: TraceHeaderCopy, actual: RunTotals, *, complete: bool, undetermined: int,
                 totals_read: bool) -> tuple[list[BoundCheck], list[Anomaly]]:
    """Each header expectation / range against what the run did (``actual``).

    ``actual.checkout_ok_loaded`` is what the robust upper bound of ``checkout_ok`` is checked on.

    ``undetermined`` counts indeterminate and skipped requests; ``totals_read`` says whether every
    item and user was read back (the totals are sums over them).
    """
    exact, ranges = trace_header.expect, trace_header.expect_range
    checks: list[BoundCheck] = []
    anomalies: list[Anomaly] = []
    for key in KEYS:
        if key not in exact and key not in ranges:
            continue
        expected = exact[key] if key in exact else list(ranges[key])
        lo, hi = (expected, expected) if key in exact else (ranges[key][0], ranges[key][1])
        act = actual.of(key)
        proven_hi = ranges[key][1] if key in ranges else None
        loaded = actual.checkout_ok_loaded if key == "checkout_ok" else act
        status, note = _status(key, lo, hi, proven_hi, act, loaded, complete,
                               undetermined, totals_read)
        checks.append(BoundCheck(key, expected, act, status, note))
        if status == "unmet":
            anomalies.append(Anomaly("expectation_not_met", "aggregate", key, expected, act,
                                     f"trace {'expects' if lo == hi else 'proves'} {key} "
                                     f"{'= ' + str(lo) if lo == hi else f'within {lo}..{hi}'}, run has {act}"
                                     + (f" ({note})" if note else "")))
    return checks, anomalies


def _status(key: str, lo: int, hi: int, proven_hi: int | None, act: int, loaded: int, complete: bool,
            undetermined: int, totals_read: bool) -> tuple[str, str]:
    if key != "checkout_ok" and not totals_read:
        return "not evaluated", "not every item and user was read back"
    if key == "checkout_ok" and proven_hi is not None and loaded > proven_hi:
        # The upper bound of a proven range holds whatever the indeterminate requests did.
        return "unmet", (f"{loaded} successful checkouts of orders holding their items: more than the "
                         f"trace's units and credit allow")
    if not complete:
        return "not evaluated", "partial run"
    if undetermined:
        return "not evaluated", f"{undetermined} indeterminate or skipped request(s) leave it undetermined"
    return ("met", "") if lo <= act <= hi else ("unmet", "")
