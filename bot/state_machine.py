"""A state machine as data: one table of (state, event) → state, read by code and guards alike.

The services ask it for the next state (an illegal move raises) and for the states an event may
start from, which become the `WHERE state IN (…)` of the conditional UPDATE that makes the move.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


class IllegalTransition(ValueError):
    """An event that the table does not allow from the current state."""


class StateMachine(Generic[S, E]):
    """The life of one kind of row (an alert, a page), declared as a transition table."""

    def __init__(self, name: str, table: Mapping[tuple[S, E], S]) -> None:
        self.name = name
        self.table = dict(table)

    def next(self, state: S | str, event: E) -> S:
        """The state after `event` (from an enum member or the string stored in the database);
        raises IllegalTransition when `event` cannot happen now."""
        for (source, on), target in self.table.items():
            if source == state and on == event:
                return target
        raise IllegalTransition(
            f"{self.name}: {event.value} is not allowed from {state} "
            f"(a {self.name} that is {state} cannot {event.value})"
        )

    def sources(self, event: E) -> tuple[S, ...]:
        """The states `event` may start from (the guard of its conditional UPDATE)."""
        return tuple(source for (source, on) in self.table if on == event)

    def target(self, event: E) -> S | None:
        """The one state `event` leads to, or None when it keeps every state as it is."""
        moves = {(source, target) for (source, on), target in self.table.items() if on == event}
        if all(source == target for source, target in moves):
            return None
        targets = {target for _source, target in moves}
        if len(targets) != 1:
            raise IllegalTransition(f"{self.name}: {event.value} leads to {sorted(targets)}")
        return targets.pop()
