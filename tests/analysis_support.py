"""Test support for the analysis tests: hand-built runs with seeded latencies, golden files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthetic import History

GOLDEN = Path(__file__).parent / "golden"


def latency_run(path: Path, *, seed: int, slow: float = 1.0, tail: float = 1.0, label: str = "run",
                digest: str = "sha256:same-trace", n: int = 400, anomaly: bool = False) -> Path:
    """A run of n checkouts + n find_item with lognormal latencies; ``slow`` scales checkout, ``tail``
    its slowest 5 %."""
    rng = np.random.default_rng(seed)
    h = History(digest=digest, label=label)
    h.req("create_item", [1]).req("add_stock", ["i1", 10 * n])
    ck = rng.lognormal(np.log(0.020), 0.5, n) * slow
    cut = np.quantile(ck, 0.95)
    ck = np.where(ck > cut, ck * tail, ck)
    fi = rng.lognormal(np.log(0.005), 0.5, n)
    for k in range(n):
        h.req("find_item", ["i1"], at=0.01 * k, latency=float(fi[k]), sid=2 * k)
        h.req("checkout", [f"o{k}"], "fail", expect="any", at=0.01 * k, latency=float(ck[k]), sid=2 * k + 1)
    h.set_final(items={"i1": 10 * n - (1 if anomaly else 0)})
    return h.write(path, wall=0.01 * n + 0.5)


def assert_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``tests/golden/<name>``; WDM_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("WDM_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with WDM_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file (WDM_UPDATE_GOLDEN=1 to accept)"
