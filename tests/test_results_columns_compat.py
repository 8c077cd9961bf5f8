"""Results files written before the arg and order columns load and check exactly as new ones.

``wdm-results`` version 2 gained two additions a reader may find or not: request chunks carry
their args as columns (``argcols``) next to the packed args, and the final record may hold its
orders as columns (``order_columns``) instead of a map. Files of today's layout (written here by a
copy of the earlier writer logic) and version-1 files (plain msgpack, no frames) must load with the
same args, arg columns and final state, and check to the same anomalies and verdict.
"""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdmreplay.analysis import check_results
from synthetic import History
from wdmreplay.traces import ResultsWriter, load_results
from wdmreplay.traces.results import COLUMNS, StoredOrders
from wdmreplay.traces.stream import packer

ITEMS, USERS, ORDERS = ["i1", "2", "02"], ["u1", "u2"], ["o1", "o2", "3"]
OUTCOME = st.sampled_from(["ok", "ok", "ok", "fail", "error", "timeout", "skipped"])
REQUEST = st.one_of(
    st.tuples(st.just("add_stock"), st.tuples(st.sampled_from(ITEMS), st.integers(1, 5))),
    st.tuples(st.just("add_funds"), st.tuples(st.sampled_from(USERS), st.integers(1, 20))),
    st.tuples(st.just("add_item"), st.tuples(st.sampled_from(ORDERS), st.sampled_from(ITEMS), st.integers(1, 3))),
    st.tuples(st.just("remove_item"), st.tuples(st.sampled_from(ORDERS), st.sampled_from(ITEMS))),
    st.tuples(st.just("checkout"), st.tuples(st.sampled_from(ORDERS))),
    st.tuples(st.just("checkout"), st.tuples()),
    st.tuples(st.just("create_item"), st.tuples(st.integers(1, 3))),
    st.tuples(st.just("batch_init_stock"), st.tuples(st.integers(1, 3), st.integers(0, 9), st.integers(1, 3))),
)
ORDER = st.tuples(st.booleans(), st.lists(st.tuples(st.sampled_from(ITEMS), st.integers(-1, 4)).map(list), max_size=3),
                  st.sampled_from([*USERS, None]), st.integers(0, 20))


class EarlierWriter(ResultsWriter):
    """The writer as it was before the columns: packed args only, the final state's orders as a map."""

    def write_requests(self, cols, args=None, errors=()):
        raw = {name: np.asarray(cols[name]).astype(dt).tobytes() for name, dt, _ in COLUMNS}
        n = len(raw["sid"]) // 4
        self._write({"t": "requests", "n": n, "cols": raw, "args": self._pack.pack(args) if args is not None else b"",
                     "errors": [[int(r), str(t)] for r, t in errors]})
        self.requests += n

    def write_final(self, final):
        self._write({"t": "final", **final})


def _v1(path, h: History) -> None:
    """The same run laid out as a version-1 file (no prologue, no frames)."""
    r = load_results(path, with_args=True)
    pack = packer().pack
    header = dict(r.header, version=1)
    body = pack(header) + pack({"t": "requests", "n": r.n, "cols": {k: v.tobytes() for k, v in r.cols.items()},
                                "args": pack(list(r.args)), "errors": []})
    final = {"t": "final", **{k: v for k, v in r.final.items() if k not in ("t", "orders")},
             "orders": {k: v for k, v in r.final["orders"].items()}}
    body += pack(final) + pack({"trailer": "wdm-results", "requests": r.n, "complete": True, "reason": None,
                                "wall": 1.0})
    (path.parent / "v1.wdmr").write_bytes(body)


def _write(h: History, path, writer_cls) -> None:
    import synthetic as syn

    saved = syn.ResultsWriter
    syn.ResultsWriter = writer_cls
    try:
        h.write(path)
    finally:
        syn.ResultsWriter = saved


