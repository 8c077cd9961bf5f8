"""Hand-built results files: a small builder for tests, examples and benchmarks of the analysis.

A :class:`History` collects requests one by one (operation, args, outcome, times) plus a final
state, and writes a valid ``wdm-results`` file with :class:`~wdmreplay.traces.ResultsWriter`, so
the analysis can be exercised on exactly the history a test wants without a shop or a replayer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from wdmreplay.operations import OP_CODES
from wdmreplay.traces.results import COLUMNS, EXPECT_CODES, OUTCOMES, SKIPPED, ResultsWriter, results_header

_STATUS = {"ok": 200, "fail": 400, "error": 500, "timeout": 0, "conn_error": 0, "skipped": 0}


class History:
    """Requests and a final state, written as a results file by :meth:`write`."""

    def __init__(self, *, scenarios: Sequence[str] = ("default",), expect: dict | None = None,
                 workload: str = "hand-built", digest: str = "sha256:hand-built", label: str | None = None):
        self.scenarios = list(scenarios)
        self.trace_header = {"format": "wdm-trace", "version": 1, "workload": workload, "seed": 0, "params": {},
                             "dialect": "2024", "phases": [{"name": "main", "sessions": 0}],
                             "scenarios": self.scenarios, "sessions": 0, "requests": 0, "duration": 0.0,
                             "expect": expect or {}, "generator": "hand-built"}
        self.digest = digest
        self.label = label
        self.rows: list[tuple] = []
        self.args: list[list] = []
        self.errors: list[tuple[int, str]] = []
        self.final: dict | None = None
        self.bindings: dict[str, str] = {}
        self.events: list[dict] = []  # extra run events ({"at", "kind", …}), e.g. fault windows
        self.shard: str | None = None  # the results header's shard ("i/N")
        self._t = 0.0
        self._sid = 0

    def req(self, op: str, args: Sequence[Any] = (), outcome: str = "ok", *, expect: str | None = None,
            status: int | None = None, at: float | None = None, latency: float = 0.01, lag: float = 0.0,
            sid: int | None = None, step: int = 0, scenario: str | None = None, error: str = "") -> "History":
        """Add one request. Times default to strictly sequential (no two requests overlap)."""
        if at is None:
            at = self._t
            self._t += latency + lag + 0.001
        if sid is None:
            sid = self._sid
            self._sid += 1
        expect = expect if expect is not None else (outcome if outcome in ("ok", "fail") else "any")
        sc = self.scenarios.index(scenario) if scenario is not None else 0
        oc = OUTCOMES.index(outcome)
        sent = float("nan") if oc == SKIPPED else at + lag
        done = float("nan") if oc == SKIPPED else at + lag + latency
        self.rows.append((sid, step, 0, OP_CODES[op], sc, EXPECT_CODES[expect], oc,
                          _STATUS[outcome] if status is None else status, at, sent, done))
        if error:
            self.errors.append((len(self.rows) - 1, error))
        self.args.append(list(args))
        return self

    def set_final(self, items: dict | None = None, users: dict | None = None, orders: dict | None = None,
                  missing: dict | None = None, settle: dict | None = None) -> "History":
        """The final-state snapshot; items {id: stock or (stock, price)}, users {id: credit},
        orders {id: (paid, [[item, qty], …], user, total_cost)} — or the full dicts of the format;
        ``settle`` is the final read's settle record (None: one snapshot)."""
        def item(v: Any) -> dict:
            return v if isinstance(v, dict) else {"stock": v[0], "price": v[1]} if isinstance(v, tuple) else {"stock": v, "price": 1}

        def order(v: Any) -> dict:
            if isinstance(v, dict):
                return v
            paid, lines, user, cost = v
            return {"paid": paid, "items": [list(x) for x in lines], "user_id": user, "total_cost": cost}

        self.final = {"items": {k: item(v) for k, v in (items or {}).items()},
                      "users": {k: (v if isinstance(v, dict) else {"credit": v}) for k, v in (users or {}).items()},
                      "orders": {k: order(v) for k, v in (orders or {}).items()},
                      "missing": missing or {}, "settle": settle, "read_at": self._t}
        return self

    def write(self, path: str | Path, *, complete: bool = True, reason: str | None = None,
              wall: float | None = None) -> Path:
        """Write the results file and return its path."""
        header = results_header(
            trace={"path": "hand-built.wdmt", "digest": self.digest, "header": self.trace_header},
            target={"ORDER_URL": "http://127.0.0.1:1", "PAYMENT_URL": "http://127.0.0.1:1",
                    "STOCK_URL": "http://127.0.0.1:1"},
            dialect="2024", speed=1.0, concurrency=16, timeout=10.0, label=self.label, started=0.0,
            tool="wdm-replay test", host="test", shard=self.shard, workers=1, scenarios=self.scenarios)
        w = ResultsWriter(path, header)
        if self.rows:
            arr = list(zip(*self.rows))
            cols = {name: np.asarray(arr[k], dtype=dt) for k, (name, dt, _) in enumerate(COLUMNS)}
            w.write_requests(cols, self.args, self.errors)
        w.write_bindings(self.bindings)
        w.write_event(0.0, "phase_start", phase=0)
        for e in self.events:
            w.write_event(e["at"], e["kind"], **{k: v for k, v in e.items() if k not in ("at", "kind")})
        if self.final is not None:
            w.write_final(self.final)
        end = max((r[10] for r in self.rows if r[10] == r[10]), default=0.0)
        w.close(complete=complete, wall=wall if wall is not None else end, reason=reason)
        return Path(path)
