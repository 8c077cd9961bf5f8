"""The course benchmark's four consistency figures, computed exactly as its ``verify.py`` does.

Formulas (``../shared/seed/benchmark-figures.md``): with ``N`` = items × starting stock, ``P`` the
item price, ``U`` users of starting credit ``C``, ``S`` the checkouts answered 2xx:

- stock, logs:      ``S − N``                              (signed)
- stock, database:  ``−stock of the first item``            (signed; only the first item is read)
- payment, logs:    ``|(U·C − N·P) − Σ_users (C − P·successes of the user)|`` = ``P·|S − N|``
- payment, database: ``|(U·C − N·P) − Σ_users final credit|``

The benchmark's "expected" state assumes all N units sell, so a correct shop that sells fewer shows
non-zero figures. They are only computed for the benchmark's own workload — a consistency trace of
``--preset course`` or ``--preset readme`` with no option changed (the trace header's
``benchmark``) — and only *comparable* when every request was answered; any other trace (a hot-user
consistency trace, stress, a recorded trace) is "not comparable", ``comparable: false``, no figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..traces.records import TraceHeaderCopy
from .final_state import FinalState, as_int

BENCHMARK_WORKLOAD = "consistency"
BENCHMARK_PRESETS = ("course", "readme")  # the trace header's ``benchmark`` (workloads/consistency.benchmark_of)
FIRST_ITEM_SYMBOL = "$item0"


@dataclass(frozen=True, slots=True)
class BenchmarkFigures:
    """The four figures (None when not computable) and whether they compare with the benchmark's."""

    comparable: bool
    why: str  # why not comparable ("" when comparable)
    stock_logs: int | None
    stock_db: int | None
    payment_logs: int | None
    payment_db: int | None

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"comparable": self.comparable, "why": self.why, "stock_inconsistencies_logs": self.stock_logs,
                "stock_inconsistencies_db": self.stock_db, "payment_inconsistencies_logs": self.payment_logs,
                "payment_inconsistencies_db": self.payment_db}


def benchmark_figures(trace_header: TraceHeaderCopy, bindings: dict, fs: FinalState | None, checkout_ok: int, *,
                      undetermined: int, complete: bool) -> BenchmarkFigures:
    """The course benchmark's four figures for a run of a consistency trace (see the module doc)."""
    why = []
    workload = trace_header.workload
    p = trace_header.params
    if workload != BENCHMARK_WORKLOAD or not all(k in p for k in ("items", "stock", "price", "users", "credit")):
        why.append(f"the trace is not the benchmark's workload ({workload}, not {BENCHMARK_WORKLOAD})")
        return BenchmarkFigures(False, why[0], None, None, None, None)
    if trace_header.benchmark not in BENCHMARK_PRESETS:
        why.append("the trace is not the benchmark's workload (a consistency trace of --preset course or readme "
                   "with no option changed)")
        return BenchmarkFigures(False, why[0], None, None, None, None)
    n_units = as_int(p["items"]) * as_int(p["stock"])
    price, users, credit = as_int(p["price"]), as_int(p["users"]), as_int(p["credit"])
    s = checkout_ok
    stock_logs = s - n_units
    payment_logs = abs((users * credit - n_units * price) - (users * credit - price * s))
    first = bindings.get(FIRST_ITEM_SYMBOL)
    stock_db = payment_db = None
    if fs is not None and first is not None and str(first) in fs.items:
        stock_db = -fs.items[str(first)].stock
    else:
        why.append("the first item was not read back")
    if fs is not None and len(fs.users) == users:
        payment_db = abs((users * credit - n_units * price) - sum(u.credit for u in fs.users.values()))
    else:
        why.append("not every user was read back")
    if undetermined:
        why.append(f"{undetermined} request(s) were indeterminate or skipped (the benchmark counts them as failures)")
    if not complete:
        why.append("partial run")
    return BenchmarkFigures(not why, "; ".join(why), stock_logs, stock_db, payment_logs, payment_db)
