"""The stress workload: the seed benchmark's six weighted scenarios, step for step.

Scenarios (``bench/seed_scenarios.py`` and the seed README), each a run of steps on entities
private to it — so the shop model decides every step's ``expect``:

1. ``s1_admin_stock`` — an admin creates an item and adds stock to it.
2. ``s2_checkout_one`` — create item, add stock, create user, add funds, create order, add the
   item, checkout (ok).
3. ``s3_checkout_two`` — the same with two items (ok).
4. ``s4_remove_readd`` — one item: add it, remove it, add it again, checkout (ok). Needs
   ``remove_item``, which only dialect 2023 has.
5. ``s5_fail_no_stock`` — two items in the order; an admin reads the second item and subtracts
   all its stock before checkout (checkout must fail).
6. ``s6_fail_no_credit`` — the user never gets funds (checkout must fail).

Two more scenarios, not in the seed benchmark, cover bug classes the six never exercise
(``docs/bug-classes.md``); by default each is 5 % of the runs (``repeat_share``,
``recheckout_share``), spread evenly from a seeded start (every trace of 20 runs or more has
both), and the six share the other 90 % by their weights; ``--seed-scenarios-only`` sets both
shares to 0:

7. ``s7_repeat_item`` — one item added twice to the order (1 then 2 units; 1 and 1 under dialect
   2023, whose add_item has no quantity), checkout (ok): a checkout that keeps one quantity per
   item id takes too little stock.
8. ``s8_checkout_twice`` — checkout (ok), then the same order checked out again (``"any"``: the
   re-checkout policy is the shop's; ``check --recheckout`` says which one is right).

The seed scenario of each other run is drawn per run from the seeded RNG with the weights. Arrival models:
*open* (sessions at ``rate``/s, one scenario run each) and *closed* (``users`` sessions, each
running scenario after scenario with a uniform ``wait`` think time before each later run, put in
the ``think`` of that run's first step).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator, Mapping

from ..operations import get_dialect
from . import options as opt
from .arrivals import ARRIVALS, open_arrivals, spawn_times, think_times
from .model import ShopModel
from .options import WorkloadError
from .plan import Plan, step

S1, S2, S3, S4, S5, S6, S7, S8 = SCENARIOS = (
    "s1_admin_stock", "s2_checkout_one", "s3_checkout_two", "s4_remove_readd",
    "s5_fail_no_stock", "s6_fail_no_credit", "s7_repeat_item", "s8_checkout_twice",
)
SEED_SCENARIOS = SCENARIOS[:6]
DEFAULT_WEIGHTS = (5, 30, 25, 20, 10, 10)  # the seed benchmark's weights of its six scenarios
DEFAULT_REPEAT_SHARE = 0.05  # share of runs that are s7_repeat_item
DEFAULT_RECHECKOUT_SHARE = 0.05  # share of runs that are s8_checkout_twice
STEPS_PER_SCENARIO = (2, 7, 10, 9, 12, 6, 8, 8)  # requests per run (for estimates; tests check it)
PHASE = "stress"

DEFAULTS: dict[str, Any] = {
    "model": None, "rate": None, "arrival": None, "duration": None, "sessions": None,
    "requests": None, "users": None, "spawn_rate": None, "wait": None, "weights": None,
    "price_range": "1,10", "stock_range": "100,1000", "funds_range": "10000,100000",
    "repeat_share": None, "recheckout_share": None, "seed_scenarios_only": False,
}
OPEN_DEFAULT_RATE = 10.0
DEFAULT_DURATION = 60.0
CLOSED_DEFAULT_SPAWN_RATE = 1.0
CLOSED_DEFAULT_WAIT = "1,15"  # the seed locustfile's wait_time between(1, 15)


@dataclass(slots=True)
class FinalTotals:
    """The final state summed over every session so far (each works on entities of its own), and what
    s8's re-checkouts may add if the shop's policy is to charge again."""

    paid: int = 0  # checkouts that paid
    stock: int = 0
    credit: int = 0
    recheckouts: int = 0  # s8 sessions whose second checkout a charging shop could take
    recheckout_units: int = 0
    recheckout_cost: int = 0


class Draws:
    """The per-scenario random values, drawn from one seeded RNG (inclusive integer ranges)."""

    __slots__ = ("_r", "_p", "_s", "_f", "totals", "repeat_qty")

    def __init__(self, rng: random.Random, price: list[int], stock: list[int], funds: list[int],
                 repeat_qty: int = 2):
        self._r = rng.random
        # (low, span) pairs: lo + int(random() * span) is uniform on [lo, hi] and much cheaper
        # than randint in the hot loop.
        self._p = (price[0], price[1] - price[0] + 1)
        self._s = (stock[0], stock[1] - stock[0] + 1)
        self._f = (funds[0], funds[1] - funds[0] + 1)
        self.totals = FinalTotals()
        self.repeat_qty = repeat_qty  # units of s7's second add_item (1 when the dialect has no quantity)

    def tally(self, m: ShopModel) -> None:
        """Add one finished session's final state to :attr:`totals` (its entities are its own)."""
        t = self.totals
        t.paid += sum(1 for o in m.orders.values() if o.paid)
        t.stock += sum(m.stock.values())
        t.credit += sum(m.credit.values())

    def price(self) -> int:
        lo, n = self._p
        return lo + int(self._r() * n)

    def stock(self) -> int:
        lo, n = self._s
        return lo + int(self._r() * n)

    def funds(self) -> int:
        lo, n = self._f
        return lo + int(self._r() * n)


