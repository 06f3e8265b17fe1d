"""Postmortems: render an incident's blameless review, keep it, share it, and chase it until done.

`Postmortems.draft` renders `postmortem.md.j2` (a team's copy in its playbooks folder wins over
the one shipped in playbooks/) from the incident, its timeline, the deploys and rollbacks of its
services from an hour before detection on, its alerts and its pages; stores the document; writes
it to `incidents.postmortem_dir` when set; and uploads it to the incident channel. `done` marks
the postmortem done. `remind`, a scheduler job, reminds the commander before the due time and
when overdue, each step once however many replicas run it (a conditional UPDATE claims it).

Everything printed by the template goes through `markdown_inline` unless it is `Markdown`
already, so text people typed (titles, updates, reasons) cannot add headings, tables, links or
Slack mentions to the document, and user mentions become the role the person held.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import jinja2
from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.catalog import Catalog, format_duration
from bot.db.models import (
    Alert,
    Deploy,
    Incident,
    Page,
    Postmortem,
    TimelineEvent,
    utc_now,
)
from bot.db.session import Database
from bot.messages import Message, Notifier

log = logging.getLogger(__name__)

TEMPLATE_NAME = "postmortem.md.j2"
SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "playbooks"
INCIDENT_KEY = re.compile(r"INC-(\d+)", re.IGNORECASE)

# Deploys this long before detection count as "involved": the usual suspect is the last change.
LOOKBACK = timedelta(hours=1)
# Reminders: one before the due time, at this fraction of the period from resolution to due...
BEFORE_DUE_FRACTION = 0.75
# ...then, once overdue, one every OVERDUE_EVERY, OVERDUE_REMINDERS at most.
OVERDUE_EVERY = timedelta(hours=24)
OVERDUE_REMINDERS = 3

# The runbook's "Incident Severity Levels".
SEVERITY_MEANING = {
    "P0": "Critical: complete outage, data loss or security breach",
    "P1": "High: major feature degradation, significant user impact",
    "P2": "Medium: minor feature issue, small user impact",
    "P3": "Low: cosmetic issue, no user impact",
}


# --- the seams to Slack (implemented in bot/slack/files.py) ------------------------------------


class UploadFailed(Exception):
    """The document could not be shared in the channel; the message says why."""


class FileUploader(Protocol):
    async def upload(
        self, channel: str, *, filename: str, title: str, content: str, comment: str
    ) -> str:
        """Share a text file in `channel` with a comment; returns the file's id."""
        ...


class ChannelMembers(Protocol):
    async def members(self, channel: str) -> frozenset[str]:
        """The user ids in `channel` (empty when unknown)."""
        ...


# --- Markdown that user text cannot break ------------------------------------------------------


class Markdown(str):
    """Text that is Markdown already: the template prints it as it is."""

    __slots__ = ()


RESPONDER = "a responder"
_SLACK_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_SLACK_MARKUP = re.compile(r"<([@#!])([^<>|\s]*)(?:\|([^<>]*))?>")
_BROADCAST = re.compile(r"(?<![\w`])@(here|channel|everyone)\b", re.IGNORECASE)
_PUNCTUATION = re.compile(r"([\\`*\[\]<>|~{}])")
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_BLOCK_MARK = re.compile(r"^([#>+=-])")
_LIST_NUMBER = re.compile(r"^(\d+)([.)])")


def _without_slack_markup(text: str, people: Mapping[str, str]) -> str:
    """Slack's `<@U…>`, `<!here>`, `<#C…|name>`: roles and plain words instead of mentions."""
    for entity, char in _SLACK_ENTITIES:
        text = text.replace(entity, char)

    def plain(match: re.Match[str]) -> str:
        sigil, target, label = match.group(1), match.group(2), match.group(3)
        if sigil == "@":
            return people.get(target, RESPONDER)
        if sigil == "#":
            return f"#{label or target}"
        if target in ("here", "channel", "everyone"):
            return f"@{target}"
        if target.startswith("subteam^"):
            return f"{(label or 'a user group').lstrip('@')} (user group)"
        return label or target

    return _SLACK_MARKUP.sub(plain, text)


