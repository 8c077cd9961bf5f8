"""``wdm-replay capacity``: the highest replay speed at which a shop still meets an SLO.

A composition root like :mod:`.ab`: each step is one :func:`~wdmreplay.replayer.replay_trace` of
the trace at one speed, judged by :func:`~wdmreplay.analysis.check_results` (correctness and
consistency) and :func:`~wdmreplay.analysis.compute_stats` (latency, unanswered share). The search
itself is :func:`next_step`, a pure function of the steps run so far: speeds grow geometrically
(``start``, ``start·factor``, … up to ``max``) until the SLO breaks, then the bracket between the
highest passing and the lowest failing speed is bisected (geometric mean: speeds live on a ratio
scale), and the knee is confirmed by a repeat run. A speed counts as passing only when every run of
it passed, so a failed repeat moves the knee down. A step that is NOT CLEAN ends the search: a shop
that is fast because it is wrong does not get a number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .errors import WdmError
from .targets import Target
from .replayer.config import ReplayConfig

if TYPE_CHECKING:  # annotations only: the analysis and traces are imported where used (start-up time)
    from .analysis.stats import OpStats
    from .traces.trace import TraceHeader

PERCENTILE_KEYS = ("p50", "p90", "p99", "p99.9")
DEFAULT_SLO = "p99<500ms,unanswered<1%"
# A shop that answers fast but only a share of what the schedule asks is not keeping up: unless the
# SLO says otherwise (achieved>N%), a step must achieve this share of its offered rate.
DEFAULT_ACHIEVED = 0.8
PROBE, BISECT, CONFIRM = "probe", "bisect", "confirm"
# Below start / factor**FLOOR_STEPS the search gives up: the shop misses the SLO at any useful speed.
FLOOR_STEPS = 3


class CapacityError(WdmError):
    """A capacity search that cannot run (bad SLO, bad option, unusable trace)."""


class CapacityInterrupted(CapacityError):
    """Ctrl-C or SIGTERM stopped a step's replay (exit 130, like ``replay``); the files so far stay."""

    exit_code = 130


# --- the SLO -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Slo:
    """A service-level objective: response-time percentile bounds (ms), unanswered share, achieved share of offered."""

    text: str
    latency_ms: tuple[tuple[str, float], ...] = ()  # (("p99", 500.0), …)
    unanswered: float | None = None  # fraction, e.g. 0.01
    achieved: float = DEFAULT_ACHIEVED  # least achieved/offered rate (fraction); 0 = not judged

    def breaches(self, latency_ms: Mapping[str, float | None], unanswered: float,
                 achieved_share: float | None = None) -> tuple[str, ...]:
        """What a step's figures break of this SLO (empty: met). A missing percentile breaks its bound."""
        out = []
        if self.achieved > 0 and achieved_share is not None and not achieved_share > self.achieved:
            out.append(f"achieved {100 * achieved_share:.0f}% of offered <= {100 * self.achieved:g}%")
        for name, bound in self.latency_ms:
            v = latency_ms[name]  # every PERCENTILE_KEYS name (None: no request answered)
            if v is None or not v < bound:
                out.append(f"{name} {'-' if v is None else f'{v:.1f}'} ms >= {bound:g} ms")
        if self.unanswered is not None and not unanswered < self.unanswered:
            out.append(f"unanswered {100 * unanswered:.2f}% >= {100 * self.unanswered:g}%")
        return tuple(out)


_TERM = re.compile(r"^\s*(p50|p90|p99|p99\.9|unanswered|achieved)\s*([<>])\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*(ms|s|%)?\s*$",
                   re.IGNORECASE)


