"""The engine's per-request shortcuts decide exactly as the code they replaced (issue 24, continued).

Each shortcut is checked two ways: against the slower code it replaced, over generated inputs (the
path by ``%`` against ``str.format``, ``id_reader`` against ``json.loads`` on a create's response, the
arg columns against the earlier row loop), and end to end over real loopback HTTP
(:class:`TinyTarget`), where the rows, the bindings and the paths the target saw are what
``json.loads`` and ``str.format`` make of the same inputs.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay_support import TinyTarget, counting_shop, write_trace
from wdmreplay.operations import BUILTIN_ROUTES, OP_CODES, OP_NAMES, Dialect
from wdmreplay.replayer import replay_trace
from wdmreplay.replayer.engine import FAST_JSON_MAX, UNKNOWN_SCENARIO, id_reader, percent_template
from wdmreplay.traces import load_results, step
from wdmreplay.traces.argcols import _ROW_KIND, as_int, encode_chunk
from wdmreplay.traces.results import ERROR, EXPECT_CODES, OK, SKIPPED

# --- the path by % formatting ---------------------------------------------------------------------

_ARG = st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=True), st.booleans(), st.none(),
                 st.binary(max_size=4), st.lists(st.integers(), max_size=2).map(tuple))


@pytest.mark.parametrize("dialect", sorted(BUILTIN_ROUTES))
def test_builtin_routes_with_fields_in_order_take_the_percent_path_and_render_as_format(dialect):
    d = Dialect(dialect, BUILTIN_ROUTES[dialect])
    fast = 0
    for name, route in d.routes.items():
        fields = re.findall(r"\{(\d+)\}", route.fmt)
        in_order = fields == [str(i) for i in range(len(fields))]  # pay's "{0}/{2}" skips its second param
        for url in (route.fmt, "http://127.0.0.1:8000/shop%20a" + route.fmt):  # lean: the path; aiohttp: the URL
            got = percent_template(url)
            assert (got is not None) == in_order, (dialect, name, url)
            if got is None:
                continue
            fast += 1
            pct, k = got
            assert k == len(fields)
            args = tuple(f"id-{i}%{{}}" if i % 2 else i * 7 for i in range(k))
            assert pct % args == url.format(*args), (name, url)
    assert fast >= len(d.routes)  # most routes: each counted twice above


@pytest.mark.parametrize("fmt", ["/a/{1}/{0}", "/a/{0}/{0}", "/a/{0!r}", "/a/{0:>4}", "/a/{", "/a/{x}", "/a/}",
                                 "/a/{0}/{2}"])
def test_templates_percent_cannot_express_keep_str_format(fmt):
    assert percent_template(fmt) is None


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(st.sampled_from(["%", "%s", "%%", "{{", "}}", "/", "a", "é", "%(x)s"]),
                                 st.text(alphabet="ab/%-_.~ ", max_size=4), st.just(None)), max_size=8),
       args=st.lists(_ARG, max_size=6))
def test_percent_template_renders_what_str_format_renders(pieces, args):
    fields = 0
    fmt = ""
    for p in pieces:
        if p is None:  # a positional field, numbered in order
            fmt += "{%d}" % fields
            fields += 1
        else:
            fmt += p.replace("{", "{{").replace("}", "}}") if p not in ("{{", "}}") else p
    got = percent_template(fmt)
    assert got is not None and got[1] == fields, fmt
    pct, k = got
    args = tuple(args[:k]) + tuple(range(k - len(args)))  # exactly k values
    assert pct % args == fmt.format(*args)


def _scen_shop(method: str, path: str) -> tuple[int, bytes, float]:
    return 200, b'{"item_id": "it-1"}' if "/create" in path else b"ok", 0


def test_custom_routes_with_reordered_fields_and_a_percent_sign_send_what_str_format_sends(tmp_path):
    # add_stock's fields reordered (str.format, as before); find_item with a literal % (the % path, escaped).
    routes = dict(BUILTIN_ROUTES["2024"], add_stock="POST /stock/add/{amount}/{item}",
                  find_item="GET /stock/100%/find/{item}")
    dialect = Dialect("custom", routes)
    assert percent_template(dialect.route("add_stock").fmt) is None
    assert percent_template(dialect.route("find_item").fmt) == ("/stock/100%%/find/%s", 1)
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [4], bind="$s0.item"), step("add_stock", ["$s0.item", 5]),
                                step("find_item", ["$s0.item"]), step("find_item", ["lit%eral"])])]])
    with TinyTarget(_scen_shop) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False, dialect=dialect)
        paths = [p for _, p in t.seen if "wdm-replay-probe" not in p]  # the reachability probe aside
    assert s.complete and s.outcomes["ok"] == 4
    assert paths == ["/stock/item/create/4", "/stock/add/5/it-1", "/stock/100%/find/it-1", "/stock/100%/find/lit%eral"]


def test_scenario_and_expect_codes_follow_every_step_when_they_change_within_a_session(tmp_path):
    names = [("populate", "ok"), ("orders", "fail"), ("orders", "fail"), ("nobody", "any"), ("populate", "ok"),
             ("populate", "any")]
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("find_item", [str(i)], scenario=sc, expect=ex)
                                for i, (sc, ex) in enumerate(names)])]])
    with TinyTarget(_scen_shop) as t:
        replay_trace(trace, out, target=t.url, final_read=False)
    r = load_results(out)
    order = np.argsort(r.cols["step"])
    codes = {"populate": 0, "orders": 1}
    assert r.cols["scenario"][order].tolist() == [codes.get(sc, UNKNOWN_SCENARIO) for sc, _ in names]
    assert r.cols["expect"][order].tolist() == [EXPECT_CODES[ex] for _, ex in names]


# --- a create's id: id_reader first, json.loads deciding every body it refuses ---------------------

def _engine_view(parse: Any, body: bytes, key: str = "id") -> tuple:
    """What the engine takes from a parse of ``body``: the id's type and str, or the exception's kind."""
    try:
        v = parse(body)[key]
    except (KeyError, TypeError, IndexError) as e:
        return ("no id", type(e).__name__)
    if v is None or isinstance(v, (dict, list, bool)):  # the engine's "not an id"
        return ("not an id",)
    return (type(v).__name__, str(v))


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                               st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.sampled_from(["id", "x", "ïd", ""]), inner, max_size=3)),
                     max_leaves=8)
_NOISE = st.sampled_from([b"", b" ", b"\t\n", b"\xef\xbb\xbf", b"\x00", b"NaN", b"Infinity", b"-", b"1e400", b'"\\ud800"',
                          b"\xff", b"\xed\xa0\x80", b",", b"}", b'"id":', b"01", b"1.", b"\x0b", b"\x1f", b'"\x01"',
                          b'"\\u0069d":', b"[", b"]", b'"\\q"', b"1e5", b"-0", b"{}"])
_READ_ID = id_reader("id")


@settings(max_examples=800, deadline=None)
@given(doc=_JSON, wrap=st.booleans(), cut=st.integers(0, 200), noise=_NOISE, where=st.integers(0, 200),
       dup=st.booleans())
def test_every_ascii_body_id_reader_accepts_gives_the_id_json_loads_gives(doc, wrap, cut, noise, where, dup):
    body = json.dumps({"id": doc, "x": 1} if wrap else doc, separators=(",", ":")).encode()
    if dup and body.startswith(b"{"):
        body = b'{"id":"dup",' + body[1:]  # a duplicate key: the last one wins in both
    where %= len(body) + 1
    body = body[:where] + noise + body[where + cut % 3:]  # noise inserted, maybe over a byte or two
    if not body.isascii():
        return  # the engine's fast path takes ASCII bodies only (the HTTP tests below cover the others)
    try:
        value = _READ_ID(body).value
    except ValueError:
        return  # refused: the engine hands it to json.loads, which decides as before
    fast = {} if value is msgspec.UNSET else {"id": value}  # the engine: UNSET is the KeyError of a missing key
    # Accepted: json.loads takes the same bytes ...
    slow = json.loads(body.decode("utf-8"))
    assert isinstance(slow, dict), body  # id_reader refuses every document that is not an object
    view_fast, view_slow = _engine_view(lambda b: fast, body), _engine_view(lambda b: slow, body)
    if view_fast[0] == "float":
        assert view_fast == view_slow  # the same float (the engine still asks json.loads for every float id)
        return
    assert view_fast == view_slow, body  # ... and makes the same id of it (or the same lack of one)


def _parse_below(frames: int, text: str) -> Any:
    return json.loads(text) if frames == 0 else _parse_below(frames - 1, text)


def test_bodies_short_enough_for_the_fast_path_nest_no_deeper_than_json_loads_parses():
    # A body of FAST_JSON_MAX bytes nests at most half as deep; json.loads parses that even called
    # 100 frames down (the engine's coroutine runs about 20 deep), so it raises no RecursionError
    # on any body the fast path is given, and the two can only differ where id_reader refuses.
    half = FAST_JSON_MAX // 2
    text = "[" * half + "]" * half
    assert len(text) == FAST_JSON_MAX and _parse_below(100, text) == json.loads(text)


_NESTED = '"x": ' + "[" * 600 + "]" * 600  # a long body (past FAST_JSON_MAX): json.loads decides


@pytest.mark.parametrize("body", [
    b'{"item_id": 123456789012345678901234567890}',  # beyond 64 bits: an int in both
    b'{"item_id": 18446744073709551616}', b'{"item_id": -9223372036854775809}', b'{"item_id": 18446744073709551615}',
    b'{"item_id": NaN}', b'{"item_id": 1e400}', b'{"item_id": -0}', b'{"item_id": 1.5}', b'{"item_id": 1E2}',
    b'{"item_id": "1", "item_id": "dup-2"}', b'{"item_id": "\\u00e9t\\u00e9"}', b'\r\n {"item_id":"sp"} \t',
    b'{"item_id": "a/b c"}', ('{"item_id": "deep", %s}' % _NESTED).encode(),
    ('{"item_id": "shallow", "x": %s}' % ("[" * 200 + "]" * 200)).encode()])
def test_create_ids_over_http_are_what_json_loads_makes_of_the_body(tmp_path, body):
    expected = str(json.loads(body.decode("utf-8"))["item_id"])
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [4], bind="$s0.item"), step("add_stock", ["$s0.item", 5])])]])
    with TinyTarget(counting_shop(bad_create=body.decode("utf-8"))) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
        paths = [p for _, p in t.seen]
    r = load_results(out, with_args=True)
    assert s.complete and list(r.cols["outcome"]) == [OK, OK]
    assert r.bindings == {"$s0.item": expected}
    assert paths[-1] == f"/stock/add/{expected}/5" and list(r.args[1]) == [expected, 5]


@pytest.mark.parametrize("body", [b'{"item_id": "\xff"}', b'\xef\xbb\xbf{"item_id": "7"}', b'{"item_id": true}',
                                  b'{"item_id": [1]}', b'{"item_id": "7"} {}', b'"item_id"', b'{"item_id": "7",}',
                                  b'{"item_id": 01}', b'{"item_id": "a\x01"}',
                                  b'{"x": "\xff", "item_id": "7"}'])  # invalid UTF-8 where msgspec would skip it
def test_create_bodies_json_loads_refuses_stay_errors_over_http(tmp_path, body):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [4], bind="$s0.item"), step("add_stock", ["$s0.item", 5])])]])

    def shop(method: str, path: str) -> tuple[int, bytes, float]:
        return 200, body, 0

    with TinyTarget(shop) as t:
        s = replay_trace(trace, out, target=t.url, final_read=False)
        assert t.sent("/stock/add") == 0
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [ERROR, SKIPPED]
    assert r.errors[0].startswith("create response without item_id") and r.bindings == {}


# --- the arg columns: the common cases inline -------------------------------------------------------

def _row_columns_before(op: np.ndarray, args: list | None, index: dict) -> tuple:
    """The row loop as it was before the inline cases (argcols.py at b0c384f), the reference."""
    ops = op.tolist()
    n = len(ops)
    k0, k1, num = [-1] * n, [-1] * n, [0] * n
    extra: list = []
    code = index.setdefault
    for i, c in enumerate(ops):
        kind = _ROW_KIND.get(c)
        if kind is None:
            continue
        a = (args[i] if args is not None else None) or [None]
        if kind == 0:
            extra.append((i, a))
            continue
        if kind == 1:
            num[i] = as_int(a[0], 0)
            continue
        k0[i] = code(str(a[0]), len(index))
        if kind == 3:
            k1[i] = code(str(a[1]) if len(a) > 1 else "", len(index))
            num[i] = as_int(a[2], 1) if len(a) > 2 else 1
        elif kind == 4:
            k1[i] = code(str(a[1]) if len(a) > 1 else "", len(index))
        elif kind == 5:
            num[i] = as_int(a[-1], 0)
    return np.array(k0, "<i4"), np.array(k1, "<i4"), np.array(num, np.int64), extra


_ARG_VALUE = st.one_of(st.sampled_from(["a", "b", "$s1.item", ""]), st.integers(-2**40, 2**40), st.booleans(),
                       st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32),
                       st.sampled_from(["12", " 7 ", "x1"]), st.just([1, 2]))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(sorted(OP_CODES.values())),
                               st.lists(_ARG_VALUE, max_size=4).map(tuple)), max_size=40),
       with_args=st.booleans())
def test_arg_columns_are_what_the_earlier_row_loop_made(rows, with_args):
    op = np.array([c for c, _ in rows], "<u1")
    args = [a for _, a in rows] if with_args else None
    before_index: dict = {}
    after_index: dict = {}
    try:
        want = _row_columns_before(op, args, before_index)
    except OverflowError:  # an amount beyond 64 bits (a huge float): the same error either way
        with pytest.raises(OverflowError):
            encode_chunk(op, args, as_bytes=False)
        return
    enc = encode_chunk(op, args, as_bytes=False)
    got = enc["k0"], enc["k1"], enc["num"], enc["extra"]
    after_index.update(zip(enc["names"], range(len(enc["names"]))))
    for w, g in zip(want[:3], got[:3]):
        assert w.dtype == g.dtype and w.tobytes() == g.tobytes()
    assert want[3] == got[3]
    assert list(before_index.items()) == list(after_index.items())  # same codes, same order of first appearance


def test_the_generated_rows_cover_every_kind_of_row():
    assert {_ROW_KIND.get(OP_CODES[n]) for n in OP_NAMES} == {None, 0, 1, 2, 3, 4, 5}
