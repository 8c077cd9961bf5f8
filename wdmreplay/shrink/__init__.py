"""``wdm-replay shrink``: the smallest trace that still reproduces a finding of a run.

Library entry :func:`shrink_run` (→ :class:`ShrinkResult`, rendered by :func:`format_result`): keep
the causal closure of the entity at fault (:mod:`.cut`), then delta-debug (:mod:`.ddmin`) sessions,
steps and amounts, replaying each candidate against the live shop (:mod:`.search`).
"""

from __future__ import annotations

from .search import (DEFAULT_BUDGET, DEFAULT_RUNS, Finding, NothingToShrink, ShrinkError, ShrinkInterrupted,
                     ShrinkResult, format_result, shrink_run)

__all__ = ["DEFAULT_BUDGET", "DEFAULT_RUNS", "Finding", "NothingToShrink", "ShrinkError", "ShrinkInterrupted",
           "ShrinkResult", "format_result", "shrink_run"]
