"""`merge`'s clock: shards aligned by the wall time of their schedules' start, and the start spread.

Hand-written shard files (one row each) with known times, so every figure is computed here from
the inputs: with ``phase_start`` events that carry ``wall`` the shards are aligned by those; files
without (written before the field existed) fall back to the header's ``started``.
"""

from __future__ import annotations

import numpy as np
import pytest

from wdmreplay.replayer.merge import merge_results
from wdmreplay.traces import ResultsWriter, load_results, results_header
from wdmreplay.traces.results import COLUMNS, OK

T0 = 1_800_000_000.0


def _shard(path, i: int, n: int, *, started: float, sent: float, wall: float | None) -> None:
    w = ResultsWriter(path, results_header(trace={"path": "t.wdmt", "digest": "sha256:x", "header": {}},
                                           dialect="2024", label="b", started=started, shard=f"{i}/{n}",
                                           workers=1, start_at=None, clock=None))
    info = {} if wall is None else {"wall": wall}
    w.write_event(0.0, "phase_start", phase=0, name="p", **info)
    row = {"sid": i, "step": 0, "phase": 0, "op": 0, "scenario": 0, "expect": 0, "outcome": OK, "status": 200,
           "intended": sent - 0.001, "sent": sent, "done": sent + 0.01}
    w.write_requests({name: np.array([row[name]], dtype=dtype) for name, dtype, _ in COLUMNS}, [[]], [])
    w.write_event(1.0, "phase_end", phase=0, name="p")
    w.close(complete=True, wall=1.0)


@pytest.mark.parametrize("walls, expected_offsets", [
    ((T0 + 0.0, T0 + 0.002, T0 + 0.010), (0.0, 0.002, 0.010)),  # aligned by the schedules' starts
    ((None, None, None), (0.0, 1.5, 3.0)),  # older files: by the headers' started (T0, T0+1.5, T0+3)
    ((T0, None, T0), (0.0, 1.5, 3.0)),  # one file without: all by started (one clock rule per merge)
])
def test_merge_aligns_shards_and_reports_their_start_spread(tmp_path, walls, expected_offsets):
    sends = (0.100, 0.120, 0.095)  # seconds after each shard's own clock 0
    paths = []
    for i, (wall, sent) in enumerate(zip(walls, sends)):
        p = tmp_path / f"s{i}.wdmr"
        _shard(p, i, 3, started=T0 + 1.5 * i, sent=sent, wall=wall)
        paths.append(p)
    summary = merge_results(paths, tmp_path / "run.wdmr")
    merged = load_results(tmp_path / "run.wdmr")
    info = merged.header["merged"]
    offsets = [s["offset"] for s in info["sources"]]
    assert offsets == pytest.approx(expected_offsets, abs=1e-6)  # unix times: float64 ~0.2 µs
    zeros = [T0 + o for o in expected_offsets]
    firsts = [z + s for z, s in zip(zeros, sends)]
    assert [s["first_send"] for s in info["sources"]] == pytest.approx(firsts, abs=1e-6)
    assert info["start_spread"] == pytest.approx(max(firsts) - min(firsts), abs=1e-6)
    assert info["zero_spread"] == pytest.approx(max(zeros) - min(zeros), abs=1e-6)
    assert summary.start_spread == pytest.approx(info["start_spread"])
    assert f"first sends {info['start_spread'] * 1e3:.1f} ms apart" in summary.line()
    # Rows moved onto the merged clock by the same offsets.
    assert sorted(merged.cols["sent"].tolist()) == pytest.approx(sorted(o + s for o, s in zip(expected_offsets, sends)))
    assert merged.header["clock"] is None
