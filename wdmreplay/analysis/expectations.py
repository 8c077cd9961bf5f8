"""Expectation diff: requests whose outcome differs from their step's ``expect``, grouped.

Vectorized over the results columns: a mask picks the differing rows, one ``np.unique`` groups them
by (scenario, operation, category) and one stable sort picks the first examples of each group.

What a contradiction (a 2xx where the trace proves a 4xx, or the reverse) proves depends on what
it depends on, never on the luck of an interleaving (issue 19):

- inside a fault window or its recovery (the spans ``check`` counts apart) it is a *wrong answer
  during a fault* (``during_fault``): counted apart, with examples; ``check --strict-faults`` fails on it;
- after an indeterminate or skipped step it proves nothing (``after_indeterminate``) only when it
  *depends* on that step: a 4xx to an operation that needs only its entities to exist (find_*,
  add_stock, add_funds, create_*) depends on no earlier step — its entities were created with a 2xx
  (else it would have been skipped) and nothing deletes one; a 4xx to add_item / remove_item depends
  only on earlier unanswered requests on the same order (a checkout that may have paid it); every
  other contradiction depends on any earlier unanswered step of its session or an earlier phase.
  An unanswered batch_init makes every later contradiction depend on it (its ids may not exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..operations import OP_NAMES, OPERATIONS
from ..traces.results import (CONN_ERROR, ERROR, EXPECT_CODES, FAIL, OK, OUTCOMES, SKIPPED, TIMEOUT,
                              Results)

# Categories of a difference, in the order they are reported.
CATEGORIES = ("unexpected_ok", "unexpected_fail", "indeterminate", "skipped", "after_indeterminate", "during_fault")
# The order groups are listed in: the evidence first (contradictions, then wrong answers during faults).
REPORT_ORDER = ("unexpected_ok", "unexpected_fail", "during_fault", "indeterminate", "skipped", "after_indeterminate")
# Categories that contradict a determined expectation (the others say "we could not tell").
MISMATCH_CATEGORIES = ("unexpected_ok", "unexpected_fail")
EXAMPLES_PER_GROUP = 3
UNKNOWN_SCENARIO = 65535


@dataclass(frozen=True, slots=True)
class DiffExample:
    """One concrete differing request."""

    sid: int
    step: int
    outcome: str
    status: int
    error: str


@dataclass(frozen=True, slots=True)
class DiffGroup:
    """Differing requests of one scenario, operation and category."""

    scenario: str
    op: str
    category: str
    expect: str
    count: int
    examples: tuple[DiffExample, ...]


@dataclass
class ExpectationDiff:
    """Every request whose outcome differs from its step's expect, grouped; counts per category."""

    checked: int  # rows with expect ok or fail (``any`` never differs)
    by_category: dict[str, int]
    groups: list[DiffGroup] = field(default_factory=list)
    # Rows answered as their determined expect says: "ok" accepted (2xx), "fail" refused (4xx).
    agreed: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0})

    @property
    def mismatches(self) -> int:
        """Rows whose outcome contradicts a determined expectation (2xx where 4xx expected or vice versa)."""
        return sum(self.by_category[c] for c in MISMATCH_CATEGORIES)

    @property
    def during_faults(self) -> int:
        """Contradictions inside a fault window or its recovery (counted apart; ``--strict-faults`` fails on them)."""
        return self.by_category["during_fault"]

    @property
    def differences(self) -> int:
        """All differing rows, every category included."""
        return sum(self.by_category.values())

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {
            "checked": self.checked, "differences": self.differences, "mismatches": self.mismatches,
            "during_faults": self.during_faults,
            "by_category": dict(self.by_category), "agreed": dict(self.agreed),
            "groups": [{"scenario": g.scenario, "op": g.op, "category": g.category, "expect": g.expect,
                        "count": g.count,
                        "examples": [{"sid": e.sid, "step": e.step, "outcome": e.outcome, "status": e.status,
                                      "error": e.error} for e in g.examples]}
                       for g in self.groups],
        }


def scenario_names(results: Results) -> list[str]:
    """Scenario names by code, from the results header (or the trace header inside it)."""
    header = results.header_record
    return list(header.scenarios or header.trace_header.scenarios)


# A 4xx to these needs only their entities to exist: it depends on no earlier step.
EXISTENCE_ONLY = ("find_item", "find_user", "find_order", "add_stock", "add_funds", "create_order", "create_item",
                  "create_user")
# A 4xx to these depends only on earlier unanswered requests on the same order (their first arg).
ORDER_SCOPED = ("add_item", "remove_item")
_DURING_FAULT = CATEGORIES.index("during_fault")
_AFTER = CATEGORIES.index("after_indeterminate")


def _codes(names: tuple[str, ...]) -> np.ndarray:
    return np.array([k for k, n in enumerate(OP_NAMES) if n in names], dtype=np.int64)


