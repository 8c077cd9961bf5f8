"""The typed records of a results file (traces/records.py): round trips, kept unknown fields, loud errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wdmreplay.replayer import replay_trace
from wdmreplay.shop import ShopThread
from wdmreplay.traces import FormatError, ResultsWriter, load_results, results_header
from wdmreplay.traces.stream import RecordReader, packer, prologue, write_frame
from wdmreplay.traces.records import Event, FinalRecord, ResultsHeader, Trailer
from wdmreplay.traces.results import (EVENT_FAULT, EVENT_FAULT_START, EVENT_FINAL_READ, EVENT_KINDS,
                                      EVENT_PHASE_END, EVENT_PHASE_START, RESULTS_FORMAT)
from wdmreplay.workloads import generate

WDM = [sys.executable, "-m", "wdmreplay"]


def _ordered(d) -> list:
    """A map's (key, value) pairs in order, nested maps too (what msgpack writes, byte for byte)."""
    return [(k, _ordered(v) if isinstance(v, dict) else v) for k, v in d.items()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real replay against the reference shop, with a fault schedule and a settling final read."""
    tmp = tmp_path_factory.mktemp("records")
    trace = tmp / "t.wdmt"
    generate("stress", trace, seed=5, rate=40, duration=1.0)
    sched = tmp / "f.json"
    sched.write_text(json.dumps({"faults": [{"name": "noop", "at": 0.1, "for": 0.2, "do": "true", "undo": "true"}]}))
    out = tmp / "r.wdmr"
    with ShopThread() as shop:
        replay_trace(str(trace), str(out), target=shop.target, faults=str(sched), settle=0.3)
    return load_results(out)


def test_every_record_of_a_real_run_round_trips_key_for_key(run):
    assert _ordered(run.header_record.to_record()) == _ordered(run.header)
    kinds = [e.kind for e in run.event_records]
    assert {EVENT_PHASE_START, EVENT_PHASE_END, EVENT_FAULT_START, EVENT_FAULT, EVENT_FINAL_READ} <= set(kinds)
    assert set(kinds) <= set(EVENT_KINDS)
    for raw, ev in zip(run.events, run.event_records, strict=True):
        assert _ordered(ev.to_record()) == _ordered(raw) and ev.extra == {}
    final = run.final_record.to_record()
    raw = {k: v for k, v in run.final.items() if k != "t"}
    # the writer stores the orders as columns after the other keys; every other key keeps its place
    assert [k for k in final if k != "orders"] == [k for k in raw if k != "orders"]
    assert final["orders"] is raw["orders"] and run.final_record.extra == {}
    assert _ordered({k: v for k, v in final.items() if k != "orders"}) == _ordered(
        {k: v for k, v in raw.items() if k != "orders"})
    assert _ordered(run.trailer_record.to_record(RESULTS_FORMAT)) == _ordered(run.trailer)


def test_typed_attributes_say_what_the_stored_maps_say(run):
    h = run.header_record
    assert (h.label, h.speed, h.workers, h.trace.digest) == (run.header["label"], run.header["speed"],
                                                             run.header["workers"], run.header["trace"]["digest"])
    assert h.faults == run.header["faults"] and h.merged is None and h.extra == {}
    fault = next(e for e in run.event_records if e.kind == EVENT_FAULT)
    assert fault.name == "noop" and fault.end > fault.at
    f = run.final_record
    assert set(f.items) == set(run.final["items"]) and f.read_at == run.final["read_at"]
    assert all(f.items[k].stock == v["stock"] and f.items[k].price == v["price"] for k, v in run.final["items"].items())
    assert f.settling is not None and f.settling.requested == 0.3 and f.settling.snapshots >= 1
    assert run.trailer_record.complete is True and run.trailer_record.requests == run.n > 0


def test_a_typed_writer_writes_the_bytes_the_map_writer_wrote(tmp_path):
    events = [(0.0, EVENT_PHASE_START, {"phase": 0, "name": "load", "wall": 1700000000.5}),
              (0.4, EVENT_FAULT_START, {"name": "kill", "command": "true", "duration": 1.0}),
              (0.4, EVENT_FAULT, {"name": "kill", "end": 1.5}),
              (2.0, EVENT_PHASE_END, {"phase": 0, "name": "load"})]
    final = {"items": {"1": {"stock": 3, "price": 2}}, "users": {"2": {"credit": 9}},
             "orders": {"o": {"paid": True, "items": [["1", 1]], "user_id": "2", "total_cost": 2}},
             "missing": {"item": {"9": "HTTP 404: gone"}}, "bound_not_found": {"item": ["9"]},
             "settle": None, "quiesce": {"waited": 0.0, "until": 2.0}, "read_at": 2.1}
    header = results_header(  # every field, in the order replay writes them
        trace={"path": "t.wdmt", "digest": "sha256:x", "header": {}}, target={"base": "http://127.0.0.1:1"},
        dialect="2024", speed=1.0, concurrency=4, timeout=5.0, label="a", started=1700000000.0, tool="t", host="h",
        shard=None, workers=1, final_read=True, settle=None, client="lean", start_at=None, scenarios=["s"],
        clock=None, faults=[{"name": "kill"}])
    paths = []
    for typed in (False, True):
        w = ResultsWriter(tmp_path / f"{typed}.wdmr", ResultsHeader.from_record(header) if typed else header)
        for at, kind, info in events:
            if typed:
                w.write_event_record(Event.of(at, kind, **info))
            else:
                w.write_event(at, kind, **info)
        w.write_final(FinalRecord.from_record(final) if typed else final)
        w.close(complete=True, wall=2.5)
        paths.append(tmp_path / f"{typed}.wdmr")
    assert paths[0].read_bytes() == paths[1].read_bytes()


def _frames_file(tmp_path, *, header_extra=None, events=(), final=None, name="x.wdmr"):
    path = tmp_path / name
    w = ResultsWriter(path, results_header(trace={"path": "t", "digest": "d", "header": {}}, **(header_extra or {})))
    for at, kind, info in events:
        w.write_event(at, kind, **info)
    if final is not None:
        w.write_final(final)
    w.close(complete=True, wall=1.0)
    return path


def test_an_older_or_newer_files_unknown_fields_are_kept(tmp_path):
    path = _frames_file(
        tmp_path, header_extra={"future_option": {"x": 1}},
        events=[(0.0, EVENT_PHASE_START, {"phase": 0, "name": "p", "flavour": "new"}),  # no wall: an older writer
                (0.5, "rebalance", {"nodes": 3})],  # a kind this version does not know
        final={"items": {}, "users": {}, "orders": {}, "missing": {}, "settle": None, "checksum": "abc"})
    r = load_results(path)
    assert r.header_record.extra == {"future_option": {"x": 1}}
    assert r.header_record.to_record()["future_option"] == {"x": 1}
    start, other = r.event_records
    assert start.wall is None and "wall" not in start.to_record() and start.extra == {"flavour": "new"}
    assert other.kind == "rebalance" and other.extra == {"nodes": 3} and other.to_record()["nodes"] == 3
    assert r.final_record.extra == {"checksum": "abc"} and r.final_record.to_record()["checksum"] == "abc"
    # an older header's absent fields read as None (a file written before the lean client, start_at, clock)
    h = ResultsHeader.from_record({k: v for k, v in r.header.items() if k not in ("client", "start_at", "clock")})
    assert (h.client, h.start_at, h.clock, h.faults) == (None, None, None, None)


def test_a_trailer_and_an_event_from_maps_keep_their_extras():
    t = Trailer.from_record({"trailer": RESULTS_FORMAT, "requests": 3, "complete": False, "reason": "x",
                             "wall": 1.5, "host_note": "n"})
    assert t.extra == {"host_note": "n"} and t.to_record(RESULTS_FORMAT)["host_note"] == "n"
    ev = Event.from_record({"t": "event", "at": 1, "kind": EVENT_FAULT, "name": "f", "end": 2.0, "shard": "1/2"})
    assert ev.at == 1.0 and ev.shard == "1/2" and list(ev.to_record()) == ["t", "at", "kind", "name", "end", "shard"]


@pytest.mark.parametrize("where,kwargs,words", [
    ("renamed fault name", {"events": [(0.3, EVENT_FAULT, {"nam": "kill", "end": 1.0})]}, ["fault event", "'name'"]),
    ("fault end as text", {"events": [(0.3, EVENT_FAULT, {"name": "kill", "end": "later"})]},
     ["fault event", "'end'"]),
    ("event time as text", {"events": [("soon", EVENT_PHASE_END, {"phase": 0})]}, ["phase_end", "'at'"]),
    ("shard as a number", {"header_extra": {"shard": 1}}, ["results header", "'shard'"]),
    # A base URL that is not text: report --format json was a traceback (bytes, NaN not JSON).
    ("a base URL as bytes", {"header_extra": {"target": {"ORDER_URL": b"\x00"}}}, ["target", "'ORDER_URL'"]),
    ("a base URL as NaN", {"header_extra": {"target": {"ORDER_URL": float("nan")}}}, ["target", "'ORDER_URL'"]),
    ("items as a list", {"final": {"items": [1, 2], "users": {}, "orders": {}, "missing": {}}},
     ["final state", "'items'"]),
    ("a snapshot not a map", {"final": {"items": {"1": 5}, "users": {}, "orders": {}, "missing": {}}},
     ["final state", "snapshot"]),
])
def test_a_corrupt_record_fails_loudly_with_one_line(tmp_path, where, kwargs, words):
    # Each of these used to load and read as a default or fail deep inside an analysis (a fault named
    # "None", an end that is text, a time of 0, "not a shard", a section that is not a map) — now the
    # file is refused at load.
    path = _frames_file(tmp_path, **kwargs)
    with pytest.raises(FormatError) as e:
        load_results(path).final_record  # the final record is checked when first used (the others at load)
    text = str(e.value)
    assert "\n" not in text and str(path) in text and all(w in text for w in words), (where, text)
    p = subprocess.run([*WDM, "report", str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, (where, p.stderr)
    assert p.stderr.count("\n") == 1 and all(w in p.stderr for w in words), (where, p.stderr)


def _rewritten(path, bad, change):
    """``path``'s records written again to ``bad`` with the list ``change([header, *body, trailer])`` returns."""
    with RecordReader(path, RESULTS_FORMAT, 2, partial_ok=True) as rd:
        body = list(rd)
        header, trailer = rd.header, rd.trailer
    pk = packer()
    with open(bad, "wb") as f:
        f.write(prologue(RESULTS_FORMAT, 2))
        for rec in change([header, *body, trailer]):
            write_frame(f, pk.pack(rec))
    return bad


def test_a_corrupt_trailer_fails_loudly(tmp_path):
    # the same records, the trailer's complete written as text (the stream module's own framing)
    bad = _rewritten(_frames_file(tmp_path), tmp_path / "bad.wdmr",
                     lambda recs: [*recs[:-1], {**recs[-1], "complete": "yes"}])
    with pytest.raises(FormatError, match=r"corrupt trailer: 'complete' is str"):
        load_results(bad)


def test_a_replaced_stored_map_is_typed_again(tmp_path):
    path = _frames_file(tmp_path, final={"items": {"1": {"stock": 1, "price": 1}}, "users": {}, "orders": {},
                                         "missing": {}})
    r = load_results(path)
    assert set(r.final_record.items) == {"1"}
    r.final = {"items": {"2": {"stock": 4, "price": 1}}, "users": {}, "orders": {}, "missing": {}}
    assert set(r.final_record.items) == {"2"} and r.final_record.items["2"].stock == 4


def test_a_merged_files_records_round_trip_key_for_key(tmp_path):
    # merge writes typed records too: its header (merged), shard-tagged events and final (shards) read back alike
    from wdmreplay.replayer.merge import merge_results

    trace = tmp_path / "t.wdmt"
    generate("stress", trace, seed=3, rate=40, duration=0.8)
    sched = tmp_path / "f.json"
    sched.write_text(json.dumps({"faults": [{"name": "noop", "at": 0.1, "for": 0.2, "do": "true", "undo": "true"}]}))
    shards = [tmp_path / "s0.wdmr", tmp_path / "s1.wdmr"]
    with ShopThread() as shop:
        replay_trace(str(trace), str(shards[0]), target=shop.target, shard=(0, 2), settle=0.2)
        replay_trace(str(trace), str(shards[1]), target=shop.target, shard=(1, 2), faults=str(sched))
    merge_results(shards, tmp_path / "m.wdmr")
    m = load_results(tmp_path / "m.wdmr")
    assert m.header_record.shard is None and m.header_record.merged["shards"] == 2
    assert _ordered(m.header_record.to_record()) == _ordered(m.header)
    assert {e.shard for e in m.event_records} == {"0/2", "1/2"}
    for raw, ev in zip(m.events, m.event_records, strict=True):
        assert _ordered(ev.to_record()) == _ordered(raw)
    fault = next(e for e in m.event_records if e.kind == EVENT_FAULT)
    assert fault.shard == "1/2" and fault.end > fault.at
    f = m.final_record
    assert [s["shard"] for s in f.shards] == ["0/2", "1/2"] and f.quiesce is None and f.settling is not None
    raw = {k: v for k, v in m.final.items() if k not in ("t", "orders")}
    assert _ordered({k: v for k, v in f.to_record().items() if k != "orders"}) == _ordered(raw)


def test_a_body_record_without_its_type_is_refused(tmp_path):
    # used to be skipped without a word (a renamed "t" lost the record); now the file is corrupt
    bad = _rewritten(_frames_file(tmp_path), tmp_path / "bad.wdmr",
                     lambda recs: [*recs[:-1], {"type": "event", "at": 0.0, "kind": EVENT_PHASE_END}, recs[-1]])
    with pytest.raises(FormatError, match=r"corrupt record after row 0: no 't' \(keys: type, at, kind\)"):
        load_results(bad)
    p = subprocess.run([*WDM, "report", str(bad)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "no 't'" in p.stderr and p.stderr.count("\n") == 1
