"""The consistency workload: populate, create orders, then every checkout at once.

The seed benchmark's consistency test as a trace, in three phases (barriers between them):

- ``populate`` — one session per item (create_item, add_stock) and per user (create_user,
  add_funds), all at time 0.
- ``orders`` — one session per order: create_order for a random user, add_item of one random
  item (quantity 1). Users and items are drawn from the seeded RNG.
- ``checkout`` — one session per order, all at time 0: the concurrent checkouts.

Which checkouts win is decided by the interleaving, so checkout steps are ``"any"`` unless the
order's item and user are both uncontended (``"ok"``) or it can never succeed (``"fail"``).

The aggregate outcome (header ``expect``) is *not* always determined: the set of successful
checkouts of a correct shop is some maximal set of orders respecting stock and credit, and
different interleavings can give maximal sets of different sizes (a user who ordered two items may
spend their credit on the one others also wanted, leaving the other unsold). See
:func:`checkout_bounds`; ``expect`` holds ``checkout_ok``/``stock_total``/``credit_total`` only when
every interleaving gives the same count, and the header's ``expect_range`` always holds the bounds.

Two options add orders of their own (own item, own user, nothing contended) that exercise bug
classes the test never does (``docs/bug-classes.md``): ``repeat_orders`` orders add their item twice
(1 then 2 units; 1 and 1 under dialect 2023) and are checked out in the checkout phase (``"ok"``);
``recheckout_orders`` orders are checked out twice in a row (``"ok"``, then ``"any"``: the policy is
the shop's, so each may take one more unit and its price, which the bounds allow for).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

from . import options as opt
from .options import WorkloadError
from .plan import Plan, step

PHASES = ("populate", "orders", "checkout")
DEFAULTS: dict[str, Any] = {"items": 100, "stock": 1, "price": 1, "users": 1000, "credit": 1, "orders": 1000}
# The course benchmark's consistency test, as its README text and as its code describe it
# (../shared/seed/benchmark-figures.md): the two differ in how the 100 units are spread.
PRESETS: dict[str, dict[str, int]] = {
    "readme": {"items": 100, "stock": 1, "price": 1, "users": 1000, "credit": 1, "orders": 1000},
    "course": {"items": 1, "stock": 100, "price": 1, "users": 1000, "credit": 1, "orders": 1000},
}


EXTRAS = ("repeat_orders", "recheckout_orders")  # in params only when nonzero (the seed test's bytes stay)
SIZES = tuple(DEFAULTS)  # the options a preset sets


@dataclass(frozen=True, slots=True)
class ConsistencyParams:
    """The consistency workload's normalized options (the trace header's ``params``), typed.

    :meth:`to_record` is the map the header stores: ``preset`` only when one was given and the
    extra orders only when nonzero (so traces made before they existed keep their bytes);
    :meth:`from_record` gives those their defaults (no preset, 0).
    """

    dialect: str
    items: int
    stock: int
    price: int
    users: int
    credit: int
    orders: int
    preset: str | None = None
    repeat_orders: int = 0
    recheckout_orders: int = 0

    @classmethod
    def from_record(cls, p: dict) -> "ConsistencyParams":
        """The params map of a header (or of :func:`resolve`)."""
        return cls(**{**dict.fromkeys(EXTRAS, 0), "preset": None, **p})

    def to_record(self) -> dict:
        """The params map in the header's key order."""
        return {"dialect": self.dialect, **({"preset": self.preset} if self.preset is not None else {}),
                **self.sizes(), **{k: v for k, v in asdict(self).items() if k in EXTRAS and v}}

    def sizes(self) -> dict[str, int]:
        """The options a preset sets (items, stock, price, users, credit, orders)."""
        return {"items": self.items, "stock": self.stock, "price": self.price, "users": self.users,
                "credit": self.credit, "orders": self.orders}


