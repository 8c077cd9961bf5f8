"""Captured exchanges → trace (pure, table-driven): matching, symbols, sessions, phases, schedule, expect."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from wdmreplay.operations import get_dialect
from wdmreplay.workloads.inspect import SymbolChecker, inspect_trace
from wdmreplay.capture.sessionize import Exchange, _to_steps, build_trace, detect_dialect, expect_of, write_captured
from wdmreplay.traces import TraceReader


def ex(seq, conn, method, path, sent, done, status=200, body=None):
    """One exchange; ``body`` a dict is sent as JSON."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    return Exchange(seq, conn, method, path, sent, done, status, raw)


def steps_of(trace):
    return [(phase, at, [(s["op"], s["args"], s["bind"], s["expect"], s["think"]) for s in steps])
            for phase, at, steps in trace.sessions]


@pytest.mark.parametrize("status,expect", [(200, "ok"), (201, "ok"), (400, "fail"), (404, "fail"),
                                           (500, "any"), (503, "any"), (None, "any"), (302, "any")])
def test_expect_from_the_observed_answer(status, expect):
    assert expect_of(status) == expect


def test_create_ids_become_symbols_and_a_connection_is_a_session():
    t = build_trace([
        ex(0, 7, "POST", "/stock/item/create/5", 0.0, 0.1, body={"item_id": "abc"}),
        ex(1, 7, "POST", "/stock/add/abc/10", 0.3, 0.4),
        ex(2, 7, "GET", "/stock/find/abc", 0.4, 0.5),
        ex(3, 7, "POST", "/stock/subtract/abc/99", 0.5, 0.6, status=400),
    ])
    assert t.dialect == "2024"
    assert steps_of(t) == [(0, 0.0, [
        ("create_item", [5], "$r0.item", "ok", 0.0),
        ("add_stock", ["$r0.item", 10], None, "ok", 0.2),
        ("find_item", ["$r0.item"], None, "ok", 0.0),
        ("subtract_stock", ["$r0.item", 99], None, "fail", 0.0),
    ])]
    assert t.facts["recorded"] == 4 and t.facts["symbols"] == 1 and t.facts["unmatched"] == 0


def test_sessions_joined_by_id_use_keep_causality_and_others_stay_apart():
    t = build_trace([
        ex(0, 1, "POST", "/payment/create_user", 0.0, 0.1, body={"user_id": "u1"}),
        ex(1, 2, "POST", "/payment/create_user", 0.05, 0.2, body={"user_id": "u2"}),
        # connection 3 uses connection 1's user: joined into one session, after the create
        ex(2, 3, "POST", "/orders/create/u1", 0.3, 0.35, body={"order_id": "o1"}),
        ex(3, 2, "POST", "/payment/add_funds/u2/5", 0.4, 0.5),
    ])
    sessions = steps_of(t)
    assert len(sessions) == 2
    joined = next(s for s in sessions if s[2][0][2] == "$r0.user")
    assert [st[0] for st in joined[2]] == ["create_user", "create_order"]
    assert joined[2][1][1] == ["$r0.user"] and joined[2][1][4] == pytest.approx(0.2)
    other = next(s for s in sessions if s is not joined)
    assert other[1] == pytest.approx(0.05) and [st[0] for st in other[2]] == ["create_user", "add_funds"]


def test_an_id_used_before_its_create_answered_stays_literal():
    t = build_trace([
        ex(0, 1, "POST", "/payment/create_user", 0.0, 1.0, body={"user_id": "u1"}),
        ex(1, 2, "GET", "/payment/find_user/u1", 0.5, 0.6, status=400),
    ])
    assert len(t.sessions) == 2
    assert any(st["args"] == ["u1"] for _, _, steps in t.sessions for st in steps)


def test_unmatched_and_query_requests_are_refused_and_listed():
    t = build_trace([
        ex(0, 1, "POST", "/payment/create_user", 0.0, 0.1, body={"user_id": "u"}),
        ex(1, 1, "GET", "/metrics", 0.2, 0.3),
        ex(2, 1, "GET", "/metrics", 0.4, 0.5),
        ex(3, 1, "GET", "/payment/find_user/u?x=1", 0.6, 0.7),
    ])
    assert t.facts["recorded"] == 1 and t.facts["unmatched"] == 3 and t.facts["forwarded"] == 4
    assert t.facts["unmatched_listed"][0] == ["GET /metrics", 2]


