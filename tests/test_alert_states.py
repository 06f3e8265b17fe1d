"""The alert's transition table: every allowed move, every refused one, and the guards."""

from __future__ import annotations

import pytest

from bot.alerts.states import (
    ALERT_MACHINE,
    LIVE,
    OPEN,
    AlertEvent,
    AlertState,
    IllegalTransition,
    event_for,
    guard,
)
from bot.db.models import ALERT_OPEN_STATES, ALERT_STATES

S, E = AlertState, AlertEvent

ALLOWED = [
    (S.INACTIVE, E.PEND, S.PENDING),
    (S.INACTIVE, E.FIRE, S.FIRING),
    (S.PENDING, E.FIRE, S.FIRING),
    (S.PENDING, E.CLEAR, S.INACTIVE),
    (S.FIRING, E.RESOLVE, S.RESOLVED),
    (S.ACKNOWLEDGED, E.RESOLVE, S.RESOLVED),
    (S.FIRING, E.ACKNOWLEDGE, S.ACKNOWLEDGED),
    (S.PENDING, E.SILENCE, S.PENDING),
    (S.FIRING, E.SILENCE, S.FIRING),
    (S.ACKNOWLEDGED, E.SILENCE, S.ACKNOWLEDGED),
    (S.FIRING, E.WORSEN, S.FIRING),
    (S.ACKNOWLEDGED, E.WORSEN, S.FIRING),
]


@pytest.mark.parametrize(("state", "event", "after"), ALLOWED)
def test_allowed_moves(state: AlertState, event: AlertEvent, after: AlertState) -> None:
    assert ALERT_MACHINE.next(state, event) == after


REFUSED = [
    (state, event)
    for state in AlertState
    for event in AlertEvent
    if (state, event) not in {(s, e) for s, e, _ in ALLOWED}
]


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_every_other_move_raises(state: AlertState, event: AlertEvent) -> None:
    with pytest.raises(IllegalTransition):
        ALERT_MACHINE.next(state, event)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.RESOLVED, E.FIRE),  # a resolved alert stays resolved: a new breach is a new alert
        (S.ACKNOWLEDGED, E.ACKNOWLEDGE),  # a double click acknowledges once
        (S.PENDING, E.ACKNOWLEDGE),  # nothing was shown yet
        (S.RESOLVED, E.SILENCE),
        (S.FIRING, E.CLEAR),  # a fired alert resolves, it is never deleted
    ],
)
def test_notable_refusals(state: AlertState, event: AlertEvent) -> None:
    with pytest.raises(IllegalTransition, match=f"{event.value} is not allowed from {state}"):
        ALERT_MACHINE.next(state, event)


@pytest.mark.parametrize(
    ("event", "states"),
    [
        (E.FIRE, (S.PENDING,)),
        (E.CLEAR, (S.PENDING,)),
        (E.RESOLVE, (S.FIRING, S.ACKNOWLEDGED)),
        (E.ACKNOWLEDGE, (S.FIRING,)),
        (E.SILENCE, (S.PENDING, S.FIRING, S.ACKNOWLEDGED)),
        (E.WORSEN, (S.FIRING, S.ACKNOWLEDGED)),
    ],
)
def test_guards_are_the_stored_states_an_event_starts_from(
    event: AlertEvent, states: tuple[AlertState, ...]
) -> None:
    assert guard(event) == states


def test_the_rule_evaluations_states_map_to_events() -> None:
    assert [event_for(s) for s in ("pending", "firing", "inactive", "resolved")] == [
        E.PEND,
        E.FIRE,
        E.CLEAR,
        E.RESOLVE,
    ]


def test_states_are_what_the_schema_stores() -> None:
    stored = {state.value for state in AlertState} - {"inactive"}
    assert stored == set(ALERT_STATES)
    assert set(OPEN) == set(ALERT_OPEN_STATES)
    assert set(LIVE) < set(OPEN)
