"""The vectorized history (args as columns, numpy group-by) equals a straightforward per-row reference.

Random small histories — every operation the checker sums, odd args (missing, numeric ids, string
amounts, None), every outcome class — are written as real results files, loaded, and read twice:
by :func:`read_history` (entity codes, ``np.unique`` / ``np.add.at``) and by :func:`reference`, a
per-row walk over the decoded ``Results.args``. Every ledger, order, line and set must agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdmreplay.analysis.consistency import read_history
from wdmreplay.analysis.final_state import as_int
from synthetic import History
from wdmreplay.traces import load_results
from wdmreplay.traces.results import CONN_ERROR, ERROR, FAIL, OK, SKIPPED, TIMEOUT

ID = st.one_of(st.sampled_from(["i1", "i2", "u1", "u2", "o1", "o2", "7", "$s1.item0"]), st.integers(0, 3))
AMOUNT = st.one_of(st.integers(-3, 50), st.sampled_from(["4", "x", None]))
ARGS = {
    "add_stock": st.tuples(ID, AMOUNT), "subtract_stock": st.tuples(ID, AMOUNT),
    "add_funds": st.tuples(ID, AMOUNT), "pay": st.tuples(ID, ID, AMOUNT),
    "checkout": st.tuples(ID), "add_item": st.one_of(st.tuples(ID, ID, AMOUNT), st.tuples(ID, ID)),
    "remove_item": st.one_of(st.tuples(ID, ID), st.tuples(ID)), "create_item": st.tuples(AMOUNT),
    "create_order": st.tuples(ID), "cancel_payment": st.tuples(ID, ID), "find_item": st.tuples(ID),
    "batch_init_stock": st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(1, 5)),
    "batch_init_users": st.tuples(st.integers(0, 5), st.integers(0, 9)),
    "batch_init_orders": st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(1, 5)),
}
REQUEST = st.sampled_from(sorted(ARGS)).flatmap(
    lambda op: st.tuples(st.just(op), ARGS[op] if op.startswith("batch") else st.one_of(ARGS[op], st.just(())),
                         st.sampled_from(["ok", "ok", "fail", "error", "timeout", "conn_error", "skipped"])))

_CLS = {OK: 0, FAIL: 1, ERROR: 2, TIMEOUT: 2, CONN_ERROR: 2}


def reference(results) -> dict:
    """What every sent request did, walked row by row over the decoded args (no numpy)."""
    from wdmreplay.operations import OP_NAMES

    items, users = defaultdict(lambda: [0, 0, 0, 0, [], []]), defaultdict(lambda: [0, 0, 0, 0, [], []])
    orders = defaultdict(lambda: [0, 0, 0, []])
    lines = defaultdict(lambda: [0, [], 0, 0, []])
    out = {"created_orders": Counter(), "create_prices": set(), "refunded": set(), "batch_items": [],
           "batch_users": [], "batch_orders": [], "checkouts": {"ok": 0, "fail": 0, "indeterminate": 0, "skipped": 0},
           "undetermined": 0}
    for row, (op_code, outcome) in enumerate(zip(results.cols["op"].tolist(), results.cols["outcome"].tolist())):
        op = OP_NAMES[op_code]
        if outcome == SKIPPED:
            out["undetermined"] += 1
            if op == "checkout":
                out["checkouts"]["skipped"] += 1
            continue
        c = _CLS[outcome]
        out["undetermined"] += c == 2
        a = results.args[row] or [None]
        if op == "checkout":
            rec = orders[str(a[0])]
            rec[c] += 1
            rec[3].append(row)
            out["checkouts"][("ok", "fail", "indeterminate")[c]] += 1
        elif op in ("add_stock", "subtract_stock", "add_funds", "pay") and c != 1:
            led = (items if op in ("add_stock", "subtract_stock") else users)[str(a[0])]
            am, adds = as_int(a[-1]), op in ("add_stock", "add_funds")
            if c == 0:
                led[0 if adds else 2] += am
            else:
                led[1 if adds else 3] += am
                led[4].append(am if adds else -am)
            led[5].append(row)
        elif op in ("add_item", "remove_item") and c != 1:
            ln = lines[(str(a[0]), str(a[1]) if len(a) > 1 else "")]
            qty = (as_int(a[2], 1) if len(a) > 2 else 1) if op == "add_item" else 1
            if op == "add_item":
                if c == 0:
                    ln[0] += qty
                else:
                    ln[1].append(qty)
            elif c == 0:
                ln[2] += 1
            else:
                ln[3] += 1
            ln[4].append(row)
        elif c != 1:
            if op == "create_item":
                out["create_prices"].add(as_int(a[0]))
            elif op == "create_order" and c == 0:
                out["created_orders"][str(a[0])] += 1
            elif op == "cancel_payment":
                out["refunded"].add(str(a[0]))
            elif op == "batch_init_stock":
                out["batch_items"].append((as_int(a[0]), as_int(a[1]), as_int(a[2] if len(a) > 2 else 0)))
            elif op == "batch_init_users":
                out["batch_users"].append((as_int(a[0]), as_int(a[1] if len(a) > 1 else 0)))
            elif op == "batch_init_orders":
                out["batch_orders"].append((as_int(a[0]), as_int(a[-1])))
    out["items"] = {k: (v[0], v[1], v[2], v[3], sorted(v[4]), sorted(v[5])) for k, v in items.items()}
    out["users"] = {k: (v[0], v[1], v[2], v[3], sorted(v[4]), sorted(v[5])) for k, v in users.items()}
    out["orders"] = {k: (v[0], v[1], v[2], sorted(v[3])) for k, v in orders.items()}
    out["lines"] = {k: (v[0], sorted(v[1]), v[2], v[3], sorted(v[4])) for k, v in lines.items()}
    return out


def vectorized(results) -> dict:
    """The same figures from :func:`read_history`."""
    h = read_history(results)

    def rows(parts) -> list:
        return sorted(int(r) for p in parts for r in np.asarray(p).tolist())

    def ledgers(d) -> dict:
        return {k: (v.add_ok, v.add_unc, v.sub_ok, v.sub_unc, sorted(v.unc), rows(v.writes)) for k, v in d.items()}

    return {"created_orders": h.created_orders, "create_prices": h.create_prices, "refunded": h.refunded,
            "batch_items": h.batch_items, "batch_users": h.batch_users, "batch_orders": h.batch_orders,
            "checkouts": h.checkouts, "undetermined": h.undetermined,
            "items": ledgers(h.items), "users": ledgers(h.users),
            "orders": {k: (v.n_ok, v.n_fail, v.n_indet, rows([v.rows])) for k, v in h.orders.items()},
            "lines": {(o, i): (ln.add_ok, sorted(ln.add_unc), ln.rem_ok, ln.rem_unc, rows(ln.requests))
                      for o, by_item in h.lines.items() for i, ln in by_item.items()}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(REQUEST, max_size=40), st.integers(1, 4))
def test_vectorized_history_equals_per_row_reference(tmp_path, requests, chunks):
    h = History()
    for op, args, outcome in requests:
        h.req(op, list(args), outcome)
    path = h.write(tmp_path / "h.wdmr")
    if chunks > 1 and requests:  # the same rows in several chunks: one string table across chunks
        r0 = load_results(path, with_args=True)
        from wdmreplay.traces import ResultsWriter

        w = ResultsWriter(tmp_path / "c.wdmr", r0.header)
        bounds = np.linspace(0, r0.n, chunks + 1).astype(int)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            w.write_requests({k: v[lo:hi] for k, v in r0.cols.items()}, list(r0.args[lo:hi]))
        w.close(complete=True, wall=1.0)
        path = tmp_path / "c.wdmr"
    r = load_results(path, with_args=True)
    assert vectorized(r) == reference(r)


def test_args_stay_available_per_row(tmp_path):
    h = History().req("add_stock", ["i1", 5]).req("checkout", []).req("add_item", ["o1", "i1", 2], "timeout")
    r = load_results(h.write(tmp_path / "a.wdmr"), with_args=True)
    assert len(r.args) == 3
    assert list(r.args) == [["i1", 5], [], ["o1", "i1", 2]]
    assert r.args[0] == ["i1", 5] and r.args[-1][2] == 2
    assert r.argcols.names[r.argcols.k0[0]] == "i1" and r.argcols.num[0] == 5
    assert r.argcols.names[r.argcols.k0[1]] == "None"  # no args: read as [None], as the checker always did
    assert load_results(tmp_path / "a.wdmr").argcols is None