def resolve(options: dict, dialect: str) -> tuple[dict, list[str]]:
    """Normalized ``params`` for the consistency workload (a ``preset`` fills the other options)."""
    options = {k: v for k, v in options.items() if v is not None}
    preset = options.pop("preset", None)
    extras = {k: opt.as_int(options.pop(k), f"--{k.replace('_', '-')}", minimum=0) for k in EXTRAS if k in options}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise WorkloadError(f"consistency: unknown option(s) {', '.join(sorted(unknown))}")
    base = DEFAULTS
    if preset is not None:
        base = PRESETS[opt.choice(preset, "--preset", tuple(PRESETS))]
    o = {**base, **options}
    return ConsistencyParams(
        dialect=dialect, preset=preset,
        items=opt.as_int(o["items"], "--items", minimum=1),
        stock=opt.as_int(o["stock"], "--stock", minimum=0),
        price=opt.as_int(o["price"], "--price", minimum=1),
        users=opt.as_int(o["users"], "--users", minimum=1),
        credit=opt.as_int(o["credit"], "--credit", minimum=0),
        orders=opt.as_int(o["orders"], "--orders", minimum=0),
        **extras,
    ).to_record(), []


def benchmark_of(p: ConsistencyParams) -> str | None:
    """``"course"`` / ``"readme"`` when ``p`` is exactly that preset's workload, else None.

    Recorded as the header's ``benchmark``: the course benchmark's four figures are only
    meaningful for its own workload, so a preset with an option changed is no longer marked.
    """
    if p.preset is None or p.sizes() != PRESETS[p.preset] or p.repeat_orders or p.recheckout_orders:
        return None
    return p.preset


def checkout_bounds(stock: int, price: int, credit: int, order_item: Sequence[int],
                    order_user: Sequence[int]) -> tuple[int, int, list[str]]:
    """Bounds ``(lo, hi)`` on the number of successful checkouts, and each order's expect.

    Every item has ``stock`` units; every user can pay ``k = credit // price`` one-unit orders.
    Under any serial order of the checkouts (what a correct shop's concurrency amounts to), the
    successful orders form a *maximal* set S with at most ``stock`` per item and ``k`` per user:
    an order fails only when its item or its user is already used up. So
    ``|S| <= hi = min(Σ_i min(stock, d_i), Σ_u min(k, d_u))`` (d = orders per item / user).

    The lower bound proves entities *saturated* in every outcome. Item i ends below
    ``min(stock, d_i)`` only if each of its failed orders met a used-up user. A user v whose orders
    on other items number ``o < k`` cannot be used up without buying i, so in that case v bought at
    least ``min(d_vi, k - o)`` units of i. If those guaranteed units reach ``min(stock, d_i)``, item
    i always sells that much. Users are treated symmetrically. ``lo`` is the larger of the
    saturated items' and saturated users' sums. ``lo == hi`` means the outcome is determined.
    """
    k = credit // price
    n_pair = Counter(zip(order_user, order_item))
    d_item = Counter(order_item)
    d_user = Counter(order_user)
    by_item: dict[int, list[tuple[int, int]]] = {}
    by_user: dict[int, list[tuple[int, int]]] = {}
    for (u, i), n in n_pair.items():
        by_item.setdefault(i, []).append((u, n))
        by_user.setdefault(u, []).append((i, n))

    lo_items = _saturated_sum(by_item, d_item, stock, d_user, k)
    lo_users = _saturated_sum(by_user, d_user, k, d_item, stock)
    hi = min(sum(min(stock, d) for d in d_item.values()), sum(min(k, d) for d in d_user.values()))
    lo = max(lo_items, lo_users)

    expects = []
    for i, u in zip(order_item, order_user):
        if stock == 0 or k == 0:
            expects.append("fail")
        elif d_item[i] <= stock and d_user[u] <= k:
            expects.append("ok")
        else:
            expects.append("any")
    return lo, hi, expects


def plan(params: dict, seed: int) -> Plan:
    """The consistency trace for normalized params (what :func:`resolve` returns)."""
    p = ConsistencyParams.from_record(params)
    rng = random.Random(seed)
    r = rng.random
    n_items, n_users, n_orders = p.items, p.users, p.orders
    stock, price, credit = p.stock, p.price, p.credit
    order_user = [int(r() * n_users) for _ in range(n_orders)]
    order_item = [int(r() * n_items) for _ in range(n_orders)]
    lo, hi, expects = checkout_bounds(stock, price, credit, order_item, order_user)
    stock0, credit0 = n_items * stock, n_users * credit
    n_rep, n_re = p.repeat_orders, p.recheckout_orders
    # The extra orders end with nothing left but, under a policy that refuses the re-checkout,
    # one unit and one price per re-checked order; a shop that charges again takes those too.
    expect_range = {
        "checkout_ok": [lo + n_rep + n_re, hi + n_rep + 2 * n_re],
        "stock_total": [stock0 - hi, stock0 - lo + n_re],
        "credit_total": [credit0 - hi * price, credit0 - lo * price + n_re * price],
    }
    per_populate = (1 + (stock > 0)) * n_items + (1 + (credit > 0)) * n_users
    expect = {k: v[0] for k, v in expect_range.items() if v[0] == v[1]} if lo == hi else {}
    return Plan(
        phases=list(PHASES), scenarios=list(PHASES), expect=expect,
        extra_header={"expect_range": expect_range, "benchmark": benchmark_of(p)},
        sessions=_sessions(p, order_user, order_item, expects),
        estimate=per_populate + 3 * n_orders + 7 * (n_rep + n_re),
    )


