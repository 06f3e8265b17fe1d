"""Severity suggestion from the runbook's definitions and the live state: a pure function.

The runbook (Incident Severity Levels) defines the levels by their impact:

    P0  complete outage, data loss, security breach
    P1  major feature degradation, significant user impact
    P2  minor feature issue, small user impact
    P3  cosmetic issue, no user impact

`suggest_severity` reads those words in what the declarer wrote and weighs what the bot knows
right now (critical alerts firing, error rates, recent failed deploys and rollbacks of the
affected services). The most severe signal wins; every signal that counted is given as a reason,
so the declarer sees why and can override it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SEVERITY_ORDER = ("P0", "P1", "P2", "P3")  # most severe first
DEFINITIONS = {
    "P0": "complete outage, data loss or security breach",
    "P1": "major feature degradation or significant user impact",
    "P2": "minor feature issue or small user impact",
    "P3": "cosmetic issue, no user impact",
}

# Words of the runbook's definitions (and the ways people on call write them), per level.
_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "P0": (
        (r"complete outage|full outage|total outage|outage", "an outage"),
        (
            r"(?:is|are|went|goes|gone|site|service|everything|all)\s+down|down\s+for\s+(?:all|every)",
            "something is down",
        ),
        (
            r"data\s+loss|lost\s+(?:\w+\s+)?data|data\s+(?:was\s+)?(?:deleted|corrupt\w*)"
            r"|corrupt\w*\s+data",
            "data loss",
        ),
        (
            r"security|breach\w*|compromised?|hacked|leak\w*|unauthori[sz]ed\s+access|exploit\w*",
            "a security breach",
        ),
        (
            r"(?:nobody|no\s+one|no\s+users?)\s+can|all\s+users|every\s+(?:user|customer|request)",
            "every user is affected",
        ),
    ),
    "P1": (
        (r"degrad\w*|major|significant|severe\w*", "major degradation or significant impact"),
        (
            r"many\s+(?:users|customers)|most\s+(?:users|customers|requests)",
            "many users are affected",
        ),
        (
            r"slow\w*|latency|timeouts?|timing\s+out|high\s+error|errors?|5\d\d|failing|broken"
            r"|can(?:no|')t|unable",
            "a feature is failing or slow",
        ),
    ),
    "P2": (
        (
            r"minor|small|some\s+(?:users|customers)|few\s+(?:users|customers)|intermittent\w*"
            r"|occasional\w*|partial\w*|edge\s+case",
            "a minor issue or small impact",
        ),
    ),
    "P3": (
        (
            r"cosmetic|typo|spelling|wording|styling|css|misaligned|alignment|colou?r|font"
            r"|no\s+user\s+impact",
            "a cosmetic issue",
        ),
    ),
}
_NEGATION = re.compile(r"\b(?:no|not|without|never|isn't|aren't|wasn't)\s+(?:\w+\s+){0,2}$")


@dataclass(frozen=True)
class AlertFact:
    """An alert firing now on an affected service."""

    service: str
    rule: str
    severity: str  # "warning" | "critical"
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class DeployFact:
    """A recent deploy or rollback of an affected service that did not end well (or undid one)."""

    id: int
    service: str
    environment: str
    version: str
    state: str  # "failed" | "rolled_back" | "succeeded" (a rollback that succeeded)
    strategy: str
    finished_at: datetime


@dataclass(frozen=True)
class LiveState:
    """What the bot knows about the affected services right now."""

    services: tuple[str, ...] = ()
    firing_alerts: tuple[AlertFact, ...] = ()
    error_rates: Mapping[str, float] = field(default_factory=dict)  # service -> fraction 0..1
    recent_deploys: tuple[DeployFact, ...] = ()
    now: datetime | None = None


@dataclass(frozen=True)
class Thresholds:
    """Error rates (fractions) that count as an outage, a major and a minor degradation."""

    outage: float = 0.5
    major: float = 0.05  # the runbook's critical alert threshold
    minor: float = 0.01  # the runbook's warning alert threshold
    recent: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Suggestion:
    severity: str
    reasons: tuple[str, ...]

    def explain(self) -> str:
        """One paragraph: the suggestion and why."""
        because = "; ".join(self.reasons)
        return f"Suggested {self.severity} ({DEFINITIONS[self.severity]}) because {because}."


def _text_signals(text: str) -> list[tuple[str, str]]:
    lowered = " ".join(text.lower().split())
    found: list[tuple[str, str]] = []
    for severity, phrases in _PHRASES.items():
        for pattern, meaning in phrases:
            for match in re.finditer(rf"\b(?:{pattern})\b", lowered):
                if _NEGATION.search(lowered[: match.start()]):
                    continue  # "no data loss", "not down"
                found.append((severity, f'the description says "{match.group(0)}" ({meaning})'))
                break
    return found


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def _live_signals(state: LiveState, limits: Thresholds) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for alert in state.firing_alerts:
        measured = ""
        if alert.value is not None and alert.threshold is not None:
            measured = f" ({alert.value:g} against a threshold of {alert.threshold:g})"
        if alert.severity == "critical":
            found.append(
                ("P1", f"critical alert {alert.rule} is firing on {alert.service}{measured}")
            )
        else:
            found.append(
                ("P2", f"warning alert {alert.rule} is firing on {alert.service}{measured}")
            )
    for service, rate in sorted(state.error_rates.items()):
        if rate >= limits.outage:
            found.append(
                (
                    "P0",
                    f"{service} fails {_percent(rate)} of requests (≥ {_percent(limits.outage)}: "
                    "effectively an outage)",
                )
            )
        elif rate >= limits.major:
            found.append(
                ("P1", f"{service} fails {_percent(rate)} of requests (≥ {_percent(limits.major)})")
            )
        elif rate >= limits.minor:
            found.append(
                ("P2", f"{service} fails {_percent(rate)} of requests (≥ {_percent(limits.minor)})")
            )
    for deploy in state.recent_deploys:
        if state.now is not None and state.now - deploy.finished_at > limits.recent:
            continue
        ago = ""
        if state.now is not None:
            minutes = max(0, int((state.now - deploy.finished_at).total_seconds() // 60))
            ago = f" {minutes} min ago"
        if deploy.strategy == "rollback":
            what = f"{deploy.service} in {deploy.environment} was rolled back to {deploy.version}"
        elif deploy.state == "rolled_back":
            what = (
                f"deploy #{deploy.id} of {deploy.service} {deploy.version} to "
                f"{deploy.environment} was rolled back"
            )
        else:
            what = (
                f"deploy #{deploy.id} of {deploy.service} {deploy.version} to "
                f"{deploy.environment} {deploy.state.replace('_', ' ')}"
            )
        found.append(("P2", f"{what}{ago}"))
    return found


def suggest_severity(
    text: str, state: LiveState | None = None, limits: Thresholds | None = None
) -> Suggestion:
    """The suggested severity for an incident described by `text`, and why.

    Precedence: the most severe signal wins (P0 beats P1 beats P2). Cosmetic words give P3
    only when nothing else points higher. With no signal at all, P2 (the runbook's "minor
    feature issue"): someone thought it worth an incident, but nothing says it is worse.
    """
    state = state or LiveState()
    limits = limits or Thresholds()
    signals = _text_signals(text) + _live_signals(state, limits)
    if not signals:
        return Suggestion(
            "P2",
            (
                "nothing in the description or the live state points to an outage, data loss, "
                "a security breach or a major degradation (defaulting to a minor issue)",
            ),
        )
    rank = {severity: index for index, severity in enumerate(SEVERITY_ORDER)}
    winner = min((severity for severity, _ in signals), key=rank.__getitem__)
    # The winner's reasons first, then what else was seen, most severe first.
    ordered = sorted(signals, key=lambda signal: rank[signal[0]])
    reasons = tuple(dict.fromkeys(reason for _, reason in ordered))
    return Suggestion(winner, reasons)