def _same_check(a, b) -> None:
    assert [x.as_dict() for x in a.anomalies] == [x.as_dict() for x in b.anomalies]
    assert a.verdict == b.verdict
    assert a.consistency.totals == b.consistency.totals and a.consistency.checkouts == b.consistency.checkouts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(REQUEST, OUTCOME), max_size=25),
       st.dictionaries(st.sampled_from(ORDERS), ORDER, max_size=3),
       st.dictionaries(st.sampled_from(ITEMS), st.integers(-2, 9), max_size=3))
def test_earlier_layouts_load_and_check_the_same(tmp_path, requests, orders, items):
    h = History()
    for (op, args), outcome in requests:
        h.req(op, list(args), outcome)
    h.set_final(items={i: (s, 1) for i, s in items.items()}, users={"u1": 5}, orders=orders)
    _write(h, tmp_path / "new.wdmr", ResultsWriter)
    _write(h, tmp_path / "old.wdmr", EarlierWriter)
    new, old = (load_results(tmp_path / f"{n}.wdmr", with_args=True) for n in ("new", "old"))
    if requests:
        assert "argcols" in _records(tmp_path / "new.wdmr", "requests")[0]
        assert "argcols" not in _records(tmp_path / "old.wdmr", "requests")[0]
    assert isinstance(new.final["orders"], StoredOrders) and isinstance(old.final["orders"], dict)
    assert dict(new.final["orders"]) == old.final["orders"] == {k: v for k, v in h.final["orders"].items()}
    _v1(tmp_path / "old.wdmr", h)
    v1 = load_results(tmp_path / "v1.wdmr", with_args=True)
    for r in (old, v1):
        assert list(r.args) == list(new.args)
        a, b = r.argcols, new.argcols
        assert [a.names[c] if c >= 0 else None for c in a.k0.tolist()] == \
               [b.names[c] if c >= 0 else None for c in b.k0.tolist()]
        assert [a.names[c] if c >= 0 else None for c in a.k1.tolist()] == \
               [b.names[c] if c >= 0 else None for c in b.k1.tolist()]
        assert a.num.tolist() == b.num.tolist() and a.extra == b.extra
        for policy in ("refuse", "charge"):
            _same_check(check_results(r, recheckout=policy), check_results(new, recheckout=policy))


def test_orders_of_another_shape_stay_a_map(tmp_path):
    """An order map the final read would not write (an extra key, a tuple line) is stored as it is."""
    h = History().req("add_stock", ["i1", 1]).req("add_item", ["o1", "i1", 1]).req("checkout", ["o1"])
    h.set_final(items={"i1": (0, 1)}, users={}, orders={"o1": {"paid": True, "items": [["i1", 1]], "user_id": "u",
                                                               "total_cost": 1, "note": "x"}})
    r = load_results(h.write(tmp_path / "a.wdmr"), with_args=True)
    assert isinstance(r.final["orders"], dict) and r.final["orders"]["o1"]["note"] == "x"
    assert not check_results(r).anomalies


def _records(path, kind: str) -> list[dict]:
    from wdmreplay.traces.stream import RecordReader

    with RecordReader(path, "wdm-results", 2) as rr:
        return [rec for rec in rr if rec.get("t") == kind]


def test_corrupt_order_columns_are_a_format_error(tmp_path):
    """Columns that do not fit together (here: one more paid flag than orders) name the file, no traceback."""
    import pytest

    from wdmreplay.traces.stream import FormatError

    class Skewed(ResultsWriter):
        def write_final(self, final):
            from wdmreplay.traces.results import encode_orders

            cols = encode_orders(final["orders"])
            cols["paid"] += b"\x01"
            self._write({"t": "final", **{k: v for k, v in final.items() if k != "orders"}, "order_columns": cols})

    h = History().req("add_item", ["o1", "i1", 1])
    h.set_final(items={"i1": (0, 1)}, orders={"o1": (False, [["i1", 1]], "u", 1)})
    _write(h, tmp_path / "s.wdmr", Skewed)
    with pytest.raises(FormatError, match="s.wdmr: corrupt final-state order columns"):
        load_results(tmp_path / "s.wdmr")
    assert msgpack  # the module is what the v1 layout is written with

