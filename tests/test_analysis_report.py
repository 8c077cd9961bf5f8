"""Report rendering: golden text for check/report/compare, JSON keys, a validated HTML page, the CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from analysis_support import assert_golden, latency_run

from wdmreplay.analysis import (build_report, check_results, compare_runs, render_check_text, render_compare_text,
                                render_html, render_json, render_text)
from wdmreplay.analysis.compare import NOISE_FLOOR
from synthetic import History
from wdmreplay.traces import load_results


def mixed_history() -> History:
    """A small run with a bit of everything: contradicted expectations, an error, a skipped step,
    a lost checkout, a phantom checkout, a no-rollback and a double charge."""
    h = History(scenarios=["populate", "checkout", "fail_no_stock"], label="build-a",
                expect={"checkout_ok": 3})
    t = 0.0
    for k, (op, args) in enumerate([("create_item", [2]), ("add_stock", ["i1", 10]), ("create_item", [3]),
                                    ("add_stock", ["i2", 1]), ("create_user", []), ("add_funds", ["u1", 100]),
                                    ("create_user", []), ("add_funds", ["u2", 100])]):
        h.req(op, args, at=t, latency=0.004 + 0.001 * k, scenario="populate", sid=0, step=k)
        t += 0.01
    for k in range(5):
        h.req("create_order", ["u1" if k < 3 else "u2"], at=0.1 + 0.05 * k, latency=0.003, scenario="checkout",
              sid=1 + k, step=0)
        h.req("add_item", [f"o{k}", "i1" if k != 4 else "i2", 1], at=0.11 + 0.05 * k, latency=0.003,
              scenario="checkout", sid=1 + k, step=1)
    outcomes = ["ok", "ok", "fail", "ok", "fail"]
    expects = ["ok", "ok", "ok", "ok", "fail"]
    for k in range(5):
        h.req("checkout", [f"o{k}"], outcomes[k], expect=expects[k], at=0.5 + 0.3 * k, latency=0.02 + 0.01 * k,
              scenario="checkout" if k < 4 else "fail_no_stock", sid=1 + k, step=2,
              error="insufficient stock" if outcomes[k] == "fail" else "")
    h.req("checkout", ["o9"], "error", expect="ok", at=2.5, latency=0.5, scenario="checkout", sid=6, step=2,
          error="500 Internal Server Error")
    h.req("add_item", ["$s7.order", "i1", 1], "skipped", expect="ok", at=2.6, scenario="checkout", sid=7, step=1)
    # o0 paid fine; o1 answered 2xx but is not paid; o2 answered 4xx but is paid; o3 paid and u2 charged
    # twice; o4 (u2, i2) refused but kept its stock.
    h.set_final(items={"i1": (7, 2), "i2": (0, 3)}, users={"u1": 96, "u2": 94},
                orders={"o0": (True, [["i1", 1]], "u1", 2), "o1": (False, [["i1", 1]], "u1", 2),
                        "o2": (True, [["i1", 1]], "u1", 2), "o3": (True, [["i1", 1]], "u2", 2),
                        "o4": (False, [["i2", 1]], "u2", 3)})
    return h


def clean_history() -> History:
    h = History(label="build-ok", expect={"checkout_ok": 1, "stock_total": 0, "credit_total": 3})
    h.req("create_item", [2]).req("add_stock", ["i1", 1]).req("create_user", []).req("add_funds", ["u1", 5])
    h.req("create_order", ["u1"]).req("add_item", ["o1", "i1", 1]).req("checkout", ["o1"])
    h.set_final(items={"i1": (0, 2)}, users={"u1": 3}, orders={"o1": (True, [["i1", 1]], "u1", 2)})
    return h


@pytest.fixture
def mixed(tmp_path) -> Path:
    return mixed_history().write(tmp_path / "mixed.wdmr", wall=3.0)


def test_check_text_golden(mixed):
    rep = check_results(load_results(mixed, with_args=True))
    assert not rep.clean
    assert {k for k, v in rep.anomaly_counts.items() if v} == {
        "lost_checkout", "phantom_checkout", "non_atomic_checkout", "double_charge"}
    assert_golden("analysis_check.txt", render_check_text(rep))


def test_report_text_golden(mixed):
    assert_golden("analysis_report.txt", render_text(build_report(load_results(mixed, with_args=True))))


def test_compare_text_golden(tmp_path):
    # Two builds of three labelled runs each (the run is the unit), B slower on checkout and with an anomaly.
    paths = [latency_run(tmp_path / f"a{k}.wdmr", seed=1 + k, label="build-a") for k in range(3)]
    paths += [latency_run(tmp_path / f"b{k}.wdmr", seed=4 + k, slow=1.6, label="build-b", anomaly=True)
              for k in range(3)]
    runs = [load_results(p, with_args=True) for p in paths]
    res = compare_runs(runs, checks=[check_results(r) for r in runs])
    assert_golden("analysis_compare.txt", render_compare_text(res))


def test_compare_text_golden_single_run(tmp_path):
    # Today's form, one run a side: the noise floor is printed and the verdict called weaker.
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="build-a")
    b = latency_run(tmp_path / "b.wdmr", seed=2, slow=1.4, label="build-b", anomaly=True)
    runs = [load_results(p, with_args=True) for p in (a, b)]
    res = compare_runs(runs, checks=[check_results(r) for r in runs])
    assert_golden("analysis_compare_single.txt", render_compare_text(res))


def test_report_json_stable_keys(mixed):
    data = json.loads(render_json(build_report(load_results(mixed, with_args=True))))
    assert set(data) == {"schema", "run", "stats", "check", "stories"} and data["schema"] == "wdm-report/1"
    assert set(data["stats"]) == {"span", "overall", "by_op", "timeline", "cdf"}
    assert set(data["stats"]["overall"]) == {"count", "rate", "outcomes", "shares", "response_ms", "service_ms", "lag_ms"}
    assert set(data["stats"]["overall"]["response_ms"]) == {"min", "p50", "p90", "p99", "p99.9", "max", "mean"}
    assert set(data["stats"]["overall"]["lag_ms"]) == {"min", "p50", "p99", "max"}
    assert set(data["check"]) >= {"clean", "complete", "expectations", "consistency", "warnings", "undetermined"}
    assert data["check"]["schema"] == "wdm-check/3" and data["check"]["verdict"] == "NOT CLEAN"
    assert set(data["check"]["sections"]) == {"correctness", "consistency", "availability", "coverage"}
    assert set(data["check"]["consistency"]["benchmark"]) == {
        "comparable", "why", "stock_inconsistencies_logs", "stock_inconsistencies_db", "payment_inconsistencies_logs",
        "payment_inconsistencies_db"}
    assert data["run"]["label"] == "build-a" and data["stats"]["overall"]["count"] == 25


def test_report_without_args_has_no_check(mixed):
    rep = build_report(load_results(mixed))
    assert rep.check is None and "check: not run" in render_text(rep)


def test_typed_report_is_what_the_json_edge_prints(mixed):
    # The report and the check are typed records; their dict exists only at the JSON edge, and the
    # CLI's JSON is exactly that edge (byte for byte), for a run with anomalies, an error and a skip.
    run = load_results(mixed, with_args=True)
    rep = build_report(run)
    s, chk = rep.stats, rep.check
    assert rep.run.label == "build-a" and rep.run.file == "mixed.wdmr" and rep.run.complete
    assert s.overall.count == 25 == sum(b.count for b in s.by_op.values())
    assert s.overall.unanswered == 1 and s.overall.outcomes["skipped"] == 1  # the 500 and the skipped add_item
    assert s.by_op["checkout"].unanswered == 1 and s.by_op["add_item"].unanswered == 0
    assert sum(s.timeline.count) == 24 and len(s.timeline.t) == len(s.timeline.p99_ms)  # sent requests only
    assert chk.verdict.verdict == "NOT CLEAN" and chk.verdict.by_name["correctness"].status == "fail"
    assert rep.stories and all(st.anomaly in chk.anomalies for st in rep.stories)
    assert render_json(rep) == render_json(rep.to_json()) and render_json(chk) == render_json(chk.as_dict())
    report_json, check_json = _cli("report", str(mixed), "--format", "json"), _cli("check", str(mixed), "--json")
    assert report_json.stdout == render_json(rep) and check_json.stdout == render_json(check_results(run))
    assert check_json.returncode == 1 and report_json.returncode == 0
    # A clean run: nothing unanswered, no story, the verdict read from the same record.
    clean = build_report(load_results(clean_history().write(mixed.parent / "clean.wdmr"), with_args=True))
    assert clean.check.clean and clean.stories == () and clean.stats.overall.unanswered == 0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "table":
            self.tables += 1


def test_html_report_is_self_contained_with_plots(mixed):
    page = render_html(build_report(load_results(mixed, with_args=True)))
    p = _Page()
    p.feed(page)
    p.close()
    assert p.tags[0] == "html" and "script" not in p.tags and p.images == []  # charts are inline SVG
    assert page.count('<figure class="chart"') == 3 and page.count("<svg") >= 3
    # run, sections, operations, anomalies, contradicted expectations
    assert p.tables >= 5 and 'class="banner not-clean"' in page
    assert "phantom_checkout" in page and 'src="http' not in page and 'href="http' not in page


def test_html_without_matplotlib_still_renders_its_tables(mixed, monkeypatch):
    rep = build_report(load_results(mixed, with_args=True))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = render_html(rep)
    assert "Charts need matplotlib: <code>pip install 'wdm-replay[html]'</code>" in page
    assert "<figure" not in page and "phantom_checkout" in page


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("wdm-replay", path=os.path.dirname(sys.executable))
    cmd = [exe, *args] if exe else [sys.executable, "-m", "wdmreplay", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_cli_check_exit_codes(tmp_path, mixed):
    ok = clean_history().write(tmp_path / "ok.wdmr")
    r = _cli("check", str(ok))
    # the verdict, then the one line of what it covered (a synthetic trace header states no bug classes)
    assert (r.returncode, r.stderr) == (0, "") and r.stdout.splitlines()[-1] == "verdict: CLEAN (exit 0)"
    assert r.stdout.splitlines()[1].startswith("covered: not stated")
    r = _cli("check", str(mixed), "--json")
    assert r.returncode == 1 and r.stderr == ""
    assert json.loads(r.stdout)["clean"] is False
    partial = clean_history().write(tmp_path / "partial.wdmr", complete=False, reason="interrupted")
    r = _cli("check", str(partial))
    # A partial run where nothing is proven wrong cannot be judged: INCONCLUSIVE, exit 3.
    assert r.returncode == 3 and "WARNING: PARTIAL RUN (interrupted)" in r.stdout
    assert r.stdout.splitlines()[-1] == "verdict: INCONCLUSIVE (exit 3) — decided by coverage"


def test_cli_report_formats(tmp_path, mixed):
    r = _cli("report", str(mixed))
    assert r.returncode == 0 and r.stdout.startswith("wdm-replay report: build-a (mixed.wdmr)")
    out = tmp_path / "r.json"
    r = _cli("report", str(mixed), "--format", "json", "-o", str(out))
    assert r.returncode == 0 and json.loads(out.read_text())["schema"] == "wdm-report/1"
    out = tmp_path / "r.html"
    r = _cli("report", str(mixed), "--format", "html", "-o", str(out))
    assert r.returncode == 0 and out.read_text().count('<figure class="chart"') == 3


def test_cli_report_output_is_replaced_whole_and_follows_links(tmp_path, mixed):
    # -o writes through OUT.part renamed over OUT: no temporary file is left, a symbolic link stays a
    # link (its target gets the report), and /dev/stdout (a pipe here) is written to, not replaced.
    target = tmp_path / "reports" / "r.txt"
    target.parent.mkdir()
    target.write_text("an older report\n")
    link = tmp_path / "latest.txt"
    link.symlink_to(target)
    r = _cli("report", str(mixed), "-o", str(link))
    assert r.returncode == 0 and r.stderr == f"wrote {link}\n"
    assert link.is_symlink() and target.read_text().startswith("wdm-replay report: build-a (mixed.wdmr)")
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.txt"]
    r = _cli("report", str(mixed), "-o", "/dev/stdout")
    assert r.returncode == 0 and r.stdout.startswith("wdm-replay report: build-a (mixed.wdmr)")
    assert Path("/dev/stdout").is_symlink() or not Path("/dev/stdout").is_file()


def test_a_failed_write_leaves_the_earlier_file_whole(tmp_path):
    from wdmreplay.traces.stream import write_text_atomically

    out = tmp_path / "report.html"
    out.write_text("the earlier report")
    with pytest.raises(UnicodeEncodeError):  # fails after the temporary file was opened and truncated
        write_text_atomically(out, "<html>" + "\ud800")
    assert out.read_text() == "the earlier report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_text_atomically(out, "<html>")
    assert out.read_text() == "<html>" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_pipe_is_written_to_not_replaced(tmp_path):
    import stat
    import threading

    from wdmreplay.traces.stream import write_text_atomically

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text_atomically(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_cli_compare_and_errors(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    # Far beyond the single-run noise floor, so one run a side suffices.
    b = latency_run(tmp_path / "b.wdmr", seed=2, slow=2 * (1 + NOISE_FLOOR["p50"]), label="b")
    other = latency_run(tmp_path / "o.wdmr", seed=1, digest="sha256:another")
    same = latency_run(tmp_path / "a2.wdmr", seed=2, label="a2")
    assert _cli("compare", str(a), str(same)).returncode == 0
    r = _cli("compare", str(a), str(a))
    assert r.returncode == 2 and "at least two builds" in r.stderr and r.stderr.count("\n") == 1
    r = _cli("compare", str(a), str(b), "--format", "json")
    assert r.returncode == 1 and json.loads(r.stdout)["regression"] is True
    r = _cli("compare", str(a), str(other))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("wdm-replay: error: o.wdmr replays a different trace than a.wdmr")
    assert r.stderr.count("\n") == 1
    r = _cli("check", str(tmp_path / "nope.wdmr"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr


@pytest.mark.parametrize("cmd", ["check", "report", "compare"])
def test_cli_help_has_examples(cmd):
    r = _cli(cmd, "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and f"wdm-replay {cmd} a.wdmr" in r.stdout


def test_cli_report_no_check(mixed):
    r = _cli("report", str(mixed), "--no-check", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["check"] is None
