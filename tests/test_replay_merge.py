"""`merge`: shard results of one trace, replayed concurrently against one shop, merged exactly.

Four ``--shard i/4`` replays run at once (threads) against one reference shop; their merge has the
same request counts per operation and outcome as one process replaying the whole trace, the same
consistency verdict (no anomaly), every shard's events and final state, and a header that says it
is a merge. Everything that is not one whole set of shards of one run is refused in one line.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from replay_support import merge_final_maps

from wdmreplay.analysis import check_results
from wdmreplay.operations import OP_NAMES
from wdmreplay.cli import main
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.replayer.merge import MergeError, merge_results
from wdmreplay.traces import OUTCOMES, FormatError, load_results

STRESS = {"rate": 60, "duration": 2}


def counts(path: Path) -> Counter:
    """Requests per (operation, outcome)."""
    r = load_results(path)
    return Counter((OP_NAMES[o], OUTCOMES[c]) for o, c in zip(r.cols["op"].tolist(), r.cols["outcome"].tolist()))


def replay_shards(trace: Path, tmp_path: Path, shop, n: int, prefix: str = "s") -> list[Path]:
    """Replay every shard i/n of ``trace`` at once, one thread each; the results paths."""
    outs = [tmp_path / f"{prefix}{i}.wdmr" for i in range(n)]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            s = replay_trace(str(trace), str(outs[i]), target=shop.target, speed=None, timeout=30.0,
                             concurrency=32, shard=(i, n), label="build")
            assert s.complete
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return outs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One whole-run replay and four concurrent shard replays of one stress trace, and their merge."""
    from wdmreplay.shop import ShopThread

    tmp = tmp_path_factory.mktemp("merge")
    trace = tmp / "stress.wdmt"
    generate("stress", trace, seed=4, **STRESS)
    whole = tmp / "whole.wdmr"
    with ShopThread() as shop:
        assert replay_trace(str(trace), str(whole), target=shop.target, speed=None, timeout=30.0,
                            concurrency=32, label="build").complete
    with ShopThread() as shop:
        shards = replay_shards(trace, tmp, shop, 4)
    merged = tmp / "merged.wdmr"
    summary = merge_results(shards, merged)
    return {"trace": trace, "whole": whole, "shards": shards, "merged": merged, "summary": summary, "tmp": tmp}


def test_merged_shards_count_like_one_process(runs):
    whole, merged = counts(runs["whole"]), counts(runs["merged"])
    assert sum(merged.values()) > 100 and merged == whole
    assert sum(sum(counts(p).values()) for p in runs["shards"]) == sum(merged.values())


def test_merged_shards_check_like_one_process(runs):
    whole = check_results(load_results(runs["whole"], with_args=True))
    merged = check_results(load_results(runs["merged"], with_args=True))
    assert [a.as_dict() for a in merged.anomalies] == [] and merged.clean == whole.clean
    assert merged.consistency.checked == whole.consistency.checked
    assert merged.expectations.differences == whole.expectations.differences == 0


def test_merged_file_says_what_it_is(runs):
    r = load_results(runs["merged"], with_args=True)
    shards = [load_results(p, with_args=True) for p in runs["shards"]]
    assert r.header["shard"] is None and r.complete and r.header["label"] == "build"
    info = r.header["merged"]
    assert info["shards"] == 4 and [s["shard"] for s in info["sources"]] == ["0/4", "1/4", "2/4", "3/4"]
    assert [s["requests"] for s in info["sources"]] == [s.n for s in shards]
    # Bindings and final state are the union of the shards'.
    assert r.bindings == {k: v for s in shards for k, v in s.bindings.items()}
    for kind in ("items", "users", "orders"):
        assert set(r.final[kind]) == set().union(*(s.final[kind] for s in shards))
        assert len(r.final[kind]) > 0
    # Events keep their shard; every shard's phase events are there, on one clock, in order.
    tagged = Counter(e["shard"] for e in r.events)
    assert set(tagged) == {"0/4", "1/4", "2/4", "3/4"}
    assert sum(tagged.values()) == sum(len(s.events) for s in shards)
    ats = [e["at"] for e in r.events]
    assert ats == sorted(ats)
    # Row times are shifted onto the earliest shard's clock, nothing else changes.
    assert np.nanmin(r.cols["intended"]) >= 0
    assert sorted(r.args, key=repr) == sorted((a for s in shards for a in s.args), key=repr)


