"""The consistency rules, each stated once: the bounds a correct shop's final state must lie within.

Both the per-entity checkers (:mod:`.checkers`: Python integers, one order, item or user at a time)
and the numpy screen (:mod:`.screen`: every order, item and user at once) take their figures from
these functions, so a rule changed here changes both paths. Each function works on Python integers
and on numpy arrays alike (the screen passes arrays, the checkers scalars), and returns Python
integers for Python integers, so figures beyond int64 stay exact in the checkers.

The screen clears only what it can prove right with these rules; anything it cannot (a figure that
int64 may not hold exactly, an all-or-nothing subset it does not enumerate) goes to the checkers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_EXACT_UNCERTAIN = 12  # beyond this many uncertain deltas per entity, accept the whole range
INT64_EXACT = 1 << 62  # figures whose magnitude may reach this are left to the checkers (Python integers)


def _max(a: Any, b: Any) -> Any:
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return np.where(cond, a, b) if isinstance(cond, np.ndarray) else (a if cond else b)


def multiplicity(paid: Any, n_ok: Any, n_indet: Any, charge: bool) -> tuple[Any, Any]:
    """(min, max) times an order's checkout effect (its stock and credit) applies.

    An unpaid order: (0, 0). A paid one: once under the ``refuse`` policy (a re-checkout of a paid
    order must be a no-op); under ``charge`` once per 2xx checkout and possibly once per
    indeterminate one — at least once, since it is paid.
    """
    if charge:
        return _where(paid, _max(1, n_ok), 0), _where(paid, _max(1, n_ok + n_indet), 0)
    once = _where(paid, 1, 0)
    return once, once


def implied_takes(n_ok: Any, charge: bool) -> Any:
    """How many times the 2xx checkout answers alone say an order's effect applied (paid or not)."""
    return _where(n_ok > 0, n_ok if charge else 1, 0)


def checkout_disagrees(paid: Any, n_ok: Any, n_indet: Any) -> tuple[Any, Any]:
    """(lost, phantom): a 2xx checkout but the order is not paid; paid with no 2xx or indeterminate checkout."""
    return (n_ok > 0) & (paid == 0), (paid != 0) & (n_ok == 0) & (n_indet == 0)


def line_range(add_ok: Any, add_unc: Any, rem_ok: Any, rem_unc: Any) -> tuple[Any, Any]:
    """(lo, hi) units of one (order, item) line: answered add_item units ``add_ok``, the sum of its
    indeterminate add_item units ``add_unc``, answered and indeterminate remove_item counts (one unit
    each). A line never goes below zero."""
    return _max(0, add_ok - rem_ok - rem_unc), _max(0, add_ok + add_unc - rem_ok)


def entity_range(initial: Any, add_ok: Any, add_unc: Any, sub_ok: Any, sub_unc: Any, paid_lo: Any,
                 paid_hi: Any) -> tuple[Any, Any]:
    """(lo, hi) of an item's stock or a user's credit: its initial value, answered and indeterminate
    additions and subtractions, and what its paid orders take at least (``paid_lo``) and at most."""
    return (initial + add_ok - sub_ok - sub_unc - paid_hi,
            initial + add_ok + add_unc - sub_ok - paid_lo)


def implied_value(initial: Any, add_ok: Any, sub_ok: Any, taken: Any) -> Any:
    """An item's stock or user's credit as the 2xx answers alone imply it (``taken``: by 2xx checkouts)."""
    return initial + add_ok - sub_ok - taken


def oversold(actual: Any, hi: Any) -> Any:
    """Stock or credit below zero, or operations that take more than was ever there."""
    return (actual < 0) | (hi < 0)


def reachable(offset: int, deltas: list[int], exact: bool) -> bool:
    """Whether ``lo + offset`` is a sum of some subset of the uncertain deltas (each all-or-nothing).

    With re-checkout multiplicity ranges or too many uncertain operations, any value in the range is
    accepted.
    """
    if not exact or not deltas or len(deltas) > MAX_EXACT_UNCERTAIN:
        return True
    # Measured from lo, every subtraction not taken and every addition taken raises the value.
    sums = {0}
    for d in deltas:
        sums |= {x + abs(d) for x in sums}
    return offset in sums


def order_total(quantities: Any, prices: Any) -> Any:
    """What an order's lines cost: Σ quantity × price (arrays: per line, summed by the caller)."""
    return quantities * prices
