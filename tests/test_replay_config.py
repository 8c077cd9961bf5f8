"""ReplayConfig: one frozen record of a replay's options, checked once; the CLI's commands build it alike."""

from __future__ import annotations

import dataclasses
import math

import pytest

from replay_support import run_cli, write_trace
from wdmreplay.replayer import ReplayConfig, ReplayError, replay_trace
from wdmreplay.replayer.config import MAX_CONCURRENCY, MAX_SECONDS, MAX_WORKERS
from wdmreplay.traces import load_results, step



def test_defaults_are_replays_defaults_and_the_record_is_frozen():
    c = ReplayConfig()
    assert (c.speed, c.concurrency, c.timeout, c.workers, c.client) == (1.0, 256, 10.0, 1, "lean")
    assert (c.final_read, c.final_sample, c.settle, c.shard, c.dialect) == (True, 1000, None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.speed = 2.0  # type: ignore[misc]


def test_speed_is_normalised_and_replace_checks_again():
    assert ReplayConfig(speed="max").speed is None and ReplayConfig(speed="2.5").speed == 2.5
    c = ReplayConfig(concurrency=8)
    assert c.replace(speed=4).speed == 4.0 and c.replace(speed=4).concurrency == 8
    with pytest.raises(ReplayError, match="concurrency 8 is less than --workers 9"):
        c.replace(workers=9)


@pytest.mark.parametrize("options, message", [
    ({"speed": 1e308}, "speed 1e+308 is not in"),
    ({"speed": math.inf}, "speed must be a positive number"),
    ({"speed": 0}, "speed must be a positive number"),
    ({"concurrency": 0}, f"concurrency must be 1 to {MAX_CONCURRENCY}"),
    ({"concurrency": MAX_CONCURRENCY + 1}, f"concurrency must be 1 to {MAX_CONCURRENCY}"),
    ({"concurrency": True}, "concurrency must be"),
    ({"timeout": 0}, "timeout must be a positive finite"),
    ({"timeout": math.nan}, "timeout must be a positive finite"),
    ({"timeout": MAX_SECONDS * 2}, "timeout must be a positive finite"),
    ({"workers": 0}, f"workers must be 1 to {MAX_WORKERS}"),
    ({"client": "curl"}, "client must be one of lean, aiohttp"),
    ({"dialect": "2025"}, "dialect must be one of 2024, 2023"),
    ({"settle": -1.0}, "settle must be 0 or more"),
    ({"final_sample": -1}, "final_sample must be 0 or more"),
    ({"shard": (4, 4)}, "shard must be (i, N)"),
    ({"start_at": "soon"}, "start_at must be a unix time"),
])
def test_every_limit_is_one_line_replay_error(options, message):
    with pytest.raises(ReplayError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")) as e:
        ReplayConfig(**options)
    assert "\n" not in str(e.value)


def test_the_header_run_fields_are_the_config(shop, tmp_path):
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind=f"$u{i}")]) for i in range(3)]])
    config = ReplayConfig(speed=None, concurrency=4, timeout=5.0, label="cfg", settle=0.0, client="aiohttp")
    s = replay_trace(trace, tmp_path / "r.wdmr", target=shop.target, config=config)
    assert s.complete and s.requests == 3, s
    header = load_results(tmp_path / "r.wdmr").header
    assert {k: header[k] for k in config.run_fields()} == config.run_fields()
    assert (header["label"], header["concurrency"], header["client"], header["speed"]) == ("cfg", 4, "aiohttp", None)
    with pytest.raises(TypeError, match="give the options in config"):
        replay_trace(trace, tmp_path / "r2.wdmr", target=shop.target, config=config, speed=2)


@pytest.mark.parametrize("argv", [
    ["replay", "T", "--concurrency", "0"],
    ["ab", "T", "--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:1", "--concurrency", "0"],
    ["capacity", "T", "--concurrency", "0"],
    ["grade", "teams.toml", "-d", "D", "--concurrency", "0"],
])
def test_every_replaying_command_refuses_the_same_limit(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, (code, out, err)
    assert f"0 is not in the range 1<=x<={MAX_CONCURRENCY}" in err, err


@pytest.mark.parametrize("command", ["replay", "ab"])
def test_ab_and_replay_refuse_a_speed_replay_cannot_run(capsys, command, tmp_path):
    extra = ["--a", "http://127.0.0.1:1", "--b", "http://127.0.0.1:1"] if command == "ab" else []
    code, out, err = run_cli(capsys, command, str(tmp_path / "t.wdmt"), *extra, "--speed", "1e308")
    assert code == 2 and out == "" and "speed '1e308' is not in" in err and err.count("\n") == 1, (code, err)


def test_cli_refuses_workers_beyond_concurrency_from_the_config(capsys, shop, tmp_path):
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind="$u")])]])
    code, out, err = run_cli(capsys, "replay", str(trace), "--url", shop.url, "--workers", "2", "--concurrency", "1",
                             "-o", str(tmp_path / "r.wdmr"))
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    assert "--concurrency 1 is less than --workers 2" in err
    assert not (tmp_path / "r.wdmr").exists()