def test_dialect_detected_from_the_routes_that_differ():
    exs = [ex(0, 1, "POST", "/orders/create/u", 0.0, 0.1, body={"order_id": "o"}),
           ex(1, 1, "POST", "/orders/addItem/o/i", 0.2, 0.3),
           ex(2, 1, "DELETE", "/orders/removeItem/o/i", 0.4, 0.5)]
    assert detect_dialect(exs) == ("2023", {"2024": 1, "2023": 3})
    t = build_trace(exs)
    assert t.dialect == "2023" and [s["op"] for s in t.sessions[0][2]] == ["create_order", "add_item",
                                                                           "remove_item"]
    assert build_trace(exs, dialect="2024").facts["unmatched"] == 2


def test_batch_init_closes_a_phase_and_its_ids_stay_literal():
    t = build_trace([
        ex(0, 1, "POST", "/stock/batch_init/10/100/1", 0.0, 0.5, body={"msg": "ok"}),
        ex(1, 2, "POST", "/stock/subtract/3/1", 0.7, 0.8),
        ex(2, 3, "POST", "/stock/subtract/3/1", 0.75, 0.85),
        ex(3, 4, "GET", "/stock/find/4", 0.9, 1.0),
    ])
    assert t.phases == ("recorded-0", "recorded-1")
    phases = [(p, [st[0] for st in steps]) for p, _, steps in steps_of(t)]
    assert phases[0] == (0, ["batch_init_stock"]) and all(p == 1 for p, _ in phases[1:])
    # Two sessions mutate item "3" concurrently: their outcome is left to the interleaving.
    subtracts = [st for _, _, steps in steps_of(t) for st in steps if st[0] == "subtract_stock"]
    assert [st[1] for st in subtracts] == [["3", 1], ["3", 1]] and {st[3] for st in subtracts} == {"any"}
    finds = [st for _, _, steps in steps_of(t) for st in steps if st[0] == "find_item"]
    assert finds[0][3] == "ok"
    assert [at for p, at, _ in t.sessions if p == 1] == [0.0, 0.05, 0.2]


@pytest.mark.parametrize("gap,phases", [(None, 1), (5.0, 1), (1.0, 2), (0.2, 3)])
def test_phase_gap_splits_at_idle_gaps(gap, phases):
    t = build_trace([
        ex(0, 1, "POST", "/payment/create_user", 0.0, 0.1, body={"user_id": "a"}),
        ex(1, 1, "POST", "/payment/add_funds/a/1", 0.4, 0.5),
        ex(2, 1, "POST", "/payment/add_funds/a/1", 2.0, 2.1),
    ], phase_gap=gap)
    assert len(t.phases) == phases
    assert sum(len(steps) for _, _, steps in t.sessions) == 3
    # the symbol crosses phases: bound in phase 0, used by later phases
    assert all(st["args"][0] == "$r0.user" for _, _, steps in t.sessions for st in steps if st["op"] == "add_funds")


def test_written_trace_reads_back_and_inspect_finds_no_problem(tmp_path):
    t = build_trace([
        ex(0, 1, "POST", "/stock/item/create/3", 0.0, 0.1, body={"item_id": "i"}),
        ex(1, 2, "POST", "/payment/create_user", 0.0, 0.1, body={"user_id": "u"}),
        ex(2, 3, "POST", "/orders/create/u", 0.2, 0.3, body={"order_id": "o"}),
        ex(3, 3, "POST", "/orders/addItem/o/i/2", 0.3, 0.4),
        ex(4, 3, "POST", "/orders/checkout/o", 0.4, 0.5, status=400),
        ex(5, 4, "GET", "/nope", 0.4, 0.5, status=404),
    ], facts={"upstream": {"ORDER_URL": "http://x:1"}})
    path = tmp_path / "r.wdmt"
    header = write_captured(t, path)
    assert header["workload"] == "recorded" and header["requests"] == 5
    assert header["params"]["unmatched"] == 1 and header["params"]["upstream"] == {"ORDER_URL": "http://x:1"}
    with TraceReader(path) as r:
        sessions = list(r)
    assert len(sessions) == 1  # item, user and order joined through the order's arguments
    info = inspect_trace(path).to_json()
    assert info["symbols"]["problems"] == 0, info["symbols"]


