"""The life of an alert as data: its states, the events that move it, one transition table.

`inactive` is no row at all (nothing breached yet, or a pending alert that cleared and was
deleted); the other states are what the `alerts.state` column stores. A silence is not a state:
it is `silenced_until` on any open alert, and a new alert of the same (service, rule) inherits it.
"""

from __future__ import annotations

from enum import StrEnum

from bot.state_machine import IllegalTransition, StateMachine

__all__ = [
    "ALERT_MACHINE",
    "LIVE",
    "OPEN",
    "AlertEvent",
    "AlertState",
    "IllegalTransition",
    "event_for",
    "guard",
]


class AlertState(StrEnum):
    INACTIVE = "inactive"  # no row
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertEvent(StrEnum):
    PEND = "pend"  # a breach began, not yet held for the rule's `for`
    FIRE = "fire"  # the breach held (or needs no `for`)
    CLEAR = "clear"  # a pending breach went away before it fired
    RESOLVE = "resolve"  # back on the good side long enough (or a certificate was renewed)
    ACKNOWLEDGE = "acknowledge"  # someone pressed Acknowledge
    SILENCE = "silence"  # owners silenced the (service, rule) for a while
    WORSEN = "worsen"  # a certificate went from warning to critical: firing (again), it pages


S, E = AlertState, AlertEvent
ALERT_MACHINE = StateMachine[AlertState, AlertEvent](
    "alert",
    {
        (S.INACTIVE, E.PEND): S.PENDING,
        (S.INACTIVE, E.FIRE): S.FIRING,
        (S.PENDING, E.FIRE): S.FIRING,
        (S.PENDING, E.CLEAR): S.INACTIVE,
        (S.FIRING, E.RESOLVE): S.RESOLVED,
        (S.ACKNOWLEDGED, E.RESOLVE): S.RESOLVED,
        (S.FIRING, E.ACKNOWLEDGE): S.ACKNOWLEDGED,
        (S.PENDING, E.SILENCE): S.PENDING,
        (S.FIRING, E.SILENCE): S.FIRING,
        (S.ACKNOWLEDGED, E.SILENCE): S.ACKNOWLEDGED,
        (S.FIRING, E.WORSEN): S.FIRING,
        (S.ACKNOWLEDGED, E.WORSEN): S.FIRING,
    },
)
del S, E

# Open: at most one per (service, rule) (a partial unique index); live: shown as needing people.
OPEN = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)
LIVE = (AlertState.FIRING, AlertState.ACKNOWLEDGED)

_EVENT_FOR = {
    AlertState.PENDING: AlertEvent.PEND,
    AlertState.FIRING: AlertEvent.FIRE,
    AlertState.INACTIVE: AlertEvent.CLEAR,
    AlertState.RESOLVED: AlertEvent.RESOLVE,
}


def event_for(rule_state: str) -> AlertEvent:
    """The event behind a state the rule evaluation (`next_alert_state`) moved an alert to."""
    return _EVENT_FOR[AlertState(rule_state)]


def guard(event: AlertEvent) -> tuple[AlertState, ...]:
    """The stored states `event` may start from: the `WHERE state IN (…)` of its UPDATE."""
    return tuple(s for s in ALERT_MACHINE.sources(event) if s != AlertState.INACTIVE)
