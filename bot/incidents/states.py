"""The life of an incident as data: its states, the events that move it, and one table of moves.

    active ──mitigate──> mitigated ──resolve──> resolved
      └──────────────────resolve───────────────────┘
    update (status updates, severity, roles) keeps an active or mitigated incident where it is.

The service and its database guards both read this table: a guarded UPDATE changes only rows in
a state the event may leave (`WHERE state IN sources(event)`), and an illegal move raises.
"""

from __future__ import annotations

from enum import StrEnum

from bot.state_machine import IllegalTransition, StateMachine


class IncidentState(StrEnum):
    """The stored values of `incidents.state`."""

    ACTIVE = "active"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class IncidentEvent(StrEnum):
    MITIGATE = "mitigate"  # user impact stopped (an update saying so, or a rollback)
    RESOLVE = "resolve"  # over: `/incident resolve`
    UPDATE = "update"  # anything said or changed while it runs (update, severity, roles)


TRANSITIONS: dict[tuple[IncidentState, IncidentEvent], IncidentState] = {
    (IncidentState.ACTIVE, IncidentEvent.MITIGATE): IncidentState.MITIGATED,
    (IncidentState.ACTIVE, IncidentEvent.RESOLVE): IncidentState.RESOLVED,
    (IncidentState.MITIGATED, IncidentEvent.RESOLVE): IncidentState.RESOLVED,
    (IncidentState.ACTIVE, IncidentEvent.UPDATE): IncidentState.ACTIVE,
    (IncidentState.MITIGATED, IncidentEvent.UPDATE): IncidentState.MITIGATED,
}


INCIDENT_MACHINE = StateMachine[IncidentState, IncidentEvent]("incident", TRANSITIONS)


def transition(state: str, event: IncidentEvent) -> IncidentState:
    """The state after `event` in `state`; IllegalTransition when the table has no such move."""
    return INCIDENT_MACHINE.next(state, event)


def sources(event: IncidentEvent) -> tuple[IncidentState, ...]:
    """The states `event` may leave: what a guarded UPDATE puts in its `WHERE state IN (…)`."""
    return INCIDENT_MACHINE.sources(event)


def target(event: IncidentEvent) -> IncidentState:
    """The one state `event` leads to from every state it may leave (for a guarded UPDATE)."""
    moved = INCIDENT_MACHINE.target(event)
    if moved is None:
        raise IllegalTransition(f"{event} keeps an incident's state; it has no target")
    return moved


# Where an incident still runs (listed, reminded, timeline fed): the states it can be resolved from.
ACTIVE_STATES: tuple[IncidentState, ...] = sources(IncidentEvent.RESOLVE)

__all__ = [
    "ACTIVE_STATES",
    "INCIDENT_MACHINE",
    "TRANSITIONS",
    "IllegalTransition",
    "IncidentEvent",
    "IncidentState",
    "sources",
    "target",
    "transition",
]
