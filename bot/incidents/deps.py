"""What the incident domain is built from: the database, the catalog and its ports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.catalog import Catalog
from bot.db.models import utc_now
from bot.db.session import Database
from bot.events import EventBus
from bot.incidents.ports import OncallLookup, Pager, Workspace
from bot.messages import Notifier


@dataclass
class IncidentDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    workspace: Workspace
    events: EventBus | None = None
    paging: Pager | None = None
    oncall: OncallLookup | None = None
    clock: Callable[[], datetime] = utc_now