# --- scenarios: (symbol namespace, think before the first step, draws) -> steps ---------------

def _s1(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0 = ns + "item0"
    p, a = d.price(), d.stock()
    steps = [
        step("create_item", [p], i0, m.create_item(i0, p), think, S1),
        step("add_stock", [i0, a], None, m.add_stock(i0, a), 0.0, S1),
    ]
    d.tally(m)
    return steps


def _item(m: ShopModel, d: Draws, sym: str, think: float, sc: str) -> list:
    p, a = d.price(), d.stock()
    return [
        step("create_item", [p], sym, m.create_item(sym, p), think, sc),
        step("add_stock", [sym, a], None, m.add_stock(sym, a), 0.0, sc),
    ]


def _user_order(m: ShopModel, d: Draws, user: str, order: str, sc: str, funded: bool = True) -> list:
    out = [step("create_user", [], user, m.create_user(user), 0.0, sc)]
    if funded:
        f = d.funds()
        out.append(step("add_funds", [user, f], None, m.add_funds(user, f), 0.0, sc))
    out.append(step("create_order", [user], order, m.create_order(order, user), 0.0, sc))
    return out


def _s2(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, u, o = ns + "item0", ns + "user", ns + "order"
    steps = [
        *_item(m, d, i0, think, S2),
        *_user_order(m, d, u, o, S2),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S2),
        step("checkout", [o], None, m.checkout(o), 0.0, S2),
    ]
    d.tally(m)
    return steps


def _s3(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, i1, u, o = ns + "item0", ns + "item1", ns + "user", ns + "order"
    steps = [
        *_item(m, d, i0, think, S3),
        *_item(m, d, i1, 0.0, S3),
        *_user_order(m, d, u, o, S3),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S3),
        step("add_item", [o, i1, 1], None, m.add_item(o, i1, 1), 0.0, S3),
        step("checkout", [o], None, m.checkout(o), 0.0, S3),
    ]
    d.tally(m)
    return steps


def _s4(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, u, o = ns + "item0", ns + "user", ns + "order"
    steps = [
        *_item(m, d, i0, think, S4),
        *_user_order(m, d, u, o, S4),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S4),
        step("remove_item", [o, i0], None, m.remove_item(o, i0), 0.0, S4),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S4),
        step("checkout", [o], None, m.checkout(o), 0.0, S4),
    ]
    d.tally(m)
    return steps


def _s5(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, i1, u, o = ns + "item0", ns + "item1", ns + "user", ns + "order"
    head = [
        *_item(m, d, i0, think, S5),
        *_item(m, d, i1, 0.0, S5),
        *_user_order(m, d, u, o, S5),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S5),
        step("add_item", [o, i1, 1], None, m.add_item(o, i1, 1), 0.0, S5),
        # The seed's admin reads the item's stock and subtracts all of it; the model knows it.
        step("find_item", [i1], None, m.find_item(i1), 0.0, S5),
    ]
    left = m.stock[i1]
    head.append(step("subtract_stock", [i1, left], None, m.subtract_stock(i1, left), 0.0, S5))
    head.append(step("checkout", [o], None, m.checkout(o), 0.0, S5))
    d.tally(m)
    return head