def parse_slo(text: str) -> Slo:
    """An :class:`Slo` from ``"p99<500ms,unanswered<1%"``; :class:`CapacityError` names the bad term.

    Terms (comma-separated, each at most once): ``p50|p90|p99|p99.9<N(ms|s)`` on the response time
    (from the intended send: no coordinated omission) and ``unanswered<N%`` on the share of requests
    that got no answer (5xx, timeout, connection error, or skipped because such a request came first),
    and ``achieved>N%``: the achieved request rate as a share of the offered one (80% when not given;
    ``achieved>0%`` turns it off) — a shop that answers fast but only part of what is asked fails.
    """
    if not isinstance(text, str) or not text.strip():
        raise CapacityError("--slo is empty: give terms like 'p99<500ms,unanswered<1%'")
    latency: dict[str, float] = {}
    unanswered = achieved = None
    for term in text.split(","):
        m = _TERM.match(term)
        if not m or (m.group(2) == ">") != (m.group(1).lower() == "achieved"):
            raise CapacityError(f"--slo {text!r}: cannot read {term.strip()!r}: a term is p50|p90|p99|p99.9<N(ms|s), "
                                "unanswered<N% or achieved>N%, e.g. 'p99<500ms,unanswered<1%'")
        name, value, unit = m.group(1).lower(), float(m.group(3)), (m.group(4) or "").lower()
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "achieved"):
            raise CapacityError(f"--slo {text!r}: {term.strip()!r} needs a positive finite bound")
        if name == "achieved":
            if unit != "%" or value >= 100:
                raise CapacityError(f"--slo {text!r}: {term.strip()!r} needs a percentage below 100, e.g. achieved>90%")
            if achieved is not None:
                raise CapacityError(f"--slo {text!r}: achieved given twice")
            achieved = value / 100.0
        elif name == "unanswered":
            if unit != "%":
                raise CapacityError(f"--slo {text!r}: {term.strip()!r} needs a percentage, e.g. unanswered<1%")
            if value > 100:
                raise CapacityError(f"--slo {text!r}: {term.strip()!r} is above 100%")
            if unanswered is not None:
                raise CapacityError(f"--slo {text!r}: unanswered given twice")
            unanswered = value / 100.0
        else:
            if unit not in ("ms", "s"):
                raise CapacityError(f"--slo {text!r}: {term.strip()!r} needs a unit, ms or s (e.g. {name}<500ms)")
            if name in latency:
                raise CapacityError(f"--slo {text!r}: {name} given twice")
            latency[name] = value * (1000.0 if unit == "s" else 1.0)
    ordered = tuple((k, latency[k]) for k in PERCENTILE_KEYS if k in latency)
    achieved = DEFAULT_ACHIEVED if achieved is None else achieved
    return Slo(",".join([f"{k}<{v:g}ms" for k, v in ordered] +
                        ([f"unanswered<{100 * unanswered:g}%"] if unanswered is not None else []) +
                        [f"achieved>{100 * achieved:g}%"]),
               ordered, unanswered, achieved)


# --- the search (pure) -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SearchPlan:
    """The search's parameters: first speed, ceiling, geometric factor, bisection steps."""

    start: float = 1.0
    max_speed: float = 64.0
    factor: float = 2.0
    bisect_steps: int = 3

    def __post_init__(self) -> None:
        for name, v in (("--start", self.start), ("--max", self.max_speed)):
            if not (math.isfinite(v) and v > 0):
                raise CapacityError(f"{name} must be a positive finite speed, got {v!r}")
        if self.max_speed < self.start:
            raise CapacityError(f"--max {self.max_speed:g} is below --start {self.start:g}")
        if not (math.isfinite(self.factor) and self.factor > 1):
            raise CapacityError(f"--factor must be above 1, got {self.factor!r}")
        if self.bisect_steps < 0:
            raise CapacityError(f"--bisect must be 0 or more, got {self.bisect_steps}")


def _round_speed(x: float) -> float:
    """A speed rounded to 3 significant digits (what a table shows is what was run)."""
    return float(f"{x:.3g}")


