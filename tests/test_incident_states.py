"""The incident state table: every allowed move, every refused one, and what derives from it."""

from __future__ import annotations

import pytest

from bot.db.models import INCIDENT_STATES
from bot.incidents.states import (
    ACTIVE_STATES,
    IllegalTransition,
    IncidentEvent,
    IncidentState,
    sources,
    target,
    transition,
)

ACTIVE, MITIGATED, RESOLVED = IncidentState.ACTIVE, IncidentState.MITIGATED, IncidentState.RESOLVED
MITIGATE, RESOLVE, UPDATE = IncidentEvent.MITIGATE, IncidentEvent.RESOLVE, IncidentEvent.UPDATE


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        ("active", MITIGATE, MITIGATED),
        ("active", RESOLVE, RESOLVED),
        ("mitigated", RESOLVE, RESOLVED),
        ("active", UPDATE, ACTIVE),
        ("mitigated", UPDATE, MITIGATED),
    ],
)
def test_allowed_moves(state: str, event: IncidentEvent, after: IncidentState) -> None:
    assert transition(state, event) is after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        ("mitigated", MITIGATE),
        ("resolved", MITIGATE),
        ("resolved", RESOLVE),
        ("resolved", UPDATE),
        ("closed", RESOLVE),  # not a state at all
    ],
)
def test_illegal_moves_raise(state: str, event: IncidentEvent) -> None:
    with pytest.raises(IllegalTransition, match=f"{state} cannot {event}"):
        transition(state, event)


def test_states_are_the_stored_strings() -> None:
    assert [state.value for state in IncidentState] == list(INCIDENT_STATES)
    assert IncidentState("mitigated") == "mitigated"


def test_guards_and_active_states_derive_from_the_table() -> None:
    assert sources(MITIGATE) == (ACTIVE,)
    assert set(sources(RESOLVE)) == {ACTIVE, MITIGATED}
    assert set(ACTIVE_STATES) == {ACTIVE, MITIGATED}
    assert target(RESOLVE) is RESOLVED
    assert target(MITIGATE) is MITIGATED


def test_an_event_with_several_targets_has_no_single_guard_target() -> None:
    with pytest.raises(IllegalTransition):
        target(UPDATE)
