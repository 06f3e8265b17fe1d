"""The life of a deploy as data: its states, the events that move it, and one table of moves.

    requested -> awaiting_approval -> running -> monitoring -> succeeded
                      |                  |            |     -> failed | rolled_back | aborted
                      +-> rejected | expired          +-> interrupted (the bot stopped mid-run)

The engine, recovery and the database guard (`bot.deploys.store.move`) all read `TRANSITIONS`;
a move it does not list raises `IllegalTransition`. The values are the strings stored in
`deploys.state` (and checked by the table's constraint, bot/db/models.py).
"""

from __future__ import annotations

from enum import StrEnum

from bot.state_machine import IllegalTransition, StateMachine


class DeployState(StrEnum):
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    MONITORING = "monitoring"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def words(self) -> str:
        """As people read it: "rolled back", "awaiting approval"."""
        return self.value.replace("_", " ")


class DeployEvent(StrEnum):
    APPROVE = "approve"  # the last approval needed came in
    REJECT = "reject"  # an approver rejected it, or the requester withdrew it
    EXPIRE = "expire"  # no approval in time
    MONITOR = "monitor"  # the monitoring window opens
    SUCCEED = "succeed"
    FAIL = "fail"  # a step failed and nothing (more) could be put back
    ROLL_BACK = "roll_back"  # a step failed or a person asked, and the previous version is back
    ABORT = "abort"  # a person stopped it
    INTERRUPT = "interrupt"  # the process running it is gone, or the bot hit an internal error
    RESUME = "resume"  # a person resumes an interrupted deploy, or rolls it back from there
    RELEASE = "release"  # a person releases the lock of an interrupted or failed deploy
    UNDO = "undo"  # a later rollback put back what ran before this succeeded deploy


S, E = DeployState, DeployEvent
_RUN = (S.RUNNING, S.MONITORING, S.INTERRUPTED)  # a run ends from these (a peer may interrupt it)

# (state, event) -> the state it moves to. Every move a deploy can make is on this list.
TRANSITIONS: dict[tuple[DeployState, DeployEvent], DeployState] = {
    (S.AWAITING_APPROVAL, E.APPROVE): S.RUNNING,
    (S.AWAITING_APPROVAL, E.REJECT): S.REJECTED,
    (S.AWAITING_APPROVAL, E.EXPIRE): S.EXPIRED,
    (S.RUNNING, E.MONITOR): S.MONITORING,
    **{(state, E.SUCCEED): S.SUCCEEDED for state in _RUN},
    **{(state, E.FAIL): S.FAILED for state in _RUN},
    **{(state, E.ROLL_BACK): S.ROLLED_BACK for state in _RUN},
    **{(state, E.ABORT): S.ABORTED for state in _RUN},
    (S.REQUESTED, E.INTERRUPT): S.INTERRUPTED,
    (S.RUNNING, E.INTERRUPT): S.INTERRUPTED,
    (S.MONITORING, E.INTERRUPT): S.INTERRUPTED,
    (S.INTERRUPTED, E.RESUME): S.RUNNING,
    (S.INTERRUPTED, E.RELEASE): S.ABORTED,
    (S.FAILED, E.RELEASE): S.ABORTED,
    (S.SUCCEEDED, E.UNDO): S.ROLLED_BACK,
}
del S, E

# The states a deploy ends in (it has its `finished_at`); every other state holds its lock.
FINAL_STATES: frozenset[DeployState] = frozenset(
    {
        DeployState.SUCCEEDED,
        DeployState.FAILED,
        DeployState.ABORTED,
        DeployState.ROLLED_BACK,
        DeployState.REJECTED,
        DeployState.EXPIRED,
    }
)
ACTIVE_STATES: tuple[DeployState, ...] = tuple(s for s in DeployState if s not in FINAL_STATES)
# The states in which this process may be running the deploy's steps.
RUNNING_STATES: tuple[DeployState, ...] = (DeployState.RUNNING, DeployState.MONITORING)


DEPLOY_MACHINE = StateMachine[DeployState, DeployEvent]("deploy", TRANSITIONS)


def next_state(state: str, event: DeployEvent) -> DeployState:
    """Where `event` takes a deploy that is in `state`; IllegalTransition when nowhere."""
    return DEPLOY_MACHINE.next(state, event)


def sources(event: DeployEvent) -> tuple[DeployState, ...]:
    """Every state `event` moves a deploy from."""
    return DEPLOY_MACHINE.sources(event)


def destination(event: DeployEvent) -> DeployState:
    """The one state `event` moves a deploy to (each event has exactly one)."""
    target = DEPLOY_MACHINE.target(event)
    assert target is not None, f"{event} keeps a deploy's state"
    return target


__all__ = [
    "ACTIVE_STATES",
    "DEPLOY_MACHINE",
    "FINAL_STATES",
    "RUNNING_STATES",
    "TRANSITIONS",
    "DeployEvent",
    "DeployState",
    "IllegalTransition",
    "destination",
    "next_state",
    "sources",
]
