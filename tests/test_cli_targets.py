"""One target rule for every command (issue 23, item 5): replay, shrink, capacity, ab, record and grade
turn a user's target (a base URL or a urls.json path) into a Target through ``targets.choose_target``,
with the same one-line errors; a good target is used (real HTTP to the reference shop on loopback).

Also the command line's package shape: ``--help`` loads no heavy library, no module over 700 lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import wdmreplay
from replay_support import run_cli
from wdmreplay.errors import ApiError
from wdmreplay.targets import Target, choose_target, parse_target
from wdmreplay.traces import TraceReader, load_results, read_header
from wdmreplay.workloads import generate

BAD_URL = "http://127.0.0.1:99999"
BAD_URL_ERROR = f"bad base URL {BAD_URL!r}: its port must be a number in 1-65535"
MISSING = "nope.json"
MISSING_ERROR = f"{MISSING}: urls file not found"


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A tiny consistency trace and a stress trace in the current directory (relative names, as a user types)."""
    monkeypatch.chdir(tmp_path)
    generate("consistency", tmp_path / "c.wdmt", seed=0, items=2, stock=3, users=4, credit=2, orders=5)
    generate("stress", tmp_path / "s.wdmt", seed=0, rate=20.0, duration=1.0)
    return tmp_path


def _argv(command: str, kind: str, value: str) -> list[str]:
    """``command``'s arguments naming the target ``value`` as a URL (kind "url") or a urls file ("urls")."""
    url_opt = {"record": "--upstream"}.get(command, "--url")  # record's name for one gateway
    opt = url_opt if kind == "url" else "--urls"
    if command == "replay":
        return ["replay", "c.wdmt", opt, value, "-o", "out.wdmr", "-q"]
    if command == "shrink":
        return ["shrink", "run.wdmr", opt, value, "-o", "min.wdmt", "-q"]
    if command == "capacity":
        return ["capacity", "s.wdmt", opt, value, "--start", "1", "--max", "1", "--bisect", "0",
                "--slo", "p99<5s,unanswered<50%", "-d", "cap", "-q"]
    if command == "ab":
        return ["ab", "c.wdmt", "--a", value, "--b", value, "--runs", "1", "--speed", "max", "-d", "ab", "-q"]
    if command == "record":
        return ["record", "--listen", "127.0.0.1:0", opt, value, "-o", "rec.wdmt", "--duration", "0.2"]
    assert command == "grade"
    Path("teams.toml").write_text(f'[teams.t]\n{"url" if kind == "url" else "urls"} = "{value}"\n')
    return ["grade", "teams.toml", "-d", "g", "--suite", "consistency", "--consistency-trace", "c.wdmt",
            "--no-html", "-q"]