def _s6(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, u, o = ns + "item0", ns + "user", ns + "order"
    steps = [
        *_item(m, d, i0, think, S6),
        *_user_order(m, d, u, o, S6, funded=False),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S6),
        step("checkout", [o], None, m.checkout(o), 0.0, S6),
    ]
    d.tally(m)
    return steps


def _s7(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, u, o = ns + "item0", ns + "user", ns + "order"
    q = d.repeat_qty
    steps = [
        *_item(m, d, i0, think, S7),
        *_user_order(m, d, u, o, S7),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S7),
        step("add_item", [o, i0, q], None, m.add_item(o, i0, q), 0.0, S7),
        step("checkout", [o], None, m.checkout(o), 0.0, S7),
    ]
    d.tally(m)
    return steps


def _s8(ns: str, think: float, d: Draws) -> list:
    m = ShopModel()
    i0, u, o = ns + "item0", ns + "user", ns + "order"
    steps = [
        *_item(m, d, i0, think, S8),
        *_user_order(m, d, u, o, S8),
        step("add_item", [o, i0, 1], None, m.add_item(o, i0, 1), 0.0, S8),
        step("checkout", [o], None, m.checkout(o), 0.0, S8),
    ]
    paid = m.orders[o].paid
    steps.append(step("checkout", [o], None, m.checkout(o), 0.0, S8))  # "any": the shop's policy
    d.tally(m)
    if paid and m.stock[i0] >= 1 and m.credit[u] >= m.total_cost(o):
        t = d.totals  # a shop that charges again can take one more unit and the cost once more
        t.recheckouts += 1
        t.recheckout_units += 1
        t.recheckout_cost += m.total_cost(o)
    return steps


