"""The final read of ``batch_init`` entities (issue 19 item 6): what the history touched, plus a stated
seeded sample of the rest, with the final read's duration named apart from the send window.

Over real HTTP against the reference shop with the ``checkout`` workload (a batch_init population,
then checkouts of random orders): the correct shop is CLEAN from the touched entities and the
sample; a shop that charges twice is NOT CLEAN, which needs the users of the checked-out orders —
entities no request named (a batch order's user is the shop's choice) — to be read back.
"""

from __future__ import annotations

import random

import pytest

from replay_support import write_trace
from wdmreplay.analysis import check_results
from wdmreplay.workloads import generate
from wdmreplay.replayer import format_summary, replay_trace
from wdmreplay.replayer.final import IdSet, TraceScan, id_sets, plan_final_read, referenced_ids
from wdmreplay.traces import load_results, read_header, step

POPULATION = 3000
SAMPLE = 100


@pytest.fixture(scope="module")
def checkout_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch") / "checkout.wdmt"
    generate("checkout", path, seed=11, rate=40.0, duration=1.0, items=POPULATION, users=POPULATION,
             orders=POPULATION, stock=1000, credit=1000)
    return path


def _checked_out(run) -> set[str]:
    from wdmreplay.operations import OP_CODES

    c = run.cols
    return {str(run.args[k][0]) for k in range(run.n) if c["op"][k] == OP_CODES["checkout"]}


def test_final_read_is_the_touched_entities_and_a_stated_sample(shop, checkout_trace, tmp_path):
    out = tmp_path / "r.wdmr"
    s = replay_trace(checkout_trace, out, target=shop.target, speed=4.0, final_sample=SAMPLE)
    run = load_results(out, with_args=True)
    final = run.final
    touched = _checked_out(run)
    assert s.complete and len(touched) >= 10
    orders = set(final["orders"])
    assert touched <= orders and len(orders) == len(touched) + SAMPLE
    named = referenced_ids({o: final["orders"][o] for o in touched})
    assert named["user"] <= set(final["users"]) and named["item"] <= set(final["items"])
    assert len(final["users"]) == len(named["user"] | set(final["users"])) <= len(named["user"]) + SAMPLE
    assert len(final["items"]) <= len(named["item"]) + SAMPLE < POPULATION  # the sampled orders' are not read
    event = next(e for e in run.events if e["kind"] == "final_read")
    assert event["sample"]["order"] == {"read": SAMPLE, "of": POPULATION - len(touched),
                                        "seed": read_header(checkout_trace)["seed"]}
    fr = s.final_read
    assert fr.sample.read == 3 * SAMPLE and fr.seconds > 0
    text = format_summary(s)
    assert f"of them {3 * SAMPLE} of {fr.sample.of} batch_init entities the run did not touch" in text
    assert "after the send window of" in text
    report = check_results(run)
    assert report.verdict.verdict == "CLEAN", report.verdict.reasons()


def test_a_double_charge_on_a_batch_order_is_found_through_the_orders_named_users(shop_factory, checkout_trace,
                                                                                  tmp_path):
    buggy = shop_factory(inject="double-charge")
    out = tmp_path / "r.wdmr"
    replay_trace(checkout_trace, out, target=buggy.target, speed=4.0, final_sample=0)
    run = load_results(out, with_args=True)
    # no sample at all: the users read are exactly those the checked-out orders name
    named = referenced_ids({o: run.final["orders"][o] for o in _checked_out(run)})
    assert set(run.final["users"]) == named["user"]
    report = check_results(run)
    assert report.verdict.verdict == "NOT CLEAN", report.verdict.reasons()
    assert any(a.entity == "user" and a.id in named["user"] for a in report.anomalies), report.anomalies[:3]


# --- the plan itself, without a clock -----------------------------------------------------------


def _scan(n: int, literals: set[str]) -> TraceScan:
    scan = TraceScan()
    scan.ranges["order"] = n
    scan.literals["order"] = set(literals)
    return scan


def test_plan_reads_touched_ids_and_a_seeded_sample_of_the_rest():
    bound = id_sets()
    bound["order"].add("x7")
    entities, sample = plan_final_read(_scan(1000, {"3", "5"}), bound, sample=10, seed=4)
    ids = entities["order"]
    assert {"3", "5", "x7"} <= set(ids) and len(ids) == 13
    assert sample == {"order": {"read": 10, "of": 998, "seed": 4}}
    again, _ = plan_final_read(_scan(1000, {"3", "5"}), bound, sample=10, seed=4)
    other, _ = plan_final_read(_scan(1000, {"3", "5"}), bound, sample=10, seed=5)
    assert again == entities and other != entities  # seeded: the same seed, the same sample
    drawn = set(ids) - {"3", "5", "x7"}
    assert all(i.isdigit() and 0 <= int(i) < 1000 for i in drawn)


@pytest.mark.parametrize("n, sample, reads_all", [(50, 100, True), (50, None, True), (50, 48, True),
                                                  (50, 47, False), (50, 0, False)])
def test_plan_reads_every_batch_entity_when_the_rest_fits_the_sample(n, sample, reads_all):
    entities, info = plan_final_read(_scan(n, {"1", "2"}), id_sets(), sample=sample, seed=0)
    assert (len(entities["order"]) == n) is reads_all
    assert (info == {}) is reads_all


def test_referenced_ids():
    orders = {"1": {"paid": True, "items": [["4", 2], ["9", 1]], "user_id": "7", "total_cost": 3},
              "2": {"paid": False, "items": [], "user_id": "None", "total_cost": 0}}
    assert referenced_ids(orders) == {"item": {"4", "9"}, "user": {"7"}}
