"""Checks across the catalog document: duplicate names and references between sections.

They run on the raw document (dicts and lists as read from YAML), so `load_catalog` can report
them with line numbers even when other parts of the file are invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bot.catalog.alerts import DEFAULT_ALERTS, SERVICE_ALERT_REQUIRED

# A key path in the document, e.g. ("services", 0, "targets", "prod").
Loc = tuple[str | int, ...]


def _indexed(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def cross_problems(data: Any) -> list[tuple[Loc, str]]:
    """Problems that need more than one object: duplicates and references between sections."""
    problems: list[tuple[Loc, str]] = []

    def duplicates(section: str, what: str) -> None:
        seen: set[str] = set()
        for index, item in _indexed(data, section):
            name = item.get("name")
            if isinstance(name, str):
                if name in seen:
                    problems.append(((section, index, "name"), f"duplicate {what} name {name!r}"))
                seen.add(name)

    duplicates("environments", "environment")
    duplicates("services", "service")
    duplicates("alerts", "alert")
    duplicates("rollback_triggers", "rollback trigger")
    problems += _alert_problems(data)

    environments = list(_indexed(data, "environments"))
    env_names = [env.get("name") for _, env in environments]
    if environments and environments[0][1].get("require_previous") is True:
        problems.append(
            (
                ("environments", 0, "require_previous"),
                f"{env_names[0]} is the first environment: there is no previous one to require",
            )
        )

    owners: dict[str, str] = {}
    for _, service in _indexed(data, "services"):
        if isinstance(service.get("name"), str):
            owners.setdefault(service["name"], service["name"])
    for index, service in _indexed(data, "services"):
        name = service.get("name")
        aliases = service.get("aliases")
        for alias_index, alias in enumerate(aliases if isinstance(aliases, list) else []):
            if not isinstance(alias, str):
                continue
            if owners.get(alias, name) != name:
                problems.append(
                    (
                        ("services", index, "aliases", alias_index),
                        f"{alias!r} is already used by service {owners[alias]!r}",
                    )
                )
            else:
                owners[alias] = name
        targets = service.get("targets")
        if not isinstance(targets, dict) or not all(isinstance(n, str) for n in env_names):
            continue
        for env_name in targets:
            if env_name not in env_names:
                problems.append(
                    (
                        ("services", index, "targets", env_name),
                        f"unknown environment {env_name!r} (environments: {', '.join(env_names)})",
                    )
                )
                continue
            position = env_names.index(env_name)
            previous = env_names[position - 1] if position else None
            if (
                environments[position][1].get("require_previous") is True
                and previous is not None
                and previous not in targets
            ):
                problems.append(
                    (
                        ("services", index, "targets", env_name),
                        f"{env_name} requires a deploy to {previous} first (require_previous),"
                        f" but the service has no {previous} target",
                    )
                )
    return problems


def _alert_problems(data: Any) -> list[tuple[Loc, str]]:
    """A service's alert of its own must be complete; `metrics.environment` must exist."""
    problems: list[tuple[Loc, str]] = []
    if not isinstance(data, dict):
        return problems
    raw_alerts = data.get("alerts")
    if "alerts" in data and isinstance(raw_alerts, list):
        names = {rule.get("name") for rule in raw_alerts if isinstance(rule, dict)}
    else:
        names = {rule["name"] for rule in DEFAULT_ALERTS}
    for index, service in _indexed(data, "services"):
        seen: set[str] = set()
        for position, change in _indexed(service, "alerts"):
            name = change.get("name")
            where = ("services", index, "alerts", position)
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(((*where, "name"), f"duplicate alert name {name!r}"))
            seen.add(name)
            missing = [key for key in SERVICE_ALERT_REQUIRED if change.get(key) is None]
            if name not in names and change.get("enabled") is not False and missing:
                known = ", ".join(sorted(n for n in names if isinstance(n, str))) or "none"
                problems.append(
                    (
                        (*where, "name"),
                        f"{name!r} is not one of the catalog's alerts ({known}), so it is a rule"
                        f" of its own and needs {', '.join(missing)}",
                    )
                )
    metrics = data.get("metrics")
    wanted = metrics.get("environment") if isinstance(metrics, dict) else None
    env_names = [env.get("name") for _, env in _indexed(data, "environments")]
    if isinstance(wanted, str) and env_names and wanted not in env_names:
        problems.append(
            (
                ("metrics", "environment"),
                f"unknown environment {wanted!r} (environments: {', '.join(map(str, env_names))})",
            )
        )
    return problems


def format_path(loc: Loc) -> str:
    if not loc:
        return "(top level)"
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text
