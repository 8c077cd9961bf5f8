"""The ``check`` verdict: expectation diff + consistency checker, and whether the run is clean."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..traces.results import Results
from .consistency import KINDS, Anomaly, ConsistencyResult, check_consistency
from .expectations import ExpectationDiff, diff_expectations


@dataclass
class CheckReport:
    """Correctness and consistency verdict of one run.

    ``clean`` is True when the run is complete, no request contradicted a determined expectation
    (2xx where 4xx was expected or the reverse), and the consistency checker found no anomaly.
    Indeterminate (5xx, timeout, connection error) and skipped requests are reported, and make the
    verdict unclean only with ``strict``.
    """

    path: str
    label: str
    complete: bool
    reason: str | None
    policy: str
    strict: bool
    expectations: ExpectationDiff
    consistency: ConsistencyResult
    warnings: list[str] = field(default_factory=list)
    undetermined: int = 0  # requests that were indeterminate (5xx, timeout, connection error) or skipped

    @property
    def anomalies(self) -> list[Anomaly]:
        """Every consistency anomaly, in kind order."""
        return self.consistency.anomalies

    @property
    def anomaly_counts(self) -> dict[str, int]:
        """Number of anomalies per kind (every kind present, zeros included)."""
        c = Counter(a.kind for a in self.anomalies)
        return {k: c.get(k, 0) for k in KINDS}

    @property
    def clean(self) -> bool:
        """Whether the run passes: complete, no mismatch, no anomaly (and no error when strict)."""
        if not self.complete or self.anomalies or self.expectations.mismatches:
            return False
        if self.strict and self.undetermined:
            return False
        return True

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys, documented in docs/analysis.md)."""
        c = self.consistency
        return {
            "schema": "wdm-check/1", "path": self.path, "label": self.label, "clean": self.clean,
            "complete": self.complete, "reason": self.reason, "undetermined": self.undetermined, "recheckout": self.policy, "strict": self.strict,
            "warnings": list(self.warnings),
            "expectations": self.expectations.as_dict(),
            "consistency": {
                "final_state": c.final_state, "checked": c.checked, "checkouts": c.checkouts,
                "anomaly_counts": self.anomaly_counts, "anomalies": [a.as_dict() for a in c.anomalies],
                "aggregates": c.aggregates, "totals": c.totals, "benchmark": c.benchmark, "notes": c.notes,
            },
        }


def check_results(results: Results, *, recheckout: str = "refuse", strict: bool = False) -> CheckReport:
    """Check a run loaded with ``with_args=True``: expectation diff and consistency anomalies."""
    consistency = check_consistency(results, recheckout=recheckout)
    warnings = []
    if not results.complete:
        why = results.trailer.get("reason") or "interrupted"
        warnings.append(f"PARTIAL RUN ({why}): {results.n} requests recorded; the verdict cannot be clean")
    warnings.extend(consistency.notes)
    return CheckReport(results.path, results.label, results.complete, results.trailer.get("reason"), recheckout,
                       strict, diff_expectations(results), consistency, warnings, consistency.undetermined)
