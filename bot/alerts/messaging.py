"""What an alert says to people: its one message (updated in place), its thread, its notices."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from bot.alerts.states import AlertState
from bot.catalog import format_duration
from bot.db.models import Alert, Deploy
from bot.deploys import messaging as deploy_messaging
from bot.messages import Button, Emoji, Mention, Message, Text, join, text
from bot.metrics.sparkline import sparkline

# Button action ids (a contract with handlers/alerts.py and the incidents helper).
ACKNOWLEDGE = "alert_acknowledge"
SILENCE = "alert_silence"
DECLARE_INCIDENT = "incident_declare"
# Roll back is the deploy message's own button: the same handler, authorization and confirm.
ROLL_BACK = deploy_messaging.ROLLBACK_DEPLOY

SILENCE_FOR = timedelta(hours=1)
RECENT_DEPLOY = timedelta(hours=1)

FIRING_MARK = Emoji("rotating_light")
MARK = {
    AlertState.FIRING: FIRING_MARK,
    AlertState.ACKNOWLEDGED: Emoji("eyes"),
    AlertState.RESOLVED: Emoji("white_check_mark"),
}
SEVERITY_MARK = {"critical": Emoji("red_circle"), "warning": Emoji("large_orange_circle")}


def number(value: float | None) -> str:
    """Three significant digits, as in rule explanations: 0.112, 0.05, 1250."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def clock(moment: datetime | None) -> str:
    return f"{moment:%H:%M} UTC" if moment else "—"


def span(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=max(0, int(delta.total_seconds()))))


