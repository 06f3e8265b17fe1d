"""What an incident says to people: its announcement, its channel's first message, its topic."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from bot.db.models import Incident
from bot.messages import Button, Message

# Button action ids (a contract with the handlers).
ACKNOWLEDGE = "incident_acknowledge"  # on the incident channel's first message; value: incident id
DECLARE = "incident_declare"  # on alerts and rollbacks: value JSON {"service", "title", ...}

CHANNEL_NAME_LIMIT = 80  # Slack's limit on channel names

STATUS = {"active": "investigating", "mitigated": "mitigated", "resolved": "resolved"}
MARK = {"P0": ":red_circle:", "P1": ":large_orange_circle:", "P2": ":large_yellow_circle:"}


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


def mention(user: str | None) -> str:
    return f"<@{user}>" if user else "nobody"


def status_of(incident: Incident) -> str:
    status = STATUS.get(incident.state, incident.state)
    if incident.state == "active" and incident.acknowledged_at is not None:
        status = "acknowledged"
    return status


def topic(incident: Incident) -> str:
    """The channel topic: severity | status | commander."""
    return f"{incident.severity} | {status_of(incident)} | commander {mention(incident.commander)}"


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


def roles_text(incident: Incident) -> str:
    roles = dict(incident.roles or {})
    return ", ".join(f"{role} {mention(user)}" for role, user in sorted(roles.items())) or "—"


def announcement(incident: Incident) -> Message:
    """The message in slack.channels.incidents, updated in place as the incident changes."""
    headline = f"{MARK.get(incident.severity, ':white_circle:')} *{incident.key}*"
    if incident.state == "resolved":
        headline = f":white_check_mark: *{incident.key}* resolved"
    channel = f"<#{incident.channel_id}>" if incident.channel_id else "(no channel)"
    fields: list[tuple[str, str]] = [
        ("Severity", incident.severity),
        ("Status", status_of(incident)),
        ("Commander", mention(incident.commander)),
        ("Channel", channel),
        ("Services", services_text(incident)),
        ("Declared", f"{clock(incident.declared_at)} by {mention(incident.declared_by)}"),
    ]
    if incident.roles:
        fields.append(("Roles", roles_text(incident)))
    if incident.resolved_at is not None:
        took = incident.resolved_at - (incident.detected_at or incident.declared_at)
        fields.append(("Resolved", f"{clock(incident.resolved_at)} (after {span(took)})"))
    elif incident.last_update_at is not None:
        fields.append(("Last update", clock(incident.last_update_at)))
    text = f"{headline}: {incident.title}"
    if incident.state == "resolved" and incident.summary:
        text += f"\n{incident.summary}"
    return Message(
        text=text,
        fields=tuple(fields),
        context=f"{incident.key} · join {channel} to help · updated as the incident changes",
    )


def channel_intro(
    incident: Incident, *, suggestion: str, paging: list[str], invite_problems: list[str]
) -> Message:
    """The incident channel's first message, with Acknowledge until someone presses it."""
    lines = [
        f"*{incident.key}: {incident.title}*",
        f"Severity *{incident.severity}*, declared by {mention(incident.declared_by)}; "
        f"commander {mention(incident.commander)}. Services: {services_text(incident)}.",
    ]
    if incident.description:
        lines.append(f">{incident.description[:1500]}")
    lines.append(suggestion)
    lines.extend(f"Paging: {line}" for line in paging)
    lines.extend(f":warning: {line}" for line in invite_problems)
    lines.append(
        "Post updates with `/incident update <text>`; pin messages or add :pushpin: to put them "
        "in the timeline; `/incident resolve [summary]` when it is over."
    )
    buttons: tuple[Button, ...] = ()
    context = f"{incident.key} · detected {clock(incident.detected_at)}"
    if incident.acknowledged_at is None and incident.state != "resolved":
        buttons = (Button(ACKNOWLEDGE, "Acknowledge", str(incident.id), "primary"),)
    elif incident.acknowledged_at is not None:
        context += f" · acknowledged {clock(incident.acknowledged_at)}"
        if incident.acknowledged_by:
            context += f" by {mention(incident.acknowledged_by)}"
    return Message(text="\n".join(lines), buttons=buttons, context=context)


def list_message(incidents: list[Incident], now: datetime) -> Message:
    if not incidents:
        return Message("No active incidents.")
    lines = []
    for incident in incidents:
        channel = f"<#{incident.channel_id}>" if incident.channel_id else "no channel"
        age = span(now - incident.declared_at)
        last = span(now - incident.last_update_at) if incident.last_update_at else "—"
        lines.append(
            f"• *{incident.key}* {incident.severity} {status_of(incident)} — {incident.title} "
            f"({channel}, commander {mention(incident.commander)}, open {age}, "
            f"last update {last} ago)"
        )
    return Message(f"*Active incidents ({len(incidents)})*\n" + "\n".join(lines))
