"""The declare-an-incident modal: its Block Kit view, and the values a person submits in it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.incidents.classify import DEFINITIONS, SEVERITY_ORDER, Suggestion

CALLBACK_ID = "incident_declare_modal"
TITLE_LIMIT = 255
DESCRIPTION_LIMIT = 3000


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit]}


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": _plain(text), "value": value}


def _text_input(
    block_id: str, label: str, *, initial: str, limit: int, optional: bool = False, **extra: Any
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        **extra,
        "max_length": limit,
    }
    if initial:
        element["initial_value"] = initial[:limit]
    block: dict[str, Any] = {"type": "input", "block_id": block_id}
    if optional:
        block["optional"] = True
    return {**block, "label": _plain(label), "element": element}


def _severity_input(suggestion: Suggestion) -> dict[str, Any]:
    severities = [_option(s, f"{s} — {DEFINITIONS[s]}") for s in SEVERITY_ORDER]
    return {
        "type": "input",
        "block_id": "severity",
        "label": _plain("Severity"),
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": severities,
            "initial_option": severities[SEVERITY_ORDER.index(suggestion.severity)],
        },
    }


def _services_input(service_names: Sequence[str], chosen: Sequence[str]) -> dict[str, Any] | None:
    options = [_option(name, name) for name in service_names][:100]
    if not options:
        return None
    element: dict[str, Any] = {
        "type": "multi_static_select",
        "action_id": "value",
        "options": options,
        "placeholder": _plain("Affected services"),
    }
    initial = [option for option in options if option["value"] in chosen]
    if initial:
        element["initial_options"] = initial
    return {
        "type": "input",
        "block_id": "services",
        "optional": True,
        "label": _plain("Affected services"),
        "element": element,
    }


def declare_view(
    *,
    service_names: Sequence[str],
    suggestion: Suggestion,
    title: str = "",
    description: str = "",
    chosen: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The modal: title, description, severity (the suggestion preselected), services."""
    blocks = [
        _text_input(
            "title",
            "Title",
            initial=title,
            limit=TITLE_LIMIT,
            placeholder=_plain("What is wrong, in a few words"),
        ),
        _text_input(
            "description",
            "What do you see? Who is affected?",
            initial=description,
            limit=DESCRIPTION_LIMIT,
            optional=True,
            multiline=True,
        ),
        _severity_input(suggestion),
        {
            "type": "context",
            "block_id": "suggestion",
            "elements": [{"type": "mrkdwn", "text": suggestion.explain()[:2000]}],
        },
    ]
    services = _services_input(service_names, chosen)
    if services is not None:
        blocks.append(services)
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("Declare an incident", 24),
        "submit": _plain("Declare"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps(metadata or {})[:3000],
        "blocks": blocks,
    }


@dataclass(frozen=True)
class Submitted:
    """What a person submitted in the declare form, and where the form was opened from."""

    title: str
    description: str
    severity: str | None
    services: list[str]
    channel_id: str | None
    origin: dict[str, Any]

    def errors(self) -> dict[str, str]:
        """Slack's per-field errors for a form that cannot be declared (empty when it can)."""
        errors = {}
        if not self.title:
            errors["title"] = "Give the incident a title."
        if self.severity not in SEVERITY_ORDER:
            errors["severity"] = "Choose a severity."
        return errors


def submitted(view: dict[str, Any]) -> Submitted:
    values = (view.get("state") or {}).get("values") or {}

    def field(block: str) -> dict[str, Any]:
        return (values.get(block) or {}).get("value") or {}

    chosen = field("severity").get("selected_option") or {}
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        metadata = {}
    metadata = metadata if isinstance(metadata, dict) else {}
    channel = metadata.get("channel")
    origin = metadata.get("origin")
    return Submitted(
        title=str(field("title").get("value") or "").strip(),
        description=str(field("description").get("value") or "").strip(),
        severity=chosen.get("value"),
        services=[o.get("value") for o in field("services").get("selected_options") or []],
        channel_id=channel if isinstance(channel, str) else None,
        origin=origin if isinstance(origin, dict) else {},
    )
