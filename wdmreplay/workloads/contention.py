"""The contention workload: many concurrent writes to one order and to one user's credit.

What the course template gets wrong under concurrency, as a trace in three phases:

- ``populate`` — items (``items_per_order`` of them, stock for every unit the run adds), the
  owner of each contended order (credit exactly what the order will cost) with the order, and the
  contended users (starting ``credit``), each with an order of their own (the 2023 pay route names
  one).
- ``contend`` — all at time 0: ``adders`` sessions per contended order, each one ``add_item`` of
  one unit (items in turn), and per contended user ``funders`` sessions of one ``add_funds`` and
  ``payers`` sessions of one ``pay``, all of ``amount``.
- ``checkout`` — every contended order checked out (its owner can pay exactly ``adders × price``).

What it proves (header ``expect`` / ``expect_range`` / ``proves``): every order ends with all
``adders`` units and ``total_cost = adders × price`` (a lost line or a wrong total shows), its
checkout succeeds and takes exactly that; every contended user ends with ``credit + funders ×
amount − (successful pays) × amount``. A pay is ``"ok"`` when the starting credit covers every pay
whatever the order, ``"fail"`` when even every add_funds landing first cannot cover one, else
``"any"`` (the interleaving decides). Deterministic: no randomness beyond the layout, the seed
only names the trace. Sessions share symbols across sessions, so do not ``--shard`` it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping

from . import options as opt
from .options import WorkloadError
from .plan import Plan, step

PHASES = ("populate", "contend", "checkout")
SCENARIOS = ("populate", "add_item_race", "credit_race", "checkout")
DEFAULTS: dict[str, Any] = {"orders": 4, "adders": 25, "items_per_order": 2, "price": 3,
                            "users": 4, "funders": 25, "payers": 25, "amount": 1, "credit": None}


@dataclass(frozen=True, slots=True)
class ContentionParams:
    """The contention workload's normalized options (the trace header's ``params``), typed.

    :meth:`to_record` is the map the header stores (the fields in order).
    """

    dialect: str
    orders: int
    adders: int
    items_per_order: int
    price: int
    users: int
    funders: int
    payers: int
    amount: int
    credit: int

    @classmethod
    def from_record(cls, p: Mapping[str, Any]) -> "ContentionParams":
        """The params map of a header (or of :func:`resolve`)."""
        return cls(**p)

    def to_record(self) -> dict:
        """The params map in the header's key order."""
        return asdict(self)


