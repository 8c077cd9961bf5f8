"""The final-state record: what the replay's final read returned, as typed, frozen records.

Built once from the results file's ``final`` record (a msgpack map, see ``traces/results.py``) so
every checker reads attributes, never ``.get()`` on dicts. The *settle contract* (written by the
replayer's final read, read here): ``settle`` is ``None`` (one snapshot, no settling asked) or
``{"requested": S, "settled": bool, "snapshots": [{"at", "end"}, …], "why": str}``; files written
before the contract carry ``{"requested", "settled", "seconds", "reads"}``, read the same way.
``quiesce`` (how long the final read waited for abandoned requests to land) is informational.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..traces.argcols import as_int  # one definition; re-exported for the checkers

ENTITY_KINDS = ("item", "user", "order")


@dataclass(frozen=True, slots=True)
class ItemState:
    """One item as read back: stock and price."""

    stock: int
    price: int


@dataclass(frozen=True, slots=True)
class UserState:
    """One user as read back: credit."""

    credit: int


@dataclass(frozen=True, slots=True)
class OrderState:
    """One order as read back: paid flag, lines (item → quantity, repeated lines summed), user, total."""

    paid: bool
    lines: tuple[tuple[str, int], ...]
    user: str | None
    total_cost: int

    @property
    def quantities(self) -> dict[str, int]:
        """Item id → quantity in the order."""
        return dict(self.lines)


@dataclass(frozen=True, slots=True)
class Settle:
    """How the final read settled: asked for ``requested`` seconds; ``settled`` when two snapshots agreed."""

    requested: float
    settled: bool
    snapshots: int
    why: str


@dataclass(frozen=True, slots=True)
class FinalState:
    """Every entity the final read returned, those it could not read (kind → {id: why}), and settling."""

    items: Mapping[str, ItemState]
    users: Mapping[str, UserState]
    orders: Mapping[str, OrderState]
    missing: Mapping[str, Mapping[str, str]]
    settle: Settle | None
    quiesce: Any = None

    def missing_count(self, kind: str) -> int:
        """How many entities of ``kind`` ("item", "user", "order") could not be read back."""
        return len(self.missing.get(kind) or {})

    def read_count(self, kind: str) -> int:
        """How many entities of ``kind`` were read back."""
        return len({"item": self.items, "user": self.users, "order": self.orders}[kind])


def _order(v: Mapping) -> OrderState:
    q: dict[str, int] = {}
    for line in v.get("items") or ():
        try:
            item = str(line[0])
            q[item] = q.get(item, 0) + as_int(line[1], 1)
        except (IndexError, TypeError):
            continue
    user = v.get("user_id")
    return OrderState(bool(v.get("paid")), tuple(sorted(q.items())), None if user is None else str(user),
                      as_int(v.get("total_cost")))


def _settle(v: Any) -> Settle | None:
    if not isinstance(v, Mapping):
        return None
    snaps = v.get("snapshots")
    n = len(snaps) if isinstance(snaps, (list, tuple)) else as_int(v.get("reads"), 1)
    try:
        requested = float(v.get("requested") or 0.0)
    except (TypeError, ValueError):
        requested = 0.0
    return Settle(requested, bool(v.get("settled")), n, str(v.get("why") or ""))


def final_state(record: Mapping | None) -> FinalState | None:
    """The typed final state of a results file's ``final`` record (None when the run has none)."""
    if record is None:
        return None
    items = {str(k): ItemState(as_int(v.get("stock")), as_int(v.get("price")))
             for k, v in (record.get("items") or {}).items()}
    users = {str(k): UserState(as_int(v.get("credit"))) for k, v in (record.get("users") or {}).items()}
    orders = {str(k): _order(v) for k, v in (record.get("orders") or {}).items()}
    missing = {str(k): {str(i): str(w) for i, w in (v or {}).items()}
               for k, v in (record.get("missing") or {}).items() if v}
    return FinalState(items, users, orders, missing, _settle(record.get("settle")), record.get("quiesce"))
