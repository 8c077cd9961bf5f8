"""The results rows' path from the engine to the file, cut (issue 24): the same bytes as before.

The arg columns of a chunk (what a worker packs into each ``requests`` record) are computed a chunk
at a time for the rows a replay writes; the row loop stays the definition, and every other chunk
goes to it.
"""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wdmreplay.operations import OP_CODES, OP_NAMES
from wdmreplay.traces import argcols, load_results
from wdmreplay.traces.argcols import _ROW_KIND, _chunk_columns, _row_loop, encode_chunk
from wdmreplay.replayer.messages import Chunk
from wdmreplay.replayer.schedule import histogram_add
from wdmreplay.replayer.summary import Tally
from wdmreplay.traces.results import (COLUMN_NAMES, FAIL, OK, OUTCOMES, RESULTS_FORMAT, RESULTS_VERSION, SKIPPED,
                                      TIMEOUT, pack_row, requests_record, requests_record_at, row_columns, send_window)
from wdmreplay.traces.stream import FRAME_HEAD, packer, prologue

_IDS = st.sampled_from(["a", "b", "item-285", "", "0", "é", "a\x00b", "9f1c-uuid"])
_AMOUNT = st.one_of(st.integers(-5, 1000), st.sampled_from([-(2**63), 2**63 - 1, 0]))
_BY_KIND = {k: [c for c, kk in _ROW_KIND.items() if kk == k] for k in range(6)}
_OTHER_OPS = [c for c in OP_CODES.values() if c not in _ROW_KIND]


@st.composite
def replay_row(draw):
    """(op code, args) as a replay records them: string ids, int amounts, each op's own args."""
    kind = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    if kind is None:
        return draw(st.sampled_from(_OTHER_OPS)), draw(st.sampled_from([(), ("a",)]))
    op = draw(st.sampled_from(_BY_KIND[kind]))
    if kind == 1:
        return op, (draw(_AMOUNT),)
    if kind == 2:
        return op, (draw(_IDS),)
    if kind == 3:
        return op, (draw(_IDS), draw(_IDS), draw(_AMOUNT))
    if kind == 4:
        return op, (draw(_IDS), draw(_IDS))
    return op, (draw(_IDS), draw(_AMOUNT))


def _encoded(op: np.ndarray, args: list | None, index: dict) -> tuple:
    """:func:`encode_chunk`'s columns, not serialized, with its names put in ``index`` by code."""
    enc = encode_chunk(op, args, as_bytes=False)
    index.update(zip(enc["names"], range(len(enc["names"]))))
    return enc["k0"], enc["k1"], enc["num"], enc["extra"]


def _same(want: tuple, got: tuple, want_index: dict, got_index: dict) -> None:
    for w, g in zip(want[:3], got[:3]):
        assert w.dtype == g.dtype and w.tobytes() == g.tobytes()
    assert want[3] == got[3]
    assert list(want_index.items()) == list(got_index.items())  # same codes, in order of first appearance


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(replay_row(), min_size=2, max_size=60))
def test_replay_rows_take_the_chunk_path_and_get_the_loops_columns(rows):
    op = np.array([c for c, _ in rows], "<u1")
    args = [a for _, a in rows]
    want_index: dict = {}
    got_index: dict = {}
    want = _row_loop(op, args, want_index)
    got = _chunk_columns(op, args)
    assert got is not None  # a replay's rows never need the loop
    _same(want, got[:4], want_index, dict(zip(got[4], range(len(got[4])))))
    _same(want, _encoded(op, args, got_index), want_index, got_index)
    enc = encode_chunk(op, args)
    assert enc["names"] == list(want_index) and enc["k0"] == want[0].tobytes() and enc["num"] == want[2].tobytes()


