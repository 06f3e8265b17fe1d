"""The alerting loop: poll the metrics, move each (service, rule) through pending → firing →
resolved, keep that state in the `alerts` table, and tell people in Slack (and PagerDuty).

One poll (`Alerting.poll`, a scheduler job every `metrics.poll_interval`):
1. asks every query of the plan (`bot.alerts.plan`) in ONE `range_many` call, fetching only the
   points it lacks (`bot.alerts.window`);
2. evaluates each (service, rule) with `bot.metrics.rules.evaluate` and `next_alert_state`
   (clear_for = one poll interval), skipping pairs that cannot change: no open alert and a newest
   sample that does not breach;
3. writes each transition as a guarded statement, audited, and publishes a ServiceEvent;
4. delivers: posts firing alerts not yet shown (one message per service, the rest in its thread),
   updates messages whose state changed, pages critical alerts and resolves their pages.
Delivery is derived from the table (`message_ts`, `message_state`), so a failed post or a restart
is made good by the next poll: nothing is dropped, nothing is posted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, or_, select, update

from bot import audit
from bot.alerts import messaging
from bot.alerts.plan import Plan, Watch, plan
from bot.alerts.window import SampleWindow
from bot.catalog import Catalog, TlsCertificate
from bot.certificates import CertificateUnavailable, certificate_expiry, default_ssl_context
from bot.db.models import ALERT_OPEN_STATES, Alert, Deploy, MetricOutage, utc_now
from bot.db.session import Database
from bot.events import EventBus, ServiceEvent
from bot.messages import Message, MessageRef, Notifier, Result, refused
from bot.metrics.base import MetricSource, MetricsUnavailable, Sample, Series, by_label
from bot.metrics.rules import Verdict, evaluate, next_alert_state

if TYPE_CHECKING:
    from bot.oncall.paging import Paging

__all__ = ["Alerting", "PollReport", "Transition"]

log = logging.getLogger(__name__)

CERTIFICATE_RULE = "tls-certificate"
CRITICAL_BEFORE = timedelta(days=7)
SHOWN_STATES = ("firing", "acknowledged", "resolved")
SEVERITY_ORDER = {"critical": 0, "warning": 1}


class Directory(Protocol):
    async def groups_of(self, user_id: str, among: Collection[str]) -> set[str]: ...


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


class Alerting:
    """Alerts from metric rules and certificate expiry; see the module docstring."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        notifier: Notifier,
        events: EventBus,
        directory: Directory | None = None,
        source: MetricSource | None = None,
        env: Mapping[str, str] | None = None,
        paging: Paging | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notifier = notifier
        self.events = events
        self.directory = directory
        self.env = dict(env or {})
        self.paging = paging
        self._source = source
        self.interval = catalog.metrics.poll_interval
        self.plan: Plan = plan(catalog)
        # Resolving needs one poll of good values, and runs are measured over the window.
        keep = self.plan.longest_for + 3 * self.interval
        self.window = SampleWindow(step=self.interval, keep=keep)
        self.environment = catalog.metrics_environment
        self._lock = asyncio.Lock()
        events.subscribe(self._on_event)

    # --- the metrics source -------------------------------------------------------------------

    @property
    def source(self) -> MetricSource:
        if self._source is None:
            from bot.plugins import make_source

            self._source = make_source(self.catalog.metrics, env=self.env)
        return self._source

    async def close(self) -> None:
        if self._source is not None:
            await self._source.close()

    # --- the poll -----------------------------------------------------------------------------

    async def poll(self, now: datetime | None = None) -> PollReport:
        """Scheduler job (every `metrics.poll_interval`): evaluate every rule, act on changes."""
        async with self._lock:  # a slow poll and the next one never overlap in one process
            began = time.perf_counter()
            now = now or utc_now()
            report = PollReport(at=now, rules=len(self.plan.rules))
            queries = self.plan.queries()
            report.queries = len(queries)
            answered, failures = await self._fetch(queries, now)
            report.unavailable = failures
            await self._announce_outages(failures, answered, now)
            report.transitions = await self._evaluate(failures, now, report)
            report.posted, report.updated = await self.deliver(now)
            report.duration = time.perf_counter() - began
            log.info("alert poll: %s", report.summary())
            return report

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

    async def _evaluate(
        self, failures: dict[str, str], now: datetime, report: PollReport
    ) -> list[Transition]:
        async with self.db.session() as session:
            rows = await session.scalars(select(Alert).where(Alert.state.in_(ALERT_OPEN_STATES)))
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
        silences: dict[tuple[str, str], datetime],
    ) -> Transition | None:
        previous = "inactive" if alert is None else alert.state
        machine_state = "firing" if previous == "acknowledged" else previous
        step = next_alert_state(machine_state, verdict, clear_for=self.interval)  # type: ignore[arg-type]
        if not step.changed:
            return None
        service, rule = watch.service.name, watch.rule
        details = self._details(watch, verdict, now)
        alert_id: int | None = alert.id if alert else None
        async with self.db.transaction() as session:
            if alert is None:
                held = verdict.held_for
                row = Alert(
                    service=service,
                    rule=rule.name,
                    severity=rule.severity,
                    state=step.current,
                    value=verdict.newest,
                    threshold=rule.threshold,
                    started_at=now - held if held else now,
                    fired_at=now if step.current == "firing" else None,
                    channel=watch.service.channel or self.catalog.slack.channels.alerts,
                    dedup_key=f"opsbot-alert-{service}-{rule.name}-{uuid.uuid4().hex[:12]}",
                    silenced_until=silences.get((service, rule.name)),
                    details=details,
                )
                session.add(row)
                await session.flush()
                alert_id = row.id
            elif step.current == "inactive":
                await session.execute(
                    delete(Alert).where(Alert.id == alert.id, Alert.state == "pending")
                )
            elif step.current == "firing":
                await session.execute(
                    update(Alert)
                    .where(Alert.id == alert.id, Alert.state == "pending")
                    .values(state="firing", fired_at=now, value=verdict.newest, details=details)
                )
            elif step.current == "resolved":
                resolved = {**(alert.details or {}), "resolve_reason": verdict.reason}
                resolved["values"] = details["values"]
                await session.execute(
                    update(Alert)
                    .where(Alert.id == alert.id, Alert.state.in_(("firing", "acknowledged")))
                    .values(
                        state="resolved", resolved_at=now, value=verdict.newest, details=resolved
                    )
                )
            if step.current in ("firing", "resolved"):
                await audit.record(
                    session,
                    actor="opsbot",
                    action=f"alert:{step.current}",
                    outcome=step.current,
                    detail={
                        "alert": alert_id,
                        "service": service,
                        "rule": rule.name,
                        "value": verdict.newest,
                        "threshold": rule.threshold,
                        "reason": verdict.reason,
                    },
                )
        change = Transition(service, rule.name, previous, step.current, step.reason, alert_id)
        if step.current in ("firing", "resolved"):
            await self.events.publish(
                ServiceEvent(
                    kind="alert",
                    text=f"Alert {rule.name} {step.current} for {service}: {verdict.reason}",
                    at=now,
                    service=service,
                    key=f"alert:{alert_id}:{step.current}",
                    data={
                        "alert_id": alert_id,
                        "rule": rule.name,
                        "severity": rule.severity,
                        "state": step.current,
                        "value": verdict.newest,
                        "threshold": rule.threshold,
                    },
                )
            )
        return change

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

    # --- delivery: what Slack (and PagerDuty) should show, made so ------------------------------

    async def deliver(self, now: datetime | None = None) -> tuple[int, int]:
        """Post alerts not shown yet and update changed ones. (posted, updated)"""
        now = now or utc_now()
        async with self.db.session() as session:
            rows = list(
                await session.scalars(
                    select(Alert)
                    .where(
                        or_(
                            (Alert.message_ts.is_(None))
                            & Alert.state.in_(("firing", "acknowledged"))
                            & (or_(Alert.silenced_until.is_(None), Alert.silenced_until <= now)),
                            (Alert.message_ts.is_not(None))
                            & (
                                or_(
                                    Alert.message_state.is_(None),
                                    Alert.message_state != Alert.state,
                                )
                            ),
                        )
                    )
                    .order_by(Alert.id)
                )
            )
            roots = {
                a.service: a
                for a in await session.scalars(
                    select(Alert).where(
                        Alert.state.in_(("firing", "acknowledged")),
                        Alert.message_ts.is_not(None),
                        Alert.message_ts == Alert.thread_ts,
                    )
                )
            }
        if not rows:
            return 0, 0
        by_channel: dict[str, list[Alert]] = {}
        for alert in rows:
            by_channel.setdefault(alert.channel or self.catalog.slack.channels.alerts, []).append(
                alert
            )
        counts = await asyncio.gather(
            *(
                self._deliver_channel(channel, alerts, roots, now)
                for channel, alerts in by_channel.items()
            )
        )
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    async def _deliver_channel(
        self, channel: str, alerts: list[Alert], roots: dict[str, Alert], now: datetime
    ) -> tuple[int, int]:
        """Sequentially, because Slack allows about one message a second per channel; the
        client waits out each 429's Retry-After and tries again."""
        posted = updated = 0
        new = sorted(
            (a for a in alerts if a.message_ts is None),
            key=lambda a: (a.service, SEVERITY_ORDER.get(a.severity, 9), a.id),
        )
        for alert in new:
            try:
                await self._post(channel, alert, roots, now)
                posted += 1
            except Exception:
                log.exception("could not post alert #%s; the next poll tries again", alert.id)
        for alert in alerts:
            if alert.message_ts is None or alert in new:
                continue
            try:
                await self._update(alert, now)
                updated += 1
            except Exception:
                log.exception("could not update alert #%s; the next poll tries again", alert.id)
        return posted, updated

    async def _post(
        self, channel: str, alert: Alert, roots: dict[str, Alert], now: datetime
    ) -> None:
        deploy = await self._recent_deploy(alert, now)
        if deploy is not None:
            alert.deploy_id = deploy.id
        root = (
            roots.get(alert.service)
            if alert.details and alert.details.get("kind") == "metric"
            else None
        )
        thread = MessageRef(channel, root.message_ts or "", root.thread_ts) if root else None
        message = self.render(alert, deploy=deploy, now=now)
        ref = await self.notifier.post(channel, message, thread=thread)
        root_ts = thread.thread_ts or thread.ts if thread else ref.ts
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.message_ts.is_(None))
                .values(
                    channel=ref.channel,
                    message_ts=ref.ts,
                    thread_ts=root_ts,
                    message_state=alert.state,
                    deploy_id=alert.deploy_id,
                )
            )
        alert.channel, alert.message_ts, alert.thread_ts = ref.channel, ref.ts, root_ts
        alert.message_state = alert.state
        if root is None:
            roots[alert.service] = alert
            query = self.plan.queries().get(str((alert.details or {}).get("query_key")))
            await self._note(alert, messaging.details_message(alert, query=query))
        if alert.severity == "critical":
            await self._page(alert)

    async def _update(self, alert: Alert, now: datetime) -> None:
        deploy = await self._deploy(alert.deploy_id)
        ref = MessageRef(alert.channel or "", alert.message_ts or "", alert.thread_ts)
        await self.notifier.update(ref, self.render(alert, deploy=deploy, now=now))
        shown_before = alert.message_state
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert).where(Alert.id == alert.id).values(message_state=alert.state)
            )
        if alert.state == "resolved" and shown_before != "resolved":
            await self._note(alert, messaging.resolved_note(alert))
            if (alert.details or {}).get("paged") and self.paging is not None:
                try:
                    await self.paging.resolve(alert.dedup_key)
                except Exception as err:
                    log.exception("could not resolve the page of alert #%s", alert.id)
                    await self._note(alert, Message(f":warning: Resolving the page failed: {err}"))

    def render(self, alert: Alert, *, deploy: Deploy | None, now: datetime) -> Message:
        if (alert.details or {}).get("kind") == "certificate":
            return messaging.certificate_message(alert, now=now)
        return messaging.alert_message(alert, deploy=deploy, now=now)

    async def _note(self, alert: Alert, message: Message) -> None:
        """A reply in the alert's thread (best effort: the alert message itself is what counts)."""
        if not alert.message_ts:
            return
        ref = MessageRef(alert.channel or "", alert.message_ts, alert.thread_ts or alert.message_ts)
        try:
            await self.notifier.post(ref.channel, message, thread=ref)
        except Exception:
            log.exception("could not post a note in the thread of alert #%s", alert.id)

    async def _page(self, alert: Alert) -> None:
        if self.paging is None:
            return
        ref = MessageRef(alert.channel or "", alert.message_ts or "", alert.thread_ts)
        summary = f"{alert.service}: {alert.rule} — {(alert.details or {}).get('reason', '')}"
        try:
            await self.paging.page(
                dedup_key=alert.dedup_key,
                summary=summary[:1000],
                severity="critical",
                service=alert.service if (alert.details or {}).get("kind") == "metric" else None,
                subject_kind="alert",
                subject_id=alert.id,
                thread=ref,
            )
        except Exception as err:
            log.exception("paging for alert #%s failed", alert.id)
            await self._note(
                alert,
                Message(
                    f":warning: Paging the on-call failed ({type(err).__name__}: {err})."
                    " Please reach them directly."
                ),
            )
            return
        details = {**(alert.details or {}), "paged": True}
        alert.details = details
        async with self.db.transaction() as session:
            await session.execute(update(Alert).where(Alert.id == alert.id).values(details=details))

    async def _recent_deploy(self, alert: Alert, now: datetime) -> Deploy | None:
        """The newest deploy of the alert's service in the metrics' environment, within the hour."""
        if (alert.details or {}).get("kind") != "metric":
            return None
        since = (alert.fired_at or now) - messaging.RECENT_DEPLOY
        async with self.db.session() as session:
            return await session.scalar(
                select(Deploy)
                .where(
                    Deploy.service == alert.service,
                    Deploy.environment == self.environment,
                    Deploy.dry_run.is_(False),
                    Deploy.started_at.is_not(None),
                    Deploy.started_at >= since,
                )
                .order_by(Deploy.id.desc())
                .limit(1)
            )

    async def _deploy(self, deploy_id: int | None) -> Deploy | None:
        if deploy_id is None:
            return None
        async with self.db.session() as session:
            return await session.get(Deploy, deploy_id)

    async def _load(self, alert_id: int) -> Alert | None:
        async with self.db.session() as session:
            return await session.get(Alert, alert_id)

    async def refresh_message(self, alert_id: int, now: datetime | None = None) -> None:
        """Re-render an alert's message in place (e.g. after an escalation changed it)."""
        alert = await self._load(alert_id)
        if alert is not None and alert.message_ts:
            await self._update(alert, now or utc_now())

    async def _on_event(self, event: ServiceEvent) -> None:
        """A page of an alert was escalated: the alert's message says to which level."""
        if event.kind != "page-escalated" or event.data.get("subject_kind") != "alert":
            return
        alert_id, level = event.data.get("subject_id"), event.data.get("level")
        if not isinstance(alert_id, int) or not isinstance(level, int):
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.escalation_level < level)
                .values(escalation_level=level)
            )
        await self.refresh_message(alert_id)

    # --- what people do from the message --------------------------------------------------------

    async def acknowledge(self, *, alert_id: int, user: str) -> Result:
        """Anyone may acknowledge: it says "I am on it" and stops the page's escalation."""
        now = utc_now()
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.state == "firing")
                .values(state="acknowledged", acknowledged_by=user, acknowledged_at=now)
            )
        alert = await self._load(alert_id)
        if alert is None:
            return refused(f"there is no alert #{alert_id}.")
        if result.rowcount != 1:  # type: ignore[attr-defined]
            if alert.state == "acknowledged":
                return refused(
                    f"alert #{alert_id} was already acknowledged by <@{alert.acknowledged_by}>"
                    f" at {messaging.clock(alert.acknowledged_at)}."
                )
            return refused(f"alert #{alert_id} is {alert.state}; there is nothing to acknowledge.")
        await self._update(alert, now)
        await self._note(alert, Message(f":eyes: Acknowledged by <@{user}>."))
        if (alert.details or {}).get("paged") and self.paging is not None:
            try:
                await self.paging.acknowledge(alert.dedup_key, by=user)
            except Exception as err:
                log.exception("could not acknowledge the page of alert #%s", alert_id)
                await self._note(alert, Message(f":warning: Acknowledging the page failed: {err}"))
        await self.events.publish(
            ServiceEvent(
                kind="alert-acknowledged",
                text=f"Alert {alert.rule} for {alert.service} acknowledged by <@{user}>",
                at=now,
                service=alert.service,
                actor=user,
                key=f"alert:{alert_id}:acknowledged",
                data={"alert_id": alert_id, "rule": alert.rule},
            )
        )
        return Result(True, Message(f"You acknowledged alert #{alert_id} ({alert.rule})."))

    async def silence(self, *, alert_id: int, user: str) -> Result:
        """Silence an alert's (service, rule) for an hour: owners of the service only."""
        now = utc_now()
        alert = await self._load(alert_id)
        if alert is None:
            return refused(f"there is no alert #{alert_id}.")
        service = self.catalog.service(alert.service)
        owners = list(service.owners) if service else []
        if owners and user not in owners:
            groups = await self.directory.groups_of(user, owners) if self.directory else set()
            if not groups:
                names = ", ".join(f"<@{o}>" if o[0] in "UW" else f"<!subteam^{o}>" for o in owners)
                return refused(
                    f"only the owners of {alert.service} ({names}) may silence its alerts;"
                    " anyone may acknowledge."
                )
        until = now + messaging.SILENCE_FOR
        details = {**(alert.details or {}), "silenced_by": user}
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.state.in_(ALERT_OPEN_STATES))
                .values(silenced_until=until, details=details)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return refused(f"alert #{alert_id} is {alert.state}; there is nothing to silence.")
        alert.silenced_until, alert.details = until, details
        await self._update(alert, now)
        await self._note(
            alert,
            Message(
                f":mute: Silenced by <@{user}> until {messaging.clock(until)}: {alert.rule} on"
                f" {alert.service} posts and pages nothing new until then."
            ),
        )
        return Result(
            True,
            Message(f"{alert.rule} on {alert.service} is silenced until {messaging.clock(until)}."),
        )

    # --- certificates -----------------------------------------------------------------------------

    async def check_certificates(self, now: datetime | None = None) -> list[str]:
        """Scheduler job (daily): warn `warn_before` (30 days) before expiry, critical at 7 days.

        Returns one line per certificate saying what was found.
        """
        now = now or utc_now()
        context = default_ssl_context(self.env or None)
        lines = []
        for certificate in self.catalog.certificates:
            lines.append(await self._check_certificate(certificate, now, context))
        await self.deliver(now)
        return lines

    async def _check_certificate(
        self, certificate: TlsCertificate, now: datetime, context: Any
    ) -> str:
        where = f"{certificate.host}:{certificate.port}"
        outage_key = f"certificate {where}"
        try:
            expires = await certificate_expiry(
                certificate.host, certificate.port, ssl_context=context
            )
        except CertificateUnavailable as err:
            await self._certificate_unreadable(outage_key, where, str(err), now)
            return f"{where}: could not check: {err}"
        async with self.db.transaction() as session:
            await session.execute(delete(MetricOutage).where(MetricOutage.key == outage_key))
        left = expires - now
        severity = (
            "critical"
            if left <= CRITICAL_BEFORE
            else "warning"
            if left <= certificate.warn_before
            else None
        )
        async with self.db.session() as session:
            alert = await session.scalar(
                select(Alert).where(
                    Alert.service == where[:128],
                    Alert.rule == CERTIFICATE_RULE,
                    Alert.state.in_(ALERT_OPEN_STATES),
                )
            )
        details = {
            "kind": "certificate",
            "host": certificate.host,
            "port": certificate.port,
            "expires": expires.isoformat(),
            "warn_days": certificate.warn_before.days,
            "critical_days": CRITICAL_BEFORE.days,
        }
        if severity is None:
            if alert is not None:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(Alert)
                        .where(Alert.id == alert.id, Alert.state.in_(ALERT_OPEN_STATES))
                        .values(
                            state="resolved",
                            resolved_at=now,
                            details={
                                **details,
                                "resolve_reason": f"renewed, valid until {expires:%Y-%m-%d}",
                            },
                        )
                    )
            return f"{where}: valid until {expires:%Y-%m-%d}"
        if alert is None:
            async with self.db.transaction() as session:
                row = Alert(
                    service=where[:128],
                    rule=CERTIFICATE_RULE,
                    severity=severity,
                    state="firing",
                    value=round(left.total_seconds() / 86400, 1),
                    threshold=float(
                        (
                            CRITICAL_BEFORE if severity == "critical" else certificate.warn_before
                        ).days
                    ),
                    started_at=now,
                    fired_at=now,
                    channel=self.catalog.slack.channels.alerts,
                    dedup_key=f"opsbot-certificate-{where}-{uuid.uuid4().hex[:12]}",
                    details=details,
                )
                session.add(row)
                await session.flush()
                await audit.record(
                    session,
                    actor="opsbot",
                    action="alert:firing",
                    outcome="firing",
                    detail={"alert": row.id, "certificate": where, "expires": expires.isoformat()},
                )
            await self.events.publish(
                ServiceEvent(
                    kind="alert",
                    text=f"Certificate of {where} expires on {expires:%Y-%m-%d} ({severity})",
                    at=now,
                    key=f"alert:{row.id}:firing",
                    data={"alert_id": row.id, "rule": CERTIFICATE_RULE, "severity": severity},
                )
            )
        elif alert.severity != severity:
            # Warning → critical: the same alert and message, more urgent; it pages now.
            new_details = {**(alert.details or {}), **details}
            async with self.db.transaction() as session:
                await session.execute(
                    update(Alert)
                    .where(Alert.id == alert.id)
                    .values(
                        severity=severity,
                        state="firing",
                        value=round(left.total_seconds() / 86400, 1),
                        threshold=float(CRITICAL_BEFORE.days),
                        details=new_details,
                        message_state=None,
                    )
                )
            alert.severity, alert.details, alert.state = severity, new_details, "firing"
            alert.value = round(left.total_seconds() / 86400, 1)
            if alert.message_ts:
                await self._note(
                    alert,
                    Message(
                        f":red_circle: Now critical: {messaging.certificate_left(alert, now)}."
                    ),
                )
                if severity == "critical":
                    await self._page(alert)
        return f"{where}: expires {expires:%Y-%m-%d} ({severity})"

    async def _certificate_unreadable(
        self, key: str, where: str, reason: str, now: datetime
    ) -> None:
        async with self.db.session() as session:
            known = await session.get(MetricOutage, key)
        if known is not None:
            return
        try:
            await self.notifier.post(
                self.catalog.slack.channels.alerts,
                Message(
                    f":warning: Could not check the TLS certificate of {where}: {reason}."
                    " opsbot tries again at the next daily check and says so once it can."
                ),
            )
        except Exception:
            log.exception("could not report the unreadable certificate of %s", where)
            return
        async with self.db.transaction() as session:
            session.add(MetricOutage(key=key, since=now, reason=reason))