def markdown_inline(value: object, people: Mapping[str, str] | None = None) -> Markdown:
    """One line of literal text: no Markdown syntax, no mentions, no line breaks survive."""
    text = _without_slack_markup(str(value), people or {})
    text = " ".join(text.split())
    text = _PUNCTUATION.sub(r"\\\1", text)
    text = _LONE_UNDERSCORE.sub(r"\\_", text)
    text = _ENTITY.sub(r"\\&", text)
    text = _BLOCK_MARK.sub(r"\\\1", text)
    text = _LIST_NUMBER.sub(r"\1\\\2", text)
    # A broadcast word stays readable but inert (code is never a mention).
    return Markdown(_BROADCAST.sub(lambda m: f"`@{m.group(1)}`", text))


def markdown_paragraphs(value: object, people: Mapping[str, str] | None = None) -> Markdown:
    """Several lines of literal text: each line escaped on its own, blank lines kept."""
    lines = [markdown_inline(line, people) for line in str(value).splitlines()]
    return Markdown("\n".join(lines).strip("\n"))


def format_time(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_span(value: timedelta | None) -> str:
    if value is None:
        return "—"
    return format_duration(timedelta(seconds=max(0, round(value.total_seconds()))))


def slack_text(value: str) -> str:
    """User text inside a Slack message: Slack's three escapes, so it cannot mention anyone."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slug(title: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return words[:48].rstrip("-") or "incident"


# --- what the template sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentView:
    key: str
    title: str
    severity: str
    severity_meaning: str
    state: str
    active: bool
    services: list[str]
    summary: str | None
    description: str | None
    channel_name: str | None


@dataclass(frozen=True)
class KeyTime:
    label: str
    at: datetime | None
    note: str = ""


@dataclass(frozen=True)
class Measure:
    label: str
    value: timedelta | None
    meaning: str


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    kind: str
    who: str
    text: str


@dataclass(frozen=True)
class DeployRow:
    id: int
    kind: str  # "deploy" | "rollback"
    service: str
    environment: str
    version: str
    previous_version: str | None
    state: str
    created_at: datetime
    finished_at: datetime | None
    reason: str | None
    before_detection: bool


@dataclass(frozen=True)
class AlertRow:
    rule: str
    service: str
    severity: str
    state: str
    value: float | None
    threshold: float | None
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class PageRow:
    subject: str
    service: str | None
    severity: str
    state: str
    sent_at: datetime | None
    acknowledged_at: datetime | None
    time_to_acknowledge: timedelta | None
    escalation_level: int


@dataclass(frozen=True)
class PostmortemResult:
    """What `/postmortem` answers the person who asked."""

    ok: bool
    message: Message
    public: bool = False
    incident: str | None = None
    postmortem_id: int | None = None
    file_id: str | None = None
    path: Path | None = None


def refused(text: str) -> PostmortemResult:
    return PostmortemResult(False, Message(f":no_entry: {text}"))


def _role_labels(incident: Incident) -> dict[str, str]:
    """User id -> the role they held (commander first); roles, not people, in the document."""
    labels: dict[str, str] = {}
    if incident.commander:
        labels[incident.commander] = "incident commander"
    for role, holders in (incident.roles or {}).items():
        for user in holders if isinstance(holders, list) else [holders]:
            if isinstance(user, str) and user:
                labels.setdefault(user, str(role).replace("_", " "))
    if incident.declared_by:
        labels.setdefault(incident.declared_by, "declarer")
    return labels


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def incident_services(incident: Incident) -> list[str]:
    names = list(incident.services or [])
    if incident.service and incident.service not in names:
        names.insert(0, incident.service)
    return names


# --- reminders: a pure decision ------------------------------------------------------------------


def _reminder_rank(step: str | None) -> int:
    if step is None:
        return 0
    if step == "before":
        return 1
    if step.startswith("overdue-") and step[8:].isdigit():
        return 1 + int(step[8:])
    return 0


def reminder_step(
    *,
    resolved_at: datetime,
    due_at: datetime,
    now: datetime,
    sent: str | None,
    before_fraction: float = BEFORE_DUE_FRACTION,
    overdue_every: timedelta = OVERDUE_EVERY,
    overdue_max: int = OVERDUE_REMINDERS,
) -> str | None:
    """The reminder to send now ("before", "overdue-<n>"), or None; `sent` is the last one sent.

    Ordered rules: overdue beats before (a bot that was down sends the overdue one only, never a
    stale "due soon"); the n-th overdue reminder is due (n-1) × overdue_every after the due time,
    at most overdue_max of them; a step already sent (or a later one) is never sent again.
    """
    if now >= due_at:
        periods = int((now - due_at) / overdue_every)
        step: str | None = f"overdue-{min(1 + periods, overdue_max)}"
    elif now >= resolved_at + (due_at - resolved_at) * before_fraction:
        step = "before"
    else:
        step = None
    if step is None or _reminder_rank(step) <= _reminder_rank(sent):
        return None
    return step


# --- the service ---------------------------------------------------------------------------------


@dataclass
class PostmortemDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    uploader: FileUploader
    members: ChannelMembers | None = None
    # Looked in first to last: a team's playbooks folder, then the template shipped with opsbot.
    template_dirs: Sequence[Path] = (SHIPPED_TEMPLATES,)
    # A relative `incidents.postmortem_dir` is relative to this folder (the catalog's).
    base_dir: Path = field(default_factory=Path.cwd)
    clock: Callable[[], datetime] = utc_now


class Postmortems:
    def __init__(self, deps: PostmortemDeps) -> None:
        self.deps = deps
        dirs = list(dict.fromkeys([*deps.template_dirs, SHIPPED_TEMPLATES]))
        self.template_dirs = [d for d in dirs if d.is_dir()]

    # ------------------------------------------------------------------ commands

    async def draft(
        self, incident_key_or_channel: str, by: str, *, where: str | None = None
    ) -> PostmortemResult:
        """Render, keep, write and share the postmortem of an incident (by key or its channel)."""
        now = self.deps.clock()
        async with self.deps.db.session() as session:
            incident = await self._find(session, incident_key_or_channel)
            if isinstance(incident, PostmortemResult):
                return incident
            if not await self._may_draft(session, incident, by, where):
                channel = f" and members of <#{incident.channel_id}>" if incident.channel_id else ""
                return refused(
                    f"only people in {incident.key} can draft its postmortem: its commander, "
                    f"declarer and role holders{channel}. Join the incident channel first."
                )
            drafts = await session.scalar(
                select(func.count()).where(Postmortem.incident_id == incident.id)
            )
            context = await self._context(session, incident, now, draft=(drafts or 0) + 1)
        try:
            markdown = self.render(context, _role_labels(incident))
        except jinja2.TemplateError as exc:
            log.exception("the postmortem template failed for %s", incident.key)
            return refused(
                f"the postmortem template could not be rendered ({type(exc).__name__}: "
                f"{slack_text(str(exc))[:300]}); nothing was stored. Check `{TEMPLATE_NAME}` in "
                "the playbooks folder."
            )
        filename = f"{incident.key}-{slug(incident.title)}.md"
        async with self.deps.db.transaction() as session:
            record = Postmortem(
                incident_id=incident.id, markdown=markdown, created_by=by, created_at=now
            )
            session.add(record)
            session.add(
                TimelineEvent(
                    incident_id=incident.id,
                    at=now,
                    kind="postmortem",
                    actor=by,
                    text=f"Postmortem draft {context['draft']} written",
                )
            )
        notes: list[str] = []
        path = await self._write(filename, markdown, notes)
        file_id = await self._share(incident, filename, markdown, where, notes)
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Postmortem)
                .where(Postmortem.id == record.id)
                .values(file_id=file_id, path=str(path) if path else None)
            )
        title = slack_text(incident.title)
        text = f":memo: Postmortem draft {context['draft']} of *{incident.key}* ({title})"
        if file_id:
            text += f" is shared in <#{incident.channel_id or where}> as `{filename}`."
        else:
            text += " is stored in opsbot, but not shared in Slack."
        if incident.state != "resolved":
            text += (
                f" {incident.key} is still {incident.state}: the document says so; "
                "draft it again once it is resolved."
            )
        text += (
            " Fill in the impact, contributing factors and action items with the team, then "
            f"`/postmortem done {incident.key}`."
        )
        return PostmortemResult(
            ok=True,
            message=Message(text, context="\n".join(notes) or None),
            incident=incident.key,
            postmortem_id=record.id,
            file_id=file_id,
            path=path,
        )

    async def done(self, key: str, by: str, *, where: str | None = None) -> PostmortemResult:
        """Mark the postmortem of `key` done (its commander only); reminders stop."""
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            incident = await self._find(session, key)
            if isinstance(incident, PostmortemResult):
                return incident
            owner = incident.commander or incident.declared_by
            if by != owner:
                return refused(
                    f"only the incident commander of {incident.key} (<@{owner}>) marks its "
                    "postmortem done. If you lead it now, take over with "
                    "`/incident commander @you` first."
                )
            if incident.state != "resolved":
                return refused(
                    f"{incident.key} is still {incident.state}: resolve it with "
                    "`/incident resolve` before its postmortem can be done."
                )
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.postmortem_done_at.is_(None))
                    .values(postmortem_done_at=now, postmortem_done_by=by)
                ),
            )
            if result.rowcount != 1:
                await session.refresh(incident)
                done_at = format_time(incident.postmortem_done_at)
                return refused(
                    f"the postmortem of {incident.key} was already marked done by "
                    f"<@{incident.postmortem_done_by}> at {done_at}."
                )
            session.add(
                TimelineEvent(
                    incident_id=incident.id,
                    at=now,
                    kind="postmortem",
                    actor=by,
                    text="Postmortem marked done",
                )
            )
        message = Message(
            f":white_check_mark: The postmortem of *{incident.key}* ({slack_text(incident.title)})"
            f" is done, marked by <@{by}>. No more reminders."
        )
        in_channel = incident.channel_id is not None and where == incident.channel_id
        if incident.channel_id and not in_channel:
            try:
                await self.deps.notifier.post(incident.channel_id, message)
            except Exception:
                log.exception("could not tell %s that its postmortem is done", incident.key)
        return PostmortemResult(True, message, public=in_channel, incident=incident.key)

    # ------------------------------------------------------------------ scheduler job

    async def remind(self, now: datetime | None = None) -> None:
        """Remind commanders of postmortems due soon or overdue; each reminder is sent once."""
        now = now or self.deps.clock()
        last = f"overdue-{OVERDUE_REMINDERS}"
        async with self.deps.db.session() as session:
            pending = list(
                await session.scalars(
                    select(Incident)
                    .where(
                        Incident.state == "resolved",
                        Incident.resolved_at.is_not(None),
                        Incident.postmortem_done_at.is_(None),
                        or_(
                            Incident.postmortem_reminder.is_(None),
                            Incident.postmortem_reminder != last,
                        ),
                    )
                    .order_by(Incident.id)
                )
            )
        for incident in pending:
            try:
                await self._remind_one(incident, now)
            except Exception:
                log.exception("could not remind %s of its postmortem", incident.key)

    async def _remind_one(self, incident: Incident, now: datetime) -> None:
        resolved_at = cast(datetime, incident.resolved_at)
        due_at = (
            incident.postmortem_due_at or resolved_at + self.deps.catalog.incidents.postmortem_due
        )
        sent = incident.postmortem_reminder
        step = reminder_step(resolved_at=resolved_at, due_at=due_at, now=now, sent=sent)
        if step is None:
            return
        async with self.deps.db.transaction() as session:
            claimed = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(
                        Incident.id == incident.id,
                        Incident.state == "resolved",
                        Incident.postmortem_done_at.is_(None),
                        Incident.postmortem_reminder.is_(None)
                        if sent is None
                        else Incident.postmortem_reminder == sent,
                    )
                    .values(postmortem_reminder=step)
                ),
            )
            if claimed.rowcount != 1:
                return  # another replica sent it, or it was marked done meanwhile
            drafted = await session.scalar(
                select(func.max(Postmortem.created_at)).where(Postmortem.incident_id == incident.id)
            )
        channel = incident.channel_id or self.deps.catalog.slack.channels.incidents
        message = self._reminder(incident, step, now, resolved_at, due_at, drafted)
        outcome = "ok"
        try:
            await self.deps.notifier.post(channel, message)
        except Exception:
            log.exception("could not post the postmortem reminder of %s", incident.key)
            outcome = "error"
            # Give the step back, so the next run tries again.
            async with self.deps.db.transaction() as session:
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.postmortem_reminder == step)
                    .values(postmortem_reminder=sent)
                )
        await audit.record(
            self.deps.db,
            actor="opsbot",
            action="postmortem:reminder",
            outcome=outcome,
            channel=channel,
            detail={
                "incident": incident.key,
                "step": step,
                "due_at": due_at.isoformat(),
                "rule": "incidents.postmortem_due",
            },
        )

    def _reminder(
        self,
        incident: Incident,
        step: str,
        now: datetime,
        resolved_at: datetime,
        due_at: datetime,
        drafted: datetime | None,
    ) -> Message:
        owner = incident.commander or incident.declared_by
        key, title = incident.key, slack_text(incident.title)
        period = format_span(due_at - resolved_at)
        if step == "before":
            text = (
                f"<@{owner}> :memo: The postmortem of *{key}* ({title}) is due in "
                f"{format_span(due_at - now)}, at {format_time(due_at)}."
            )
            why = (
                f"Why: a blameless postmortem is due {period} after resolution "
                f"(`incidents.postmortem_due`); {key} was resolved at {format_time(resolved_at)}. "
                f"This reminder comes at {BEFORE_DUE_FRACTION:.0%} of that period; if it is not "
                f"done by then, reminders follow every {format_span(OVERDUE_EVERY)} "
                f"({OVERDUE_REMINDERS} at most)."
            )
        else:
            number = int(step.removeprefix("overdue-"))
            text = (
                f"<@{owner}> :warning: The postmortem of *{key}* ({title}) is overdue by "
                f"{format_span(now - due_at)}: it was due at {format_time(due_at)}."
            )
            last = " This is the last reminder." if number >= OVERDUE_REMINDERS else ""
            why = (
                f"Why: a blameless postmortem is due {period} after resolution "
                f"(`incidents.postmortem_due`); {key} was resolved at {format_time(resolved_at)}. "
                f"Overdue reminder {number} of {OVERDUE_REMINDERS}, one every "
                f"{format_span(OVERDUE_EVERY)} from the due time.{last}"
            )
        draft = (
            f"A draft exists (latest {format_time(drafted)})."
            if drafted
            else f"No draft yet: `/postmortem {key}` writes one from the incident record."
        )
        text += f" {draft} Once the team has reviewed it: `/postmortem done {key}`."
        return Message(text, context=why)

    # ------------------------------------------------------------------ rendering

    def render(self, context: Mapping[str, Any], people: Mapping[str, str]) -> str:
        """The Markdown document; every printed value is escaped unless it is `Markdown`."""
        in_text = {user: f"the {label}" for user, label in people.items()}

        def finalize(value: object) -> object:
            if value is None:
                return "—"
            if isinstance(value, Markdown):
                return value
            if isinstance(value, datetime):
                return format_time(value)
            if isinstance(value, timedelta):
                return format_span(value)
            if isinstance(value, bool | int | float):
                return value
            return markdown_inline(value, in_text)

        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.template_dirs]),
            autoescape=False,  # Markdown, not HTML: `finalize` escapes instead
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=finalize,
        )
        environment.filters["md"] = lambda value: markdown_inline(value, in_text)
        environment.filters["paragraphs"] = lambda value: markdown_paragraphs(value, in_text)
        environment.filters["when"] = lambda value: Markdown(format_time(value))
        environment.filters["span"] = lambda value: Markdown(format_span(value))
        environment.filters["who"] = lambda user: markdown_inline(
            _capitalised(people.get(user, "responder")) if user else "opsbot"
        )
        return environment.get_template(TEMPLATE_NAME).render(**context)

    async def _context(
        self, session: AsyncSession, incident: Incident, now: datetime, *, draft: int
    ) -> dict[str, Any]:
        services = incident_services(incident)
        detected = incident.detected_at or incident.declared_at
        end = incident.resolved_at or now
        window_start = detected - LOOKBACK
        events = await session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == incident.id)
            .order_by(TimelineEvent.at, TimelineEvent.id)
        )
        deploys = await session.scalars(
            select(Deploy)
            .where(
                Deploy.service.in_(services),
                Deploy.created_at >= window_start,
                Deploy.created_at <= end,
                Deploy.dry_run.is_(False),
            )
            .order_by(Deploy.created_at, Deploy.id)
        )
        alerts = list(
            await session.scalars(
                select(Alert)
                .where(
                    or_(
                        Alert.incident_id == incident.id,
                        Alert.service.in_(services)
                        & (Alert.started_at >= window_start)
                        & (Alert.started_at <= end),
                    )
                )
                .order_by(Alert.started_at, Alert.id)
            )
        )
        alert_ids = [alert.id for alert in alerts]
        pages = await session.scalars(
            select(Page)
            .where(
                or_(
                    (Page.subject_kind == "incident") & (Page.subject_id == incident.id),
                    (Page.subject_kind == "alert") & Page.subject_id.in_(alert_ids),
                )
            )
            .order_by(Page.created_at, Page.id)
        )
        state = incident.state
        return {
            "incident": IncidentView(
                key=incident.key,
                title=incident.title,
                severity=incident.severity,
                severity_meaning=SEVERITY_MEANING.get(incident.severity, ""),
                state=state,
                active=state != "resolved",
                services=services,
                summary=incident.summary,
                description=incident.description,
                channel_name=incident.channel_name,
            ),
            "key_times": [
                KeyTime("Detected", detected, "" if incident.detected_at else "(declaration)"),
                KeyTime("Declared", incident.declared_at),
                KeyTime("Acknowledged", incident.acknowledged_at),
                KeyTime("Mitigated", incident.mitigated_at),
                KeyTime("Resolved", incident.resolved_at, "" if incident.resolved_at else state),
            ],
            "measures": _measures(incident, detected, now),
            "timeline": [
                TimelineRow(event.at, event.kind, event.actor or "", event.text) for event in events
            ],
            "deploys": [_deploy_row(deploy, detected) for deploy in deploys],
            "alerts": [_alert_row(alert) for alert in alerts],
            "pages": [_page_row(page) for page in pages],
            "roles": _roles_held(incident),
            "window_start": window_start,
            "window_end": end,
            "lookback": LOOKBACK,
            "due_at": incident.postmortem_due_at,
            "due_rule": self.deps.catalog.incidents.postmortem_due,
            "generated_at": now,
            "draft": draft,
        }

    # ------------------------------------------------------------------ helpers

    async def _find(
        self, session: AsyncSession, key_or_channel: str
    ) -> Incident | PostmortemResult:
        match = INCIDENT_KEY.fullmatch(key_or_channel.strip())
        if match:
            incident = await session.get(Incident, int(match.group(1)))
            if incident is None:
                return refused(
                    f"there is no incident INC-{int(match.group(1))}. `/incident list` shows "
                    "the incidents."
                )
            return incident
        incident = await session.scalar(
            select(Incident)
            .where(Incident.channel_id == key_or_channel)
            .order_by(Incident.id.desc())
            .limit(1)
        )
        if incident is None:
            return refused(
                "this channel is not an incident channel, so there is no incident to write "
                "about here. Name one: `/postmortem INC-<n>` (`/incident list` shows them)."
            )
        return incident

    async def _may_draft(
        self, session: AsyncSession, incident: Incident, by: str, where: str | None
    ) -> bool:
        """Anyone in the incident: its channel's members, commander, declarer, role holders."""
        if where is not None and where == incident.channel_id:
            return True  # Slack only takes slash commands from members of the channel
        if by in _role_labels(incident):
            return True
        took_part = await session.scalar(
            select(TimelineEvent.id)
            .where(TimelineEvent.incident_id == incident.id, TimelineEvent.actor == by)
            .limit(1)
        )
        if took_part is not None:
            return True
        if incident.channel_id and self.deps.members is not None:
            return by in await self.deps.members.members(incident.channel_id)
        return False

    def _folder(self) -> Path | None:
        configured = self.deps.catalog.incidents.postmortem_dir
        if configured is None:
            return None
        folder = Path(configured).expanduser()
        return folder if folder.is_absolute() else self.deps.base_dir / folder

    async def _write(self, filename: str, markdown: str, notes: list[str]) -> Path | None:
        folder = self._folder()
        if folder is None:
            return None
        path = folder / filename
        try:
            await asyncio.to_thread(_write_atomically, path, markdown)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)
            notes.append(f":warning: Could not write `{path}`: {exc.strerror or exc}.")
            return None
        notes.append(f"Written to `{path}`.")
        return path

    async def _share(
        self,
        incident: Incident,
        filename: str,
        markdown: str,
        where: str | None,
        notes: list[str],
    ) -> str | None:
        channel = incident.channel_id or where
        if not channel:
            notes.append(":warning: The incident has no channel, so the file was not shared.")
            return None
        comment = (
            f":memo: Postmortem draft of *{incident.key}* ({slack_text(incident.title)}). "
            "Fill in the impact, contributing factors and action items together; "
            f"`/postmortem done {incident.key}` when the review is complete."
        )
        if incident.state != "resolved":
            comment += f" {incident.key} is still {incident.state}: this draft is provisional."
        try:
            return await self.deps.uploader.upload(
                channel,
                filename=filename,
                title=f"Postmortem {incident.key}: {' '.join(incident.title.split())}",
                content=markdown,
                comment=comment,
            )
        except UploadFailed as exc:
            log.warning("could not share the postmortem of %s: %s", incident.key, exc)
            notes.append(
                f":warning: Not shared in <#{channel}>: {exc}. The draft is kept in opsbot; "
                "run the command again to retry."
            )
            return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _measures(incident: Incident, detected: datetime, now: datetime) -> list[Measure]:
    def since_detection(at: datetime | None) -> timedelta | None:
        return None if at is None else at - detected

    return [
        Measure(
            "Time to acknowledge (MTTA)",
            since_detection(incident.acknowledged_at),
            "detection to the first acknowledgment",
        ),
        Measure(
            "Time to mitigate",
            since_detection(incident.mitigated_at),
            "detection to user impact stopping",
        ),
        Measure(
            "Time to resolve (MTTR)",
            since_detection(incident.resolved_at),
            "detection to resolution",
        ),
        Measure(
            "Duration",
            (incident.resolved_at or now) - detected,
            "detection to resolution" if incident.resolved_at else "detection to now (active)",
        ),
    ]


