"""What paging says in a page's thread, as text values (the Slack adapter renders them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.catalog import Catalog
from bot.db.models import Page
from bot.messages import Duration, Emoji, Mention, Moment, Text, join, text
from bot.oncall.schedule import OnCall

DONE = Emoji("white_check_mark")


def person(oncall: OnCall, level: int) -> Mention | str:
    """The on-call at `level` (1 primary, 2 secondary): a mention when Slack knows them."""
    who = oncall.primary if level == 1 else oncall.secondary
    if who is None:
        return f"nobody at level {level}"
    return who.shown


def business_hours(catalog: Catalog) -> str:
    hours = catalog.oncall.business_hours
    return f"{', '.join(hours.days)} {hours.start:%H:%M}–{hours.end:%H:%M} {hours.timezone}"


def scheduled(page: Page, oncall: OnCall | None, send_at: datetime, catalog: Catalog) -> Text:
    who = person(oncall, 1) if oncall else "the on-call"
    return text(
        Emoji("alarm_clock"),
        " ",
        who,
        f" will be paged at {send_at:%Y-%m-%d %H:%M} UTC for *{page.summary}* ({page.severity}),"
        " not now: the page waits for business hours "
        f"({business_hours(catalog)}). Acknowledging it cancels the page.",
    )


def withdrawn_by_ack(by: str) -> Text:
    return text(
        DONE,
        " Acknowledged by ",
        Mention(by),
        " before the page went out: the page is cancelled, nobody was paged.",
    )


def acknowledged(
    page: Page, by: str, now: datetime, engage_within: timedelta, failures: Text
) -> Text:
    took = Duration(now - page.sent_at) if page.sent_at else "?"
    engage = (
        text(
            " Engage by ",
            Moment(page.engage_deadline),
            " (within ",
            Duration(engage_within),
            " of the page).",
        )
        if page.engage_deadline and page.engaged_at is None
        else text()
    )
    return text(
        DONE,
        " Acknowledged by ",
        Mention(by),
        " ",
        took,
        " after the page; escalation stopped.",
        engage,
        failures,
    )


def engaged(by: str) -> Text:
    return text(Emoji("technologist"), " ", Mention(by), " is engaged; the engage deadline is met.")


def send_failed(reason: str, retry_at: datetime, oncall: OnCall | None) -> Text:
    who = person(oncall, 1) if oncall else "the on-call"
    return text(
        Emoji("x"),
        f" paging failed: {reason}. opsbot keeps retrying (next attempt at ",
        Moment(retry_at),
        "); if this cannot wait, reach ",
        who,
        " another way.",
    )


def closed_before_sent(final: str) -> Text:
    return text(DONE, f" {final.capitalize()} before the page went out: nobody was paged.")


def closed(final: str, failures: Text) -> Text:
    return text(DONE, f" Page {final}; PagerDuty resolved.", failures)


def not_taken(action: str, problems: list[str]) -> Text:
    """What PagerDuty refused, appended to a thread note (empty when nothing was refused)."""
    if not problems:
        return text()
    return text(
        " ", Emoji("warning"), f" PagerDuty did not take the {action}: {'; '.join(problems)}."
    )


def _source(oncall: OnCall) -> str:
    if oncall.source == "static":
        return "static rotation"
    return f"PagerDuty escalation policy {oncall.escalation_policy}"


def paged(page: Page, oncall: OnCall | None, problem: str | None, catalog: Catalog) -> Text:
    policy = catalog.oncall
    if oncall is None:
        who = text(f"the on-call of {page.service or 'opsbot'} (could not tell who: {problem})")
        secondary: Mention | str = "the secondary"
    else:
        who = text(person(oncall, 1), f" (primary, {_source(oncall)})")
        secondary = person(oncall, 2) if oncall.secondary else "the next level"
    retries = f" after {page.attempts} attempts" if page.attempts > 1 else ""
    assert page.ack_deadline is not None and page.engage_deadline is not None
    return text(
        Emoji("rotating_light"),
        " Paged ",
        who,
        f"{retries} for *{page.summary}* ({page.severity}). Acknowledge within ",
        Duration(policy.ack_within),
        " (by ",
        Moment(page.ack_deadline),
        ") or ",
        secondary,
        " is paged; engage within ",
        Duration(policy.engage_within),
        " (by ",
        Moment(page.engage_deadline),
        f"). Dedup key `{page.dedup_key}`.",
    )


def missed_ack(page: Page, oncall: OnCall | None, done: str, catalog: Catalog) -> Text:
    primary = person(oncall, 1) if oncall else "The primary"
    secondary = person(oncall, 2) if oncall else "the secondary"
    sent = Moment(page.sent_at) if page.sent_at else "?"
    assert page.ack_deadline is not None
    return text(
        Emoji("warning"),
        " ",
        primary,
        " did not acknowledge within ",
        Duration(catalog.oncall.ack_within),
        " (paged at ",
        sent,
        "). Paging the secondary ",
        secondary,
        f": {done}. Escalation level 2; acknowledge by ",
        Moment(page.ack_deadline),
        " or it escalates further.",
    )


def missed_engage(
    page: Page, oncall: OnCall | None, done: str, *, engage: bool, catalog: Catalog
) -> Text:
    policy = catalog.oncall
    if engage:
        acked = (
            text("acknowledged by ", Mention(page.acknowledged_by))
            if page.acknowledged_by
            else text("not acknowledged")
        )
        why = text(
            "Nobody is engaged ", Duration(policy.engage_within), " after the page (", acked, ")"
        )
    else:
        secondary = person(oncall, 2) if oncall else "the secondary"
        why = text(
            secondary, " did not acknowledge within ", Duration(policy.ack_within), " either"
        )
    entry = catalog.service(page.service) if page.service else None
    owners = mentions(entry.owners) if entry else text()
    call = text(" ", owners, ": please engage.") if owners else text()
    return text(Emoji("rotating_light"), " ", why, f". Escalating further (level 3): {done}.", call)


def mentions(principals: Iterable[str]) -> Text:
    """People and user groups, each a mention, separated by spaces."""
    return join(" ", map(Mention, principals))
