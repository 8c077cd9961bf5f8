"""Terminal output a person can act on: line budgets, the verdict first and last, every term in the glossary.

Real runs against the reference shop (right) and the shop with ``--inject lost-update`` (wrong): the
demo's parts stay within 40 lines, a CLEAN ``check`` within 25, and every term the renderers print —
taken from their label tables (``wdmreplay/terms.py``, the anomaly kinds, the operations, the
aggregate keys) and every snake_case word found in the real output — is defined in docs/glossary.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from glossary_support import assert_person_readable, glossary_terms

from wdmreplay import terms
from wdmreplay.analysis.bounds import KEYS
from wdmreplay.analysis.compare import GATED
from wdmreplay.analysis.consistency import KINDS
from wdmreplay.operations import OP_NAMES
from wdmreplay.cli import cli

DEMO_PART_LINES = 40
CLEAN_CHECK_LINES = 25


def printed_terms() -> set[str]:
    """The terms the renderers are built from (their label tables), not a hand copy."""
    return (set(terms.TERMS) | set(terms.MARKS.values()) | set(KINDS) | set(OP_NAMES) | set(KEYS)
            | set(GATED) | {terms.ACCEPTED, terms.REFUSED, terms.UNANSWERED, terms.SKIPPED}
            | {"latency", "error share", "throughput", "anomalies"})


def test_every_label_of_the_renderers_is_in_the_glossary():
    missing = sorted(printed_terms() - glossary_terms())
    assert not missing, f"terms printed but not defined in docs/glossary.md: {missing}"


def _wdm(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdmreplay", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def demo_parts(out: str) -> list[list[str]]:
    """The demo's output cut into its parts (shop and files, then one per workload, then the end)."""
    parts: list[list[str]] = [[]]
    for line in out.splitlines():
        if line.startswith("=== "):
            parts.append([])
        parts[-1].append(line)
    return parts


@pytest.fixture(scope="module")
def clean_demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("demo")
    return _wdm("demo", "--duration", "2", "--quiet", "--keep", str(tmp / "out"), cwd=tmp), tmp / "out"


def test_demo_parts_fit_40_lines_and_say_where_files_are(clean_demo):
    p, out_dir = clean_demo
    assert p.returncode == 0 and p.stderr == "", p.stdout[-2000:] + p.stderr
    parts = demo_parts(p.stdout)
    assert len(parts) == 4  # shop and files, stress, consistency, contention
    assert max(len(part) for part in parts) <= DEMO_PART_LINES, [len(part) for part in parts]
    assert f"are kept in {out_dir}" in p.stdout and f"kept in {out_dir}:" in p.stdout
    assert str(out_dir) not in p.stdout.split("=== ")[1]  # a part names its files, not a path
    assert_person_readable(p.stdout)