COMMANDS = ["replay", "shrink", "capacity", "ab", "record", "grade"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind, value, error", [("url", BAD_URL, BAD_URL_ERROR), ("urls", MISSING, MISSING_ERROR)])
def test_a_bad_target_is_the_same_one_line_error_in_every_command(inputs, capsys, command, kind, value, error):
    argv = _argv(command, kind, value)
    before = sorted(p.name for p in inputs.iterdir())
    code, out, err = run_cli(capsys, *argv)
    if command == "ab" and kind == "urls":  # one string names either: says it is neither (tests/test_compare_shop)
        error = f"--a {MISSING!r} is neither a base URL (http://…) nor an existing urls.json file"
    assert code == 2 and out == "", (argv, out, err)
    assert err.startswith("wdm-replay: error: ") and err.count("\n") == 1 and error in err, (argv, err)
    assert sorted(p.name for p in inputs.iterdir()) == before  # nothing written: no results, no run directory


def test_both_forms_at_once_are_refused_alike(inputs, capsys):
    good = inputs / "good.json"
    good.write_text(json.dumps({k: "http://127.0.0.1:9" for k in ("ORDER_URL", "PAYMENT_URL", "STOCK_URL")}))
    for argv, message in ((["replay", "c.wdmt", "--urls", "good.json", "--url", "http://127.0.0.1:9"],
                           "give either --urls or --url, not both"),
                          (["capacity", "s.wdmt", "--urls", "good.json", "--url", "http://127.0.0.1:9"],
                           "give either --urls or --url, not both"),
                          (["record", "--urls", "good.json", "--upstream", "http://127.0.0.1:9"],
                           "give exactly one of --urls or --upstream"),
                          (["record"], "give exactly one of --urls or --upstream")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and err == f"wdm-replay: error: {message}\n", (argv, err)


@pytest.fixture
def good_urls(inputs, shop):
    """A urls.json naming the running reference shop (all three services behind its one port)."""
    (inputs / "good.json").write_text(json.dumps({k: shop.url for k in ("ORDER_URL", "PAYMENT_URL", "STOCK_URL")}))
    return "good.json"


@pytest.mark.parametrize("kind", ["url", "urls"])
def test_replay_and_capacity_use_a_good_target(inputs, shop, good_urls, capsys, kind):
    value = shop.url if kind == "url" else good_urls
    code, out, err = run_cli(capsys, *_argv("replay", kind, value))
    assert code == 0, err
    run = load_results(inputs / "out.wdmr")
    assert run.n == read_header(inputs / "c.wdmt")["requests"] and run.n > 0
    code, out, err = run_cli(capsys, *_argv("capacity", kind, value))
    assert code == 0, err
    assert "knee: speed 1 =" in out and len(list((inputs / "cap").glob("step-*.wdmr"))) == 2


def test_shrink_takes_a_good_target_and_goes_on_to_the_run(inputs, shop, good_urls, capsys):
    code, _, err = run_cli(capsys, *_argv("replay", "url", shop.url))
    assert code == 0, err
    Path("out.wdmr").rename("run.wdmr")
    for kind, value in (("url", shop.url), ("urls", good_urls)):
        code, out, err = run_cli(capsys, *_argv("shrink", kind, value))
        # The target is accepted; the run itself is what stops it (a CLEAN run has nothing to reproduce).
        assert code == 3 and err == "wdm-replay: error: run.wdmr: CLEAN: there is no finding to reproduce\n", err


def test_ab_takes_a_url_for_one_build_and_a_urls_file_for_the_other(inputs, shop, good_urls, capsys):
    argv = _argv("ab", "url", shop.url)
    argv[argv.index("--b") + 1] = good_urls
    code, out, err = run_cli(capsys, *argv)
    assert code in (0, 1) and out.startswith("verdict: "), (code, out, err)  # 1: the comparison's verdict
    assert sorted(p.name for p in (inputs / "ab").iterdir()) == ["01-A-A.wdmr", "02-B-B.wdmr"]
    assert {load_results(p).n for p in (inputs / "ab").iterdir()} == {read_header(inputs / "c.wdmt")["requests"]}


@pytest.mark.parametrize("kind", ["url", "urls"])
def test_grade_takes_a_good_target(inputs, shop, good_urls, capsys, kind):
    code, out, err = run_cli(capsys, *_argv("grade", kind, shop.url if kind == "url" else good_urls))
    assert code == 0, err
    team = json.loads((inputs / "g" / "teams" / "t" / "team.json").read_text())
    assert team["status"] == "ok" and team["target"] == (shop.url if kind == "url" else good_urls)


def test_record_forwards_to_a_good_urls_file(inputs, shop, good_urls):
    proc = subprocess.Popen([sys.executable, "-m", "wdmreplay", "record", "--listen", "127.0.0.1:0",
                             "--urls", good_urls, "--requests", "1", "-o", "rec.wdmt"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=inputs)
    try:
        line = proc.stdout.readline()
        assert line.startswith("recording on http://127.0.0.1:") and line.split()[4].rstrip(";") == shop.url, line
        req = urllib.request.Request(line.split()[2] + "/stock/item/create/4", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert "item_id" in json.loads(r.read())  # answered by the shop the urls file names
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and err == "", err
    assert "1 request in 1 session," in rest
    with TraceReader(inputs / "rec.wdmt") as r:
        assert r.header["requests"] == 1 and r.header["params"]["upstream"]["STOCK_URL"] == shop.url


# --- the rule itself, table-driven ------------------------------------------------------------------------


def test_choose_target_and_parse_target_agree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    urls = {"ORDER_URL": "http://o:1", "PAYMENT_URL": "http://p:2/", "STOCK_URL": "http://s:3"}
    (tmp_path / "u.json").write_text(json.dumps(urls))
    from_file = Target("http://o:1", "http://p:2", "http://s:3")
    assert choose_target("u.json", None) == parse_target("u.json", "--a") == from_file
    assert choose_target(None, "http://h:8/") == parse_target("http://h:8/", "--a") == Target.single("http://h:8")
    assert choose_target(None, None) == Target.single("http://localhost:8000")  # no ./urls.json here
    (tmp_path / "urls.json").write_text(json.dumps(urls))
    assert choose_target(None, None) == from_file  # ./urls.json when present
    with pytest.raises(ApiError, match="^give exactly one of --urls or --upstream$"):
        choose_target(None, None, url_option="--upstream", default=False)
    for spec, message in ((BAD_URL, f"--a: {BAD_URL_ERROR}"), ("ftp://x", "--a: bad base URL 'ftp://x': it must "
                                                                          "start with http:// or https://"),
                          ("nope.json", "--a 'nope.json' is neither a base URL")):
        with pytest.raises(ApiError) as e:
            parse_target(spec, "--a")
        assert str(e.value).startswith(message)
        with pytest.raises(ApiError) as e2:  # the two-option form: the same message without the option prefix
            choose_target(None, spec) if "://" in spec else choose_target(spec, None)
        assert str(e2.value) in (str(e.value).removeprefix("--a: "), f"{spec}: urls file not found")


# --- the package: start-up and size -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["replay", "--help"], ["check", "--help"], ["grade", "--help"]])
def test_help_loads_no_heavy_library(argv):
    code = ("import sys\nfrom wdmreplay.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'aiohttp', 'msgpack', 'matplotlib', "
            "'jinja2', 'tqdm', 'uvloop'})\nprint('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "Usage: wdm-replay" in r.stdout and r.stdout.splitlines()[-1] == "HEAVY []", r.stdout[-300:]


def test_every_cli_module_is_at_most_700_lines_and_both_entry_points_run():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in (Path(wdmreplay.__file__).parent / "cli").glob("*.py")}
    assert len(sizes) >= 5 and max(sizes.values()) <= 700, sizes
    for module in ("wdmreplay", "wdmreplay.cli"):
        r = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith(f"wdm-replay, version {wdmreplay.__version__}\nreplay hot path: "), r.stderr
