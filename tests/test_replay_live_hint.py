"""``replay --ui PORT`` (a bare port, as Locust's ``--web-port`` takes it) names the fix in its error (QA sweep).

Before: ``--ui=8089`` answered "write --ui=HOST:PORT or put --ui after the trace", advice that
does not apply when --ui already follows the trace.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from wdmreplay.traces import step
from replay_support import write_trace

WDM = [sys.executable, "-m", "wdmreplay"]


@pytest.mark.parametrize("value", ["8089", ":8089"])
def test_a_bare_port_gets_the_host_named(shop, tmp_path, value):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = subprocess.run([*WDM, "replay", "t.wdmt", "--url", shop.url, f"--ui={value}", "-q"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"got '{value}'; name the host too: --ui=127.0.0.1:8089" in p.stderr
    assert not (tmp_path / "t.wdmr").exists()
    ok = subprocess.run([*WDM, "replay", "t.wdmt", "--url", shop.url, "--ui=127.0.0.1:0", "--ui-linger", "0", "-q"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "t.wdmr").exists()
