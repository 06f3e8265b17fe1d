"""Rule evaluation: metric samples in, a verdict and a sentence for a person out. Pure, no I/O.

Alerts (`AlertRule`) and rollback triggers (`RollbackTrigger`) both say "`metric op limit` held
for `for_`". This module defines exactly what that means; docs/triggers.md says the same with
timelines. D below is the rule's `for_`.

Samples
    Any objects with `.at` (an aware datetime) and `.value` (a float), about one per `interval`
    (the poll interval, or the step of a range query). They are sorted by `.at` (stable: equal
    timestamps keep their order). A NaN value is dropped, so it counts as a missing sample.
    Samples stamped after `now` (clock skew with the metrics source) are kept and are fresh.

Limit and comparison
    The limit is the rule's `threshold`, or `baseline_factor × baseline` for a baseline rule (one
    with a `baseline_factor` and no `threshold`). A sample breaches when `value > limit` (op ">")
    or `value < limit` (op "<"). A value equal to the limit does not breach (the runbook: "> 5 %").

Runs
    A run is a sequence of consecutive breaching samples in which no two neighbours are more than
    1.5 × interval apart. A good sample ends a run, and so does a missing one (a gap of more than
    1.5 × interval): no data is not a breach. The current run is the one ending at the newest
    sample (empty when the newest sample does not breach), and
    `held_for = newest.at − first sample of the current run.at` (0 for a one-sample run).
    Runs are measured over all samples given, so a long breach reports its true length: pass at
    least D + interval of history.

Held for D
    The condition has held for D when the current run is not empty, the newest sample is fresh
    (below) and `held_for ≥ D`. So with D = 0 one breaching sample is enough; with D > 0 a single
    spike never is; a breach whose samples span exactly D is; one spanning an interval less is not.

The window
    `window = max(D, 2 × interval)`. `Verdict.values` are the values of the samples with
    `at ≥ now − window`, oldest to newest (for the explanation and a sparkline), and
    `min_samples` counts those samples.

Verdicts, in precedence order: the first that applies wins (as in Argo Rollouts' analysis)
    1. `breach`: the condition has held for D.
    2. `inconclusive`: a baseline rule without a usable baseline (None, NaN, infinite or ≤ 0);
       or no samples in the window; or a stale newest sample (`now − newest.at > 2 × interval`);
       or fewer than `min_samples` samples in the window.
    3. `pending`: the current run is not empty but has not held for D yet.
    4. `ok`: the newest sample does not breach.
    A missing baseline or stale data can never give a breach (the condition is only known to
    hold *now* on fresh data), so `min_samples` is the one cause of inconclusive that a breach
    overrides: a breach the data shows is acted on; a thin window only stops opsbot saying "ok".

`Verdict.cleared_for` mirrors `held_for`: the span of the current run of good (non-breaching)
samples ending at the newest one, with the same gap rule, so a missing sample restarts it too.
`next_alert_state` resolves a firing alert only once `cleared_for ≥ clear_for` (one poll), so a
single good sample does not make an alert flap.

`worst()` picks the verdict that decides among several (breach > inconclusive > pending > ok, the
first of each in the order given); `fraction_failing()` turns health checks into the value of the
`health_failing` metric behind the runbook's "> 50 % of instances" trigger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from bot.catalog import format_duration

__all__ = [
    "AlertState",
    "AlertTransition",
    "RuleLike",
    "SampleLike",
    "State",
    "Verdict",
    "evaluate",
    "fraction_failing",
    "next_alert_state",
    "worst",
]

State = Literal["ok", "pending", "breach", "inconclusive"]
AlertState = Literal["inactive", "pending", "firing", "resolved"]

# Precedence of verdicts: a lower number decides (Argo: failed > error > inconclusive > successful).
_PRECEDENCE: dict[str, int] = {"breach": 0, "inconclusive": 1, "pending": 2, "ok": 3}
_GAP_FACTOR = 1.5  # neighbours further apart than 1.5 × interval are not consecutive
_STALE_FACTOR = 2  # the newest sample is stale when older than 2 × interval


class SampleLike(Protocol):
    """One measurement: `bot.metrics.base.Sample` and anything else with these two attributes."""

    @property
    def at(self) -> datetime: ...

    @property
    def value(self) -> float: ...


class RuleLike(Protocol):
    """`AlertRule` or `RollbackTrigger`; `baseline_factor` is read with getattr (alerts lack it)."""

    @property
    def name(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def op(self) -> str: ...

    @property
    def threshold(self) -> float | None: ...

    @property
    def for_(self) -> timedelta: ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rule over one series, with everything needed to explain it."""

    rule: str
    metric: str
    state: State
    limit: float | None  # None when a baseline rule has no usable baseline
    baseline: float | None  # the baseline given, for baseline rules; None for threshold rules
    op: str
    for_: timedelta
    held_for: timedelta  # span of the current breaching run (0 when the newest sample is fine)
    values: tuple[float, ...]  # the window's values, oldest to newest
    newest: float | None  # the newest sample's value (None without samples)
    reason: str  # one sentence for a person
    cleared_for: timedelta = timedelta(0)  # span of the current non-breaching run


