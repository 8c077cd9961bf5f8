"""Anomaly headlines (pure): the fact in a person's words and units, one line, at most 120 characters."""

from __future__ import annotations

import pytest

from wdmreplay.analysis.wording import MAX_HEADLINE, EntityFacts, arithmetic, candidates, headline
from wdmreplay.terms import named, plural


@pytest.mark.parametrize("args, text", [
    # the course template's oversell: 2xx answers sold 8 units more than there were, stock stays 0
    (("lost_update", "item", "7", [-8, -8], 0), "oversold 8 units of item 7 (stock 0)"),
    (("oversell", "item", "7", [2, 2], -3), "oversold 3 units of item 7 (stock -3)"),
    (("oversell", "item", "7", [-1, -1], 0), "oversold 1 unit of item 7 (stock 0)"),
    (("lost_update", "item", "7", [2, 5], 44),
     "stock of item 7 is 39 higher than any serial order of the acknowledged operations allows"),
    (("lost_update", "user", "u", 10, 4),
     "credit of user u is 6 lower than any serial order of the acknowledged operations allows"),
    (("double_charge", "user", "u", 98, 94), "user u charged 4 more than its paid orders and payments explain"),
    (("expectation_not_met", "aggregate", "credit_total", [48, 100], 192),
     "credit_total is 192, outside the trace bound 48..100"),
    (("lost_entity", "item", "12", [402, 402], None),
     "item 12 lost: created with a 2xx, holding 402 units of stock, now read back as not found"),
])
def test_headline_states_the_fact_in_units(args, text):
    assert headline(*args, detail="") == text


@pytest.mark.parametrize("entity, eid, text", [
    ("item", "7", "item 7"), ("item", 7, "item 7"), ("item", "item-285", "item-285"), ("user", "user_3", "user_3"),
    ("order", "Order:9", "Order:9"), ("item", "itemized", "item itemized"), ("user", "order-1", "user order-1"),
])
def test_an_id_that_already_names_its_kind_is_not_named_twice(entity, eid, text):
    assert named(entity, eid) == text


@pytest.mark.parametrize("n, word, many, text", [
    (1, "session", None, "1 session"), (2, "session", None, "2 sessions"), (0, "request", None, "0 requests"),
    (1, "anomaly", "anomalies", "1 anomaly"), (3, "anomaly", "anomalies", "3 anomalies"),
])
def test_a_count_says_its_noun_in_the_right_number(n, word, many, text):
    assert plural(n, word, many) == text


def test_headlines_of_the_reference_shops_ids_name_the_entity_once():
    assert headline("lost_update", "item", "item-285", [-3, -3], 0, detail="") == "oversold 3 units of item-285 (stock 0)"
    assert headline("wrong_total", "order", "order-4", 5, 4, detail="") == "order-4 has total_cost 4 but its lines cost 5"


def test_a_long_headline_is_cut_to_one_line():
    h = headline("wrong_total", "order", "o" * 200, 5, 4, detail="")
    assert len(h) == MAX_HEADLINE and h.endswith("…")


def test_arithmetic_and_candidates_come_from_the_history():
    f = EntityFacts("item", 0, 10, 0, 3, 0, 1, 2, 2, concurrent=True, repeated=("o1",), rechecked=(), unanswered=1)
    assert (f.lo, f.hi) == (8, 11)
    assert arithmetic(f, 13) == ("initial stock 0", "+ 10 added by answered add_stock", "- 0 taken by answered subtract_stock",
                                 "- 2 taken by 1 paid order(s)",
                                 "uncertain: +3 / -0 (unanswered requests, orders not read back) may each have happened "
                                 "or not",
                                 "= 8..11 allowed; read back: 13")
    c = candidates(f)
    assert len(c) == 3 and "concurrent writes" in c[0] and "repeated items collapsed?" in c[1] and "no answer" in c[2]
    quiet = EntityFacts("user", 0, 5, 0, 0, 0, 0, 0, 0)
    assert candidates(quiet) == ("none seen in its history: serial requests, each answered",)