def _roles_held(incident: Incident) -> list[str]:
    roles = ["incident commander"] if incident.commander else []
    roles += [str(role).replace("_", " ") for role in (incident.roles or {})]
    return list(dict.fromkeys(roles))


def _deploy_row(deploy: Deploy, detected: datetime) -> DeployRow:
    rollback = deploy.rollback_of_id is not None or deploy.strategy == "rollback"
    return DeployRow(
        id=deploy.id,
        kind="rollback" if rollback else "deploy",
        service=deploy.service,
        environment=deploy.environment,
        version=deploy.version,
        previous_version=deploy.previous_version,
        state=deploy.state.replace("_", " "),
        created_at=deploy.created_at,
        finished_at=deploy.finished_at,
        reason=deploy.reason,
        before_detection=deploy.created_at < detected,
    )


def _alert_row(alert: Alert) -> AlertRow:
    return AlertRow(
        rule=alert.rule,
        service=alert.service,
        severity=alert.severity,
        state=alert.state,
        value=alert.value,
        threshold=alert.threshold,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        acknowledged_at=alert.acknowledged_at,
        resolved_at=alert.resolved_at,
    )


def _page_row(page: Page) -> PageRow:
    return PageRow(
        subject=f"{page.subject_kind} {page.subject_id}" if page.subject_id else page.subject_kind,
        service=page.service,
        severity=page.severity,
        state=page.state,
        sent_at=page.sent_at,
        acknowledged_at=page.acknowledged_at,
        time_to_acknowledge=(
            page.acknowledged_at - page.sent_at if page.acknowledged_at and page.sent_at else None
        ),
        escalation_level=page.escalation_level,
    )
