"""Table tests of bot.metrics.rules (held-for semantics, verdict precedence, alert states) and of
bot.metrics.sparkline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.catalog import AlertRule, RollbackTrigger
from bot.metrics.rules import (
    AlertState,
    Verdict,
    evaluate,
    fraction_failing,
    next_alert_state,
    worst,
)
from bot.metrics.sparkline import sparkline

NOW = datetime(2025, 11, 5, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=15)
NAN = math.nan


@dataclass(frozen=True)
class S:
    at: datetime
    value: float


def series(*values: float | None, end: datetime = NOW, step: timedelta = STEP) -> list[S]:
    """Samples one `step` apart, the last at `end`; None leaves that slot out (a missing sample)."""
    count = len(values)
    return [S(end - (count - 1 - i) * step, v) for i, v in enumerate(values) if v is not None]


def trigger(**fields: Any) -> RollbackTrigger:
    return RollbackTrigger.model_validate(fields)


ERR = trigger(name="error-rate", metric="error_rate", op=">", threshold=0.05, **{"for": "2m"})
LAT = trigger(
    name="latency-p99-baseline", metric="latency_p99", op=">", baseline_factor=5, **{"for": "5m"}
)
HEALTH = trigger(name="health-failing", metric="health_failing", op=">", threshold=0.5)
DISK = AlertRule.model_validate(
    {"name": "disk-free-critical", "metric": "disk_free", "op": "<", "threshold": 0.10,
     "for": "0s", "severity": "critical"}
)  # fmt: skip
CPU = AlertRule.model_validate(
    {"name": "cpu-warning", "metric": "cpu", "op": ">", "threshold": 0.8, "for": "15m",
     "severity": "warning"}
)  # fmt: skip


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


# --- evaluate: state and held_for -----------------------------------------------------------------

CASES = [
    # id, rule, samples, keyword arguments, expected state, expected held_for
    ("single-spike-pending", ERR, series(*[0.01] * 8, 0.2), {}, "pending", s(0)),
    ("spike-then-back-ok", ERR, series(0.01, 0.2, 0.01), {}, "ok", s(0)),
    ("exactly-2m-breach", ERR, series(*[0.1] * 9), {}, "breach", s(120)),
    ("1m45s-pending", ERR, series(*[0.1] * 8), {}, "pending", s(105)),
    ("longer-than-2m-breach", ERR, series(*[0.1] * 12), {}, "breach", s(165)),
    ("long-run-reports-true-length", ERR, series(*[0.1] * 41), {}, "breach", s(600)),
    ("good-sample-restarts-run", ERR, series(*[0.1] * 4, 0.01, *[0.1] * 4), {}, "pending", s(45)),
    (
        "missing-sample-restarts-run",
        ERR,
        series(*[0.1] * 4, None, *[0.1] * 4),
        {},
        "pending",
        s(45),
    ),
    ("nan-is-missing", ERR, series(*[0.1] * 4, NAN, *[0.1] * 4), {}, "pending", s(45)),
    ("equal-to-limit-ok", ERR, series(*[0.05] * 9), {}, "ok", s(0)),
    ("just-above-limit-breach", ERR, series(*[0.0501] * 9), {}, "breach", s(120)),
    ("below-limit-ok", ERR, series(*[0.01] * 9), {}, "ok", s(0)),
    ("unsorted-input", ERR, list(reversed(series(*[0.1] * 9))), {}, "breach", s(120)),
    ("for-0-single-sample-fires", HEALTH, series(0.75), {}, "breach", s(0)),
    ("for-0-equal-ok", HEALTH, series(0.5), {}, "ok", s(0)),
    ("for-0-run-length", HEALTH, series(0.2, 0.6, 1.0), {}, "breach", s(15)),
    ("less-than-breach", DISK, series(0.5, 0.2, 0.09), {}, "breach", s(0)),
    ("less-than-equal-ok", DISK, series(0.5, 0.2, 0.10), {}, "ok", s(0)),
    ("less-than-above-ok", DISK, series(0.05, 0.5), {}, "ok", s(0)),
    ("alert-rule-pending", CPU, series(*[0.9] * 60), {}, "pending", s(885)),
    ("alert-rule-breach", CPU, series(*[0.9] * 61), {}, "breach", s(900)),
    (
        "baseline-breach-5m",
        LAT,
        series(*[1.2] * 21),
        {"baseline": 0.2},
        "breach",
        s(300),
    ),
    ("baseline-pending", LAT, series(*[1.2] * 5), {"baseline": 0.2}, "pending", s(60)),
    ("baseline-equal-limit-ok", LAT, series(*[1.0] * 21), {"baseline": 0.2}, "ok", s(0)),
    ("baseline-none", LAT, series(*[9.0] * 21), {}, "inconclusive", s(0)),
    ("baseline-zero", LAT, series(*[9.0] * 21), {"baseline": 0.0}, "inconclusive", s(0)),
    ("baseline-nan", LAT, series(*[9.0] * 21), {"baseline": NAN}, "inconclusive", s(0)),
    ("baseline-negative", LAT, series(*[9.0] * 21), {"baseline": -1.0}, "inconclusive", s(0)),
    (
        "threshold-rule-ignores-baseline",
        ERR,
        series(*[0.1] * 9),
        {"baseline": None},
        "breach",
        s(120),
    ),
    ("empty", ERR, [], {}, "inconclusive", s(0)),
    ("all-nan", ERR, series(NAN, NAN, NAN), {}, "inconclusive", s(0)),
    ("stale-newest", ERR, series(*[0.01] * 9, end=NOW - s(45)), {}, "inconclusive", s(0)),
    ("stale-pending", ERR, series(*[0.1] * 4, end=NOW - s(45)), {}, "inconclusive", s(45)),
    ("2-intervals-old-is-fresh", ERR, series(*[0.01] * 9, end=NOW - s(30)), {}, "ok", s(0)),
    (
        "stale-run-never-breaches",
        ERR,
        series(*[0.1] * 20, end=NOW - s(31)),
        {},
        "inconclusive",
        s(285),
    ),
    (
        "nan-newest-makes-it-stale",
        ERR,
        series(*[0.1] * 9, NAN, NAN, NAN),
        {},
        "inconclusive",
        s(120),
    ),
    ("only-old-data", ERR, series(0.1, end=NOW - s(3600)), {}, "inconclusive", s(0)),
    ("clock-skew-future-is-fresh", ERR, series(*[0.1] * 9, end=NOW + s(5)), {}, "breach", s(120)),
    ("min-samples-not-met", ERR, series(0.01, 0.01), {"min_samples": 3}, "inconclusive", s(0)),
    ("min-samples-met", ERR, series(0.01, 0.01, 0.01), {"min_samples": 3}, "ok", s(0)),
    ("min-samples-pending", ERR, series(0.1), {"min_samples": 3}, "inconclusive", s(0)),
    ("breach-beats-min-samples", HEALTH, series(0.9), {"min_samples": 3}, "breach", s(0)),
]


@pytest.mark.parametrize(
    ("rule", "samples", "kwargs", "state", "held_for"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_evaluate(
    rule: Any,
    samples: Sequence[S],
    kwargs: dict[str, Any],
    state: str,
    held_for: timedelta,
) -> None:
    verdict = evaluate(rule, samples, now=NOW, interval=STEP, **kwargs)
    assert (verdict.state, verdict.held_for) == (state, held_for), verdict.reason


GAP_CASES = [
    ("gap-1.5x-keeps-run", s(22.5), "breach"),
    ("gap-just-over-1.5x-breaks-run", s(22.6), "pending"),
    ("gap-2x-breaks-run", s(30), "pending"),
]


@pytest.mark.parametrize(
    ("gap", "state"), [c[1:] for c in GAP_CASES], ids=[c[0] for c in GAP_CASES]
)
def test_gap_tolerance(gap: timedelta, state: str) -> None:
    # Breaching samples 15 s apart except for one gap, spanning at least 2m in all.
    before = series(*[0.1] * 4, end=NOW - 4 * STEP - gap)
    after = series(*[0.1] * 5)
    verdict = evaluate(ERR, before + after, now=NOW, interval=STEP)
    assert verdict.state == state


def test_verdict_fields() -> None:
    verdict = evaluate(LAT, series(0.5, *[1.2] * 5), now=NOW, interval=STEP, baseline=0.2)
    assert verdict.rule == "latency-p99-baseline"
    assert verdict.metric == "latency_p99"
    assert verdict.op == ">"
    assert verdict.for_ == timedelta(minutes=5)
    assert verdict.limit == pytest.approx(1.0)
    assert verdict.baseline == 0.2
    assert verdict.newest == 1.2
    assert verdict.values == (0.5, 1.2, 1.2, 1.2, 1.2, 1.2)
    assert (verdict.held_for, verdict.cleared_for) == (s(60), s(0))


def test_threshold_rule_has_no_baseline_in_verdict() -> None:
    verdict = evaluate(ERR, series(0.01), now=NOW, interval=STEP, baseline=0.3)
    assert (verdict.limit, verdict.baseline) == (0.05, None)


WINDOW_CASES = [
    # The window is max(for, 2 × interval): older values are not shown.
    ("for-2m-shows-2m", ERR, 12, tuple(float(i) for i in range(3, 12))),
    ("for-0s-shows-two-intervals", HEALTH, 5, (2.0, 3.0, 4.0)),
]


@pytest.mark.parametrize(
    ("rule", "count", "values"), [c[1:] for c in WINDOW_CASES], ids=[c[0] for c in WINDOW_CASES]
)
def test_window_values(rule: Any, count: int, values: tuple[float, ...]) -> None:
    samples = series(*[float(i) for i in range(count)])
    assert evaluate(rule, samples, now=NOW, interval=STEP).values == values


REASONS = [
    (
        "breach",
        ERR,
        series(*[0.01] * 3, *[0.09] * 13, 0.112, step=s(10)),
        {"interval": s(10)},
        "error_rate > 0.05 for 2m: held for 2m10s (last 0.112, limit 0.05)",
    ),
    (
        "baseline-pending",
        LAT,
        series(*[0.3] * 10, *[1.3] * 5),
        {"baseline": 0.21},
        "latency_p99 > 5× baseline (0.21 → limit 1.05) for 5m: pending for 1m (last 1.3)",
    ),
    (
        "ok",
        ERR,
        series(0.2, 0.01),
        {},
        "error_rate > 0.05 for 2m: ok (last 0.01, limit 0.05)",
    ),
    (
        "for-0-breach",
        HEALTH,
        series(0.75),
        {},
        "health_failing > 0.5: breached (last 0.75, limit 0.5)",
    ),
    (
        "less-than-breach",
        DISK,
        series(0.2, 0.04),
        {},
        "disk_free < 0.1: breached (last 0.04, limit 0.1)",
    ),
    ("no-data", ERR, [], {}, "no data for error_rate in the last 2m: inconclusive"),
    (
        "no-data-for-0",
        HEALTH,
        series(0.9, end=NOW - s(40)),
        {},
        "no data for health_failing in the last 30s: inconclusive",
    ),
    (
        "stale",
        ERR,
        series(0.01, 0.2, end=NOW - s(45)),
        {},
        "stale data for error_rate: the newest sample is 45s old (more than 2 × 15s): inconclusive",
    ),
    (
        "no-baseline",
        LAT,
        series(9.0),
        {},
        "latency_p99 > 5× baseline for 5m: no usable baseline (None): inconclusive",
    ),
    (
        "too-few",
        ERR,
        series(0.01),
        {"min_samples": 4},
        "too few samples for error_rate in the last 2m (1 of 4): inconclusive",
    ),
]


@pytest.mark.parametrize(
    ("rule", "samples", "kwargs", "reason"), [c[1:] for c in REASONS], ids=[c[0] for c in REASONS]
)
def test_reason(rule: Any, samples: Sequence[S], kwargs: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"interval": STEP, **kwargs}
    assert evaluate(rule, samples, now=NOW, **arguments).reason == reason


@dataclass(frozen=True)
class Bare:
    name: str = "bare"
    metric: str = "m"
    op: str = ">"
    threshold: float | None = 1.0
    for_: timedelta = timedelta(0)


BAD_CALLS = [
    ("zero-interval", Bare(), {"interval": timedelta(0)}, "interval"),
    ("bad-op", Bare(op=">="), {}, "op"),
    ("negative-for", Bare(for_=s(-1)), {}, "negative"),
    ("no-limit", Bare(threshold=None), {}, "threshold or a baseline_factor"),
]


@pytest.mark.parametrize(
    ("rule", "kwargs", "message"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_calls(rule: Bare, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"interval": STEP, **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate(rule, series(2.0), now=NOW, **arguments)


def test_plain_rule_objects_fit() -> None:
    assert evaluate(Bare(), series(2.0), now=NOW, interval=STEP).state == "breach"


# --- worst ---------------------------------------------------------------------------------------


def v(state: str, rule: str = "r") -> Verdict:
    return Verdict(
        rule=rule,
        metric="m",
        state=state,  # type: ignore[arg-type]
        limit=1.0,
        baseline=None,
        op=">",
        for_=s(0),
        held_for=s(0),
        values=(),
        newest=None,
        reason=state,
    )


WORST = [
    ("empty", [], None),
    ("all-ok-first", ["ok", "ok"], 0),
    ("pending-beats-ok", ["ok", "pending"], 1),
    ("inconclusive-beats-pending", ["pending", "inconclusive", "ok"], 1),
    ("breach-beats-inconclusive", ["inconclusive", "pending", "breach"], 2),
    ("first-breach-wins", ["ok", "breach", "inconclusive", "breach"], 1),
    ("first-inconclusive-wins", ["inconclusive", "ok", "inconclusive"], 0),
]


@pytest.mark.parametrize(("states", "index"), [c[1:] for c in WORST], ids=[c[0] for c in WORST])
def test_worst(states: list[str], index: int | None) -> None:
    verdicts = [v(state, rule=f"r{i}") for i, state in enumerate(states)]
    expected = None if index is None else verdicts[index]
    assert worst(verdicts) is expected


# --- fraction_failing ---------------------------------------------------------------------------

FRACTIONS = [
    ("all-healthy", [True, True, True], 0.0),
    ("one-of-three", [True, True, False], 1 / 3),
    ("half", [True, False], 0.5),
    ("two-of-three", [True, False, False], 2 / 3),
    ("all-failing", [False], 1.0),
]


@pytest.mark.parametrize(
    ("results", "fraction"), [c[1:] for c in FRACTIONS], ids=[c[0] for c in FRACTIONS]
)
def test_fraction_failing(results: list[bool], fraction: float) -> None:
    assert fraction_failing(results) == pytest.approx(fraction)


def test_no_instances_is_no_data() -> None:
    assert math.isnan(fraction_failing([]))
    verdict = evaluate(HEALTH, series(fraction_failing([])), now=NOW, interval=STEP)
    assert verdict.state == "inconclusive"


HEALTH_CASES = [
    ("half-failing-is-not-more-than-half", [True, False], "ok"),
    ("two-of-three-failing", [True, False, False], "breach"),
]


@pytest.mark.parametrize(
    ("results", "state"), [c[1:] for c in HEALTH_CASES], ids=[c[0] for c in HEALTH_CASES]
)
def test_health_trigger(results: list[bool], state: str) -> None:
    samples = series(fraction_failing(results))
    assert evaluate(HEALTH, samples, now=NOW, interval=STEP).state == state


# --- next_alert_state ----------------------------------------------------------------------------

BAD, GOOD = 0.1, 0.01
TRANSITIONS = [
    # id, previous, samples (error_rate, interval 15s, for 2m), clear_for, current, changed
    ("inactive-to-pending", "inactive", series(GOOD, BAD), STEP, "pending", True),
    ("pending-stays-pending", "pending", series(BAD, BAD), STEP, "pending", False),
    ("pending-to-firing", "pending", series(*[BAD] * 9), STEP, "firing", True),
    ("inactive-to-firing", "inactive", series(*[BAD] * 9), STEP, "firing", True),
    ("firing-stays-firing", "firing", series(*[BAD] * 10), STEP, "firing", False),
    ("pending-to-inactive", "pending", series(BAD, GOOD), STEP, "inactive", True),
    ("inactive-stays", "inactive", series(GOOD, GOOD), STEP, "inactive", False),
    ("one-good-sample-no-flap", "firing", series(*[BAD] * 9, GOOD), STEP, "firing", False),
    ("good-for-a-poll-resolves", "firing", series(*[BAD] * 9, GOOD, GOOD), STEP, "resolved", True),
    ("equal-to-limit-is-good", "firing", series(BAD, 0.05, 0.05), STEP, "resolved", True),
    ("gap-restarts-clear", "firing", series(BAD, GOOD, None, GOOD), STEP, "firing", False),
    ("clear-for-0-resolves-at-once", "firing", series(BAD, GOOD), s(0), "resolved", True),
    ("clear-for-1m", "firing", series(BAD, *[GOOD] * 4), s(60), "firing", False),
    ("clear-for-1m-held", "firing", series(BAD, *[GOOD] * 5), s(60), "resolved", True),
    ("firing-bad-again-stays", "firing", series(GOOD, GOOD, BAD), STEP, "firing", False),
    ("firing-no-data-stays", "firing", [], STEP, "firing", False),
    ("firing-stale-stays", "firing", series(GOOD, GOOD, end=NOW - s(60)), STEP, "firing", False),
    ("pending-no-data-stays", "pending", [], STEP, "pending", False),
    ("resolved-stays-resolved", "resolved", series(GOOD, GOOD), STEP, "resolved", False),
    ("resolved-to-pending", "resolved", series(GOOD, BAD), STEP, "pending", True),
    ("resolved-to-firing", "resolved", series(*[BAD] * 9), STEP, "firing", True),
]


@pytest.mark.parametrize(
    ("previous", "samples", "clear_for", "current", "changed"),
    [c[1:] for c in TRANSITIONS],
    ids=[c[0] for c in TRANSITIONS],
)
def test_next_alert_state(
    previous: AlertState,
    samples: list[S],
    clear_for: timedelta,
    current: str,
    changed: bool,
) -> None:
    verdict = evaluate(ERR, samples, now=NOW, interval=STEP)
    transition = next_alert_state(previous, verdict, clear_for=clear_for)
    assert (transition.previous, transition.current, transition.changed) == (
        previous,
        current,
        changed,
    ), transition.reason
    assert transition.reason.startswith("error-rate: ")


def test_alert_reasons() -> None:
    firing = evaluate(ERR, series(*[BAD] * 9, GOOD), now=NOW, interval=STEP)
    assert next_alert_state("firing", firing, clear_for=STEP).reason == (
        "error-rate: error_rate > 0.05 for 2m: ok (last 0.01, limit 0.05);"
        " still firing until the good side holds for 15s (so far 0s)"
    )
    resolved = evaluate(ERR, series(*[BAD] * 9, GOOD, GOOD), now=NOW, interval=STEP)
    assert next_alert_state("firing", resolved, clear_for=STEP).reason == (
        "error-rate: error_rate > 0.05 for 2m: ok (last 0.01, limit 0.05);"
        " back on the good side for 15s"
    )


def test_alert_loop_does_not_flap() -> None:
    """Poll every 15 s over a recorded series; the alert fires once and resolves once."""
    recorded = [GOOD, *[BAD] * 9, GOOD, BAD, GOOD, BAD, BAD, GOOD, GOOD, GOOD]
    start = NOW - (len(recorded) - 1) * STEP
    history = [S(start + i * STEP, value) for i, value in enumerate(recorded)]
    state: AlertState = "inactive"
    states = []
    for i in range(len(history)):
        verdict = evaluate(ERR, history[: i + 1], now=history[i].at, interval=STEP)
        state = next_alert_state(state, verdict, clear_for=STEP).current  # type: ignore[assignment]
        states.append(state)
    assert states == [
        "inactive",
        *["pending"] * 8,
        "firing",  # the breach has held for 2m
        "firing",  # one good sample: not resolved
        "firing",  # bad again
        "firing",  # one good sample
        "firing",
        "firing",
        "firing",  # first good sample of the recovery
        "resolved",  # good for a full poll
        "resolved",
    ]


# --- sparkline -----------------------------------------------------------------------------------

SPARKS = [
    ("empty", [], 20, ""),
    ("ramp", [0, 1, 2, 3, 4, 5, 6, 7], 20, "▁▂▃▄▅▆▇█"),
    ("ramp-down", [7, 6, 5, 4, 3, 2, 1, 0], 20, "█▇▆▅▄▃▂▁"),
    ("constant", [3.0] * 5, 20, "▁▁▁▁▁"),
    ("constant-zero", [0.0] * 3, 20, "▁▁▁"),
    ("single", [0.4], 20, "▁"),
    ("min-and-max", [0.01, 0.2, 0.01], 20, "▁█▁"),
    ("negative", [-1.0, 0.0, 1.0], 20, "▁▅█"),
    ("nan-is-a-gap", [0.0, NAN, 1.0], 20, "▁ █"),
    ("all-nan", [NAN, NAN], 20, "  "),
    ("inf", [0.0, math.inf, 1.0], 20, "▁██"),
    ("spike-survives-downsampling", [0.0] * 57 + [1.0] + [0.0] * 42, 20, "▁" * 11 + "█" + "▁" * 8),
    ("downsample-by-max", [0, 1, 0, 0, 0, 0, 2, 0], 4, "▅▁▁█"),
    ("width-1", [1, 5, 2], 1, "▁"),
    ("shorter-than-width-not-stretched", [0, 1], 20, "▁█"),
]


@pytest.mark.parametrize(
    ("values", "width", "expected"), [c[1:] for c in SPARKS], ids=[c[0] for c in SPARKS]
)
def test_sparkline(values: list[float], width: int, expected: str) -> None:
    assert sparkline(values, width=width) == expected


@pytest.mark.parametrize("count", [1, 19, 20, 21, 40, 99, 1000])
def test_sparkline_length(count: int) -> None:
    assert len(sparkline([float(i % 7) for i in range(count)])) == min(count, 20)


def test_sparkline_bad_width() -> None:
    with pytest.raises(ValueError, match="width"):
        sparkline([1.0], width=0)


def test_sparkline_of_a_verdict() -> None:
    verdict = evaluate(ERR, series(*[0.01] * 8, 0.2), now=NOW, interval=STEP)
    assert sparkline(verdict.values) == "▁▁▁▁▁▁▁▁█"
