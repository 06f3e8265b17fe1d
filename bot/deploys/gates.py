"""Deploy gates as pure decisions: who may deploy or approve, freezes, promotion order.

Every gate returns a `GateResult` whose `reason` is the sentence a user sees, starting with the
gate's name ("freeze: prod is frozen for weekend until Mon 2026-11-30 08:00 Europe/Berlin").
Nothing here does I/O: callers resolve Slack user groups, read the lock, query which versions
succeeded where and probe certificates, then hand the facts in.

Precedence (`evaluate`): when several gates refuse, the user is told about the first refusal in
this fixed order, so the answer is stable and names the most fundamental obstacle first:

    deployer -> lock -> freeze -> promotion -> certificates -> custom checks (check:<name>)

"You may not deploy here" beats "someone holds the lock", which beats "it is frozen" (a lock
holder cannot lift a freeze, and nobody else needs to know about a lock they may not use), which
beats "promote through staging first", which beats the slower technical checks. Gates with other
names sort after the custom checks; within one gate the caller's order is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.catalog import Environment, FreezeWindow
from bot.messages import Mention, Text, join, text

__all__ = [
    "GATE_ORDER",
    "Freeze",
    "GateResult",
    "active_freeze",
    "check_approval_rules",
    "check_deployer",
    "check_freeze",
    "check_promotion",
    "evaluate",
]

# The order in which refusals are reported; "check:" stands for every custom check.
GATE_ORDER: tuple[str, ...] = ("deployer", "lock", "freeze", "promotion", "certificates", "check:")

# Cron expressions with long windows could repeat many times inside one window; this bounds the
# work per decision (a window per minute lasting two days is 2,880 starts).
_MAX_STARTS_PER_WINDOW = 10_000
# A freeze that ends exactly when the next one begins continues; follow at most this many links.
_MAX_CHAINED_WINDOWS = 100
# Wall-clock durations can be longer than the same timedelta in absolute time across a DST
# change (a 48h window over the autumn change lasts 49 real hours): look back this much further.
_DST_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class GateResult:
    gate: str  # "deployer", "lock", "freeze", "promotion", "certificates", "approval", "check:x"
    passed: bool
    reason: Text  # a full sentence for the user, starting with "<gate>: "


class _PromotionCatalog(Protocol):
    def previous_environment(self, name: str) -> Environment | None: ...


def _mentions(principals: Iterable[str]) -> Text:
    """People (U…/W…) and user groups (S…), as a list of mentions."""
    return join(", ", map(Mention, principals))


def _via(matched: str, user_id: str) -> Text:
    """ " as a member of @group" when a group of the user's, not the user, was allowed."""
    return text() if matched == user_id else text(" as a member of ", Mention(matched))


def _matching_principal(
    allowed: Sequence[str], user_id: str, user_groups: Collection[str]
) -> str | None:
    """Which entry of `allowed` admits the user: their own id first, then a group of theirs."""
    if user_id in allowed:
        return user_id
    return next((p for p in allowed if p.startswith("S") and p in user_groups), None)


def check_deployer(env: Environment, user_id: str, user_groups: Collection[str]) -> GateResult:
    """May `user_id` (a member of the user groups `user_groups`) deploy to `env`?"""
    if not env.deployers:
        return GateResult("deployer", True, text(f"deployer: anyone may deploy to {env.name}"))
    matched = _matching_principal(env.deployers, user_id, user_groups)
    if matched is None:
        return GateResult(
            "deployer",
            False,
            text(
                "deployer: ",
                Mention(user_id),
                f" may not deploy to {env.name}; deployers are ",
                _mentions(env.deployers),
            ),
        )
    return GateResult(
        "deployer",
        True,
        text("deployer: ", Mention(user_id), f" may deploy to {env.name}", _via(matched, user_id)),
    )


def _active_ends(window: FreezeWindow, moment: datetime) -> list[datetime]:
    """The ends (UTC) of every occurrence of `window` that covers `moment` (start <= m < end).

    `duration` is added in the window's wall-clock time: "0 18 * * FRI" for 62h ends on Monday at
    08:00 local time on every weekend of the year, also across a DST change.
    """
    trigger = window.trigger()
    start = trigger.get_next_fire_time(None, moment - window.duration - _DST_MARGIN)
    ends: list[datetime] = []
    for _ in range(_MAX_STARTS_PER_WINDOW):
        if start is None or start.astimezone(UTC) > moment:
            break
        end = (start + window.duration).astimezone(UTC)
        if moment < end:
            ends.append(end)
        start = trigger.get_next_fire_time(start, start)
    return ends