# What sends a chunk to the loop: each row below is one the chunk path cannot take as it is.
_ODD_ROWS = [
    (OP_CODES["checkout"], ()),  # no args: the loop reads None
    (OP_CODES["checkout"], (7,)),  # an int id: the loop's str()
    (OP_CODES["add_stock"], ("a", True)),  # a bool amount
    (OP_CODES["add_stock"], ("a", 2.5)),  # a float amount
    (OP_CODES["add_stock"], ("a", "12")),  # a numeric string amount
    (OP_CODES["add_stock"], ("a", 2**64)),  # beyond 64 bits: OverflowError either way
    (OP_CODES["add_item"], ("o", "i")),  # no quantity: 1
    (OP_CODES["add_item"], ("o",)),  # no item: ""
    (OP_CODES["create_item"], (None,)),
    (OP_CODES["checkout"], ([1, 2],)),  # a nested value
    (OP_CODES["batch_init_stock"], (10, 100, 1)),  # kept in ``extra``
    (OP_CODES["checkout"], None),
]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(replay_row(), max_size=30), odd=st.sampled_from(_ODD_ROWS), at=st.integers(0, 30))
def test_a_chunk_with_any_other_row_gets_what_the_loop_makes(rows, odd, at):
    rows = rows[:at] + [odd] + rows[at:]
    op = np.array([c for c, _ in rows], "<u1")
    args = [a for _, a in rows]
    want_index: dict = {}
    got_index: dict = {}
    try:
        want = _row_loop(op, args, want_index)
    except Exception as e:  # noqa: BLE001 — whatever the loop raises, the columns raise too
        with pytest.raises(type(e)):
            _encoded(op, args, got_index)
        return
    _same(want, _encoded(op, args, got_index), want_index, got_index)


def test_a_one_row_chunk_goes_to_the_loop():
    op = np.array([OP_CODES["checkout"]], "<u1")
    assert _chunk_columns(op, [("a",)]) is None
    index: dict = {}
    _same(_row_loop(op, [("a",)], index), _encoded(op, [("a",)], got := {}), index, got)


# --- end to end: a replay's file holds the bytes the earlier path wrote -----------------------------

def _frames(path) -> list[bytes]:
    """The payload of every frame of a version-2 file, in order (the prologue skipped)."""
    data = path.read_bytes()
    pos = len(prologue(RESULTS_FORMAT, RESULTS_VERSION))
    out = []
    while pos < len(data):
        n = int.from_bytes(data[pos + 2:pos + 6], "big")
        out.append(data[pos + FRAME_HEAD:pos + FRAME_HEAD + n])
        pos += FRAME_HEAD + n
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_replays_requests_and_bindings_records_are_what_the_earlier_path_packed(shop, tmp_path, monkeypatch, workers):
    trace, out = tmp_path / "s.wdmt", tmp_path / "s.wdmr"
    gen = subprocess.run([sys.executable, "-m", "wdmreplay", "generate-trace", "stress", "--rate", "200",
                          "--requests", "1500", "--seed", "3", "-o", str(trace)], capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    r = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url, "--speed", "max",
                        "--workers", str(workers), "--no-final-read", "--quiet", "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # The earlier path: arg columns by the row loop alone, bindings packed by the writer from the map.
    fast_path = argcols._chunk_columns
    monkeypatch.setattr(argcols, "_chunk_columns", lambda op, args: None)
    pack = packer()
    kinds = {"requests": 0, "bindings": 0}
    for payload in _frames(out)[1:-1]:  # the header and the trailer are not this path's
        rec = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        if rec["t"] == "requests":
            args = msgpack.unpackb(rec["args"], raw=False, strict_map_key=False)
            op = np.frombuffer(rec["cols"]["op"], "<u1")
            assert fast_path(op, args) is not None  # the worker took the chunk path
            assert payload == requests_record(rec["cols"], args, rec["errors"], pack)
        elif rec["t"] == "bindings":
            assert payload == pack.pack({"t": "bindings", "map": rec["map"]})
        kinds[rec["t"]] = kinds.get(rec["t"], 0) + 1
    assert kinds["requests"] >= 1 and kinds["bindings"] >= 1
    res = load_results(out, with_args=True)
    assert res.n >= 1500 and res.complete and len(res.bindings) > 100  # whole sessions: a few more


@pytest.mark.parametrize("n", [0, 1, 31, 40, 8191, 8192, 10000])
def test_a_chunks_columns_are_read_in_place_from_its_record(n):
    """Every column size from a bin 8 to a bin 32: the views are the column bytes, the record unchanged."""
    rows = b"".join(pack_row(i, i % 5, i % 2, i % len(OP_CODES), i % 3, i % 3, i % 6, 200 + i % 300, i * 0.001,
                             i * 0.001 + 1e-4, i * 0.001 + 2e-3) for i in range(n))
    cols = row_columns(rows)
    args = [(f"id{i % 7}", i) for i in range(n)]
    errors = [(i, f"e{i}") for i in range(0, n, 97)]
    record, at = requests_record_at(cols, args, errors)
    assert record == requests_record(cols, args, errors)
    chunk = Chunk(record, n, at)
    got = chunk.columns()
    assert list(got) == list(COLUMN_NAMES)
    for name in COLUMN_NAMES:
        assert bytes(got[name]) == cols[name], name
    tally = Tally()
    tally.add_chunk(got)  # what the coordinator does with them
    assert tally.rows == n and int(tally.outcomes.sum()) == n


# --- the coordinator's tally -------------------------------------------------------------------------

def _tally_before(cols: dict) -> Tally:
    """Tally.add_chunk as it was (summary.py at 9fcf2ce), the reference."""
    t = Tally()
    outcome = np.frombuffer(cols["outcome"], dtype="<u1")
    t.rows += len(outcome)
    t.outcomes += np.bincount(outcome, minlength=len(OUTCOMES))[: len(OUTCOMES)]
    sent_mask = outcome != SKIPPED
    intended, sent, done = (np.frombuffer(cols[k], dtype="<f8") for k in ("intended", "sent", "done"))
    histogram_add(t.response, (done - intended)[sent_mask])
    histogram_add(t.service, (done - sent)[sent_mask])
    histogram_add(t.lag, (sent - intended)[sent_mask])
    t.window = send_window(sent, done, outcome)
    abandoned = done[outcome == TIMEOUT]
    if len(abandoned):
        t.last_abandoned = float(abandoned.max())
    op = np.frombuffer(cols["op"], dtype="<u1")
    status = np.frombuffer(cols["status"], dtype="<u2")
    n_ops = len(OP_NAMES)
    t.sent_by_op += np.bincount(op[sent_mask], minlength=n_ops)[:n_ops]
    t.not_found_by_op += np.bincount(op[sent_mask & (status == 404)], minlength=n_ops)[:n_ops]
    return t


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 400), skipped=st.booleans(), odd=st.sampled_from(["none", "nan", "tiny", "negative", "huge"]),
       seed=st.integers(0, 2**32 - 1))
