"""The replayer against a tiny purpose-built HTTP target (real loopback HTTP): outcomes, symbols, faults."""

from __future__ import annotations


import numpy as np
import pytest

from replay_support import TinyTarget, closed_port, counting_shop, write_trace
from wdmreplay.errors import ApiError
from wdmreplay.operations import OP_CODES
from wdmreplay.replayer import TargetUnreachable, replay_trace
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import CONN_ERROR, ERROR, FAIL, MAX_ERROR_TEXT, OK, SKIPPED, TIMEOUT


def _create_then_use(n: int = 3) -> list:
    return [(0.0, [
        step("create_item", [4], bind=f"$s{i}.item"),
        step("add_stock", [f"$s{i}.item", 5]),
        step("find_item", [f"$s{i}.item"]),
    ]) for i in range(n)]


def test_bindings_substituted_into_later_steps(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(3)])
    with TinyTarget(counting_shop()) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
        paths = [p for _, p in t.seen]
    r = load_results(out, with_args=True)
    assert s.complete and s.outcomes["ok"] == 9 and r.n == 9
    assert sorted(r.bindings) == ["$s0.item", "$s1.item", "$s2.item"]
    for sym, real in r.bindings.items():
        assert f"/stock/add/{real}/5" in paths and f"/stock/find/{real}" in paths
    add = r.cols["op"] == OP_CODES["add_stock"]
    assert sorted(a[0] for a, m in zip(r.args, add) if m) == sorted(r.bindings.values())
    assert np.all(r.cols["sent"] >= r.cols["intended"] - 0.002)
    assert np.all(r.cols["done"] >= r.cols["sent"])


def test_failing_create_skips_dependents_without_sending_them(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(2)])
    with TinyTarget(counting_shop(create_status=400)) as t:
        s = replay_trace(trace, out, target=t.url)
        assert t.sent("/stock/add") == 0 and t.sent("/stock/find/$") == 0
    r = load_results(out, with_args=True)
    assert s.outcomes == {"ok": 0, "fail": 2, "error": 0, "timeout": 0, "conn_error": 0, "skipped": 4}
    skipped = r.cols["outcome"] == SKIPPED
    assert np.all(np.isnan(r.cols["sent"][skipped])) and np.all(np.isnan(r.cols["done"][skipped]))
    assert all(str(a[0]).startswith("$s") for a, m in zip(r.args, skipped) if m)  # unresolved args kept
    assert r.bindings == {}
    fails = np.flatnonzero(r.cols["outcome"] == FAIL)
    assert r.errors[int(fails[0])] == "cannot create"
    assert r.error_text(int(fails[0])) == "cannot create"
    assert r.error_text(int(np.flatnonzero(skipped)[0])) == "skipped: $s0.item was never bound"
    assert r.error_text(len(r.cols["op"])) == ""  # no text recorded for the row: empty
    assert set(r.cols["status"][fails]) == {400}


def test_non_json_create_response_is_an_error_not_a_crash(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(1)])
    with TinyTarget(counting_shop(bad_create="<html>gateway says hi</html>")) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
    r = load_results(out)
    assert s.complete
    assert list(r.cols["outcome"]) == [ERROR, SKIPPED, SKIPPED]
    assert r.cols["status"][0] == 200
    assert "gateway says hi" in r.errors[0] and "item_id" in r.errors[0]
    assert r.bindings == {}


@pytest.mark.parametrize("body", [' {"item_id": "7"}\n', '{"item_id":7}', '\t{ "item_id" : "7" , "stock": 1 }  '])
def test_create_response_with_space_around_or_a_numeric_id_binds(tmp_path, body):
    # The id is read by JSON's own scanner called directly; a body that is not exactly one value
    # from its first byte to its last goes through json.loads, which decides as before.
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(1)])
    with TinyTarget(counting_shop(bad_create=body)) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
        assert t.sent("/stock/add/7/5") == 1 and t.sent("/stock/find/7") == 1
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [OK, OK, OK]
    assert r.bindings == {"$s0.item": "7"}


@pytest.mark.parametrize("body", ['{"item_id": "7"} extra', '{"item_id": "7"}{}', '\ufeff{"item_id": "7"}',
                                  '{"item_id": "7"', '', '{"item_id": {"a": 1}}', '{"item_id": null}',
                                  '["item_id"]', '{"other": "7"}'])
def test_create_response_not_one_json_object_with_the_id_is_an_error(tmp_path, body):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(1)])
    with TinyTarget(counting_shop(bad_create=body)) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
        assert t.sent("/stock/add") == 0 and t.sent("/stock/find/$") == 0
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [ERROR, SKIPPED, SKIPPED]
    assert r.errors[0].startswith("create response without item_id")
    assert r.bindings == {}


def test_error_storm_and_long_error_bodies(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1]), step("add_stock", ["2", 1])]) for _ in range(50)]])
    with TinyTarget(lambda m, p: (503, b"x" * 5000, 0)) as t:
        s = replay_trace(trace, out, target=t.url, concurrency=16)
    r = load_results(out)
    assert s.complete and s.outcomes["error"] == 100 and r.n == 100
    assert set(r.cols["status"]) == {503}
    assert max(len(e) for e in r.errors.values()) <= MAX_ERROR_TEXT
    assert set(r.final["missing"]["item"]) == {"1", "2"}  # final reads failed too, recorded as missing