@dataclass(frozen=True)
class Freeze:
    """A freeze in force: when it ends (UTC), the windows behind it, and the one ending last."""

    end: datetime
    windows: tuple[FreezeWindow, ...]
    last: FreezeWindow


def active_freeze(env: Environment, now: datetime) -> Freeze | None:
    """The freeze covering the aware datetime `now` in `env`, or None when deploys are open.

    Windows that overlap or follow each other without a gap count as one freeze.
    """
    moment = now.astimezone(UTC)
    end: datetime | None = None
    last: FreezeWindow | None = None
    windows: list[FreezeWindow] = []
    for _ in range(_MAX_CHAINED_WINDOWS):
        extended = False
        for window in env.freeze:
            ends = _active_ends(window, moment)
            if not ends:
                continue
            if window not in windows:
                windows.append(window)
            if end is None or max(ends) > end:
                end, last = max(ends), window
                extended = True
        if not extended:
            break
        moment = end  # is another window active the moment this one ends?
    if end is None or last is None:
        return None
    return Freeze(end=end, windows=tuple(windows), last=last)


def check_freeze(env: Environment, now: datetime) -> GateResult:
    """Is `env` inside a freeze window at the aware datetime `now`?"""
    freeze = active_freeze(env, now)
    if freeze is None:
        return GateResult("freeze", True, text(f"freeze: {env.name} is not frozen"))
    reasons = list(dict.fromkeys(window.reason for window in freeze.windows if window.reason))
    why = f" for {' and '.join(reasons)}" if reasons else ""
    # The end is shown in the zone of the window that ends last: the one people wrote it for.
    local = freeze.end.astimezone(freeze.last.tzinfo)
    until = f"{local:%a %Y-%m-%d %H:%M} {freeze.last.timezone}"
    return GateResult("freeze", False, text(f"freeze: {env.name} is frozen{why} until {until}"))


def check_promotion(
    catalog: _PromotionCatalog,
    env: Environment,
    version: str,
    succeeded_in_previous: Collection[str],
) -> GateResult:
    """With `require_previous`, `version` must have succeeded in the environment before `env`.

    `succeeded_in_previous` holds the versions that succeeded in that previous environment.
    """
    previous = catalog.previous_environment(env.name)
    if not env.require_previous or previous is None:
        return GateResult(
            "promotion", True, text(f"promotion: {env.name} does not require an earlier deploy")
        )
    if version in succeeded_in_previous:
        return GateResult(
            "promotion", True, text(f"promotion: {version} succeeded in {previous.name}")
        )
    return GateResult(
        "promotion",
        False,
        text(
            f"promotion: {version} has not succeeded in {previous.name};"
            f" {env.name} only takes versions that did, so deploy it to {previous.name} first"
        ),
    )


def check_approval_rules(
    env: Environment, requester: str, approver: str, approver_groups: Collection[str]
) -> GateResult:
    """May `approver` (member of `approver_groups`) approve `requester`'s deploy to `env`?

    Nobody approves their own deploy; with `approvers` set, only they (or their groups) may.
    Whether enough approvals have been given is counted elsewhere.
    """
    who = text("approval: ", Mention(approver))
    if approver == requester:
        return GateResult(
            "approval",
            False,
            text(who, " requested this deploy and cannot approve it; ask ", _approvers_text(env)),
        )
    if not env.approvers:
        return GateResult("approval", True, text(who, f" may approve deploys to {env.name}"))
    matched = _matching_principal(env.approvers, approver, approver_groups)
    if matched is None:
        return GateResult(
            "approval",
            False,
            text(
                who,
                f" may not approve deploys to {env.name}; approvers are ",
                _mentions(env.approvers),
            ),
        )
    return GateResult(
        "approval",
        True,
        text(who, f" may approve deploys to {env.name}", _via(matched, approver)),
    )


def _approvers_text(env: Environment) -> Text:
    if not env.approvers:
        return text("someone else")
    return text("one of ", _mentions(env.approvers))


def _rank(gate: str) -> int:
    if gate.startswith("check:"):
        return GATE_ORDER.index("check:")
    return GATE_ORDER.index(gate) if gate in GATE_ORDER else len(GATE_ORDER)


def evaluate(results: Sequence[GateResult]) -> GateResult | None:
    """The refusal to report (the first failure in `GATE_ORDER`), or None when all passed."""
    failures = [result for result in results if not result.passed]
    if not failures:
        return None
    return min(failures, key=lambda result: _rank(result.gate))  # min keeps the first of a tie
