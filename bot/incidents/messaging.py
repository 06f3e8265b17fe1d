"""What an incident says to people: its announcement, its channel's first message, its topic."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from bot.db.models import Incident
from bot.incidents.states import IncidentState
from bot.messages import (
    Button,
    ChannelRef,
    Emoji,
    Mention,
    Message,
    RichText,
    Text,
    from_stored,
    join,
    text,
    verbatim,
)

# Button action ids (a contract with the handlers).
ACKNOWLEDGE = "incident_acknowledge"  # on the incident channel's first message; value: incident id
DECLARE = "incident_declare"  # on alerts and rollbacks: value JSON {"service", "title", ...}

CHANNEL_NAME_LIMIT = 80  # Slack's limit on channel names

STATUS = {
    IncidentState.ACTIVE: "investigating",
    IncidentState.MITIGATED: "mitigated",
    IncidentState.RESOLVED: "resolved",
}
MARK = {
    "P0": Emoji("red_circle"),
    "P1": Emoji("large_orange_circle"),
    "P2": Emoji("large_yellow_circle"),
}


def slugify(title: str) -> str:
    """Lowercase ASCII letters, digits and single dashes, as Slack channel names allow."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-") or "incident"


def channel_name(prefix: str, number: int, title: str, attempt: int = 1) -> str:
    """`<prefix>-<n>-<slug>` within 80 characters; attempt 2, 3, … add `-2`, `-3`, …"""
    head = f"{prefix}-{number}-"
    suffix = f"-{attempt}" if attempt > 1 else ""
    room = CHANNEL_NAME_LIMIT - len(head) - len(suffix)
    slug = slugify(title)[:room].rstrip("-") or "incident"
    return f"{head}{slug}{suffix}"


def who(user: str | None) -> Mention | str:
    """A person as a mention, or "nobody"."""
    return Mention(user) if user else "nobody"


def channel(channel_id: str | None, missing: str) -> ChannelRef | str:
    return ChannelRef(channel_id) if channel_id else missing


def status_of(incident: Incident) -> str:
    status = STATUS.get(IncidentState(incident.state), incident.state)
    if incident.state == IncidentState.ACTIVE and incident.acknowledged_at is not None:
        status = "acknowledged"
    return status


def topic(incident: Incident) -> Text:
    """The channel topic: severity | status | commander."""
    return text(
        f"{incident.severity} | {status_of(incident)} | commander ", who(incident.commander)
    )


def clock(when: datetime | None) -> str:
    return "—" if when is None else f"{when:%Y-%m-%d %H:%M} UTC"


def span(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def services_text(incident: Incident) -> str:
    return ", ".join(incident.services or []) or "none named"


def roles_text(incident: Incident) -> Text | str:
    roles = dict(incident.roles or {})
    return join(", ", (text(f"{role} ", who(user)) for role, user in sorted(roles.items()))) or "—"


def announcement(incident: Incident) -> Message:
    """The message in slack.channels.incidents, updated in place as the incident changes."""
    headline = text(MARK.get(incident.severity, Emoji("white_circle")), f" *{incident.key}*")
    if incident.state == IncidentState.RESOLVED:
        headline = text(Emoji("white_check_mark"), f" *{incident.key}* resolved")
    where = channel(incident.channel_id, "(no channel)")
    fields: list[tuple[str, RichText]] = [
        ("Severity", incident.severity),
        ("Status", status_of(incident)),
        ("Commander", text(who(incident.commander))),
        ("Channel", text(where)),
        ("Services", services_text(incident)),
        ("Declared", text(f"{clock(incident.declared_at)} by ", who(incident.declared_by))),
    ]
    if incident.roles:
        fields.append(("Roles", roles_text(incident)))
    if incident.resolved_at is not None:
        took = incident.resolved_at - (incident.detected_at or incident.declared_at)
        fields.append(("Resolved", f"{clock(incident.resolved_at)} (after {span(took)})"))
    elif incident.last_update_at is not None:
        fields.append(("Last update", clock(incident.last_update_at)))
    words = text(headline, ": ", verbatim(incident.title))
    if incident.state == IncidentState.RESOLVED and incident.summary:
        words += text("\n", verbatim(incident.summary))
    return Message(
        text=words,
        fields=tuple(fields),
        context=text(
            f"{incident.key} · join ", where, " to help · updated as the incident changes"
        ),
    )


def channel_intro(
    incident: Incident, *, suggestion: str, paging: list[str], invite_problems: list[str]
) -> Message:
    """The incident channel's first message, with Acknowledge until someone presses it.

    `suggestion`, `paging` and `invite_problems` are lines as the database keeps them (`stored`).
    """
    lines: list[Text] = [
        text(f"*{incident.key}: ", verbatim(incident.title), "*"),
        text(
            f"Severity *{incident.severity}*, declared by ",
            who(incident.declared_by),
            "; commander ",
            who(incident.commander),
            f". Services: {services_text(incident)}.",
        ),
    ]
    if incident.description:
        lines.append(text(">", verbatim(incident.description[:1500])))
    lines.append(from_stored(suggestion))
    lines.extend(text("Paging: ", from_stored(line)) for line in paging)
    lines.extend(text(Emoji("warning"), " ", from_stored(line)) for line in invite_problems)
    lines.append(
        text(
            "Post updates with `/incident update <text>`; pin messages or add ",
            Emoji("pushpin"),
            " to put them in the timeline; `/incident resolve [summary]` when it is over.",
        )
    )
    buttons: tuple[Button, ...] = ()
    context = text(f"{incident.key} · detected {clock(incident.detected_at)}")
    if incident.acknowledged_at is None and incident.state != IncidentState.RESOLVED:
        buttons = (Button(ACKNOWLEDGE, "Acknowledge", str(incident.id), "primary"),)
    elif incident.acknowledged_at is not None:
        context += f" · acknowledged {clock(incident.acknowledged_at)}"
        if incident.acknowledged_by:
            context += text(" by ", who(incident.acknowledged_by))
    return Message(text=join("\n", lines), buttons=buttons, context=context)


def list_message(incidents: list[Incident], now: datetime) -> Message:
    if not incidents:
        return Message("No active incidents.")
    lines = []
    for incident in incidents:
        age = span(now - incident.declared_at)
        last = span(now - incident.last_update_at) if incident.last_update_at else "—"
        lines.append(
            text(
                f"• *{incident.key}* {incident.severity} {status_of(incident)} — ",
                verbatim(incident.title),
                " (",
                channel(incident.channel_id, "no channel"),
                ", commander ",
                who(incident.commander),
                f", open {age}, last update {last} ago)",
            )
        )
    return Message(text(f"*Active incidents ({len(incidents)})*\n", join("\n", lines)))