def test_merge_cli_prints_one_line(runs, capsys):
    out = runs["tmp"] / "cli.wdmr"
    printed, err = main_exit(["merge", *map(str, runs["shards"]), "-o", str(out)], capsys, 0)
    assert printed.startswith(f"wrote {out}: 4 shards") and len(printed.splitlines()) == 1 and err == ""
    assert counts(out) == counts(runs["merged"])


def main_exit(argv: list[str], capsys, code: int | None) -> tuple[str, str]:
    """Run the CLI; assert its exit code (a normal return is 0; None: any failure); (stdout, stderr)."""
    try:
        main(argv)
        got = 0
    except SystemExit as e:
        got = e.code
    out, err = capsys.readouterr()
    assert got == code if code is not None else got not in (0, None), (got, out, err)
    return out, err


@pytest.mark.parametrize("pick, needle", [
    (lambda s, w, o: [s[0], s[1], s[2]], "missing shard(s) 3/4"),
    (lambda s, w, o: [s[0], s[1], s[2], s[2], s[3]], "are both shard 2/4"),
    (lambda s, w, o: [s[0], s[1], s[2], s[3], w], "not a shard"),
    (lambda s, w, o: [s[0], s[1], s[2], o], "different traces"),
])
def test_merge_refuses_what_is_not_one_run(runs, tmp_path, capsys, pick, needle):
    other = tmp_path / "other.wdmt"
    generate("stress", other, seed=5, **STRESS)
    from wdmreplay.shop import ShopThread

    with ShopThread() as shop:
        (other_shard,) = replay_shards_single(other, tmp_path, shop, (3, 4))
    paths = pick(runs["shards"], runs["whole"], other_shard)
    out = tmp_path / "m.wdmr"
    _, err = main_exit(["merge", *map(str, paths), "-o", str(out)], capsys, None)
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def replay_shards_single(trace: Path, tmp_path: Path, shop, shard: tuple[int, int]) -> list[Path]:
    out = tmp_path / f"one{shard[0]}.wdmr"
    assert replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=30.0, shard=shard,
                        label="build").complete
    return [out]


def test_merge_refuses_mixed_shard_counts(runs, tmp_path):
    from wdmreplay.shop import ShopThread

    with ShopThread() as shop:
        (half,) = replay_shards_single(runs["trace"], tmp_path, shop, (1, 2))
    with pytest.raises(MergeError, match="is of 4 shards|of 2 shards|is shard"):
        merge_results([runs["shards"][0], half], tmp_path / "m.wdmr")


def test_merge_refuses_to_overwrite_an_input(runs):
    with pytest.raises(FormatError, match="the output is the input"):
        merge_results(runs["shards"], runs["shards"][0])


def test_final_state_latest_read_wins_and_disagreements_are_named():
    early = {"items": {"7": {"stock": 5, "price": 1}, "a": {"stock": 1, "price": 1}}, "users": {}, "orders": {},
             "missing": {"users": {"u": "timeout"}}, "settle": None, "read_at": 1.0}
    late = {"items": {"7": {"stock": 3, "price": 1}}, "users": {"u": {"credit": 2}}, "orders": {},
            "missing": {}, "settle": None, "read_at": 0.5}
    # The late shard started 2 s after the early one: its read (at 2.5 on the merged clock) wins.
    final, disagree = merge_final_maps([early, late], [0.0, 2.0], ["0/2", "1/2"])
    assert final["items"]["7"] == {"stock": 3, "price": 1} and final["items"]["a"]["stock"] == 1
    assert disagree == {"items": ["7"]}
    assert final["missing"] == {} and final["users"] == {"u": {"credit": 2}}  # read by the other shard
    assert final["read_at"] == 2.5
    # The same reads with the clocks the other way round: the early shard's snapshot wins.
    final, _ = merge_final_maps([early, late], [3.0, 0.0], ["0/2", "1/2"])
    assert final["items"]["7"]["stock"] == 5
    # A shard without a final read: the merge has none.
    assert merge_final_maps([early, None], [0.0, 0.0], ["0/2", "1/2"]) == (None, {})