def test_demo_without_keep_says_its_files_are_deleted(tmp_path):
    p = _wdm("demo", "--duration", "1", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert "temporary directory, deleted at the end (--keep DIR keeps them" in p.stdout
    assert p.stdout.rstrip().splitlines()[-2].endswith("now deleted (--keep DIR keeps them)")
    assert "/tmp/" not in p.stdout and list(tmp_path.iterdir()) == []


def test_demo_against_lost_update_fits_40_lines_a_part(tmp_path):
    p = _wdm("demo", "--duration", "2", "--quiet", "--inject", "lost-update", cwd=tmp_path)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    parts = demo_parts(p.stdout)
    assert max(len(part) for part in parts) <= DEMO_PART_LINES, [len(part) for part in parts]
    assert "FAIL          consistency" in p.stdout and "lost_update" in p.stdout
    assert "check --verbose lists more" in p.stdout  # the anomalies beyond the first few are a command away
    assert_person_readable(p.stdout)


def test_clean_check_fits_25_lines_with_the_verdict_first_and_last(clean_demo):
    _, out_dir = clean_demo
    for name in ("stress", "consistency", "contention"):
        r = CliRunner().invoke(cli, ["check", str(out_dir / f"{name}.wdmr")])
        lines = r.output.splitlines()
        assert r.exit_code == 0 and len(lines) <= CLEAN_CHECK_LINES, r.output
        assert lines[0] == lines[-1] == "verdict: CLEAN (exit 0)"
        assert lines[1].startswith("covered: ")  # the bug classes this verdict judged, right after it
        marks = [ln.split()[0:2] for ln in lines[2:6]]
        assert marks == [["pass", s] for s in ("correctness", "consistency", "availability", "coverage")]
        assert "refused, as the trace expects" in lines[2]
        assert_person_readable(r.output)


def test_verbose_check_and_report_use_only_glossary_terms(clean_demo):
    _, out_dir = clean_demo
    run = str(out_dir / "consistency.wdmr")
    verbose = CliRunner().invoke(cli, ["check", run, "--verbose"])
    assert verbose.exit_code == 0 and "course benchmark figures" in verbose.output
    assert "totals recomputed from the history" in verbose.output
    report = CliRunner().invoke(cli, ["report", run])
    assert report.exit_code == 0 and report.output.splitlines()[0].endswith("verdict: CLEAN (exit 0)")
    assert report.output.splitlines()[-1] == "verdict: CLEAN (exit 0)"
    for out in (verbose.output, report.output):
        assert_person_readable(out)


def test_not_clean_check_leads_with_the_verdict_and_shows_the_failing_section(tmp_path):
    p = _wdm("demo", "--duration", "1", "--quiet", "--inject", "oversell", "--keep", str(tmp_path / "out"),
             cwd=tmp_path)
    assert p.returncode == 1, p.stdout[-2000:]
    r = CliRunner().invoke(cli, ["check", str(tmp_path / "out" / "consistency.wdmr")])
    lines = r.output.splitlines()
    assert r.exit_code == 1 and lines[0] == lines[-1] and lines[0].startswith("verdict: NOT CLEAN (exit 1) — decided by")
    assert any(ln.split()[:2] == ["FAIL", "consistency"] for ln in lines[1:6])
    assert "consistency (fail):" in lines and "oversell" in r.output
    assert_person_readable(r.output)


def test_compare_output_uses_only_glossary_terms(clean_demo, tmp_path):
    _, out_dir = clean_demo
    runs = [str(out_dir / "stress.wdmr")]
    # The same trace replayed again under another label: a second build of one run.
    with_label = tmp_path / "again.wdmr"
    from wdmreplay.shop import ShopThread
    from wdmreplay.replayer import replay_trace

    with ShopThread() as shop:
        replay_trace(str(out_dir / "stress.wdmt"), str(with_label), target=shop.target, speed=4.0, label="again")
    r = CliRunner().invoke(cli, ["compare", *runs, str(with_label)])
    assert r.exit_code in (0, 1) and r.output.startswith("verdict: ")
    assert "gates that cannot fire with these runs:" in r.output
    assert_person_readable(r.output)


@pytest.mark.parametrize("error_rate", [0.0, 0.5])
def test_replay_summary_names_answers_in_words(tmp_path, shop_factory, error_rate):
    # The right shop answers everything; the wrong one answers half of the requests 500.
    shop = shop_factory(error_rate=error_rate, seed=5)
    from wdmreplay.workloads import generate

    generate("stress", tmp_path / "t.wdmt", seed=1, rate=2000.0, requests=200)
    r = _wdm("replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-o", "r.wdmr", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    answers = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("answers:"))
    assert "accepted (2xx)" in answers and "refused (4xx)" in answers and "`check` says which the trace expects" in answers
    if error_rate:
        assert re.search(r"\d+ unanswered \(\d+ 5xx\)", answers), answers
    else:
        assert ", 0 unanswered;" in answers, answers
    assert_person_readable(r.stdout)
