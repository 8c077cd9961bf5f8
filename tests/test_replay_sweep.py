"""Issue 19's bad-input sweep: each case is refused with one line and exit 2, before anything is lost.

No command writes its output over one of its inputs; ``--speed`` is finite and positive in ``replay``
and ``ab`` alike (one option definition); ``ab`` checks its options and probes both builds before
its first run; faults lie within the run; ``--workers`` is bounded by the CPUs; ``replay -o`` over
an existing file needs ``--force``; "no such file" names a killed run's ``.part``. Each refusal has
its accepted counterpart beside it, so the check can fail both ways.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from replay_support import closed_port, run_cli, write_trace
from synthetic import History
from wdmreplay.replayer import ReplayError, replay_trace
from wdmreplay.replayer.checks import max_workers, usable_cpus
from wdmreplay.traces import load_results, step

README = Path(__file__).resolve().parent.parent / "README.md"



def one_line_exit_2(code: int, out: str, err: str, message: str) -> None:
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("wdm-replay: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


@pytest.fixture
def trace(tmp_path) -> Path:
    path = tmp_path / "t.wdmt"
    write_trace(path, [[(0.0, [step("create_user", [], bind=f"$u{i}")]) for i in range(5)]])
    return path


def _runs(tmp_path) -> tuple[Path, Path]:
    a, b = History(label="A"), History(label="B")
    for k in range(30):
        a.req("find_item", ["i"], at=k * 0.1, latency=0.010)
        b.req("find_item", ["i"], at=k * 0.1, latency=0.011)
    return a.write(tmp_path / "a.wdmr"), b.write(tmp_path / "b.wdmr")


# --- no output over an input ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
def test_compare_refuses_to_write_over_an_input(tmp_path, capsys, fmt):
    a, b = _runs(tmp_path)
    before = b.read_bytes()
    one_line_exit_2(*run_cli(capsys, "compare", str(a), str(b), "--format", fmt, "-o", str(b)),
                    f"{b}: the output is the input {b}; refusing to overwrite it")
    assert b.read_bytes() == before and load_results(b).n == 30
    if fmt != "html":  # the same comparison to another file is written (html needs matplotlib)
        code, _, err = run_cli(capsys, "compare", str(a), str(b), "--format", fmt, "-o", str(tmp_path / f"c.{fmt}"))
        assert code in (0, 1) and (tmp_path / f"c.{fmt}").stat().st_size > 0, err


def test_report_refuses_to_write_over_its_input(tmp_path, capsys):
    a, _ = _runs(tmp_path)
    before = a.read_bytes()
    one_line_exit_2(*run_cli(capsys, "report", str(a), "-o", str(a)), "refusing to overwrite it")
    assert a.read_bytes() == before


@pytest.mark.parametrize("which", ["trace", "urls", "routes", "faults"])
def test_replay_refuses_to_write_over_any_of_its_inputs(tmp_path, capsys, trace, which):
    port = closed_port()
    files = {"trace": trace, "urls": tmp_path / "urls.json", "routes": tmp_path / "routes.json",
             "faults": tmp_path / "faults.json"}
    files["urls"].write_text(json.dumps({k: f"http://127.0.0.1:{port}" for k in ("ORDER_URL", "PAYMENT_URL",
                                                                                 "STOCK_URL")}))
    files["routes"].write_text(json.dumps({}))
    files["faults"].write_text(json.dumps({"faults": []}))
    before = {k: p.read_bytes() for k, p in files.items()}
    argv = ["replay", str(trace), "--urls", str(files["urls"]), "--routes", str(files["routes"]),
            "--faults", str(files["faults"]), "-o", str(files[which]), "--force"]
    one_line_exit_2(*run_cli(capsys, *argv), "refusing to overwrite it")
    assert {k: p.read_bytes() for k, p in files.items()} == before



def test_replay_refuses_to_write_over_the_urls_json_it_read_by_default(tmp_path, capsys, trace, monkeypatch):
    """No --urls, no --url: ./urls.json is the target, so it is an input even though no option named it."""
    monkeypatch.chdir(tmp_path)
    urls = tmp_path / "urls.json"
    urls.write_text(json.dumps({k: f"http://127.0.0.1:{closed_port()}" for k in ("ORDER_URL", "PAYMENT_URL",
                                                                                   "STOCK_URL")}))
    before = urls.read_bytes()
    for out in ("urls.json", "./urls.json", str(urls)):
        one_line_exit_2(*run_cli(capsys, "replay", str(trace), "-o", out, "--force"), "refusing to overwrite it")
    assert urls.read_bytes() == before

def test_ab_and_merge_and_record_refuse_to_write_over_an_input(tmp_path, capsys, trace):
    before = trace.read_bytes()
    port = closed_port()
    one_line_exit_2(*run_cli(capsys, "ab", str(trace), "--a", f"http://127.0.0.1:{port}", "--b",
                             f"http://127.0.0.1:{port}", "-d", str(tmp_path / "runs"), "-o", str(trace)),
                    "refusing to overwrite it")
    a, b = _runs(tmp_path)
    one_line_exit_2(*run_cli(capsys, "merge", str(a), str(b), "-o", str(b)), "refusing to overwrite it")
    urls = tmp_path / "urls.json"
    urls.write_text(json.dumps({k: f"http://127.0.0.1:{port}" for k in ("ORDER_URL", "PAYMENT_URL", "STOCK_URL")}))
    urls_before = urls.read_bytes()
    one_line_exit_2(*run_cli(capsys, "record", "--urls", str(urls), "--listen", "127.0.0.1:0", "-o", str(urls)),
                    "refusing to overwrite it")
    assert trace.read_bytes() == before and urls.read_bytes() == urls_before
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


# --- replay -o over an existing file, and a killed run's .part -----------------------------------


def test_replay_over_an_existing_results_file_needs_force(tmp_path, capsys, shop, trace):
    out = tmp_path / "r.wdmr"
    code, _, err = run_cli(capsys, "replay", str(trace), "--url", shop.url, "-q", "-o", str(out))
    assert code == 0, err
    first = out.read_bytes()
    one_line_exit_2(*run_cli(capsys, "replay", str(trace), "--url", shop.url, "-q", "-o", str(out)),
                    f"{out}: already exists; give --force to replace it")
    assert out.read_bytes() == first  # the earlier run is kept
    code, _, err = run_cli(capsys, "replay", str(trace), "--url", shop.url, "-q", "-o", str(out), "--force")
    assert code == 0 and out.read_bytes() != first, err
    # a killed run's partial file counts as one: not replaced silently either
    part = tmp_path / "k.wdmr.part"
    part.write_bytes(first)
    one_line_exit_2(*run_cli(capsys, "replay", str(trace), "--url", shop.url, "-q", "-o", str(tmp_path / "k.wdmr")),
                    f"{part}: a killed run's partial results; give --force")
    assert part.read_bytes() == first


def test_check_of_a_missing_file_names_the_killed_runs_part(tmp_path, capsys):
    a, _ = _runs(tmp_path)
    one_line_exit_2(*run_cli(capsys, "check", str(tmp_path / "gone.wdmr")), f"{tmp_path / 'gone.wdmr'}: no such file")
    run = tmp_path / "run.wdmr"
    a.rename(tmp_path / "run.wdmr.part")
    code, out, err = run_cli(capsys, "check", str(run))
    one_line_exit_2(code, out, err, f"{run}: no such file, but {run}.part exists")
    assert "gone.wdmr.part" not in err
    code, out, err = run_cli(capsys, "check", f"{run}.part")  # and that file is readable as it says
    assert code in (0, 1, 3) and "verdict" in out.lower(), (code, out, err)


# --- --speed: finite and positive everywhere, one definition for replay and ab -------------------


@pytest.mark.parametrize("speed", ["-inf", "inf", "nan", "0", "-1", "1e308", "1e-300"])
@pytest.mark.parametrize("command", ["replay", "ab"])
def test_speed_is_finite_and_positive_in_replay_and_ab(tmp_path, capsys, trace, command, speed):
    port = closed_port()
    argv = ([command, str(trace), "--url", f"http://127.0.0.1:{port}"] if command == "replay" else
            [command, str(trace), "--a", f"http://127.0.0.1:{port}", "--b", f"http://127.0.0.1:{port}",
             "-d", str(tmp_path / "runs")])
    code, out, err = run_cli(capsys, *argv, "--speed", speed)
    one_line_exit_2(code, out, err, "Invalid value for '--speed'")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "t.wdmr").exists()


def test_ab_shares_replays_option_types():
    from wdmreplay.cli import cli

    def types(name):
        return {p.name: p.type for p in cli.commands[name].params}

    r, a = types("replay"), types("ab")
    for opt in ("speed", "concurrency", "timeout", "dialect"):
        assert type(a[opt]) is type(r[opt]) and vars(a[opt]) == vars(r[opt]), opt


def test_library_refuses_what_the_cli_refuses(tmp_path, trace):
    for speed in (float("-inf"), float("inf"), 1e308, 0.0):
        with pytest.raises(ReplayError, match="speed"):
            replay_trace(trace, tmp_path / "r.wdmr", target=f"http://127.0.0.1:{closed_port()}", speed=speed)
    assert not (tmp_path / "r.wdmr").exists()


# --- ab: both builds probed before the first run --------------------------------------------------


def test_ab_finds_a_dead_build_b_before_build_as_run(tmp_path, capsys, shop, trace):
    dead = f"http://127.0.0.1:{closed_port()}"
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "ab", str(trace), "--a", shop.url, "--b", dead, "--runs", "1", "-d", str(runs),
                             "--speed", "max")
    one_line_exit_2(code, out, err, f"build B (B): cannot reach target {dead}")
    assert not runs.exists() or list(runs.iterdir()) == []  # A never ran
    # with both alive, the same command runs both builds
    code, out, err = run_cli(capsys, "ab", str(trace), "--a", shop.url, "--b", shop.url, "--runs", "1", "-d",
                             str(runs), "--speed", "max", "-q", "--no-check")
    assert code in (0, 1) and len(list(runs.iterdir())) == 2, err


def test_ab_refuses_a_bad_option_as_replay_does(tmp_path, capsys, shop, trace):
    one_line_exit_2(*run_cli(capsys, "ab", str(trace), "--a", shop.url, "--b", shop.url, "--concurrency", "0",
                             "-d", str(tmp_path / "runs")), "Invalid value for '--concurrency'")
    one_line_exit_2(*run_cli(capsys, "replay", str(trace), "--url", shop.url, "--concurrency", "0"),
                    "Invalid value for '--concurrency'")


# --- faults within the run ------------------------------------------------------------------------


def _schedule(path: Path, at: float, duration: float) -> Path:
    path.write_text(json.dumps({"faults": [{"name": "late", "at": at, "for": duration, "do": "true",
                                            "undo": "true"}]}))
    return path


@pytest.mark.parametrize("at, duration, message", [
    (1e10, 1, "'at' 1e+10 s is not within the run (the run's schedule lasts {length:.6g} s)"),
    (2.5, 1, "'at' 2.5 s is not within the run (the run's schedule lasts {length:.6g} s)"),
    (0.5, 1e10, "ends after twice the run"),
])
def test_a_fault_outside_the_run_is_one_line_and_exit_2(tmp_path, shop, at, duration, message):
    trace = tmp_path / "t.wdmt"
    from wdmreplay.workloads import generate

    length = generate("stress", trace, seed=1, rate=5, duration=2)["duration"]  # the last session's start
    assert length < 2.5
    message = message.format(length=length)
    sched = _schedule(tmp_path / "f.json", at, duration)
    p = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", str(trace), "--url", shop.url, "--faults",
                        str(sched), "-o", str(tmp_path / "r.wdmr")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert not (tmp_path / "r.wdmr").exists() and not (tmp_path / "r.wdmr.part").exists()
    # inside the run, the same schedule shape is accepted and its fault runs
    ok = _schedule(tmp_path / "ok.json", 0.3, 0.3)
    s = replay_trace(trace, tmp_path / "ok.wdmr", target=shop.target, faults=str(ok), speed=1.0)
    assert s.complete and s.faults.skipped == ()


# --- --workers: what the machine can hold ---------------------------------------------------------


def test_workers_beyond_the_machine_are_refused_naming_its_cpus(tmp_path, capsys, trace):
    too_many = max_workers() + 1
    code, out, err = run_cli(capsys, "replay", str(trace), "--url", f"http://127.0.0.1:{closed_port()}",
                             "--workers", str(too_many), "--concurrency", "4096")
    one_line_exit_2(code, out, err, f"--workers {too_many} is more than this machine can hold: {usable_cpus()} CPU(s), "
                                    f"at most {max_workers()} workers")
    assert not (tmp_path / "t.wdmr").exists()
    code, out, err = run_cli(capsys, "replay", str(trace), "--url", f"http://127.0.0.1:{closed_port()}",
                             "--workers", str(max_workers()), "--concurrency", "4096")
    one_line_exit_2(code, out, err, "cannot reach target")  # the bound itself passes the option check


# --- the README's step 4 -------------------------------------------------------------------------


def test_readme_says_where_old_urls_json_comes_from_before_using_it():
    text = README.read_text()
    made = re.search(r"cat > old-urls\.json", text)
    used = re.search(r"ab stress\.wdmt --a old-urls\.json", text)
    assert made and used and made.start() < used.start()
