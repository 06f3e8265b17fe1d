"""Things that happened to a service, told to whoever listens (the incident timeline).

Deploys, rollbacks, alerts and pages publish a `ServiceEvent`; incidents subscribe and record the
ones about their affected services. Publishing never fails the publisher: a listener that raises
is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceEvent:
    """One thing that happened. `key` is stable per happening, so a listener can de-duplicate."""

    kind: str  # "deploy", "rollback", "alert", "page", "page-acknowledged", ...
    text: str  # one sentence for a timeline: "Rollback of checkout prod to v41 by @alice"
    at: datetime  # aware UTC: when it happened
    service: str | None = None
    actor: str | None = None  # Slack user id, or None for opsbot itself
    key: str | None = None  # e.g. "deploy:12:succeeded"
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[ServiceEvent], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, event: ServiceEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("a listener failed on %s event %s", event.kind, event.key)
