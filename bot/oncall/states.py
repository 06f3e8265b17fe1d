"""The life of a page as data: its states (what `pages.state` stores), the events that move it,
one transition table. Every move is a conditional UPDATE whose WHERE is the event's sources.

Engaging and escalating do not change the state (they set `engaged_at`, `escalation_level`); they
are here so their guards read from the same table.
"""

from __future__ import annotations

from enum import StrEnum

from bot.state_machine import IllegalTransition, StateMachine

__all__ = ["OPEN", "PAGE_MACHINE", "UNSENT", "IllegalTransition", "PageEvent", "PageState"]


class PageState(StrEnum):
    SCHEDULED = "scheduled"  # waits for send_at (a P1 outside business hours)
    FAILED = "failed"  # sending failed; retried at next_attempt_at
    TRIGGERED = "triggered"  # PagerDuty has it; the acknowledgment deadline runs
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class PageEvent(StrEnum):
    SEND_FAILED = "send_failed"
    TRIGGER = "trigger"  # PagerDuty took the event
    ACKNOWLEDGE = "acknowledge"
    WITHDRAW = "withdraw"  # acknowledged, resolved or cancelled before it went out
    RESOLVE = "resolve"
    CANCEL = "cancel"  # cancelled once sent: resolved at PagerDuty
    SEND_NOW = "send_now"  # a waiting (or withdrawn, never sent) page goes out now
    ENGAGE = "engage"
    ESCALATE_ACK = "escalate_ack"  # the acknowledgment deadline passed
    ESCALATE_ENGAGE = "escalate_engage"  # the engage deadline passed


S, E = PageState, PageEvent
PAGE_MACHINE = StateMachine[PageState, PageEvent](
    "page",
    {
        (S.SCHEDULED, E.SEND_FAILED): S.FAILED,
        (S.FAILED, E.SEND_FAILED): S.FAILED,
        (S.SCHEDULED, E.TRIGGER): S.TRIGGERED,
        (S.FAILED, E.TRIGGER): S.TRIGGERED,
        (S.TRIGGERED, E.ACKNOWLEDGE): S.ACKNOWLEDGED,
        (S.SCHEDULED, E.WITHDRAW): S.CANCELLED,
        (S.FAILED, E.WITHDRAW): S.CANCELLED,
        (S.TRIGGERED, E.RESOLVE): S.RESOLVED,
        (S.ACKNOWLEDGED, E.RESOLVE): S.RESOLVED,
        (S.TRIGGERED, E.CANCEL): S.CANCELLED,
        (S.ACKNOWLEDGED, E.CANCEL): S.CANCELLED,
        (S.SCHEDULED, E.SEND_NOW): S.SCHEDULED,
        (S.CANCELLED, E.SEND_NOW): S.SCHEDULED,  # only when it was never sent (its guard says)
        (S.TRIGGERED, E.ENGAGE): S.TRIGGERED,
        (S.ACKNOWLEDGED, E.ENGAGE): S.ACKNOWLEDGED,
        (S.TRIGGERED, E.ESCALATE_ACK): S.TRIGGERED,
        (S.TRIGGERED, E.ESCALATE_ENGAGE): S.TRIGGERED,
        (S.ACKNOWLEDGED, E.ESCALATE_ENGAGE): S.ACKNOWLEDGED,
    },
)
del S, E

# Not sent yet (the send job picks these up) and sent but not closed (deadlines apply).
UNSENT = PAGE_MACHINE.sources(PageEvent.TRIGGER)
OPEN = PAGE_MACHINE.sources(PageEvent.RESOLVE)