def bracket(history: list[tuple[float, bool]]) -> tuple[float | None, float | None]:
    """``(lo, hi)``: the highest speed whose every run passed below the lowest speed with a failed run."""
    runs: dict[float, list[bool]] = {}
    for speed, ok in history:
        runs.setdefault(speed, []).append(ok)
    failing = [s for s, r in runs.items() if not all(r)]
    hi = min(failing) if failing else None
    lo = max((s for s, r in runs.items() if all(r) and (hi is None or s < hi)), default=None)
    return lo, hi


def next_step(history: list[tuple[float, bool, str]], plan: SearchPlan) -> tuple[float, str] | None:
    """The next ``(speed, kind)`` to run given ``(speed, passed, kind)`` of the steps so far, or None: done.

    ``kind`` is ``probe`` (the geometric climb, or a descent when even ``start`` fails), ``bisect``
    or ``confirm`` (the repeat of the knee).
    """
    if not history:
        return plan.start, PROBE
    lo, hi = bracket([(s, ok) for s, ok, _ in history])
    if hi is None:  # everything passed so far: climb, up to max, then confirm max
        top = max(s for s, _, _ in history)
        if top < plan.max_speed:
            return min(_round_speed(top * plan.factor), plan.max_speed), PROBE
    elif lo is None:  # nothing passed below the lowest failure: descend, up to a floor
        down = _round_speed(hi / plan.factor)
        if down < plan.start / plan.factor ** FLOOR_STEPS or down >= hi:
            return None
        return down, PROBE
    else:
        bisected = sum(1 for _, _, kind in history if kind == BISECT)
        mid = _round_speed(math.sqrt(lo * hi))
        if bisected < plan.bisect_steps and lo < mid < hi:
            return mid, BISECT
    knee = lo if hi is not None else max(s for s, _, _ in history)
    if sum(1 for s, _, _ in history if s == knee) < 2:
        return knee, CONFIRM
    return None


# --- steps and result ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CapacityStep:
    """One replay of the search: its speed, rates, latency, unanswered share, verdict and SLO outcome."""

    index: int
    kind: str  # probe | bisect | confirm
    speed: float
    offered_rate: float | None  # requests/s the schedule asks for at this speed
    achieved_rate: float | None  # requests/s sent over the run's send window (any outcome; unanswered is its own field)
    latency_ms: Mapping[str, float | None]  # every PERCENTILE_KEYS name: the response time (None: no answer)
    unanswered: float  # share of the step's requests without an answer
    verdict: str  # the check's: CLEAN, NOT CLEAN, INCONCLUSIVE
    passed: bool
    breaches: tuple[str, ...]
    results: str  # the step's results file
    seconds: float  # the step's schedule length at its speed
    anomalies: int = 0

    def as_dict(self) -> dict:
        """JSON-ready form (stable keys)."""
        return {"index": self.index, "kind": self.kind, "speed": self.speed, "offered_rate": self.offered_rate,
                "achieved_rate": self.achieved_rate, "p50_ms": self.latency_ms["p50"],
                "p99_ms": self.latency_ms["p99"], "latency_ms": dict(self.latency_ms),
                "unanswered": self.unanswered, "verdict": self.verdict, "passed": self.passed,
                "breaches": list(self.breaches), "results": self.results, "seconds": self.seconds,
                "anomalies": self.anomalies}


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """The search's outcome: the knee (speed and offered rate, None when none met the SLO), every step."""

    slo: Slo
    plan: SearchPlan
    trace: str
    trace_digest: str
    steps: tuple[CapacityStep, ...]
    speed: float | None
    rate: float | None
    outcome: str  # found | at_max | none_met | not_clean
    resolution: float | None = None  # hi/lo of the final bracket: one bisection step
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 a knee found, 1 a step was NOT CLEAN, 3 no speed met the SLO."""
        return 1 if self.outcome == "not_clean" else 3 if self.outcome == "none_met" else 0

    def as_dict(self) -> dict:
        """``{"speed", "rate", "slo", "steps", …}`` with stable keys (``capacity --json``)."""
        return {"schema": "wdm-capacity/1", "speed": self.speed, "rate": self.rate, "slo": self.slo.text,
                "outcome": self.outcome, "resolution": self.resolution, "trace": self.trace,
                "trace_digest": self.trace_digest,
                "search": {"start": self.plan.start, "max": self.plan.max_speed, "factor": self.plan.factor,
                           "bisect": self.plan.bisect_steps},
                "notes": list(self.notes), "steps": [s.as_dict() for s in self.steps]}


def offered_rate(header: TraceHeader, speed: float) -> float | None:
    """Requests per second the trace's schedule asks for at ``speed`` (None for a schedule of no length)."""
    duration = float(header.duration)
    return round(header.requests * speed / duration, 3) if duration > 0 else None