def test_a_lone_session_keeps_its_answers_and_interacting_ones_become_any():
    lone = build_trace([
        ex(0, 1, "POST", "/orders/checkout/7", 0.0, 0.1, status=400),
        ex(1, 1, "POST", "/stock/subtract/3/1", 0.2, 0.3),
    ])
    assert [st["expect"] for st in lone.sessions[0][2]] == ["fail", "ok"]
    # Two sessions checking out different literal orders may contend for the same (unknown) items.
    two = build_trace([
        ex(0, 1, "POST", "/orders/checkout/7", 0.0, 0.1, status=400),
        ex(1, 2, "POST", "/orders/checkout/8", 0.0, 0.1),
        ex(2, 2, "GET", "/orders/find/8", 0.2, 0.3),
    ])
    assert sorted((st["op"], st["expect"]) for _, _, steps in two.sessions for st in steps) == [
        ("checkout", "any"), ("checkout", "any"), ("find_order", "ok")]
    # A user created in phase 0, paid from by two sessions of phase 1: a race, so "any".
    raced = build_trace([
        ex(0, 1, "POST", "/payment/create_user", 0.0, 0.1, body={"user_id": "u"}),
        ex(1, 1, "POST", "/payment/add_funds/u/1", 0.1, 0.2),
        ex(2, 2, "POST", "/payment/pay/u/1", 5.0, 5.1),
        ex(3, 3, "POST", "/payment/pay/u/1", 5.0, 5.1, status=400),
    ], phase_gap=1.0)
    assert [(p, [(st["op"], st["args"], st["expect"]) for st in steps]) for p, _, steps in raced.sessions] == [
        (0, [("create_user", [], "ok"), ("add_funds", ["$r0.user", 1], "ok")]),
        (1, [("pay", ["$r0.user", None, 1], "any")]), (1, [("pay", ["$r0.user", None, 1], "any")])]


_KINDS = {"item": ("/stock/item/create/1", "item_id", ["/stock/add/{}/1", "/stock/find/{}"]),
          "user": ("/payment/create_user", "user_id", ["/payment/add_funds/{}/2", "/payment/find_user/{}"]),
          "order": ("/orders/create/u0", "order_id", ["/orders/checkout/{}", "/orders/find/{}"])}


@st.composite
def captures(draw):
    """Random exchanges over a few connections: creates, uses of created or unknown ids, overlaps, junk."""
    n = draw(st.integers(1, 40))
    out, made, t = [], [], 0.0
    for seq in range(n):
        t += draw(st.floats(0, 2, allow_nan=False))
        dur = draw(st.floats(0, 1, allow_nan=False))
        conn = draw(st.integers(0, 4))
        kind = draw(st.sampled_from(sorted(_KINDS)))
        path, key, uses = _KINDS[kind]
        what = draw(st.integers(0, 9))
        if what < 4:
            ident = f"{kind[0]}{seq}"
            out.append(ex(seq, conn, "POST", path, t, t + dur, body={key: ident}))
            made.append((kind, ident))
        elif what < 8 and made:
            k2, ident = draw(st.sampled_from(made))
            use = draw(st.sampled_from(_KINDS[k2][2]))
            method = "GET" if "/find" in use else "POST"
            out.append(ex(seq, conn, method, use.format(ident), t, t + dur, status=draw(st.sampled_from([200, 400, 500, None]))))
        elif what == 8:
            out.append(ex(seq, conn, "POST", "/stock/batch_init/5/10/1", t, t + dur, body={"msg": "ok"}))
        else:
            out.append(ex(seq, conn, "GET", "/junk", t, t + dur, status=404))
    return out


@settings(max_examples=150, deadline=None)
@given(captures(), st.one_of(st.none(), st.floats(0.1, 3)))
def test_any_capture_keeps_every_request_and_the_symbol_rules(exchanges, gap):
    t = build_trace(exchanges, phase_gap=gap)
    steps = [s for _, _, group in t.sessions for s in group]
    assert len(steps) == t.facts["recorded"] == len(exchanges) - t.facts["unmatched"]
    assert [p for p, _, _ in t.sessions] == sorted(p for p, _, _ in t.sessions)
    checker = SymbolChecker()
    for sid, (phase, at, group) in enumerate(t.sessions):
        assert at >= 0 and all(s["think"] >= 0 for s in group)
        checker.check({"sid": sid, "phase": phase, "at": at, "steps": list(group)})
    assert checker.problems == 0, checker.examples
    # Causality: every symbol use was sent after its create's answer arrived, in the capture.
    by_seq = {e.seq: e for e in exchanges}
    n_uses = 0
    for s in _to_steps([(e, *m) for e in sorted(exchanges, key=lambda e: (e.sent, e.seq))
                        if (m := get_dialect("2024").match(e.method, e.path))], []):
        for seq in s.uses:
            assert by_seq[seq].done <= s.ex.sent
            n_uses += 1
    assert n_uses == sum(1 for s in steps for a in s["args"] if isinstance(a, str) and a.startswith("$"))
