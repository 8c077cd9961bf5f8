"""The six scenarios of the course's original stress test, as data (for the Locust baseline and a stand-in trace).

Each scenario is a list of steps ``(op, args, bind)``: ``op`` is a :mod:`wdmreplay.api` operation,
``args`` holds ints, names bound earlier in the scenario (``"item0"``) or a ``"=key"`` reference to
a field of the previous response (scenario 5 reads an item's stock and subtracts all of it), and
``bind`` names the id the response creates. Random values use the seed test's ranges (price 1–10,
stock 100–1000, funds 10,000–100,000) from an explicit ``random.Random``.

Scenario 4 needs ``remove_item``, which only dialect 2023 has; under 2024 it is left out, as the
trace generator does. Weights are the seed's 5/30/25/20/10/10.
"""

from __future__ import annotations

import random
from typing import Any

from wdmreplay.operations import Dialect

WEIGHTS = {1: 5, 2: 30, 3: 25, 4: 20, 5: 10, 6: 10}
NAMES = {1: "create_item_add_stock", 2: "checkout_one_item", 3: "checkout_two_items",
         4: "add_remove_add_checkout", 5: "checkout_fails_stock", 6: "checkout_fails_credit"}

Step = tuple[str, tuple[Any, ...], "str | None"]


def scenario_steps(n: int, rng: random.Random) -> list[Step]:
    """The steps of scenario ``n`` (1–6) with its random values drawn from ``rng``."""
    def item(name: str) -> list[Step]:
        return [("create_item", (rng.randint(1, 10),), name), ("add_stock", (name, rng.randint(100, 1000)), None)]

    user_with_funds = [("create_user", (), "user"), ("add_funds", ("user", rng.randint(10000, 100000)), None)]
    order = [("create_order", ("user",), "order")]
    if n == 1:
        return item("item0")
    if n == 2:
        return item("item0") + user_with_funds + order + [("add_item", ("order", "item0", 1), None),
                                                           ("checkout", ("order",), None)]
    if n == 3:
        return (item("item0") + item("item1") + user_with_funds + order
                + [("add_item", ("order", "item0", 1), None), ("add_item", ("order", "item1", 1), None),
                   ("checkout", ("order",), None)])
    if n == 4:
        return (item("item0") + user_with_funds + order
                + [("add_item", ("order", "item0", 1), None), ("remove_item", ("order", "item0"), None),
                   ("add_item", ("order", "item0", 1), None), ("checkout", ("order",), None)])
    if n == 5:
        return (item("item0") + item("item1") + user_with_funds + order
                + [("add_item", ("order", "item0", 1), None), ("add_item", ("order", "item1", 1), None),
                   ("find_item", ("item1",), None), ("subtract_stock", ("item1", "=stock"), None),
                   ("checkout", ("order",), None)])
    if n == 6:
        return item("item0") + [("create_user", (), "user")] + order + [("add_item", ("order", "item0", 1), None),
                                                                        ("checkout", ("order",), None)]
    raise ValueError(f"no scenario {n}")


def weights_for(dialect: Dialect) -> dict[int, int]:
    """The scenario weights a dialect can run (scenario 4 needs remove_item)."""
    return {n: w for n, w in WEIGHTS.items() if n != 4 or dialect.supports("remove_item")}


def resolve(args: tuple[Any, ...], ids: dict[str, str], last: dict | None) -> list[Any]:
    """Arguments with bound names and ``"=key"`` references replaced by their values."""
    out = []
    for a in args:
        if isinstance(a, str):
            a = (last or {}).get(a[1:], 0) if a.startswith("=") else ids[a]
        out.append(a)
    return out


def write_seed_trace(path: str, requests: int, dialect: Dialect, seed: int = 0, rate: float = 1000.0) -> dict:
    """A stress-like trace of about ``requests`` requests of the weighted scenarios; its header.

    The benches' stand-in when ``wdm-replay generate-trace stress`` is not available: sessions
    arrive every ``1 / rate`` s with no think time; scenario 5's "subtract all stock" uses the
    amount the scenario added (what the read would return). Expectations are all ``"any"``.
    """
    from wdmreplay.traces import TraceWriter, step

    rng = random.Random(seed)
    w = weights_for(dialect)
    names, weights = list(w), list(w.values())
    with TraceWriter(path, workload="stress", seed=seed, params={"bench": "seed_scenarios", "requests": requests},
                     phases=["stress"], scenarios=[NAMES[n] for n in names], dialect=dialect.name) as tw:
        sid = n = 0
        while n < requests:
            scenario = rng.choices(names, weights)[0]
            steps, added = [], 0
            for op, args, bind in scenario_steps(scenario, rng):
                if op == "add_stock":
                    added = args[1]
                args = [added if a == "=stock" else f"${sid}.{a}" if isinstance(a, str) else a for a in args]
                steps.append(step(op, args, bind=f"${sid}.{bind}" if bind else None, expect="any",
                                  scenario=NAMES[scenario]))
            tw.write_session(sid, 0, sid / rate, steps)
            sid += 1
            n += len(steps)
    return tw.header
