"""The page's transition table: every allowed move, every refused one, and the guards."""

from __future__ import annotations

import pytest

from bot.db.models import PAGE_STATES
from bot.oncall.states import (
    OPEN,
    PAGE_MACHINE,
    UNSENT,
    IllegalTransition,
    PageEvent,
    PageState,
)

S, E = PageState, PageEvent

ALLOWED = [
    (S.SCHEDULED, E.SEND_FAILED, S.FAILED),
    (S.FAILED, E.SEND_FAILED, S.FAILED),
    (S.SCHEDULED, E.TRIGGER, S.TRIGGERED),
    (S.FAILED, E.TRIGGER, S.TRIGGERED),
    (S.TRIGGERED, E.ACKNOWLEDGE, S.ACKNOWLEDGED),
    (S.SCHEDULED, E.WITHDRAW, S.CANCELLED),
    (S.FAILED, E.WITHDRAW, S.CANCELLED),
    (S.TRIGGERED, E.RESOLVE, S.RESOLVED),
    (S.ACKNOWLEDGED, E.RESOLVE, S.RESOLVED),
    (S.TRIGGERED, E.CANCEL, S.CANCELLED),
    (S.ACKNOWLEDGED, E.CANCEL, S.CANCELLED),
    (S.SCHEDULED, E.SEND_NOW, S.SCHEDULED),
    (S.CANCELLED, E.SEND_NOW, S.SCHEDULED),
    (S.TRIGGERED, E.ENGAGE, S.TRIGGERED),
    (S.ACKNOWLEDGED, E.ENGAGE, S.ACKNOWLEDGED),
    (S.TRIGGERED, E.ESCALATE_ACK, S.TRIGGERED),
    (S.TRIGGERED, E.ESCALATE_ENGAGE, S.TRIGGERED),
    (S.ACKNOWLEDGED, E.ESCALATE_ENGAGE, S.ACKNOWLEDGED),
]


@pytest.mark.parametrize(("state", "event", "after"), ALLOWED)
def test_allowed_moves(state: PageState, event: PageEvent, after: PageState) -> None:
    assert PAGE_MACHINE.next(state, event) == after


REFUSED = [
    (state, event)
    for state in PageState
    for event in PageEvent
    if (state, event) not in {(s, e) for s, e, _ in ALLOWED}
]


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_every_other_move_raises(state: PageState, event: PageEvent) -> None:
    with pytest.raises(IllegalTransition):
        PAGE_MACHINE.next(state, event)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.ACKNOWLEDGED, E.ACKNOWLEDGE),  # a double click acknowledges once
        (S.RESOLVED, E.TRIGGER),  # a closed page is never sent again
        (S.SCHEDULED, E.ACKNOWLEDGE),  # not sent yet: acknowledging withdraws it instead
        (S.ACKNOWLEDGED, E.ESCALATE_ACK),  # an acknowledged page does not escalate for ack
        (S.RESOLVED, E.SEND_NOW),
    ],
)
def test_notable_refusals(state: PageState, event: PageEvent) -> None:
    with pytest.raises(IllegalTransition, match=f"{event.value} is not allowed from {state}"):
        PAGE_MACHINE.next(state, event)


@pytest.mark.parametrize(
    ("event", "target"),
    [
        (E.SEND_FAILED, S.FAILED),
        (E.TRIGGER, S.TRIGGERED),
        (E.ACKNOWLEDGE, S.ACKNOWLEDGED),
        (E.WITHDRAW, S.CANCELLED),
        (E.RESOLVE, S.RESOLVED),
        (E.CANCEL, S.CANCELLED),
        (E.SEND_NOW, S.SCHEDULED),
        (E.ENGAGE, None),  # engaging and escalating keep the state
        (E.ESCALATE_ACK, None),
        (E.ESCALATE_ENGAGE, None),
    ],
)
def test_each_event_leads_to_one_state(event: PageEvent, target: PageState | None) -> None:
    assert PAGE_MACHINE.target(event) == target


def test_unsent_and_open_derive_from_the_table() -> None:
    assert UNSENT == (S.SCHEDULED, S.FAILED)
    assert OPEN == (S.TRIGGERED, S.ACKNOWLEDGED)


def test_states_are_what_the_schema_stores() -> None:
    assert {state.value for state in PageState} == set(PAGE_STATES)
