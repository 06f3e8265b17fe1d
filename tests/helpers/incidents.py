"""Incident set-ups: the incident channel and catalog changes to `incidents:`."""

from __future__ import annotations

from typing import Any

from bot.catalog import Catalog

INCIDENT_CHANNEL = "C0INC1"


def with_incidents(catalog: Catalog, **changes: Any) -> Catalog:
    """The catalog with these `incidents:` settings changed."""
    return catalog.model_copy(update={"incidents": catalog.incidents.model_copy(update=changes)})