def _order_tainted(cols: dict[str, np.ndarray], k0: np.ndarray | None, bad: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows`` (4xx to add_item/remove_item): whether an unanswered request on the same
    order came before it (an earlier phase, an earlier step of its session, or another session of its phase)."""
    out = np.ones(rows.size, dtype=bool)
    if k0 is None:
        return out  # no args loaded: assume it depends (the old, cautious rule)
    on_order = np.isin(cols["op"], _codes(tuple(n for n, o in OPERATIONS.items() if o.kinds[:1] == ("order",))))
    b = np.nonzero(bad & on_order)[0]
    by_order: dict[int, list[int]] = {}
    for r, code in zip(b.tolist(), k0[b].tolist()):
        by_order.setdefault(code, []).append(r)
    phase, sid, step = cols["phase"], cols["sid"], cols["step"]
    for j, r in enumerate(rows.tolist()):
        out[j] = any(phase[q] < phase[r] or (phase[q] == phase[r] and (sid[q] != sid[r] or step[q] < step[r]))
                     for q in by_order.get(int(k0[r]), ()))
    return out


def in_windows(cols: dict[str, np.ndarray], windows: tuple | None) -> np.ndarray:
    """Per row: whether ``[intended, done]`` overlaps one of ``windows`` (objects with start, end)."""
    hit = np.zeros(cols["op"].shape, dtype=bool)
    if windows:
        start = cols["intended"]
        end = np.where(np.isnan(cols["done"]), start, cols["done"])
        for w in windows:
            hit |= (start <= w.end) & (end >= w.start)
    return hit


def _category_codes(cols: dict[str, np.ndarray], k0: np.ndarray | None = None,
                    windows: tuple | None = None) -> np.ndarray:
    """Per row: index into CATEGORIES, or -1 when the row does not differ (see the module doc)."""
    outcome, expect = cols["outcome"], cols["expect"]
    cat = np.full(outcome.shape, -1, dtype=np.int8)
    exp_ok, exp_fail = expect == EXPECT_CODES["ok"], expect == EXPECT_CODES["fail"]
    cat[exp_fail & (outcome == OK)] = 0
    cat[exp_ok & (outcome == FAIL)] = 1
    indeterminate = (outcome == ERROR) | (outcome == TIMEOUT) | (outcome == CONN_ERROR)
    cat[(exp_ok | exp_fail) & indeterminate] = 2
    bad = indeterminate | (outcome == SKIPPED)
    cat[outcome == SKIPPED] = 3  # skipped is its own category, whatever was expected
    contra = (cat == 0) | (cat == 1)
    if bad.any() and contra.any():
        # The generator's expects assume every earlier step took effect; after an indeterminate or
        # skipped step of the same session, or of an earlier phase, a contradiction that depends on
        # that step proves nothing.
        sid, step, phase = cols["sid"], cols["step"], cols["phase"]
        first_bad = np.full(int(sid.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_bad, sid[bad], step[bad].astype(np.int64))
        tainted = (step.astype(np.int64) > first_bad[sid]) | (phase > phase[bad].min())
        batch_bad = np.isin(cols["op"][bad], _codes(tuple(n for n in OP_NAMES if n.startswith("batch_init")))).any()
        if not batch_bad:
            op = cols["op"]
            tainted &= ~((cat == 1) & np.isin(op, _codes(EXISTENCE_ONLY)))
            scoped = np.nonzero((cat == 1) & tainted & np.isin(op, _codes(ORDER_SCOPED)))[0]
            if scoped.size:
                tainted[scoped] = _order_tainted(cols, k0, bad, scoped)
        cat[contra & tainted] = _AFTER
    if windows:
        cat[((cat == 0) | (cat == 1)) & in_windows(cols, windows)] = _DURING_FAULT
    return cat


def diff_expectations(results: Results, examples: int = EXAMPLES_PER_GROUP,
                      windows: tuple | None = None) -> ExpectationDiff:
    """The expectation diff of a run: counts per category and groups with a few examples each.

    ``windows``: spans whose contradictions are wrong answers during faults (``check`` passes each
    fault window with its recovery); None = no such span.
    """
    c = results.cols
    cat = _category_codes(c, None if results.argcols is None else results.argcols.k0, windows)
    checked = int(np.count_nonzero(c["expect"] != EXPECT_CODES["any"]))
    counts = np.bincount(cat[cat >= 0], minlength=len(CATEGORIES))
    by_category = {name: int(counts[i]) for i, name in enumerate(CATEGORIES)}
    agreed = {"ok": int(np.count_nonzero((c["expect"] == EXPECT_CODES["ok"]) & (c["outcome"] == OK))),
              "fail": int(np.count_nonzero((c["expect"] == EXPECT_CODES["fail"]) & (c["outcome"] == FAIL)))}
    rows = np.nonzero(cat >= 0)[0]
    if rows.size == 0:
        return ExpectationDiff(checked, by_category, [], agreed)
    names = scenario_names(results)
    # Sort differing rows by (category, scenario, op, sid, step) so groups and examples are deterministic.
    order = np.lexsort((c["step"][rows], c["sid"][rows], c["op"][rows], c["scenario"][rows], cat[rows]))
    rows = rows[order]
    key = np.stack([cat[rows].astype(np.int64), c["scenario"][rows].astype(np.int64),
                    c["op"][rows].astype(np.int64)], axis=1)
    _, starts, sizes = np.unique(key, axis=0, return_index=True, return_counts=True)
    groups = []
    for start, size in zip(starts.tolist(), sizes.tolist()):
        first = rows[start]
        sc = int(c["scenario"][first])
        ex = tuple(
            DiffExample(int(c["sid"][r]), int(c["step"][r]), OUTCOMES[int(c["outcome"][r])],
                        int(c["status"][r]), results.error_text(int(r)))
            for r in rows[start:start + min(size, examples)].tolist()
        )
        groups.append(DiffGroup(
            scenario=names[sc] if sc < len(names) else ("?" if sc == UNKNOWN_SCENARIO else f"#{sc}"),
            op=OP_NAMES[int(c["op"][first])], category=CATEGORIES[int(cat[first])],
            expect=("ok", "fail", "any")[int(c["expect"][first])], count=int(size), examples=ex))
    # Biggest groups first; ties keep the deterministic key order.
    groups.sort(key=lambda g: (REPORT_ORDER.index(g.category), -g.count, g.scenario, g.op))
    return ExpectationDiff(checked, by_category, groups, agreed)
