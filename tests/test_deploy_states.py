"""The life of a deploy as one table: every legal move, and illegal ones raising."""

from __future__ import annotations

import pytest

from bot.db.models import DEPLOY_FINAL_STATES, DEPLOY_STATES
from bot.deploys.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    TRANSITIONS,
    DeployEvent,
    DeployState,
    IllegalTransition,
    destination,
    next_state,
    sources,
)

S, E = DeployState, DeployEvent
LEGAL = [
    (S.AWAITING_APPROVAL, E.APPROVE, S.RUNNING),
    (S.AWAITING_APPROVAL, E.REJECT, S.REJECTED),
    (S.AWAITING_APPROVAL, E.EXPIRE, S.EXPIRED),
    (S.RUNNING, E.MONITOR, S.MONITORING),
    (S.RUNNING, E.SUCCEED, S.SUCCEEDED),
    (S.MONITORING, E.SUCCEED, S.SUCCEEDED),
    (S.INTERRUPTED, E.SUCCEED, S.SUCCEEDED),
    (S.RUNNING, E.FAIL, S.FAILED),
    (S.MONITORING, E.FAIL, S.FAILED),
    (S.INTERRUPTED, E.FAIL, S.FAILED),
    (S.RUNNING, E.ROLL_BACK, S.ROLLED_BACK),
    (S.MONITORING, E.ROLL_BACK, S.ROLLED_BACK),
    (S.INTERRUPTED, E.ROLL_BACK, S.ROLLED_BACK),
    (S.RUNNING, E.ABORT, S.ABORTED),
    (S.MONITORING, E.ABORT, S.ABORTED),
    (S.INTERRUPTED, E.ABORT, S.ABORTED),
    (S.REQUESTED, E.INTERRUPT, S.INTERRUPTED),
    (S.RUNNING, E.INTERRUPT, S.INTERRUPTED),
    (S.MONITORING, E.INTERRUPT, S.INTERRUPTED),
    (S.INTERRUPTED, E.RESUME, S.RUNNING),
    (S.INTERRUPTED, E.RELEASE, S.ABORTED),
    (S.FAILED, E.RELEASE, S.ABORTED),
    (S.SUCCEEDED, E.UNDO, S.ROLLED_BACK),
]


@pytest.mark.parametrize(("state", "event", "moved"), LEGAL)
def test_every_legal_move(state: DeployState, event: DeployEvent, moved: DeployState) -> None:
    assert next_state(state, event) is moved
    assert next_state(state.value, event) is moved  # as stored in the database
    assert state in sources(event) and destination(event) is moved


def test_the_table_holds_exactly_the_legal_moves() -> None:
    assert {(state, event): moved for state, event, moved in LEGAL} == TRANSITIONS


ILLEGAL = [
    (state, event)
    for state in DeployState
    for event in DeployEvent
    if (state, event) not in TRANSITIONS
]


@pytest.mark.parametrize(("state", "event"), ILLEGAL)
def test_every_other_move_raises(state: DeployState, event: DeployEvent) -> None:
    with pytest.raises(IllegalTransition, match=f"is {state.value} cannot {event.value}"):
        next_state(state, event)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.SUCCEEDED, E.APPROVE),  # approved after it ran
        (S.REJECTED, E.RESUME),
        (S.EXPIRED, E.APPROVE),  # an approval arriving too late
        (S.ROLLED_BACK, E.UNDO),  # undone twice
        (S.AWAITING_APPROVAL, E.SUCCEED),  # ended without running
    ],
)
def test_moves_people_might_attempt_raise(state: DeployState, event: DeployEvent) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, event)


def test_an_unknown_stored_state_raises() -> None:
    with pytest.raises(IllegalTransition):
        next_state("paused", E.RESUME)


def test_the_states_are_the_ones_the_database_accepts() -> None:
    assert [state.value for state in DeployState] == list(DEPLOY_STATES)
    assert {state.value for state in FINAL_STATES} == set(DEPLOY_FINAL_STATES)
    assert set(ACTIVE_STATES) == set(DeployState) - FINAL_STATES


def test_final_states_are_left_only_by_undo_and_release() -> None:
    leaving = {(state, event) for state, event in TRANSITIONS if state in FINAL_STATES}
    assert leaving == {(S.SUCCEEDED, E.UNDO), (S.FAILED, E.RELEASE)}


def test_each_event_leads_to_one_state() -> None:
    for event in DeployEvent:
        assert {TRANSITIONS[(s, event)] for s in sources(event)} == {destination(event)}