def _rewrite_partial(src: Path, dst: Path) -> None:
    """A copy of results ``src`` whose trailer says the run was interrupted (public APIs only)."""
    from wdmreplay.traces import ResultsWriter, results_header

    r = load_results(src, with_args=True)
    fixed = {k: v for k, v in r.header.items() if k not in ("format", "version", "ops", "outcomes", "expects", "columns")}
    w = ResultsWriter(dst, results_header(**fixed))
    w.write_requests(r.cols, list(r.args), sorted(r.errors.items()))
    w.write_bindings(r.bindings)
    if r.final is not None:
        w.write_final({k: v for k, v in r.final.items() if k != "t"})
    w.close(complete=False, wall=1.0, reason="interrupted")


def test_merge_of_a_partial_shard_is_partial(runs, tmp_path):
    partial = tmp_path / "p2.wdmr"
    _rewrite_partial(runs["shards"][2], partial)
    shards = list(runs["shards"])
    shards[2] = partial
    summary = merge_results(shards, tmp_path / "m.wdmr")
    r = load_results(tmp_path / "m.wdmr")
    assert not summary.complete and not r.complete
    assert r.trailer["reason"] == "shard 2/4: interrupted"
    assert counts(tmp_path / "m.wdmr") == counts(runs["merged"])


def test_merge_without_a_shards_final_read_has_no_final_state(runs, tmp_path):
    from wdmreplay.shop import ShopThread

    with ShopThread() as shop:
        out = tmp_path / "nofinal.wdmr"
        assert replay_trace(str(runs["trace"]), str(out), target=shop.target, speed=None, timeout=30.0,
                            shard=(1, 4), label="build", final_read=False).complete
    shards = list(runs["shards"])
    shards[1] = out
    summary = merge_results(shards, tmp_path / "m.wdmr")
    r = load_results(tmp_path / "m.wdmr")
    assert not summary.has_final and r.final is None
    assert r.header["merged"]["final_missing_from"] == ["1/4"]


def test_merge_copies_each_shards_rows_as_written_the_same_rows_as_rewriting_them(runs, tmp_path, monkeypatch):
    """The merge copies each shard's packed request records (times shifted), no row decoded: the file
    loads exactly as when every row was decoded and written again (the path older layouts still take)."""
    import wdmreplay.replayer.merge as merge_mod

    copied = load_results(runs["merged"], with_args=True)
    assert all(merge_mod._request_records(load_results(p)) is not None for p in runs["shards"])  # copied as written
    monkeypatch.setattr(merge_mod, "_request_records", lambda r: None)  # force the rewriting path
    merge_results(runs["shards"], tmp_path / "rewritten.wdmr")
    rewritten = load_results(tmp_path / "rewritten.wdmr", with_args=True)
    assert copied.n == rewritten.n > 100
    for name in copied.cols:
        assert np.array_equal(copied.cols[name], rewritten.cols[name], equal_nan=name in ("sent", "done")), name
    assert [list(a) if a is not None else None for a in copied.args] == \
        [list(a) if a is not None else None for a in rewritten.args]
    assert copied.errors == rewritten.errors
    a, b = copied.argcols, rewritten.argcols
    assert a is not None and b is not None and np.array_equal(a.num, b.num)
    for col in ("k0", "k1"):  # the ids each row names (codes index each file's own table)
        assert [a.names[c] if c >= 0 else None for c in getattr(a, col).tolist()] == \
            [b.names[c] if c >= 0 else None for c in getattr(b, col).tolist()], col


def test_an_interrupted_merge_leaves_the_file_already_at_o_whole(runs, tmp_path, monkeypatch):
    # `merge … -o run.wdmr --force` over an earlier merge, stopped by Ctrl-C halfway through the rows:
    # the half-merged file was renamed over run.wdmr and then deleted, so the earlier merge was lost.
    import wdmreplay.replayer.merge as merge_mod

    out = tmp_path / "run.wdmr"
    out.write_bytes(runs["merged"].read_bytes())
    before = out.read_bytes()
    real = merge_mod._write_rows
    calls = []

    def interrupted_after_one_shard(writer, r, offset):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        real(writer, r, offset)

    monkeypatch.setattr(merge_mod, "_write_rows", interrupted_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        merge_results(runs["shards"], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.wdmr"]  # no .part left either