BUILDERS: tuple[Callable[[str, float, Draws], list], ...] = (_s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8)


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StressParams:
    """The stress workload's normalized options (the trace header's ``params``), typed.

    The open model sets ``rate``, ``arrival`` and one of ``duration``/``sessions``/``requests``; the
    closed one ``duration``, ``users``, ``spawn_rate`` and ``wait`` (the others None). Every field
    defaults to None, so an older or hand-edited header still reads (``repeat_share`` and
    ``recheckout_share`` None: a trace made before s7 and s8); keys this version does not know (a
    capacity cut's ``cut``) are kept in ``extra``. :meth:`to_record` is the map the header stores.
    """

    dialect: str | None = None
    model: str | None = None  # "open" | "closed"
    rate: float | None = None
    arrival: str | None = None
    duration: float | None = None
    sessions: int | None = None
    requests: int | None = None
    users: int | None = None
    spawn_rate: float | None = None
    wait: Any = None  # [lo, hi] seconds
    repeat_share: float | None = None
    recheckout_share: float | None = None
    weights: Any = None  # the six seed scenarios' weights
    price_range: Any = None  # [lo, hi]
    stock_range: Any = None
    funds_range: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, p: Mapping[str, Any]) -> "StressParams":
        """The params map of a header (or of :func:`resolve`)."""
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in p.items() if k in names}, extra={k: v for k, v in p.items() if k not in names})

    def to_record(self) -> dict:
        """The params map in the header's key order (the s7/s8 shares only when set)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for share in ("repeat_share", "recheckout_share"):
            if out[share] is None:
                del out[share]
        return {**out, **self.extra}


def resolve(options: dict, dialect: str) -> tuple[dict, list[str]]:
    """Normalized ``params`` (every option, so the trace regenerates) and notices for the user."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise WorkloadError(f"stress: unknown option(s) {', '.join(sorted(unknown))}")
    o = {**DEFAULTS, **options}
    notices: list[str] = []
    d = get_dialect(dialect)
    model = o["model"]
    if model is None:
        model = "closed" if o["users"] is not None else "open"
    opt.choice(model, "--model", ("open", "closed"))
    p: dict[str, Any] = {"dialect": dialect, "model": model}
    if model == "open":
        for name in ("users", "spawn_rate", "wait"):
            if o[name] is not None:
                raise WorkloadError(f"--{name.replace('_', '-')} applies only to the closed model (--users)")
        p["rate"] = opt.as_float(OPEN_DEFAULT_RATE if o["rate"] is None else o["rate"], "--rate", positive=True)
        p["arrival"] = opt.choice(o["arrival"] or "poisson", "--arrival", ARRIVALS)
        p.update(opt.stop_condition(o["duration"], o["sessions"], o["requests"],
                                    default_duration=DEFAULT_DURATION))
        p.update(users=None, spawn_rate=None, wait=None)
    else:
        for name in ("rate", "arrival", "sessions", "requests"):
            if o[name] is not None:
                raise WorkloadError(f"--{name} applies only to the open model; the closed model (--users) "
                                    f"runs for --duration")
        if o["users"] is None:
            raise WorkloadError("--users is required for the closed model")
        p.update(rate=None, arrival=None)
        p.update(duration=opt.as_float(DEFAULT_DURATION if o["duration"] is None else o["duration"],
                                       "--duration", minimum=0), sessions=None, requests=None)
        p["users"] = opt.as_int(o["users"], "--users", minimum=1)
        p["spawn_rate"] = opt.as_float(CLOSED_DEFAULT_SPAWN_RATE if o["spawn_rate"] is None else o["spawn_rate"],
                                       "--spawn-rate", positive=True)
        p["wait"] = opt.float_range(CLOSED_DEFAULT_WAIT if o["wait"] is None else o["wait"], "--wait")
    explicit = o["weights"] is not None
    weights = opt.parse_list(o["weights"] if explicit else DEFAULT_WEIGHTS, "--weights")
    if len(weights) != len(SEED_SCENARIOS):
        raise WorkloadError(f"--weights: expected {len(SEED_SCENARIOS)} numbers (one per seed scenario; s7 and s8 "
                            f"take --repeat-share and --recheckout-share), got {len(weights)}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise WorkloadError("--weights: weights must be >= 0 and not all zero")
    p.update(_extra_shares(o))
    if not d.supports("remove_item") and weights[3] > 0:
        if explicit:
            raise WorkloadError(
                f"--weights: scenario 4 ({S4}) needs remove_item, which dialect {dialect} lacks; "
                f"give it weight 0 or use --dialect 2023")
        weights[3] = 0.0
        shares = "/".join(f"{100 * w:.2f}".rstrip("0").rstrip(".")
                          for w in effective_weights(StressParams.from_record({**p, "weights": weights})))
        notices.append(f"notice: dialect {dialect} has no remove_item, so scenario 4 ({S4}) is left out; "
                       f"scenario shares renormalized to {shares} %")
    p["weights"] = weights
    p["price_range"] = opt.int_range(o["price_range"], "--price-range", minimum=0)
    p["stock_range"] = opt.int_range(o["stock_range"], "--stock-range", minimum=0)
    p["funds_range"] = opt.int_range(o["funds_range"], "--funds-range", minimum=0)
    return StressParams.from_record(p).to_record(), notices


def _extra_shares(o: dict) -> dict:
    """``repeat_share`` and ``recheckout_share`` of the runs (0 and 0 with ``seed_scenarios_only``)."""
    given = [n for n in ("repeat_share", "recheckout_share") if o[n] is not None]
    if o["seed_scenarios_only"]:
        if given:
            raise WorkloadError(f"--seed-scenarios-only leaves out s7 and s8; do not give "
                                f"--{given[0].replace('_', '-')} with it")
        return {"repeat_share": 0.0, "recheckout_share": 0.0}
    rep = opt.as_float(DEFAULT_REPEAT_SHARE if o["repeat_share"] is None else o["repeat_share"],
                       "--repeat-share", minimum=0)
    rc = opt.as_float(DEFAULT_RECHECKOUT_SHARE if o["recheckout_share"] is None else o["recheckout_share"],
                      "--recheckout-share", minimum=0)
    if rep + rc >= 1:
        raise WorkloadError(f"--repeat-share {rep:g} and --recheckout-share {rc:g} leave nothing for the "
                            f"seed scenarios (their sum must be below 1)")
    return {"repeat_share": rep, "recheckout_share": rc}


def effective_weights(p: StressParams) -> list[float]:
    """Each scenario's share of the runs under params ``p`` (six entries for a trace made before s7/s8)."""
    weights = list(p.weights)
    total = sum(weights)
    if p.repeat_share is None:
        return [w / total for w in weights]
    extra = [p.repeat_share, p.recheckout_share]
    return [w / total * (1 - sum(extra)) for w in weights] + extra


def mean_steps(p: StressParams) -> float:
    """Expected requests per scenario run under params ``p``."""
    return sum(w * n for w, n in zip(effective_weights(p), STEPS_PER_SCENARIO))


def plan(params: Mapping[str, Any], seed: int) -> Plan:
    """The stress trace for normalized params (what :func:`resolve` returns)."""
    p = StressParams.from_record(params)
    rng = random.Random(seed)
    repeat_qty = 2 if "{quantity}" in get_dialect(p.dialect).route("add_item").template else 1
    draws = Draws(rng, p.price_range, p.stock_range, p.funds_range, repeat_qty)
    per_run = mean_steps(p)
    if p.model == "open":
        if p.sessions is not None:
            est = p.sessions * per_run
        elif p.requests is not None:
            est = p.requests
        else:
            est = p.rate * p.duration * per_run
        sessions = _open_sessions(p, rng, draws)
    else:
        lo, hi = p.wait
        runs = 1 + p.duration / ((lo + hi) / 2) if hi > 0 else 1.0
        est = p.users * runs * per_run
        sessions = _closed_sessions(p, rng, draws)

    def final_expect() -> dict:
        # Every session works on entities of its own, so its final state is known exactly, up to
        # what s8's re-checkouts take from a shop whose policy is to charge again.
        t = draws.totals
        rng_ = final_range()
        return {k: v[0] for k, v in rng_.items() if v[0] == v[1]} if t.recheckouts else \
            {"checkout_ok": t.paid, "stock_total": t.stock, "credit_total": t.credit}

    def final_range() -> dict:
        t = draws.totals
        return {"checkout_ok": [t.paid, t.paid + t.recheckouts], "stock_total": [t.stock - t.recheckout_units, t.stock],
                "credit_total": [t.credit - t.recheckout_cost, t.credit]}

    return Plan(phases=[PHASE], scenarios=list(SCENARIOS), sessions=sessions, estimate=int(est),
                final_expect=final_expect,
                final_header=lambda: {"expect_range": final_range()} if draws.totals.recheckouts else {})


def _chooser(p: StressParams, rng: random.Random) -> Callable[[], Callable]:
    """Each call, the builder of the next scenario run.

    s7 and s8 come at exactly their shares, spread evenly from seeded starting phases (so a trace
    of ``1 / share`` runs or more always has one); the other runs draw one of the six seed
    scenarios by their weights.
    """
    cum, t = [], 0.0
    for w in p.weights:
        t += w
        cum.append(t)
    r = rng.random
    # resolve() always sets both shares (0 with --seed-scenarios-only).
    extras = [(share, BUILDERS[6 + j]) for j, share in enumerate((p.repeat_share, p.recheckout_share))
              if share > 0]
    phase = [r() for _ in extras]

    def choose() -> Callable:
        for j, (share, _) in enumerate(extras):
            phase[j] += share
        for j, (_, builder) in enumerate(extras):
            if phase[j] >= 1.0:
                phase[j] -= 1.0
                return builder
        # bisect_right never lands on a zero-weight scenario: its interval [cum[k-1], cum[k]) is empty.
        return BUILDERS[bisect_right(cum, r() * t)]

    return choose


def _open_sessions(p: StressParams, rng: random.Random, draws: Draws) -> Iterator[tuple[int, float, list]]:
    choose = _chooser(p, rng)
    duration, max_sessions, max_requests = p.duration, p.sessions, p.requests
    n_req = 0
    sid = 0
    for at in open_arrivals(p.rate, p.arrival, rng):
        if duration is not None and at >= duration:
            return
        if max_sessions is not None and sid >= max_sessions:
            return
        if max_requests is not None and n_req >= max_requests:
            return
        steps = choose()(f"$s{sid}.", 0.0, draws)
        n_req += len(steps)
        yield 0, round(at, 6), steps
        sid += 1


def _closed_sessions(p: StressParams, rng: random.Random, draws: Draws) -> Iterator[tuple[int, float, list]]:
    choose = _chooser(p, rng)
    duration, wait = p.duration, p.wait
    for sid, at in enumerate(spawn_times(p.users, p.spawn_rate)):
        steps: list = []
        # Think times are on the session's own clock, which starts at the spawn time.
        for run, think in enumerate(think_times(at, duration, wait, rng)):
            steps += choose()(f"$s{sid}.r{run}.", think, draws)
        if not steps:
            return  # spawned at or after the end: so is every later user
        yield 0, round(at, 6), steps