def test_the_tally_of_a_chunk_is_what_it_was(n, skipped, odd, seed):
    rng = np.random.default_rng(seed)
    outcome = rng.choice([OK, OK, OK, FAIL, TIMEOUT] + ([SKIPPED] if skipped else []), n).astype("<u1")
    intended = np.cumsum(rng.exponential(1e-3, n))
    sent = intended + rng.exponential(2e-4, n) + 2e-6
    done = sent + rng.lognormal(-7, 1.5, n)
    if n and odd == "nan":
        sent[rng.integers(0, n)] = np.nan
    elif n and odd == "tiny":
        done[rng.integers(0, n)] = sent[0] + 1e-9
    elif n and odd == "negative":
        sent[rng.integers(0, n)] -= 1.0
    elif n and odd == "huge":
        done[rng.integers(0, n)] += 5e4
    sent[outcome == SKIPPED] = np.nan
    done[outcome == SKIPPED] = np.nan
    cols = {"outcome": outcome.tobytes(), "intended": intended.tobytes(), "sent": sent.tobytes(),
            "done": done.tobytes(), "op": rng.integers(0, len(OP_NAMES), n).astype("<u1").tobytes(),
            "status": rng.choice([200, 400, 404], n).astype("<u2").tobytes()}
    want = _tally_before(cols)
    got = Tally()
    got.add_chunk({k: memoryview(v) for k, v in cols.items()})
    for name in ("outcomes", "response", "service", "lag", "sent_by_op", "not_found_by_op"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert (got.rows, got.last_abandoned) == (want.rows, want.last_abandoned)
    assert (got.window is None) == (want.window is None)
    if want.window is not None:  # a NaN send time makes the window NaN in both
        assert np.array_equal(np.array(got.window), np.array(want.window), equal_nan=True)
