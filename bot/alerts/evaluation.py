"""One poll's evaluation: fetch what the rules need, judge each (service, rule), store the moves.

1. every query of the plan (`bot.alerts.plan`) is asked in ONE call, fetching only the points
   the window lacks (`bot.alerts.window`); queries that fail are announced once (and once when
   they answer again);
2. each (service, rule) is evaluated with `bot.metrics.rules.evaluate` and `next_alert_state`
   (clear_for = one poll interval), skipping pairs that cannot change: no open alert and a newest
   sample that does not breach;
3. each move is a guarded statement (`bot.alerts.states`), audited, and published as a
   ServiceEvent. What people see is made so afterwards, by `bot.alerts.delivery`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.alerts import messaging
from bot.alerts.plan import Plan, Watch, plan
from bot.alerts.states import ALERT_MACHINE, OPEN, AlertEvent, AlertState, event_for, guard
from bot.alerts.window import SampleWindow
from bot.catalog import Catalog
from bot.db.models import Alert, MetricOutage
from bot.db.session import Database
from bot.events import EventBus, ServiceEvent
from bot.messages import Notifier
from bot.metrics.base import MetricSource, MetricsUnavailable, Sample, Series, by_label
from bot.metrics.rules import Verdict, evaluate, next_alert_state

log = logging.getLogger(__name__)

Silences = dict[tuple[str, str], datetime]


@dataclass(frozen=True)
class Transition:
    service: str
    rule: str
    previous: str
    current: str
    reason: str
    alert_id: int | None


@dataclass
class PollReport:
    """What one poll did: its cost (queries), its reach (rules, services) and its effects."""

    at: datetime
    queries: int = 0
    rules: int = 0
    services: int = 0
    evaluated: int = 0
    transitions: list[Transition] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    posted: int = 0
    updated: int = 0
    duration: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.queries} queries, {self.rules} rules, {self.services} services,"
            f" {self.evaluated} evaluated, {len(self.transitions)} transitions,"
            f" {self.posted} posted, {self.updated} updated in {self.duration:.3f}s"
        )


class Evaluation:
    """Metric rules → alert rows: the fetching, the verdicts and the guarded state moves."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        notifier: Notifier,
        events: EventBus,
        env: Mapping[str, str],
        source: MetricSource | None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notifier = notifier
        self.events = events
        self.env = env
        self._source = source
        self.interval = catalog.metrics.poll_interval
        self.plan: Plan = plan(catalog)
        # Resolving needs one poll of good values, and runs are measured over the window.
        keep = self.plan.longest_for + 3 * self.interval
        self.window = SampleWindow(step=self.interval, keep=keep)

    @property
    def source(self) -> MetricSource:
        if self._source is None:
            from bot.plugins import make_source

            self._source = make_source(self.catalog.metrics, env=self.env)
        return self._source

    async def close(self) -> None:
        if self._source is not None:
            await self._source.close()

    async def run(self, now: datetime, report: PollReport) -> None:
        """Fetch, announce outages, evaluate: the report gets the queries and the transitions."""
        queries = self.plan.queries()
        report.queries = len(queries)
        answered, failures = await self._fetch(queries, now)
        report.unavailable = failures
        await self._announce_outages(failures, answered, now)
        report.transitions = await self._evaluate(failures, now, report)

    # --- fetching -----------------------------------------------------------------------------

    async def _fetch(
        self, queries: dict[str, str], now: datetime
    ) -> tuple[set[str], dict[str, str]]:
        """Ask every query at once; store what answered. (keys answered, key -> why it failed)"""
        if not queries:
            return set(), {}
        end = self.window.grid_end(now)
        start = self.window.start_for(queries, end)
        failures: dict[str, str] = {}
        only_newest = end - start <= self.interval + timedelta(milliseconds=1)
        try:
            if only_newest and self.source.instant_on_grid:
                # A steady poll: one new point per series, asked as an instant query at the
                # grid point (half the samples of a two-point range to fetch and decode).
                results = await self.source.instant_many(queries, at=end)
            else:
                results = await self.source.range_many(
                    queries, start=start, end=end, step=self.interval
                )
        except MetricsUnavailable as err:
            results = err.results
            failures = dict(err.failures) or dict.fromkeys(queries, str(err))
        except ValueError as err:  # a query the source cannot even send (e.g. CloudWatch syntax)
            return set(), dict.fromkeys(queries, str(err))
        groups = {group.metric: group for group in self.plan.groups}
        for key, series in results.items():
            metric, _, own_service = key.partition("@")
            group = groups[metric]
            try:
                by_service = self._split(series, own_service, group.shared_services)
            except ValueError as err:
                failures[key] = f"{key}: {err}"
                continue
            self.window.merge(key, metric, by_service, end)
        return set(results) - set(failures), failures

    def _split(
        self, series: list[Series], own_service: str, shared: set[str]
    ) -> dict[str, Sequence[Sample]]:
        label = self.catalog.metrics.service_label
        if own_service:
            # A service's own query answers one series (labelled or not).
            if len(series) <= 1:
                return {own_service: list(series[0].samples) if series else []}
            one = by_label(series, label).get(own_service)
            return {own_service: list(one.samples) if one else []}
        indexed = by_label(series, label)
        return {name: indexed[name].samples for name in shared if name in indexed}

    # --- metrics outages: said once, and once when they end -------------------------------------

    async def _announce_outages(
        self, failures: dict[str, str], answered: set[str], now: datetime
    ) -> None:
        async with self.db.session() as session:
            known = {row.key: row for row in await session.scalars(select(MetricOutage))}
        metric_known = {k for k in known if not k.startswith("certificate ")}
        new = {key: reason for key, reason in failures.items() if key not in known}
        recovered = [key for key in metric_known if key in answered]
        if not new and not recovered:
            return
        try:
            await self.notifier.post(
                self.catalog.slack.channels.alerts,
                messaging.outage_message(new, recovered, now),
            )
        except Exception:
            log.exception("could not announce a metrics outage; will try again next poll")
            return
        async with self.db.transaction() as session:
            for key, reason in new.items():
                session.add(MetricOutage(key=key, since=now, reason=reason[:2000]))
            if recovered:
                await session.execute(delete(MetricOutage).where(MetricOutage.key.in_(recovered)))

    # --- evaluating ---------------------------------------------------------------------------

    async def _evaluate(
        self, failures: dict[str, str], now: datetime, report: PollReport
    ) -> list[Transition]:
        async with self.db.session() as session:
            rows = await session.scalars(select(Alert).where(Alert.state.in_(OPEN)))
            open_alerts = {(a.service, a.rule): a for a in rows}
            # A silence outlives its alert: a new alert of the same (service, rule) inherits it.
            silenced = await session.execute(
                select(Alert.service, Alert.rule, func.max(Alert.silenced_until))
                .where(Alert.silenced_until > now)
                .group_by(Alert.service, Alert.rule)
            )
            silences = {(service, rule): until for service, rule, until in silenced}
        transitions: list[Transition] = []
        services: set[str] = set()
        fresh_after = (now - 2 * self.interval).timestamp()
        windows = self.window.windows
        for group in self.plan.groups:
            for watch in group.watches:
                if watch.key in failures:
                    continue  # no data: neither fire nor resolve
                name = watch.service.name
                services.add(name)
                current = open_alerts.get((name, watch.rule.name))
                window = windows.get((group.metric, name))
                if window is None or not window.times:
                    continue
                if current is None:
                    # Nothing open: only a fresh breaching sample can change anything.
                    rule = watch.rule
                    newest = window.values[-1]
                    if window.times[-1] < fresh_after or not (
                        newest > rule.threshold if rule.op == ">" else newest < rule.threshold
                    ):
                        continue
                report.evaluated += 1
                verdict = evaluate(watch.rule, window.samples(), now=now, interval=self.interval)
                change = await self._apply(watch, current, verdict, now, silences)
                if change is not None:
                    transitions.append(change)
        report.services = len(services)
        return transitions

    async def _apply(
        self,
        watch: Watch,
        alert: Alert | None,
        verdict: Verdict,
        now: datetime,
        silences: Silences,
    ) -> Transition | None:
        previous = AlertState.INACTIVE if alert is None else AlertState(alert.state)
        # The rules know no acknowledgment: an acknowledged alert is judged as a firing one.
        judged = AlertState.FIRING if previous == AlertState.ACKNOWLEDGED else previous
        step = next_alert_state(judged, verdict, clear_for=self.interval)  # type: ignore[arg-type]
        if not step.changed:
            return None
        event = event_for(step.current)
        current = ALERT_MACHINE.next(previous, event)
        details = self._details(watch, verdict, now)
        async with self.db.transaction() as session:
            if alert is None:
                alert_id: int | None = await self._open(
                    session, watch, verdict, current, now, silences, details
                )
            else:
                alert_id = alert.id
                await self._move(session, alert, event, verdict, now, details)
            if current in (AlertState.FIRING, AlertState.RESOLVED):
                await self._audit(session, watch, verdict, current, alert_id)
        if current in (AlertState.FIRING, AlertState.RESOLVED):
            await self._publish(watch, verdict, current, alert_id, now)
        return Transition(
            watch.service.name, watch.rule.name, previous, current, step.reason, alert_id
        )

    async def _open(
        self,
        session: AsyncSession,
        watch: Watch,
        verdict: Verdict,
        state: AlertState,
        now: datetime,
        silences: Silences,
        details: dict[str, Any],
    ) -> int:
        """A new alert row (pending or firing); its id."""
        service, rule = watch.service.name, watch.rule
        held = verdict.held_for
        row = Alert(
            service=service,
            rule=rule.name,
            severity=rule.severity,
            state=state,
            value=verdict.newest,
            threshold=rule.threshold,
            started_at=now - held if held else now,
            fired_at=now if state == AlertState.FIRING else None,
            channel=watch.service.channel or self.catalog.slack.channels.alerts,
            dedup_key=f"opsbot-alert-{service}-{rule.name}-{uuid.uuid4().hex[:12]}",
            silenced_until=silences.get((service, rule.name)),
            details=details,
        )
        session.add(row)
        await session.flush()
        return row.id

    async def _move(
        self,
        session: AsyncSession,
        alert: Alert,
        event: AlertEvent,
        verdict: Verdict,
        now: datetime,
        details: dict[str, Any],
    ) -> None:
        """An open alert moves on `event`, guarded by the states the event may start from."""
        guarded = (Alert.id == alert.id) & Alert.state.in_(guard(event))
        if event == AlertEvent.CLEAR:
            await session.execute(delete(Alert).where(guarded))
            return
        values: dict[str, Any] = {"value": verdict.newest}
        if event == AlertEvent.FIRE:
            values.update(fired_at=now, details=details)
        elif event == AlertEvent.RESOLVE:
            resolved = {**(alert.details or {}), "resolve_reason": verdict.reason}
            resolved["values"] = details["values"]
            values.update(resolved_at=now, details=resolved)
        state = ALERT_MACHINE.next(AlertState(alert.state), event)
        await session.execute(update(Alert).where(guarded).values(state=state, **values))

    async def _audit(
        self,
        session: AsyncSession,
        watch: Watch,
        verdict: Verdict,
        state: AlertState,
        alert_id: int | None,
    ) -> None:
        await audit.record(
            session,
            actor="opsbot",
            action=f"alert:{state}",
            outcome=state,
            detail={
                "alert": alert_id,
                "service": watch.service.name,
                "rule": watch.rule.name,
                "value": verdict.newest,
                "threshold": watch.rule.threshold,
                "reason": verdict.reason,
            },
        )

    async def _publish(
        self,
        watch: Watch,
        verdict: Verdict,
        state: AlertState,
        alert_id: int | None,
        now: datetime,
    ) -> None:
        service, rule = watch.service.name, watch.rule
        await self.events.publish(
            ServiceEvent(
                kind="alert",
                text=f"Alert {rule.name} {state} for {service}: {verdict.reason}",
                at=now,
                service=service,
                key=f"alert:{alert_id}:{state}",
                data={
                    "alert_id": alert_id,
                    "rule": rule.name,
                    "severity": rule.severity,
                    "state": str(state),
                    "value": verdict.newest,
                    "threshold": rule.threshold,
                },
            )
        )

    def _details(self, watch: Watch, verdict: Verdict, now: datetime) -> dict[str, Any]:
        window = self.window.window(watch.rule.metric, watch.service.name)
        samples = window.samples()[-30:] if window else []
        return {
            "kind": "metric",
            "metric": watch.rule.metric,
            "op": watch.rule.op,
            "for_seconds": watch.rule.for_.total_seconds(),
            "reason": verdict.reason,
            "held_seconds": verdict.held_for.total_seconds(),
            "values": list(verdict.values[-40:]),
            "window_seconds": max(watch.rule.for_, 2 * self.interval).total_seconds(),
            "interval_seconds": self.interval.total_seconds(),
            "samples": [[s.at.isoformat(), s.value] for s in samples],
            "owners": list(watch.service.owners),
            "query_key": watch.key,
        }