def resolve(options: dict, dialect: str) -> tuple[dict, list[str]]:
    """Normalized ``params`` for the contention workload (``credit`` defaults to half the pays)."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise WorkloadError(f"contention: unknown option(s) {', '.join(sorted(unknown))}")
    o = {**DEFAULTS, **options}
    # checked in this order (the first bad option is the one named)
    orders = opt.as_int(o["orders"], "--orders", minimum=0)
    adders = opt.as_int(o["adders"], "--adders", minimum=1)
    items_per_order = opt.as_int(o["items_per_order"], "--items-per-order", minimum=1)
    price = opt.as_int(o["price"], "--price", minimum=1)
    users = opt.as_int(o["users"], "--users", minimum=0)
    funders = opt.as_int(o["funders"], "--funders", minimum=0)
    payers = opt.as_int(o["payers"], "--payers", minimum=0)
    amount = opt.as_int(o["amount"], "--amount", minimum=1)
    credit = opt.as_int(payers * amount // 2 if o["credit"] is None else o["credit"], "--credit", minimum=0)
    p = ContentionParams(dialect, orders, adders, items_per_order, price, users, funders, payers, amount, credit)
    if p.orders == 0 and p.users == 0:
        raise WorkloadError("contention: nothing to contend on (--orders 0 and --users 0)")
    return p.to_record(), []


def pay_bounds(credit: int, funders: int, payers: int, amount: int) -> tuple[int, int, str]:
    """``(lo, hi, expect)``: successful pays of one user in any interleaving, and each pay's expect.

    At least the pays the starting credit covers succeed (``lo``); at most those it covers once
    every add_funds landed first (``hi``); one pay's outcome is determined only when lo or hi is
    the extreme.
    """
    lo = min(payers, credit // amount)
    hi = min(payers, (credit + funders * amount) // amount)
    expect = "ok" if lo == payers else "fail" if hi == 0 else "any"
    return lo, hi, expect


def plan(params: Mapping[str, Any], seed: int) -> Plan:
    """The contention trace for normalized params (what :func:`resolve` returns; ``seed`` is recorded, not drawn from)."""
    p = ContentionParams.from_record(params)
    k, w, price = p.orders, p.adders, p.price
    u, f, n_pay, amount, credit = p.users, p.funders, p.payers, p.amount, p.credit
    lo, hi, pay_expect = pay_bounds(credit, f, n_pay, amount)
    credit_total = u * (credit + f * amount)
    expect_range = {
        "order_units": [k * w, k * w],
        "order_total_cost": [k * w * price, k * w * price],
        "checkout_ok": [k, k],
        "pay_ok": [u * lo, u * hi],
        "credit_total": [credit_total - u * hi * amount, credit_total - u * lo * amount],
    }
    expect = {key: v[0] for key, v in expect_range.items() if v[0] == v[1]}
    proves = []
    if k:
        proves.append(f"each of {k} orders receiving {w} concurrent add_item of one unit ends with "
                      f"{w} units and total_cost {w * price} (no lost line, no wrong total), and its "
                      f"checkout charges exactly that")
    if u:
        proves.append(f"each of {u} users receiving {f} concurrent add_funds and {n_pay} concurrent "
                      f"pay of {amount} ends with credit {credit} + {f * amount} - {amount} x successful "
                      f"pays (no lost update of credit)")
    return Plan(
        phases=list(PHASES), scenarios=list(SCENARIOS), expect=expect,
        extra_header={"expect_range": expect_range, "proves": proves},
        sessions=_sessions(p, pay_expect),
        estimate=2 * p.items_per_order + 3 * k + 3 * u + k * w + u * (f + n_pay) + k,
    )


def _sessions(p: ContentionParams, pay_expect: str) -> Iterator[tuple[int, float, list]]:
    k, w, r, price = p.orders, p.adders, p.items_per_order, p.price
    u, f, n_pay, amount, credit = p.users, p.funders, p.payers, p.amount, p.credit
    if k:
        per_item = k * (w // r + 1)  # every unit any order adds of one item, rounded up
        for i in range(r):
            sym = f"$item{i}"
            yield 0, 0.0, [step("create_item", [price], sym, "ok", 0.0, "populate"),
                           step("add_stock", [sym, per_item], None, "ok", 0.0, "populate")]
    for o in range(k):
        owner, order = f"$owner{o}", f"$order{o}"
        yield 0, 0.0, [step("create_user", [], owner, "ok", 0.0, "populate"),
                       step("add_funds", [owner, w * price], None, "ok", 0.0, "populate"),
                       step("create_order", [owner], order, "ok", 0.0, "populate")]
    for v in range(u):
        user = f"$user{v}"
        steps = [step("create_user", [], user, "ok", 0.0, "populate")]
        if credit:
            steps.append(step("add_funds", [user, credit], None, "ok", 0.0, "populate"))
        steps.append(step("create_order", [user], f"$upay{v}", "ok", 0.0, "populate"))
        yield 0, 0.0, steps
    for o in range(k):
        for j in range(w):
            yield 1, 0.0, [step("add_item", [f"$order{o}", f"$item{j % r}", 1], None, "ok", 0.0, "add_item_race")]
    for v in range(u):
        # Funders and payers interleaved in the trace, so no replay order favours either side.
        for j in range(max(f, n_pay)):
            if j < f:
                yield 1, 0.0, [step("add_funds", [f"$user{v}", amount], None, "ok", 0.0, "credit_race")]
            if j < n_pay:
                yield 1, 0.0, [step("pay", [f"$user{v}", f"$upay{v}", amount], None, pay_expect, 0.0,
                                    "credit_race")]
    for o in range(k):
        yield 2, 0.0, [step("checkout", [f"$order{o}"], None, "ok", 0.0, "checkout")]