def test_timeout_is_its_own_outcome(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])]), (0.0, [step("find_item", ["1"])])]])
    slow = lambda m, p: (200, b"{}", 1.0 if "/add/" in p else 0)  # noqa: E731
    with TinyTarget(slow) as t:
        replay_trace(trace, out, target=t.url, timeout=0.2, final_read=False)
    r = load_results(out)
    by_op = dict(zip(r.cols["op"].tolist(), r.cols["outcome"].tolist()))
    assert by_op == {OP_CODES["add_stock"]: TIMEOUT, OP_CODES["find_item"]: OK}
    row = int(np.flatnonzero(r.cols["outcome"] == TIMEOUT)[0])
    assert 0.15 < r.cols["done"][row] - r.cols["sent"][row] < 0.9


def test_unreachable_target_refused_before_anything_is_written(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [_create_then_use(1)])
    with pytest.raises(TargetUnreachable, match="cannot reach target http://127.0.0.1"):
        replay_trace(trace, out, target=f"http://127.0.0.1:{closed_port()}")
    assert not out.exists()


def test_dialect_lacking_an_operation_is_refused_before_sending(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("batch_init_stock", [3, 10, 1])]), (0.0, [step("find_item", ["0"])])]])
    with TinyTarget(counting_shop()) as t:
        with pytest.raises(ApiError, match="2023 dialect lacks: batch_init_stock"):
            replay_trace(trace, out, target=t.url, dialect="2023")
        assert t.seen == []
    assert not out.exists()


def test_batch_init_entities_and_literals_are_read_back(tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("batch_init_stock", [3, 10, 1]), step("batch_init_users", [2, 50])])],
                        [(0.0, [step("find_user", ["7"])])]])
    with TinyTarget(counting_shop()) as t:
        s = replay_trace(trace, out, target=t.url)
        finds = sorted(p for _, p in t.seen if "/find" in p and "probe" not in p)
    r = load_results(out)
    assert sorted(r.final["items"]) == ["0", "1", "2"]
    assert sorted(r.final["users"]) == ["0", "1", "7"]
    assert r.final["items"]["0"] == {"stock": 3, "price": 2} and r.final["users"]["7"] == {"credit": 7}
    assert r.final["settle"] is None and r.final["missing"] == {}
    assert s.final_reads == 6 and len(finds) == 7  # 6 final reads + the trace's own find_user


def test_dropped_connection_is_conn_error_and_a_dead_service_is_refused_up_front(tmp_path):
    from wdmreplay.targets import Target
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1]), step("find_item", ["1"])])]])
    drop = lambda m, p: (-1, b"", 0) if "/add/" in p else (200, b'{"stock": 1, "price": 1}', 0)  # noqa: E731
    with TinyTarget(drop) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
    r = load_results(out)
    assert list(r.cols["outcome"]) == [CONN_ERROR, OK] and s.complete
    assert r.cols["status"][0] == 0 and "disconnected" in r.errors[0].lower()
    # The probe checks every base URL the trace's services use: a dead payment service is named.
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1]), step("add_funds", ["1", 1])])]])
    dead = f"http://127.0.0.1:{closed_port()}"
    with TinyTarget(counting_shop()) as t:
        with pytest.raises(TargetUnreachable, match=f"cannot reach target {dead}"):
            replay_trace(trace, out, target=Target(order_url=t.url, payment_url=dead, stock_url=t.url))


def test_interrupt_at_max_speed_cancels_stuck_requests_after_the_grace_period(tmp_path):
    import os
    import signal
    import threading
    import time

    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1]), step("add_stock", ["1", 1])]) for _ in range(20)]])
    slow = lambda m, p: (200, b"{}", 30.0 if "/add/" in p else 0)  # noqa: E731 - never answers in time
    with TinyTarget(slow) as t:
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        s = replay_trace(trace, out, target=t.url, speed=None, concurrency=4, timeout=60)
        elapsed = time.monotonic() - started
        timer.join()
    assert not s.complete and s.reason == "interrupted"
    assert elapsed < 5  # ~0.5 s of run + 2 s grace, not the 30 s the requests would take
    r = load_results(out)
    assert not r.complete and r.n == 4  # the four requests out when the signal came
    assert set(r.cols["outcome"]) == {TIMEOUT}
    assert all(text == "interrupted before the response" for text in r.errors.values())


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_during_the_final_read_marks_the_file_partial(tmp_path, workers):
    import os
    import signal
    import threading
    import time

    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])]) for _ in range(3)]])
    # The trace's requests answer at once; the final read's find never does.
    slow_find = lambda m, p: (200, b"{}", 30.0 if "/find/1" in p else 0)  # noqa: E731
    with TinyTarget(slow_find) as t:
        timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        s = replay_trace(trace, out, target=t.url, workers=workers, timeout=60)
        elapsed = time.monotonic() - started
        timer.join()
    assert not s.complete and s.reason == "interrupted" and elapsed < 5
    r = load_results(out)
    assert not r.complete and r.n == 3 and set(r.cols["outcome"]) == {OK} and r.final is None


