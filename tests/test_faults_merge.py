"""merge keeps a shard's fault window whole: its start and end move onto the merged clock together."""

from __future__ import annotations

import json

import pytest

from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.replayer.merge import merge_results
from wdmreplay.shop import ShopThread
from wdmreplay.traces import load_results


def test_merged_fault_window_keeps_its_length(tmp_path):
    trace = tmp_path / "t.wdmt"
    generate("stress", trace, seed=4, rate=30, duration=1.5)
    sched = tmp_path / "f.json"
    sched.write_text(json.dumps({"faults": [{"name": "noop", "at": 0.2, "for": 0.3, "do": "true", "undo": "true"}]}))
    outs = [tmp_path / "s0.wdmr", tmp_path / "s1.wdmr"]
    with ShopThread() as shop:
        # one after the other: shard 1 starts seconds after shard 0, so the merge shifts shard 1's clock
        replay_trace(str(trace), str(outs[0]), target=shop.target, shard=(0, 2))
        replay_trace(str(trace), str(outs[1]), target=shop.target, shard=(1, 2), faults=str(sched))
    original = next(e for e in load_results(outs[1]).events if e["kind"] == "fault")
    merged_path = tmp_path / "m.wdmr"
    merge_results(outs, merged_path)
    merged = next(e for e in load_results(merged_path).events if e["kind"] == "fault")
    assert merged["name"] == "noop" and merged["at"] > original["at"] + 0.5  # shifted onto shard 0's clock
    assert merged["end"] - merged["at"] == pytest.approx(original["end"] - original["at"], abs=1e-6)