def _sessions(p: ConsistencyParams, order_user: list[int], order_item: list[int],
              expects: list[str]) -> Iterator[tuple[int, float, list]]:
    stock, price, credit = p.stock, p.price, p.credit
    for i in range(p.items):
        sym = f"$item{i}"
        steps = [step("create_item", [price], sym, "ok", 0.0, "populate")]
        if stock > 0:
            steps.append(step("add_stock", [sym, stock], None, "ok", 0.0, "populate"))
        yield 0, 0.0, steps
    for u in range(p.users):
        sym = f"$user{u}"
        steps = [step("create_user", [], sym, "ok", 0.0, "populate")]
        if credit > 0:
            steps.append(step("add_funds", [sym, credit], None, "ok", 0.0, "populate"))
        yield 0, 0.0, steps
    yield from _extra_sessions(p, 0)
    for k, (u, i) in enumerate(zip(order_user, order_item)):
        o = f"$order{k}"
        yield 1, 0.0, [step("create_order", [f"$user{u}"], o, "ok", 0.0, "orders"),
                       step("add_item", [o, f"$item{i}", 1], None, "ok", 0.0, "orders")]
    yield from _extra_sessions(p, 1)
    for k, e in enumerate(expects):
        yield 2, 0.0, [step("checkout", [f"$order{k}"], None, e, 0.0, "checkout")]
    yield from _extra_sessions(p, 2)


def _extra_sessions(p: ConsistencyParams, phase: int) -> Iterator[tuple[int, float, list]]:
    """Phase ``phase``'s sessions of the repeat and re-checkout orders (own item and user each)."""
    price, second = p.price, 1 if p.dialect == "2023" else 2  # 2023's add_item adds one unit
    n_rep = p.repeat_orders
    for r in range(n_rep + p.recheckout_orders):
        repeat = r < n_rep
        item, user, order = f"$xitem{r}", f"$xuser{r}", f"$xorder{r}"
        units = 1 + second if repeat else 2  # what the order takes, or (re-checkout) two checkouts take
        if phase == 0:
            yield 0, 0.0, [step("create_item", [price], item, "ok", 0.0, "populate"),
                           step("add_stock", [item, units], None, "ok", 0.0, "populate"),
                           step("create_user", [], user, "ok", 0.0, "populate"),
                           step("add_funds", [user, units * price], None, "ok", 0.0, "populate")]
        elif phase == 1:
            adds = [step("add_item", [order, item, 1], None, "ok", 0.0, "orders")]
            if repeat:
                adds.append(step("add_item", [order, item, second], None, "ok", 0.0, "orders"))
            yield 1, 0.0, [step("create_order", [user], order, "ok", 0.0, "orders"), *adds]
        else:
            again = [] if repeat else [step("checkout", [order], None, "any", 0.0, "checkout")]
            yield 2, 0.0, [step("checkout", [order], None, "ok", 0.0, "checkout"), *again]


def _saturated_sum(groups: dict[int, list[tuple[int, int]]], demand: Counter, cap: int,
                   other_demand: Counter, other_cap: int) -> int:
    """Units sold by the entities of one side that are saturated in every serial outcome.

    ``groups`` maps each entity of this side (items, or users) to its (partner, orders) pairs;
    ``cap`` is this side's capacity (stock, or payable orders), ``other_cap`` the partners'.
    """
    total = 0
    for e, pairs in groups.items():
        target = min(cap, demand[e])
        sure = 0
        for partner, n in pairs:
            other = other_demand[partner] - n
            if other < other_cap:
                sure += min(n, other_cap - other)
        if sure >= target:
            total += target
    return total
