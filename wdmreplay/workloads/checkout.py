"""The checkout workload: the 2024 course variant — batch_init a population, then checkouts only.

Phase ``init``: one session calling batch_init_stock, batch_init_users and batch_init_orders in
turn (the shop creates literal ids ``"0"``…``"n-1"``; each order gets items the server picks).
Phase ``checkout``: one session per checkout of a random order (literal id), arriving at ``rate``
per second (Poisson or constant) for ``duration`` seconds or ``sessions`` sessions. A checkout's
outcome depends on what the server put in the order and on concurrency (and an order may be drawn
twice), so every checkout is ``"any"`` and the header's ``expect`` is empty.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

from ..operations import get_dialect
from . import options as opt
from .arrivals import ARRIVALS, open_arrivals
from .options import WorkloadError
from .plan import Plan, step

PHASES = ("init", "checkout")
SCENARIOS = ("batch_init", "checkout")
# The 2024 course benchmark's population.
DEFAULTS: dict[str, Any] = {
    "items": 100_000, "stock": 1_000_000, "price": 1, "users": 100_000, "credit": 1_000_000,
    "orders": 100_000, "rate": 100.0, "arrival": "poisson", "duration": None, "sessions": None,
    "requests": None,
}
DEFAULT_DURATION = 60.0


@dataclass(frozen=True, slots=True)
class CheckoutParams:
    """The checkout workload's normalized options (the trace header's ``params``), typed.

    :meth:`to_record` is the map the header stores (the fields in order); exactly one of
    ``duration``, ``sessions``, ``requests`` is set (the others None).
    """

    dialect: str
    items: int
    stock: int
    price: int
    users: int
    credit: int
    orders: int
    rate: float
    arrival: str
    duration: float | None = None
    sessions: int | None = None
    requests: int | None = None

    @classmethod
    def from_record(cls, p: Mapping[str, Any]) -> "CheckoutParams":
        """The params map of a header (or of :func:`resolve`)."""
        return cls(**p)

    def to_record(self) -> dict:
        """The params map in the header's key order."""
        return asdict(self)


def resolve(options: dict, dialect: str) -> tuple[dict, list[str]]:
    """Normalized ``params`` for the checkout workload; refuses dialects without batch_init."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise WorkloadError(f"checkout: unknown option(s) {', '.join(sorted(unknown))}")
    missing = get_dialect(dialect).missing(["batch_init_stock", "batch_init_users", "batch_init_orders"])
    if missing:
        raise WorkloadError(f"the checkout workload needs batch_init, which dialect {dialect} lacks; "
                            f"use --dialect 2024")
    o = {**DEFAULTS, **options}
    return CheckoutParams(
        dialect=dialect,
        items=opt.as_int(o["items"], "--items", minimum=1),
        stock=opt.as_int(o["stock"], "--stock", minimum=0),
        price=opt.as_int(o["price"], "--price", minimum=0),
        users=opt.as_int(o["users"], "--users", minimum=1),
        credit=opt.as_int(o["credit"], "--credit", minimum=0),
        orders=opt.as_int(o["orders"], "--orders", minimum=1),
        rate=opt.as_float(o["rate"], "--rate", positive=True),
        arrival=opt.choice(o["arrival"] or "poisson", "--arrival", ARRIVALS),
        **opt.stop_condition(o["duration"], o["sessions"], o["requests"], default_duration=DEFAULT_DURATION),
    ).to_record(), []


def plan(params: Mapping[str, Any], seed: int) -> Plan:
    """The checkout trace for normalized params (what :func:`resolve` returns)."""
    p = CheckoutParams.from_record(params)
    if p.sessions is not None:
        est = p.sessions
    elif p.requests is not None:
        est = p.requests
    else:
        assert p.duration is not None
        est = int(p.rate * p.duration)
    return Plan(phases=list(PHASES), scenarios=list(SCENARIOS), sessions=_sessions(p, random.Random(seed)),
                estimate=3 + est)


def _sessions(p: CheckoutParams, rng: random.Random) -> Iterator[tuple[int, float, list]]:
    yield 0, 0.0, [
        step("batch_init_stock", [p.items, p.stock, p.price], None, "ok", 0.0, "batch_init"),
        step("batch_init_users", [p.users, p.credit], None, "ok", 0.0, "batch_init"),
        step("batch_init_orders", [p.orders, p.items, p.users, p.price], None, "ok", 0.0, "batch_init"),
    ]
    n_orders, duration, max_sessions, max_requests = p.orders, p.duration, p.sessions, p.requests
    r = rng.random
    n = 0
    for at in open_arrivals(p.rate, p.arrival, rng):
        if duration is not None and at >= duration:
            return
        if max_sessions is not None and n >= max_sessions:
            return
        if max_requests is not None and n + 3 >= max_requests:
            return
        yield 1, round(at, 6), [step("checkout", [str(int(r() * n_orders))], None, "any", 0.0, "checkout")]
        n += 1
