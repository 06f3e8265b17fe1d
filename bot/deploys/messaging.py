"""What a deploy says to people: its one message, updated in place, and its refusals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.db.models import Deploy, utc_now
from bot.messages import Button, Mention, Message, RichText, from_stored, join, text

STATUS_MARK = {
    "pending": "·",
    "running": "▶",
    "done": "✓",
    "failed": "✗",
    "skipped": "–",
    "aborted": "■",
}

# Button action ids (a contract with the handlers; listed once here).
APPROVE = "deploy_approve"
REJECT = "deploy_reject"
ABORT = "deploy_abort"
PROMOTE = "deploy_promote"
RESUME = "deploy_resume"
ROLL_BACK = "deploy_roll_back"
RELEASE_LOCK = "deploy_release_lock"
ROLLBACK_DEPLOY = "deploy_rollback"  # on a finished deploy: put back what ran before it
ROLLBACK_CONFIRM = "rollback_confirm"  # on the /rollback answer: value "service|env|version"
ACKNOWLEDGE = "deploy_acknowledge"  # after an automatic rollback: unlock the environment
# After an automatic rollback: open the incident form (handlers/incidents.py), value JSON.
DECLARE_INCIDENT = "incident_declare"

HEADLINE = {
    "requested": "requested",
    "awaiting_approval": "waiting for approval",
    "running": "running",
    "monitoring": "monitoring",
    "interrupted": "interrupted",
    "succeeded": "succeeded",
    "failed": "failed",
    "aborted": "aborted",
    "rolled_back": "rolled back",
    "rejected": "rejected",
    "expired": "expired",
}


def is_rollback(deploy: Deploy) -> bool:
    """A rollback: the fast kind (strategy `rollback`), or one that went through every gate
    because its version had not succeeded in the environment before (it undoes a deploy)."""
    return deploy.strategy == "rollback" or deploy.rollback_of_id is not None


def elapsed(started: str | None, finished: str | None, now: datetime | None = None) -> str:
    if not started:
        return ""
    begin = datetime.fromisoformat(started)
    end = datetime.fromisoformat(finished) if finished else (now or utc_now())
    seconds = max(0, int((end - begin).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def checklist(steps: list[dict[str, Any]], now: datetime | None = None) -> str:
    lines = []
    width = max((len(step["name"]) for step in steps), default=0)
    for step in steps:
        mark = STATUS_MARK.get(step.get("status", "pending"), "?")
        took = elapsed(step.get("started_at"), step.get("finished_at"), now)
        summary = step.get("summary") or ""
        lines.append(f"{mark} {step['name']:<{width}}  {took:>6}  {summary}".rstrip())
    return "\n".join(lines)


def deploy_message(deploy: Deploy, *, approvals_required: int = 0) -> Message:
    details = deploy.details or {}
    steps: list[dict[str, Any]] = details.get("steps", [])
    version = deploy.version
    if deploy.previous_version and deploy.previous_version != version:
        version = f"{deploy.previous_version} → {deploy.version}"
    approved_by = details.get("approved_by", [])
    approvers = join(", ", map(Mention, approved_by)) if approved_by else text("—")
    fields: list[tuple[str, RichText]] = [
        ("Service", deploy.service),
        ("Environment", deploy.environment),
        ("Version", version),
        ("Strategy", deploy.strategy),
        ("Requested by", text(Mention(deploy.requested_by))),
    ]
    if approvals_required:
        fields.append(("Approved by", text(approvers, f" ({approvals_required} needed)")))
    headline = HEADLINE.get(deploy.state, deploy.state)
    if is_rollback(deploy):
        what = f"{deploy.service} in {deploy.environment} to {deploy.version}"
        said = text(f"*Rollback #{deploy.id}: {what}* — {headline}")
    else:
        what = f"{deploy.service} {deploy.version} to {deploy.environment}"
        said = text(f"*Deploy #{deploy.id}: {what}* — {headline}")
    if deploy.reason:
        said += text("\n", from_stored(deploy.reason))
    return Message(
        text=said,
        fields=tuple(fields),
        preformatted=checklist(steps) if steps else None,
        buttons=buttons_for(deploy, details),
        context=f"deploy #{deploy.id} · details and command output in the thread",
    )


def declare_incident_button(deploy: Deploy, details: dict[str, Any]) -> Button:
    """Runbook Post-Rollback (create an incident report): after any rollback, the incident form
    filled in with what happened."""
    where = f"in {deploy.environment}"
    if details.get("auto_rollback"):
        what = (
            f"{deploy.service} {deploy.version} rolled back automatically {where} "
            f"({details.get('auto_rollback')})"
        )
    elif is_rollback(deploy):
        bad = f" from {deploy.previous_version}" if deploy.previous_version else ""
        what = f"{deploy.service} rolled back{bad} to {deploy.version} {where}"
    else:
        what = f"{deploy.service} {deploy.version} was rolled back {where}"
    value = {"service": deploy.service, "title": what[:200], "deploy_id": deploy.id}
    return Button(DECLARE_INCIDENT, "Declare incident", json.dumps(value))


def buttons_for(deploy: Deploy, details: dict[str, Any]) -> tuple[Button, ...]:
    value = str(deploy.id)
    if deploy.state == "awaiting_approval":
        return (
            Button(APPROVE, "Approve", value, "primary"),
            Button(REJECT, "Reject", value, "danger"),
        )
    if deploy.state == "rolled_back" and details.get("auto_rollback"):
        declare = declare_incident_button(deploy, details)
        if details.get("acknowledged_by"):
            return (declare,)
        return (Button(ACKNOWLEDGE, "Acknowledge", value, "primary"), declare)
    if deploy.state == "rolled_back" or (deploy.state == "succeeded" and is_rollback(deploy)):
        return (declare_incident_button(deploy, details),)
    if deploy.state == "monitoring" and details.get("inconclusive"):
        return (
            Button(PROMOTE, "Promote", value, "primary"),
            Button(
                ABORT,
                "Roll back",
                value,
                "danger",
                confirm=(
                    "Roll back?",
                    f"Puts {deploy.previous_version or 'the previous version'} back.",
                ),
            ),
        )
    if deploy.state in ("running", "monitoring"):
        buttons = [
            Button(
                ABORT,
                "Abort",
                value,
                "danger",
                confirm=(
                    "Abort this deploy?",
                    f"Stops deploy #{deploy.id} and puts back what it changed.",
                ),
            )
        ]
        if deploy.strategy == "canary":
            buttons.append(Button(PROMOTE, "Promote", value, "primary"))
        return tuple(buttons)
    if deploy.state == "succeeded" and not is_rollback(deploy) and deploy.previous_version:
        restore = deploy.previous_version
        return (
            Button(
                ROLLBACK_DEPLOY,
                f"Roll back to {restore}",
                f"{deploy.service}|{deploy.environment}|{restore}",
                "danger",
                confirm=(
                    "Roll back?",
                    f"Puts {restore} back on {deploy.environment} in place of {deploy.version}.",
                ),
            ),
        )
    if deploy.state == "failed" and deploy.strategy == "rollback":
        return (Button(RELEASE_LOCK, "Release lock", value),)
    if deploy.state == "interrupted":
        restore = deploy.previous_version or "the previous version"
        return (
            Button(RESUME, "Resume", value, "primary"),
            Button(
                ROLL_BACK,
                "Roll back",
                value,
                "danger",
                confirm=("Roll back?", f"Puts {restore} back on {deploy.environment}."),
            ),
            Button(RELEASE_LOCK, "Release lock", value),
        )
    return ()