def unanswered_share(stats: OpStats) -> float:
    """Share of requests that got no answer: everything but 2xx (ok) and 4xx (fail), skipped included."""
    total = stats.count
    return (total - stats.outcomes["ok"] - stats.outcomes["fail"]) / total if total else 0.0


def cut_trace(src: str | Path, dst: str | Path, until: float) -> TraceHeader:
    """Write ``dst``: ``src`` with the last phase's sessions that start at or after ``until`` s left out.

    Earlier phases stay whole (they populate what the last one uses). The header keeps the source's
    fields but its aggregate ``expect`` and ``expect_range`` (totals of the whole trace, which a cut no
    longer reaches; each step's own expectations and the consistency check stay); ``params`` gain
    ``cut: {from, until}``.
    """
    from .traces import TraceReader, TraceWriter, read_trace_header, trace_digest

    h = read_trace_header(src)
    phases = h.phase_names or ["0"]  # a header without phases: one, named by its index (as older traces)
    last = len(phases) - 1
    params = dict(h.params, cut={"from": trace_digest(src), "until": until})
    writer = TraceWriter(dst, workload=h.workload, seed=h.seed, params=params, phases=phases,
                         scenarios=h.scenarios, dialect=h.dialect, expect={}, inputs=[src])
    # Counts and totals are the cut's own (the writer counts them, "exercises" too); the aggregate
    # expectations and their bounds were the whole trace's.
    kept = {"format", "version", "params", "phases", "sessions", "requests", "duration", "generator", "expect",
            "expect_range", "exercises"}
    writer.header.update({k: v for k, v in h.to_record().items() if k not in kept})
    with TraceReader(src) as reader, writer:
        for s in reader:
            if s["phase"] < last or s["at"] < until:
                writer.write_session(s["sid"], s["phase"], s["at"], list(s["steps"]))
    return read_trace_header(dst)


