"""Locust baseline: the seed stress test's six scenarios (bench/seed_scenarios.py), no wait time.

Two user classes, pick one on the command line:

    locust -f bench/locustfile.py --headless -u 64 -r 64 -t 10s --host http://127.0.0.1:8080 FastShopUser
    locust -f bench/locustfile.py --headless -u 64 -r 64 -t 10s --host http://127.0.0.1:8080 ShopUser

``FastShopUser`` uses FastHttpUser (geventhttpclient), ``ShopUser`` HttpUser (requests). The
dialect is ``$WDM_DIALECT`` (default 2024; under 2024 scenario 4 is left out, as in the trace).
Each scenario is one task run start to end; ids come from the JSON responses.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, HttpUser, constant

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_scenarios import NAMES, resolve, scenario_steps, weights_for  # noqa: E402

from wdmreplay.operations import OPERATIONS, get_dialect  # noqa: E402

DIALECT = get_dialect(os.environ.get("WDM_DIALECT", "2024"))
_SEEDS = itertools.count()  # each simulated user gets its own seeded generator


def _task(n: int):
    def run(user) -> None:
        ids: dict[str, str] = {}
        last: dict | None = None
        for op, args, bind in scenario_steps(n, user.rng):
            method, path = DIALECT.render(op, resolve(args, ids, last))
            with user.client.request(method, path, name=op, catch_response=True) as resp:
                reads = OPERATIONS[op].reads or bind
                last = resp.json() if reads and resp.status_code == 200 else None
                if resp.status_code >= 500:  # a 4xx is an answer (the seed's failing scenarios expect some)
                    resp.failure(f"HTTP {resp.status_code}")
                else:
                    resp.success()
            if bind:
                if not last:
                    return  # nothing was created: the rest of the scenario has no id to use
                ids[bind] = str(last[OPERATIONS[op].id_key])
    run.__name__ = NAMES[n]
    return run


TASKS = {_task(n): w for n, w in weights_for(DIALECT).items()}


class FastShopUser(FastHttpUser):
    """The six scenarios over geventhttpclient (Locust's fast client)."""

    tasks = TASKS
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 10.0

    def on_start(self) -> None:
        self.rng = random.Random(next(_SEEDS))


class ShopUser(HttpUser):
    """The six scenarios over python-requests (Locust's default client)."""

    tasks = TASKS
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(next(_SEEDS))