def test_scan_finds_only_symbols_used_outside_their_session(tmp_path):
    # Phase 0 binds items and users that phase 1 uses (they must outlive their sessions); the
    # orders phase 1 binds are used only in their own session (dropped when it ends).
    from replay_support import populate_and_order_trace
    from wdmreplay.replayer.final import scan_trace

    trace = tmp_path / "t.wdmt"
    populate_and_order_trace(trace, 5)
    scan = scan_trace(str(trace))
    assert scan.shared == {f"$s{i}.{k}" for i in range(5) for k in ("item", "user")}
    assert scan_trace(str(trace), final_read=False).literals == {"item": set(), "user": set(), "order": set()}


def test_id_set_keeps_numeric_ids_packed_and_others_as_strings():
    from wdmreplay.replayer.final import IdSet

    ids = IdSet()
    for i in ["0", "7", "007", "12", "12", "a1b2", "99999999999999999999"]:
        ids.add(i)
    assert ids.ids() == {"0", "7", "007", "12", "a1b2", "99999999999999999999"}


def test_row_buffer_chunks_columns_args_and_error_rows():
    import numpy as np

    from wdmreplay.replayer.engine import RowBuffer

    chunks = []
    buf = RowBuffer(lambda cols, args, errors: chunks.append((cols, args, errors)), limit=3)
    for i in range(4):
        buf.add(i, i % 2, 0, 1, 0, 0, 1 if i == 2 else 0, 200, i / 10, i / 10 + 0.01, i / 10 + 0.02,
                (f"id{i}",), "boom" * 100 if i == 2 else None)
    assert len(chunks) == 1 and buf.n == 1
    buf.flush()
    assert len(chunks) == 2 and buf.n == 0
    cols, args, errors = chunks[0]
    assert np.frombuffer(cols["sid"], "<u4").tolist() == [0, 1, 2]
    assert np.frombuffer(cols["outcome"], "<u1").tolist() == [0, 0, 1]
    assert np.frombuffer(cols["done"], "<f8").tolist() == [i / 10 + 0.02 for i in range(3)]
    assert args == [("id0",), ("id1",), ("id2",)] and errors == [(2, ("boom" * 100)[:200])]
    assert chunks[1][1] == [("id3",)] and chunks[1][2] == []


def test_engine_rows_and_bindings_flush_in_small_chunks_none_lost(tmp_path):
    # The engine appends its rows to the RowBuffer inline (not through add): with chunks of 2 rows
    # and of 2 bindings, every row, error text and binding still reaches the sinks, in order.
    import asyncio
    import time

    from wdmreplay.operations import get_dialect
    from wdmreplay.targets import Target
    from wdmreplay.replayer.engine import Engine, RowBuffer

    trace = tmp_path / "t.wdmt"
    write_trace(trace, [_create_then_use(3)])
    shop = counting_shop()

    def behave(method, path):
        return (404, b"no such item", 0) if path.startswith("/stock/find") else shop(method, path)

    chunks, bound = [], []
    rows = RowBuffer(lambda cols, args, errors: chunks.append((cols, args, errors)), limit=2)
    with TinyTarget(behave) as t:
        async def run():
            eng = Engine(str(trace), target=Target.single(t.url), dialect=get_dialect("2024"), speed=None,
                         concurrency=1, timeout=5, t0=time.perf_counter(), rows=rows,
                         bind_sink=lambda m: bound.append(dict(m)), bind_chunk=2)
            await eng.open()
            try:
                new = await eng.run_phase(0, 0.0)
            finally:
                await eng.close()
            return eng, new
        eng, new = asyncio.run(run())
    assert [len(a) for _, a, _ in chunks] == [2, 2, 2, 2, 1] and eng.done == 9 and eng.bound == 3
    ops = np.concatenate([np.frombuffer(c["op"], "<u1") for c, _, _ in chunks])
    outcomes = np.concatenate([np.frombuffer(c["outcome"], "<u1") for c, _, _ in chunks])
    assert ops.tolist() == [OP_CODES[o] for o in ("create_item", "add_stock", "find_item")] * 3
    assert outcomes.tolist() == [OK, OK, FAIL] * 3
    # Error rows are numbered within their chunk: find_item is row 2, 5, 8 overall.
    errs = [(k * 2 + i, e) for k, (_, _, es) in enumerate(chunks) for i, e in es]
    assert errs == [(2, "no such item"), (5, "no such item"), (8, "no such item")]
    merged = {k: v for b in bound for k, v in b.items()}
    assert [len(b) for b in bound] == [2, 1] and merged == new and sorted(merged) == ["$s0.item", "$s1.item", "$s2.item"]
    args = [a for _, ch, _ in chunks for a in ch]
    assert args[1] == (merged["$s0.item"], 5) and args[2] == (merged["$s0.item"],)