# --- the driver ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How each step replays: the target, and the replay's config (dialect, connections, timeout; speed set per step)."""

    target: Target
    config: ReplayConfig

    def __init__(self, target: Target, config: ReplayConfig | None = None, **options: Any):
        """``ReplayOptions(target, config)``, or a thin keyword form: ``ReplayOptions(target, concurrency=8)``."""
        if config is not None and options:
            raise TypeError(f"ReplayOptions: give the options in config, not as keywords: {', '.join(sorted(options))}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "config", config if config is not None else ReplayConfig(**options))


def run_step(trace: str, header: TraceHeader, index: int, speed: float, kind: str, slo: Slo, opts: ReplayOptions,
             outdir: Path, step_seconds: float | None, progress: bool) -> CapacityStep:
    """Replay one step (cut to ``step_seconds`` when given) and judge it against the check and the SLO."""
    from .analysis import check_results, compute_stats
    from .replayer import replay_trace
    from .traces import load_results

    stem = f"step-{index:02d}-{kind}-x{speed:g}"
    step_trace = trace
    if step_seconds is not None and header.duration and step_seconds * speed < float(header.duration):
        step_trace = str(outdir / f"{stem}.wdmt")
        header = cut_trace(trace, step_trace, step_seconds * speed)
    out = outdir / f"{stem}.wdmr"
    summary = replay_trace(step_trace, str(out), target=opts.target, progress=progress,
                           config=opts.config.replace(speed=speed, label=f"capacity-x{speed:g}"))
    if not summary.complete:
        error = CapacityInterrupted if summary.reason == "interrupted" else CapacityError
        raise error(f"step {index} (speed {speed:g}) did not complete ({summary.reason}); "
                    f"results so far in {outdir}")
    results = load_results(out, with_args=True)
    # Availability is the SLO's to judge (unanswered share): overload is a slow shop, not a wrong one.
    check = check_results(results, min_availability=0.0)
    stats = compute_stats(results)
    overall = stats.overall
    latency = {k: overall.response_ms[k] for k in PERCENTILE_KEYS}
    unanswered = unanswered_share(overall)
    verdict = check.verdict.verdict
    offered = offered_rate(header, speed)
    share = overall.rate / offered if offered and overall.rate is not None else None
    breaches = slo.breaches(latency, unanswered, share)
    if verdict == "INCONCLUSIVE":
        breaches += ("check INCONCLUSIVE: " + "; ".join(check.verdict.reasons()[:2]),)
    duration = float(header.duration)
    return CapacityStep(index, kind, speed, offered, overall.rate, latency,
                        round(unanswered, 6), verdict, verdict == "CLEAN" and not breaches, breaches, str(out),
                        round(duration / speed, 3), len(check.consistency.anomalies) + len(check.bound_anomalies))


def find_capacity(trace: str | Path, outdir: str | Path, *, slo: Slo, plan: SearchPlan, opts: ReplayOptions,
                  step_seconds: float | None = None, progress: bool = False,
                  notify: Callable[[CapacityStep], None] = lambda step: None) -> CapacityResult:
    """Run the search of :func:`next_step` on ``trace``; every step's results file stays in ``outdir``."""
    from .traces import read_trace_header, trace_digest

    trace = str(trace)
    header = read_trace_header(trace)
    if not header.requests:
        raise CapacityError(f"{trace}: the trace has no requests")
    if step_seconds is not None and not (math.isfinite(step_seconds) and step_seconds > 0):
        raise CapacityError(f"--step-seconds must be a positive number, got {step_seconds!r}")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CapacityError(f"{outdir}: cannot create directory: {e.strerror}") from None
    notes = []
    if not header.duration:
        notes.append("the trace has no schedule length (a burst workload): offered rate undefined, every "
                     "speed sends the same burst; use a paced trace (generate-trace stress)")
    steps: list[CapacityStep] = []
    outcome = None
    while (nxt := next_step([(s.speed, s.passed, s.kind) for s in steps], plan)) is not None:
        step = run_step(trace, header, len(steps) + 1, nxt[0], nxt[1], slo, opts, outdir, step_seconds, progress)
        steps.append(step)
        notify(step)
        if step.verdict == "NOT CLEAN":
            outcome = "not_clean"
            break
        if step.unanswered >= 1.0 and not any(s.passed for s in steps):
            # Not one answer, not even to the first requests of the step, which met an idle shop: the
            # shop is down or answers garbage, not overloaded, and a slower speed cannot change that.
            notes.append(f"step {step.index} (speed {step.speed:g}) got no answer to any of its requests (5xx, "
                         f"timeouts, connection errors or answers that are not the API's): a slower speed cannot "
                         f"change that, so the search stopped; see wdm-replay check {step.results}")
            break
    lo, hi = bracket([(s.speed, s.passed) for s in steps])
    if outcome == "not_clean":
        speed = None
    elif lo is None:
        speed, outcome = None, "none_met"
    else:
        speed = lo
        outcome = "at_max" if hi is None and lo >= plan.max_speed else "found"
        if outcome == "at_max":
            notes.append(f"every speed up to --max {plan.max_speed:g} met the SLO: the shop may take more")
    resolution = round(hi / lo, 4) if lo is not None and hi is not None else None
    return CapacityResult(slo, plan, trace, trace_digest(trace), tuple(steps), speed,
                          offered_rate(header, speed) if speed is not None else None, outcome, resolution,
                          tuple(notes))


# --- rendering ---------------------------------------------------------------------------------------

def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def render_capacity_text(res: CapacityResult) -> str:
    """The step table, then the knee (or why there is none)."""
    lines = [f"capacity of {Path(res.trace).name} under SLO {res.slo.text}",
             f"{'#':>2} {'kind':<8} {'speed':>7} {'offered/s':>10} {'achieved/s':>10} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'unansw.':>8} {'verdict':<12} result"]
    for s in res.steps:
        result = "pass" if s.passed else "FAIL" + (f" ({'; '.join(s.breaches)})" if s.breaches else "")
        lines.append(f"{s.index:>2} {s.kind:<8} {s.speed:>7g} {_f(s.offered_rate):>10} {_f(s.achieved_rate):>10} "
                     f"{_f(s.latency_ms['p50']):>8} {_f(s.latency_ms['p99']):>8} "
                     f"{100 * s.unanswered:>7.2f}% {s.verdict:<12} {result}")
    if res.outcome == "not_clean":
        bad = res.steps[-1]
        lines.append(f"NOT CLEAN at speed {bad.speed:g} ({bad.anomalies} anomalies): the search stopped, no "
                     f"capacity is given to a wrong shop; see wdm-replay check {bad.results}")
    elif res.outcome == "none_met" and res.steps and res.steps[-1].unanswered >= 1.0:
        lines.append(f"no speed met the SLO: the shop answered none of step {res.steps[-1].index}'s requests")
    elif res.outcome == "none_met":
        lines.append(f"no speed met the SLO (down to {res.plan.start / res.plan.factor ** FLOOR_STEPS:g})")
    else:
        step = f", one bisection step = x{res.resolution:g}" if res.resolution else ""
        lines.append(f"knee: speed {res.speed:g} = {_f(res.rate)} requests/s offered (confirmed by a repeat{step})")
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines) + "\n"


