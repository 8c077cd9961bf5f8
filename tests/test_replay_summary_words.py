"""The replay summary's tally and its words: skipped rows are not sent, and the answers line names them."""

from __future__ import annotations

import numpy as np

from wdmreplay.operations import OP_CODES
from wdmreplay.replayer.summary import ReplaySummary, Tally, format_summary
from wdmreplay.traces.results import OUTCOMES


def _chunk(outcomes: list[str], op: str = "checkout") -> dict[str, bytes]:
    n = len(outcomes)
    sent = np.array([np.nan if o == "skipped" else 0.010 for o in outcomes], dtype="<f8")
    return {"outcome": np.array([OUTCOMES.index(o) for o in outcomes], dtype="<u1").tobytes(),
            "intended": np.zeros(n, dtype="<f8").tobytes(), "sent": sent.tobytes(),
            "done": (sent + 0.002).tobytes(), "op": np.full(n, OP_CODES[op], dtype="<u1").tobytes(),
            "status": np.array([200 if o == "ok" else 400 if o == "fail" else 0 for o in outcomes],
                               dtype="<u2").tobytes()}


def test_skipped_rows_are_not_counted_as_sent():
    # The word "skipped" (wdmreplay.terms) must never stand in for the outcome code in the tally.
    t = Tally()
    t.add_chunk(_chunk(["ok", "fail", "skipped", "skipped"]))
    assert int(t.sent_by_op[OP_CODES["checkout"]]) == 2
    assert int(t.outcomes[OUTCOMES.index("skipped")]) == 2


def test_answers_line_names_each_kind_in_words():
    s = ReplaySummary(outcomes={"ok": 5, "fail": 2, "error": 1, "timeout": 0, "conn_error": 3, "skipped": 4},
                      complete=True, requests=15, sent=11, wall=1.0, path="r.wdmr", rate=11.0, speed=None,
                      scheduled_rate=None, p50=0.001, p99=0.002, lag_p99=0.0, lagging=False, send_wall=1.0,
                      service_p50=None, service_p99=None, late=0, conn_waits=0, late_cause=None, final_read=None,
                      reason=None, bindings=0, probes=0, final_reads=0)
    line = format_summary(s).splitlines()[1]
    assert line == ("  answers: 5 accepted (2xx), 2 refused (4xx), 4 unanswered (1 5xx, 3 connection error), "
                    "4 skipped; `check` says which the trace expects")


def test_a_shop_answering_200_without_json_is_counted_as_bad_answers_not_5xx(tmp_path):
    # Every answer a 200 with an HTML body: the summary said "N unanswered (N 5xx)", naming a
    # status the shop never sent (`check` calls them bad answers).
    from replay_support import TinyTarget, write_trace
    from wdmreplay.replayer import replay_trace
    from wdmreplay.traces import step

    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind="$u")]), (0.0, [step("create_item", [3], bind="$i")])]])
    with TinyTarget(lambda method, path: (200, b"<html>welcome</html>", 0)) as html_shop:
        s = replay_trace(str(trace), str(tmp_path / "r.wdmr"), target=html_shop.url, speed=None, timeout=5.0,
                         final_read=False)
    assert "2 unanswered (2 bad answer)" in format_summary(s) and "5xx" not in format_summary(s)
    assert s.outcomes["error"] == 2 and s.bad_answers == 2
