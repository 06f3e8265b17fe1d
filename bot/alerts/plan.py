"""Which queries one poll asks, and which (service, rule) pairs each answer decides. Pure.

Cost grows with metrics, not services: every metric is asked once for all services through its
`metrics.queries` entry (`sum by (service) (…)`, split with `by_label`); only a service that writes
its own query for a metric costs one more query (all of them still go in one `range_many` call,
which CloudWatch answers with one GetMetricData request). Rules on the same metric share its
query: the default error-rate warning and critical rules cost one query, not two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.catalog import AlertRule, Catalog, Service

__all__ = ["MetricGroup", "Plan", "Watch", "plan"]


@dataclass(frozen=True)
class Watch:
    """One rule on one service, and the query key whose answer holds the service's series."""

    service: Service
    rule: AlertRule
    key: str


@dataclass
class MetricGroup:
    metric: str
    shared: str | None = None  # metrics.queries[metric], answering for every service
    own: dict[str, str] = field(default_factory=dict)  # service -> its own query
    shared_services: set[str] = field(default_factory=set)
    watches: list[Watch] = field(default_factory=list)

    def queries(self) -> dict[str, str]:
        """Query key -> query: the metric's name for the shared one, metric@service for others."""
        found = {own_key(self.metric, service): query for service, query in self.own.items()}
        if self.shared is not None and self.shared_services:
            found[self.metric] = self.shared
        return found


@dataclass
class Plan:
    groups: list[MetricGroup]
    rules: list[str]  # distinct rule names
    longest_for: timedelta

    def queries(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for group in self.groups:
            found.update(group.queries())
        return found

    @property
    def services(self) -> set[str]:
        return {watch.service.name for group in self.groups for watch in group.watches}


def own_key(metric: str, service: str) -> str:
    return f"{metric}@{service}"


def plan(catalog: Catalog) -> Plan:
    """The queries and watches of every service's alert rules (services without the metric skip)."""
    groups: dict[str, MetricGroup] = {}
    rules: dict[str, None] = {}
    longest = timedelta(0)
    shared = catalog.metrics.queries
    for service in catalog.services:
        for rule in catalog.alert_rules(service):
            metric = rule.metric
            own = service.metrics.get(metric)
            if own is None and metric not in shared:
                continue
            group = groups.setdefault(metric, MetricGroup(metric, shared=shared.get(metric)))
            if own is not None:
                group.own[service.name] = own
                key = own_key(metric, service.name)
            else:
                group.shared_services.add(service.name)
                key = metric
            group.watches.append(Watch(service, rule, key))
            rules[rule.name] = None
            longest = max(longest, rule.for_)
    return Plan(groups=list(groups.values()), rules=list(rules), longest_for=longest)