def plot_capacity(res: CapacityResult, path: str | Path) -> None:
    """Write the plot: achieved vs offered rate, and p99 vs offered rate with the SLO (matplotlib)."""
    from .analysis.html import _pyplot

    plt = _pyplot()
    pts = sorted((s for s in res.steps if s.offered_rate is not None), key=lambda s: s.offered_rate)
    x = [s.offered_rate for s in pts]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(x, x, ls=":", color="grey", label="achieved = offered")
    a1.plot(x, [s.achieved_rate for s in pts], "o-", label="achieved")
    a2.plot(x, [float("nan") if s.latency_ms["p99"] is None else s.latency_ms["p99"] for s in pts], "o-",
            color="#d95f02", label="p99")
    for name, bound in res.slo.latency_ms:
        a2.axhline(bound, ls="--", color="red", label=f"SLO {name}<{bound:g} ms")
    for ax in (a1, a2):
        for s in pts:
            if not s.passed:
                ax.axvline(s.offered_rate, color="red", alpha=0.12, lw=6)
        if res.rate is not None:
            ax.axvline(res.rate, color="green", ls="-.", label=f"knee {res.rate:.0f}/s")
        ax.set_xlabel("offered rate (requests/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    a1.set_ylabel("achieved rate (requests/s)")
    a1.set_title("Throughput")
    a2.set_ylabel("p99 response time (ms)")
    a2.set_yscale("log")
    a2.set_title("p99 latency")
    fig.suptitle(f"capacity of {Path(res.trace).name} (SLO {res.slo.text}; failing steps shaded)", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(str(path), dpi=90, metadata={"Software": None} if str(path).endswith(".png") else None)
    except OSError as e:
        raise CapacityError(f"{path}: cannot write the plot: {e.strerror}") from None
    finally:
        plt.close(fig)


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else the one line saying what to install."""
    import importlib

    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'wdm-replay[html]')"
    return None
