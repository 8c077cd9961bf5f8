"""The CI rule of tests/conftest.py: with CI set, a skipped test or a skipped module is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

CONFTEST = (Path(__file__).parent / "conftest.py").read_text(encoding="utf-8")

SKIPPING = """
import pytest

def test_passes():
    assert 1 + 1 == 2

@pytest.mark.skipif(True, reason="tool not installed")
def test_marked():
    pass

def test_skips_inside():
    pytest.skip("no CPU caps here")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""

MODULE_SKIP = """
import pytest
pytest.skip("whole module skipped", allow_module_level=True)

def test_never_runs():
    pass
"""


@pytest.fixture
def inner(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_skipping=SKIPPING, test_module_skip=MODULE_SKIP)
    return pytester


def test_under_ci_every_skip_fails_and_names_its_reason(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")  # as hosted runners set it; .ci/run sets CI=1
    # A module skipped at collection is a collection error, which alone stops a run; go on to see the rest.
    res = inner.runpytest_subprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    # A skip mark skips in setup, so it shows as an error; pytest.skip() in the test body as a failure.
    res.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)
    out = res.stdout.str()
    for reason in ("tool not installed", "no CPU caps here", "whole module skipped"):
        assert f"a skip is a failure here — {reason}" in out
    assert res.ret != 0


@pytest.mark.parametrize("ci", [None, "0"])
def test_without_ci_skips_stay_skips(inner, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    res = inner.runpytest_subprocess("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert res.ret == 0