def minutes_ago(moment: datetime, now: datetime) -> str:
    minutes = max(0, int((now - moment).total_seconds() // 60))
    return "just now" if minutes == 0 else f"{minutes} min ago"


def deploy_line(deploy: Deploy, now: datetime) -> Text:
    """'v42 by @U1, 6 min ago' (with the deploy's state when it did not simply succeed)."""
    when = deploy.finished_at or deploy.started_at or deploy.created_at
    what = "rollback to " + deploy.version if deploy.strategy == "rollback" else deploy.version
    line = text(f"{what} by ", Mention(deploy.requested_by), f", {minutes_ago(when, now)}")
    if deploy.state != "succeeded":
        line += f" ({deploy_messaging.HEADLINE.get(deploy.state, deploy.state)})"
    return line + f" · deploy #{deploy.id} to {deploy.environment}"


def condition(alert: Alert) -> str:
    details = alert.details or {}
    words = f"{details.get('metric', '?')} {details.get('op', '>')} {number(alert.threshold)}"
    for_seconds = int(details.get("for_seconds") or 0)
    if for_seconds:
        words += f" for {span(timedelta(seconds=for_seconds))}"
    return words


def status_line(alert: Alert, now: datetime) -> Text:
    if alert.state == AlertState.RESOLVED:
        lasted = (alert.resolved_at or now) - (alert.started_at or now)
        return text(f"Resolved at {clock(alert.resolved_at)} after {span(lasted)}")
    parts: list[Text | str] = []
    if alert.state == AlertState.ACKNOWLEDGED:
        parts.append(
            text(
                "Acknowledged by ",
                Mention(str(alert.acknowledged_by)),
                f" at {clock(alert.acknowledged_at)}",
            )
        )
    else:
        parts.append("Firing" if alert.state == AlertState.FIRING else alert.state.capitalize())
    escalated = (alert.details or {}).get("escalated_to")
    if escalated or alert.escalation_level > 1:
        parts.append(f"escalated to {escalated or f'level {alert.escalation_level}'}")
    if alert.silenced_until and alert.silenced_until > now:
        who = (alert.details or {}).get("silenced_by")
        by = text(" by ", Mention(who)) if who else text()
        parts.append(text("silenced", by, f" until {clock(alert.silenced_until)}"))
    return join("; ", parts)


def alert_message(alert: Alert, *, deploy: Deploy | None, now: datetime) -> Message:
    """The alert's message: what breached, how long, the values, the last deploy, what to do."""
    details = alert.details or {}
    severity = alert.severity
    mark = MARK.get(AlertState(alert.state), FIRING_MARK)
    words = text(mark, f" *{alert.service}: {alert.rule}* — {alert.state} ({severity})")
    reason = details.get("reason")
    if reason:
        words += f"\n{reason}"
    held = timedelta(seconds=float(details.get("held_seconds") or 0))
    since = alert.started_at
    severity_mark = SEVERITY_MARK.get(severity)
    fields: list[tuple[str, str | Text]] = [
        ("Service", alert.service),
        (
            "Rule",
            text(f"{alert.rule} (", severity_mark, f" {severity})")
            if severity_mark
            else f"{alert.rule} ({severity})",
        ),
        (
            "Value",
            f"{number(alert.value)} (threshold {details.get('op', '>')} {number(alert.threshold)})",
        ),
        ("For", f"{span(held)} (since {clock(since)})" if since else span(held)),
    ]
    if deploy is not None:
        fields.append(("Last deploy", deploy_line(deploy, alert.fired_at or now)))
    fields.append(("Status", status_line(alert, now)))
    values = [float(v) for v in details.get("values") or []]
    preformatted = None
    if values:
        window = span(timedelta(seconds=float(details.get("window_seconds") or 0)))
        preformatted = (
            f"{sparkline(values)}  {details.get('metric', '')} over the last {window}"
            f" (min {number(min(values))}, max {number(max(values))})"
        )
    buttons = alert_buttons(alert, deploy=deploy, now=now)
    owners = details.get("owners") or []
    context = text(f"alert #{alert.id} · details in the thread")
    if owners:
        context += text(" · owners ", join(" ", map(Mention, owners)))
    return Message(
        text=words,
        fields=tuple(fields),
        preformatted=preformatted,
        buttons=buttons,
        context=context,
    )


def alert_buttons(alert: Alert, *, deploy: Deploy | None, now: datetime) -> tuple[Button, ...]:
    if alert.state == AlertState.RESOLVED:
        return ()
    value = str(alert.id)
    buttons: list[Button] = []
    if alert.state == AlertState.FIRING:
        buttons.append(Button(ACKNOWLEDGE, "Acknowledge", value, "primary"))
    if deploy is not None and deploy.state == "succeeded":
        # The deploy message's own Roll back button: same value, confirm and handler.
        buttons += [
            b
            for b in deploy_messaging.buttons_for(deploy, deploy.details or {})
            if b.action_id == ROLL_BACK
        ]
    title = f"{alert.service}: {alert.rule}"
    incident = json.dumps({"service": alert.service, "title": title, "alert_id": alert.id})
    buttons.append(Button(DECLARE_INCIDENT, "Declare incident", incident, "danger"))
    if not (alert.silenced_until and alert.silenced_until > now):
        buttons.append(Button(SILENCE, "Silence 1 h", value))
    return tuple(buttons)


def details_message(alert: Alert, *, query: str | None) -> Message:
    """The first reply in the alert's thread: the samples and the query behind the verdict."""
    details = alert.details or {}
    samples: list[list[Any]] = details.get("samples") or []
    lines = [f"{at[11:19]}  {number(float(value))}" for at, value in samples]
    words = (
        f"*Why:* {details.get('reason', condition(alert))}\n"
        f"Rule `{alert.rule}`: {condition(alert)}; evaluated every"
        f" {span(timedelta(seconds=float(details.get('interval_seconds') or 0)))}; it resolves"
        " once the value is back on the good side for one full poll."
    )
    if query:
        words += f"\nQuery: `{' '.join(query.split())}`"
    return Message(
        text=words,
        preformatted="\n".join(lines[-30:]) if lines else None,
        context=f"alert #{alert.id} · dedup key {alert.dedup_key}",
    )


def resolved_note(alert: Alert) -> Message:
    details = alert.details or {}
    return Message(
        text(
            MARK[AlertState.RESOLVED],
            f" Resolved at {clock(alert.resolved_at)}:"
            f" {details.get('resolve_reason', 'back on the good side')}",
        )
    )


def outage_message(failing: dict[str, str], recovered: list[str], since: datetime) -> Message:
    """One notice per poll for queries that stopped (or started again) answering."""
    lines: list[Text | str] = []
    if failing:
        lines.append(
            text(
                Emoji("warning"),
                " *Metrics unavailable*: alerts that need these queries are neither fired nor"
                " resolved until they answer again (no data is not a recovery).",
            )
        )
        lines += [f"• `{key}`: {reason}" for key, reason in sorted(failing.items())]
    if recovered:
        keys = ", ".join(f"`{key}`" for key in sorted(recovered))
        lines.append(
            text(Emoji("white_check_mark"), f" *Metrics answer again*: {keys}; alerting resumed.")
        )
    return Message(join("\n", lines), context=f"as of {since:%Y-%m-%d %H:%M:%S} UTC")


def certificate_left(alert: Alert, now: datetime) -> str:
    details = alert.details or {}
    expires = datetime.fromisoformat(str(details.get("expires")))
    days = (expires - now).total_seconds() / 86400
    when = f"{expires:%Y-%m-%d %H:%M} UTC"
    if days <= 0:
        return f"the certificate of {alert.service} expired on {when}"
    return f"the certificate of {alert.service} expires on {when}, in {days:.0f} days"


def certificate_message(alert: Alert, *, now: datetime) -> Message:
    """A certificate close to expiry: warning `warn_before` ahead (30 days), critical at 7."""
    details = alert.details or {}
    mark = MARK.get(AlertState(alert.state), FIRING_MARK)
    words = text(
        mark,
        f" *TLS certificate of {alert.service}* — {alert.state} ({alert.severity})\n"
        f"{certificate_left(alert, now).capitalize()}. opsbot warns {details.get('warn_days')}"
        f" days before expiry (the runbook) and is critical at {details.get('critical_days')}"
        " days: renew it.",
    )
    buttons: tuple[Button, ...] = ()
    if alert.state == AlertState.FIRING:
        buttons = (Button(ACKNOWLEDGE, "Acknowledge", str(alert.id), "primary"),)
    return Message(
        text=words,
        fields=(("Host", alert.service), ("Status", status_line(alert, now))),
        buttons=buttons,
        context=f"alert #{alert.id} · checked daily",
    )