@dataclass(frozen=True)
class AlertTransition:
    previous: str
    current: str
    changed: bool
    reason: str


def _num(value: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes: 0.112, 0.05, 1.05, 1250."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _dur(value: timedelta) -> str:
    if timedelta(0) < value < timedelta(seconds=1):
        return f"{value.total_seconds():g}s"
    return format_duration(value)


def _breaches(value: float, op: str, limit: float) -> bool:
    return value > limit if op == ">" else value < limit


def _run_start(samples: Sequence[SampleLike], inside: list[bool], max_gap: timedelta) -> int | None:
    """Index of the first sample of the run of `inside` samples ending at the newest one."""
    if not samples or not inside[-1]:
        return None
    start = len(samples) - 1
    while start > 0 and inside[start - 1] and samples[start].at - samples[start - 1].at <= max_gap:
        start -= 1
    return start


def _usable_baseline(baseline: float | None) -> bool:
    return baseline is not None and math.isfinite(baseline) and baseline > 0


def evaluate(
    rule: RuleLike,
    samples: Sequence[SampleLike],
    *,
    now: datetime,
    interval: timedelta,
    baseline: float | None = None,
    min_samples: int = 1,
) -> Verdict:
    """Evaluate `rule` over `samples` at `now`; see the module docstring for the exact semantics.

    Raises ValueError for a call that cannot mean anything: an interval ≤ 0, a negative `for_`, an
    op other than ">" or "<", or a rule with neither a threshold nor a baseline_factor.
    """
    _check_call(rule, interval)
    limit, condition = _limit_and_condition(rule, baseline)
    series = sorted((s for s in samples if not math.isnan(s.value)), key=lambda s: s.at)
    window = max(rule.for_, _STALE_FACTOR * interval)
    in_window = [s for s in series if s.at >= now - window]
    held_for, cleared_for = _run_spans(series, rule.op, limit, interval * _GAP_FACTOR)
    facts = _Facts(
        metric=rule.metric,
        op=rule.op,
        for_=rule.for_,
        condition=condition,
        limit=limit,
        baseline=baseline,
        by_baseline=rule.threshold is None,
        newest=series[-1] if series else None,
        in_window=len(in_window),
        window=window,
        held_for=held_for,
    )
    state, reason = _decide(facts, now=now, interval=interval, min_samples=min_samples)
    return Verdict(
        rule=rule.name,
        metric=rule.metric,
        state=state,
        limit=limit,
        baseline=baseline if facts.by_baseline else None,
        op=rule.op,
        for_=rule.for_,
        held_for=held_for,
        values=tuple(s.value for s in in_window),
        newest=facts.newest.value if facts.newest is not None else None,
        reason=reason,
        cleared_for=cleared_for,
    )


def _check_call(rule: RuleLike, interval: timedelta) -> None:
    if interval <= timedelta(0):
        raise ValueError(f"interval must be longer than 0s, not {interval}")
    if rule.for_ < timedelta(0):
        raise ValueError(f"rule {rule.name}: for must not be negative")
    if rule.op not in (">", "<"):
        raise ValueError(f"rule {rule.name}: op must be '>' or '<', not {rule.op!r}")
    if rule.threshold is None and getattr(rule, "baseline_factor", None) is None:
        raise ValueError(f"rule {rule.name}: needs a threshold or a baseline_factor")


def _limit_and_condition(rule: RuleLike, baseline: float | None) -> tuple[float | None, str]:
    """The value samples are compared with (None: no usable baseline) and the rule in words."""
    metric, op, threshold = rule.metric, rule.op, rule.threshold
    factor: float | None = getattr(rule, "baseline_factor", None)
    limit: float | None
    if threshold is not None:
        limit, condition = threshold, f"{metric} {op} {_num(threshold)}"
    elif _usable_baseline(baseline):
        assert baseline is not None and factor is not None
        limit = baseline * factor
        condition = (
            f"{metric} {op} {_num(factor)}× baseline ({_num(baseline)} → limit {_num(limit)})"
        )
    else:
        assert factor is not None
        limit, condition = None, f"{metric} {op} {_num(factor)}× baseline"
    if rule.for_ > timedelta(0):
        condition += f" for {_dur(rule.for_)}"
    return limit, condition


def _run_spans(
    series: Sequence[SampleLike], op: str, limit: float | None, max_gap: timedelta
) -> tuple[timedelta, timedelta]:
    """(held_for, cleared_for): the spans of the current breaching and good runs."""
    held_for = cleared_for = timedelta(0)
    if limit is None or not series:
        return held_for, cleared_for
    newest = series[-1]
    bad = [_breaches(s.value, op, limit) for s in series]
    start = _run_start(series, bad, max_gap)
    if start is not None:
        held_for = newest.at - series[start].at
    start = _run_start(series, [not b for b in bad], max_gap)
    if start is not None:
        cleared_for = newest.at - series[start].at
    return held_for, cleared_for


@dataclass(frozen=True)
class _Facts:
    """What `_decide` needs to know about one rule over one series."""

    metric: str
    op: str
    for_: timedelta
    condition: str  # the rule in words, e.g. "error_rate > 0.05 for 2m"
    limit: float | None
    baseline: float | None
    by_baseline: bool
    newest: SampleLike | None
    in_window: int  # samples in the window
    window: timedelta
    held_for: timedelta


def _decide(
    facts: _Facts, *, now: datetime, interval: timedelta, min_samples: int
) -> tuple[State, str]:
    """The verdict by precedence (the module docstring's list) and its sentence."""
    newest, limit, metric = facts.newest, facts.limit, facts.metric
    fresh = newest is not None and now - newest.at <= _STALE_FACTOR * interval
    breaching = (
        limit is not None and newest is not None and _breaches(newest.value, facts.op, limit)
    )
    last = f"last {_num(newest.value)}" if newest is not None else ""
    shown = f"({last})" if facts.by_baseline else f"({last}, limit {_num(limit or 0)})"
    condition = facts.condition

    if breaching and fresh and facts.held_for >= facts.for_:
        held = facts.held_for
        how = f"held for {_dur(held)}" if held > timedelta(0) else "breached"
        return "breach", f"{condition}: {how} {shown}"
    if limit is None:
        return "inconclusive", f"{condition}: no usable baseline ({facts.baseline!r}): inconclusive"
    if not facts.in_window or newest is None:
        return (
            "inconclusive",
            f"no data for {metric} in the last {_dur(facts.window)}: inconclusive",
        )
    if not fresh:
        return (
            "inconclusive",
            f"stale data for {metric}: the newest sample is {_dur(now - newest.at)} old"
            f" (more than {_STALE_FACTOR} × {_dur(interval)}): inconclusive",
        )
    if facts.in_window < min_samples:
        return (
            "inconclusive",
            f"too few samples for {metric} in the last {_dur(facts.window)}"
            f" ({facts.in_window} of {min_samples}): inconclusive",
        )
    if breaching:
        return "pending", f"{condition}: pending for {_dur(facts.held_for)} {shown}"
    return "ok", f"{condition}: ok {shown}"


def worst(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The verdict that decides: the first breach, else the first inconclusive, else the first
    pending, else the first ok; None for no verdicts."""
    if not verdicts:
        return None
    return min(verdicts, key=lambda v: _PRECEDENCE[v.state])  # min() keeps the first of equals


def fraction_failing(results: Sequence[bool]) -> float:
    """The fraction of instances failing their health check (`True` = healthy), the value of the
    `health_failing` metric. No instances at all is NaN: no data, which `evaluate` treats as a
    missing sample (inconclusive), never as 0 % failing."""
    if not results:
        return math.nan
    return sum(1 for healthy in results if not healthy) / len(results)


def next_alert_state(
    previous: AlertState, verdict: Verdict, *, clear_for: timedelta
) -> AlertTransition:
    """The alert's next state after one evaluation.

    - breach → `firing` (from any state).
    - pending → `pending`; but a firing alert stays `firing` (the value is bad again).
    - ok → a firing alert becomes `resolved` only when `verdict.cleared_for ≥ clear_for`, i.e. the
      samples have been on the good side (equal to the limit counts as good) without a gap for at
      least `clear_for`; with `clear_for` = one poll interval that takes two good samples, so one
      good sample between bad ones does not flap. A pending alert goes back to `inactive` (it never
      fired, so there is nothing to resolve); `inactive` and `resolved` stay as they are.
    - inconclusive → no change: no data is neither a breach nor a recovery.
    """
    state = verdict.state
    current: AlertState
    if state == "breach":
        current = "firing"
        why = verdict.reason
    elif state == "inconclusive":
        current = previous
        why = f"{verdict.reason}; staying {previous}"
    elif state == "pending":
        current = "firing" if previous == "firing" else "pending"
        why = verdict.reason if current == "pending" else f"{verdict.reason}; still firing"
    elif previous == "firing":
        if verdict.cleared_for >= clear_for:
            current = "resolved"
            why = f"{verdict.reason}; back on the good side for {_dur(verdict.cleared_for)}"
        else:
            current = "firing"
            why = (
                f"{verdict.reason}; still firing until the good side holds for {_dur(clear_for)}"
                f" (so far {_dur(verdict.cleared_for)})"
            )
    elif previous == "pending":
        current = "inactive"
        why = verdict.reason
    else:
        current = previous
        why = verdict.reason
    return AlertTransition(previous, current, current != previous, f"{verdict.rule}: {why}")
