"""The words the terminal output is made of: marks, labels and phrases, each defined in docs/glossary.md.

A leaf like ``operations.py`` (it imports nothing of the project), so every layer's renderer may use it.

The text renderers (check, report, the replay summary, demo, compare) take their labels from the
tables here instead of spelling them inline, so the glossary test (tests/test_glossary.py) can hold
every printed term against docs/glossary.md. A new label goes here first, then into the glossary.
"""

from __future__ import annotations

# A section's status as its mark at the start of its line (pass / fail / inconclusive).
MARKS = {"pass": "pass", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
MARK_WIDTH = max(len(m) for m in MARKS.values())

# What a request's answer was, in words (the results file's outcome classes, grouped).
ACCEPTED = "accepted"  # answered 2xx
REFUSED = "refused"  # answered 4xx
UNANSWERED = "unanswered"  # 5xx, timeout or connection error: its effect is unknown
SKIPPED = "skipped"  # never sent: an id it needed was never created

# The expectation diff's categories, in words (keys: analysis.expectations.CATEGORIES).
CATEGORY_WORDS = {
    "unexpected_ok": "accepted where the trace expects a refusal",
    "unexpected_fail": "refused where the trace expects acceptance",
    "indeterminate": "unanswered (5xx, timeout or connection error)",
    "skipped": "skipped (an id it needed was never created)",
    "after_indeterminate": "differ after an unanswered or skipped step they depend on (not counted)",
    "during_fault": "wrong answers during a fault window or its recovery (counted apart)",
}

# Every other term a renderer prints that a newcomer may not know; docs/glossary.md defines each.
TERMS = (
    "verdict", "CLEAN", "NOT CLEAN", "INCONCLUSIVE", "section", "correctness", "consistency", "availability",
    "coverage", "accepted", "refused", "unanswered", "skipped", "as the trace expects", "contradict",
    "anomaly", "entity", "final state", "settled", "read back", "course benchmark figures",
    "totals recomputed from the history", "recheckout", "fault window", "recovery",
    "counted apart", "response time", "service time", "schedule lag", "p50", "p90", "p99", "p99.9", "req/s",
    "speed", "speed max", "scheduled rate", "achieved rate", "leg delay", "build", "base", "regression",
    "significant", "interval", "gate", "cannot fire", "noise floor", "threshold", "error share",
    "not tested", "no answered requests", "Bonferroni", "wrong answers during faults", "trace bound",
    "history allows", "headline", "arithmetic", "possible causes", "bug classes", "covered",
)

# Phrases the output must never print again: jargon replaced by the words above (issue 20).
RETIRED = ("with a determined expect", "2xx imply", "own figures", "re-checkout policy:", "after_indeterminate",
           "x/÷ exp(", "outcomes: ok")

# A request's outcome class (traces.results.OUTCOMES) in words.
OUTCOME_WORDS = {"ok": "accepted", "fail": "refused", "error": "answered 5xx", "timeout": "timeout",
                 "conn_error": "connection error", "skipped": "skipped"}


def named(entity: str, eid: object) -> str:
    """An entity as a person names it: "item 3", but "item-285" where the id already says what it is
    (the reference shop's ids do: "item item-285" said it twice)."""
    text = str(eid)
    n = len(entity)
    if text[:n].lower() == entity and text[n:n + 1] in ("-", "_", ":"):
        return text
    return f"{entity} {text}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """A count with its noun: "1 item", "2 items", "1 anomaly" (``many``: "anomalies" where "s" is not the plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
