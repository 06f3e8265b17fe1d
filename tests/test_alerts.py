"""The alerting loop end to end: a scripted Prometheus API in, the fake Slack and the database out.

Polls are called directly with the time they run at (the scheduler calls `poll()` every
`metrics.poll_interval`); the Prometheus API stand-in answers each query as a function of time,
so "the error rate is 8 % from 12:00:30 on" is exact. tests/test_alerts_prometheus.py does the
same against a real Prometheus.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import select

from bot import audit
from bot.alerts import messaging
from bot.alerts.plan import plan
from bot.alerts.service import Alerting
from bot.catalog import CatalogError, load_catalog
from bot.db.models import Deploy, utc_now
from bot.db.session import Database
from bot.events import ServiceEvent
from tests.conftest import TEST_CATALOG, RunningBot, start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.prometheus_api import PrometheusApi, Timeline, running_prometheus_api
from tests.fakes.slack import FakeSlack
from tests.fakes.tls import tls_server
from tests.helpers.alerts import ERRORS, STEP, alerts
from tests.helpers.deploys import finish
from tests.helpers.messages import buttons, text_of

# Polls run at synthetic times near the real one: buttons act at the real time (a silence lasts an
# hour from the click), so the two must agree.
T0 = utc_now().replace(second=0, microsecond=0)
LATENCY = "histogram_quantile(0.99, sum by (service, le) (rate(latency_bucket[1m])))"
RULES = """alerts:
  - {name: error-rate-warning, metric: error_rate, op: ">", threshold: 0.01, for: 1m,
     severity: warning}
  - {name: error-rate-critical, metric: error_rate, op: ">", threshold: 0.05, for: 30s,
     severity: critical}
  - {name: latency-p99-warning, metric: latency_p99, op: ">", threshold: 2, for: 1m,
     severity: warning}
"""


def alerting_catalog(
    tmp_path: Path, url: str, *, extra: str = "", rules: str = RULES, services: str = ""
) -> Path:
    """The test catalog with shared queries from `url`, 15 s polls and short rules."""
    text = TEST_CATALOG.read_text() + services
    text += (
        f"metrics:\n  source: prometheus\n  url: '{url}'\n  poll_interval: 15s\n"
        f"  queries:\n    error_rate: '{ERRORS}'\n    latency_p99: '{LATENCY}'\n{extra}"
    )
    text += rules
    path = tmp_path / "opsbot.yml"
    path.write_text(text)
    return path


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return at(seconds).timestamp()


@dataclass
class Setup:
    bot: RunningBot
    api: PrometheusApi
    errors: Timeline
    latency: Timeline

    @property
    def alerting(self) -> Alerting:
        return self.bot.services.alerts

    async def poll_at(self, seconds: float) -> Any:
        return await self.alerting.poll(now=at(seconds))

    async def polls(self, first: float, last: float) -> list[Any]:
        return [await self.poll_at(second) for second in range(int(first), int(last) + 1, 15)]


@pytest.fixture
async def prometheus_api() -> AsyncIterator[PrometheusApi]:
    async with running_prometheus_api() as api:
        yield api


@pytest.fixture
async def setup(
    fake_slack: FakeSlack, database: Database, prometheus_api: PrometheusApi, tmp_path: Path
) -> AsyncIterator[Setup]:
    path = alerting_catalog(tmp_path, prometheus_api.url)
    errors, latency = Timeline(), Timeline()
    for service in ("checkout", "payments"):
        errors.set(service, 0.001, since=0)
        latency.set(service, 0.2, since=0)
    prometheus_api.answer(ERRORS, ["checkout", "payments"], errors)
    prometheus_api.answer(LATENCY, ["checkout", "payments"], latency)
    async with start_bot(fake_slack, database, load_catalog(path, {}), config_path=path) as bot:
        bot.services.alerts.paging = None  # paging has its own tests (test_alerts_paging)
        try:
            yield Setup(bot, prometheus_api, errors, latency)
        finally:
            await bot.services.alerts.close()


def alert_messages(fake: FakeSlack, *, top_level: bool = True) -> list[Any]:
    return [
        m
        for m in fake.messages
        if m.channel == "C0ALERTS"
        and m.source == "api"
        and (m.thread_ts is None) == top_level
        and "alert #" in text_of(m)
    ]


# --- the catalog: rules globally and per service ------------------------------------------------


def test_a_service_adjusts_switches_off_and_adds_rules(tmp_path: Path) -> None:
    path = alerting_catalog(tmp_path, "http://prometheus:9090")
    text = path.read_text().replace(
        "    owners: [U0ALICE]\n",
        "    owners: [U0ALICE]\n"
        "    alerts:\n"
        "      - {name: error-rate-warning, threshold: 0.02, for: 2m}\n"
        "      - {name: latency-p99-warning, enabled: false}\n"
        "      - {name: disk, metric: disk_free, op: '<', threshold: 0.1, severity: critical}\n",
        1,
    )
    path.write_text(text)
    catalog = load_catalog(path, {})
    checkout, payments = catalog.services
    mine = {r.name: (r.threshold, r.for_, r.severity) for r in catalog.alert_rules(checkout)}
    assert mine == {
        "error-rate-warning": (0.02, timedelta(minutes=2), "warning"),
        "error-rate-critical": (0.05, timedelta(seconds=30), "critical"),
        "disk": (0.1, timedelta(0), "critical"),
    }
    others = [r.name for r in catalog.alert_rules(payments)]
    assert others == ["error-rate-warning", "error-rate-critical", "latency-p99-warning"]
    assert catalog.alert_rules(payments)[0].threshold == 0.01


def test_global_alerts_replace_the_runbook_defaults_for_every_service(tmp_path: Path) -> None:
    defaults = load_catalog(TEST_CATALOG, {})
    assert [r.name for r in defaults.alert_rules(defaults.services[0])] == [
        "error-rate-warning",
        "error-rate-critical",
        "latency-p99-warning",
        "cpu-warning",
        "disk-free-critical",
    ]
    catalog = load_catalog(alerting_catalog(tmp_path, "http://prometheus:9090"), {})
    for service in catalog.services:
        assert [r.for_ for r in catalog.alert_rules(service)] == [
            timedelta(minutes=1),
            timedelta(seconds=30),
            timedelta(minutes=1),
        ]


def test_a_rule_of_a_service_alone_must_be_complete(tmp_path: Path) -> None:
    path = alerting_catalog(tmp_path, "http://prometheus:9090")
    text = path.read_text().replace(
        "    owners: [U0ALICE]\n",
        "    owners: [U0ALICE]\n    alerts:\n      - {name: error-rate-warnign, threshold: 0.02}\n",
        1,
    )
    path.write_text(text)
    with pytest.raises(CatalogError) as error:
        load_catalog(path, {})
    [problem] = error.value.problems
    assert "services[0].alerts[0].name: 'error-rate-warnign' is not one of the catalog's" in problem
    assert "needs metric, op, severity" in problem


def test_the_metrics_environment_must_exist(tmp_path: Path) -> None:
    path = alerting_catalog(tmp_path, "http://prometheus:9090", extra="  environment: qa\n")
    with pytest.raises(CatalogError) as error:
        load_catalog(path, {})
    assert "metrics.environment: unknown environment 'qa' (environments: dev, staging, prod)" in (
        str(error.value)
    )


def test_rules_on_one_metric_share_its_query(tmp_path: Path) -> None:
    catalog = load_catalog(alerting_catalog(tmp_path, "http://prometheus:9090"), {})
    queries = plan(catalog).queries()
    assert queries == {"error_rate": ERRORS, "latency_p99": LATENCY}


# --- polling cost: rules, not services -----------------------------------------------------------


async def test_one_poll_asks_each_metric_once_however_many_services(
    fake_slack: FakeSlack, sqlite_database: Database, prometheus_api: PrometheusApi, tmp_path: Path
) -> None:
    names = [f"svc-{n}" for n in range(60)]
    services = "".join(
        f"  - {{name: {name}, targets: {{dev: {{kind: compose, project: p, file: f.yml,"
        f" service: web}}}}}}\n"
        for name in names
    )
    own = 'sum(rate(errors{job="payments"}[1m])) / sum(rate(requests{job="payments"}[1m]))'
    path = alerting_catalog(tmp_path, prometheus_api.url, services=services)
    path.write_text(
        path.read_text().replace(
            "    owners: [U0BOB]\n", f"    owners: [U0BOB]\n    metrics: {{error_rate: '{own}'}}\n"
        )
    )
    everyone = ["checkout", *names]
    quiet = Timeline()
    for name in [*everyone, "payments"]:
        quiet.set(name, 0.001, since=0)
    prometheus_api.answer(ERRORS, everyone, quiet)
    prometheus_api.answer(LATENCY, [*everyone, "payments"], quiet)
    prometheus_api.answer(own, ["payments"], quiet, label="job")
    catalog = load_catalog(path, {})
    async with start_bot(fake_slack, sqlite_database, catalog, config_path=path) as bot:
        try:
            reports = [await bot.services.alerts.poll(now=at(15 * n)) for n in range(3)]
            steady = len(prometheus_api.requests)
            # Two polls missed (the bot was busy or stopped): the next one fetches what it lacks.
            reports.append(await bot.services.alerts.poll(now=at(75)))
        finally:
            await bot.services.alerts.close()
    # Two metrics shared by 62 services, and payments' own error-rate query: 3 per poll.
    assert [r.queries for r in reports] == [3, 3, 3, 3]
    assert steady == 9 and len(prometheus_api.requests) == 12
    assert {r.query for r in prometheus_api.requests} == {ERRORS, LATENCY, own}
    assert reports[0].rules == 3 and reports[0].services == 62
    # The first poll fetches the whole window; a steady poll only the new point (an instant
    # query at the poll's grid point); after a gap, the range it lacks.
    first, steady_poll, after_gap = (prometheus_api.requests[i] for i in (0, steady - 1, -1))
    assert first.path == "query_range" and first.end - first.start >= 105
    assert steady_poll.path == "query" and steady_poll.end == pytest.approx(first.end + 30)
    assert after_gap.path == "query_range"
    assert after_gap.end - after_gap.start == pytest.approx(45)


# --- pending → firing → resolved -----------------------------------------------------------------


async def test_a_breach_goes_pending_then_fires_one_message_that_explains_itself(
    setup: Setup,
) -> None:
    db = setup.bot.services.db
    async with db.transaction() as session:
        session.add(
            Deploy(
                service="checkout",
                environment="prod",
                version="v42",
                previous_version="v41",
                strategy="blue-green",
                state="succeeded",
                requested_by="U0ALICE",
                created_at=at(-420),
                started_at=at(-420),
                finished_at=at(-300),
            )
        )
    events: list[ServiceEvent] = []

    async def listen(event: ServiceEvent) -> None:
        events.append(event)

    setup.bot.services.events.subscribe(listen)
    setup.errors.set("checkout", 0.08, since=ts(30))
    await setup.polls(0, 45)
    pending = await alerts(db)
    assert [(a.rule, a.state) for a in pending] == [
        ("error-rate-warning", "pending"),
        ("error-rate-critical", "pending"),
    ]
    assert alert_messages(setup.bot.fake) == []

    reports = await setup.polls(60, 90)
    fired = [t for r in reports for t in r.transitions if t.current == "firing"]
    assert [(t.rule, t.previous) for t in fired] == [
        ("error-rate-critical", "pending"),
        ("error-rate-warning", "pending"),
    ]
    critical = next(a for a in await alerts(db) if a.rule == "error-rate-critical")
    assert critical.fired_at == at(60)  # 30 s after the first breaching sample, as `for` says

    # One message for checkout; the warning went into its thread.
    (message,) = alert_messages(setup.bot.fake)
    shown = text_of(message)
    assert "checkout: error-rate-critical* — firing (critical)" in shown
    assert "error_rate > 0.05 for 30s: held for 30s (last 0.08, limit 0.05)" in shown
    assert "0.08 (threshold > 0.05)" in shown
    assert f"30s (since {at(30):%H:%M} UTC)" in shown
    assert "v42 by <@U0ALICE>, 6 min ago" in shown
    assert "▁" in shown or "█" in shown
    found = buttons(message)
    assert set(found) == {
        messaging.ACKNOWLEDGE,
        messaging.ROLL_BACK,
        messaging.DECLARE_INCIDENT,
        messaging.SILENCE,
    }
    assert found[messaging.ROLL_BACK]["value"] == "checkout|prod|v41"
    assert "Puts v41 back on prod in place of v42" in json.dumps(found[messaging.ROLL_BACK])
    assert json.loads(found[messaging.DECLARE_INCIDENT]["value"]) == {
        "service": "checkout",
        "title": "checkout: error-rate-critical",
        "alert_id": critical.id,
    }
    thread = [m for m in setup.bot.fake.messages if m.thread_ts == message.ts]
    assert any("*Why:*" in (m.text or "") for m in thread)
    assert any("checkout: error-rate-warning* — firing (warning)" in text_of(m) for m in thread)
    warning = next(a for a in await alerts(db) if a.rule == "error-rate-warning")
    assert [e.key for e in events] == [
        f"alert:{critical.id}:firing",
        f"alert:{warning.id}:firing",
    ]
    assert events[0].service == "checkout" and events[0].kind == "alert"
    assert "error_rate > 0.05 for 30s" in events[0].text
    actions = [e.action for e in await audit.entries(db)]
    assert actions.count("alert:firing") == 2


async def test_resolving_needs_one_full_poll_of_good_values_and_does_not_flap(
    setup: Setup,
) -> None:
    db = setup.bot.services.db
    setup.errors.set("checkout", 0.08, since=ts(15))
    setup.errors.set("checkout", 0.001, since=ts(75))  # one good sample...
    setup.errors.set("checkout", 0.08, since=ts(90))  # ...then bad again
    setup.errors.set("checkout", 0.001, since=ts(105))  # good for good
    states = []
    for second in range(0, 151, 15):
        report = await setup.poll_at(second)
        assert report.unavailable == {}
        critical = [a for a in await alerts(db) if a.rule == "error-rate-critical"]
        states.append(critical[-1].state if critical else "inactive")
    assert states == [
        "inactive",  # 0
        "pending",  # 15
        "pending",  # 30
        "firing",  # 45: held for 30 s
        "firing",  # 60
        "firing",  # 75: one good sample is not a recovery
        "firing",  # 90
        "firing",  # 105: good again...
        "resolved",  # 120: ...for one full poll
        "resolved",  # 135
        "resolved",  # 150
    ]
    (message,) = alert_messages(setup.bot.fake)
    assert message.updated
    shown = text_of(message)
    assert "error-rate-critical* — resolved (critical)" in shown
    assert f"Resolved at {at(120):%H:%M} UTC after 1m45s" in shown
    assert messaging.ACKNOWLEDGE not in buttons(message)
    posts = [c for c in setup.bot.fake.calls_to("chat.postMessage") if not c.args.get("thread_ts")]
    assert len(posts) == 1  # never a second "firing" message
    thread = [m.text for m in setup.bot.fake.messages if m.thread_ts == message.ts]
    assert any(f"Resolved at {at(120):%H:%M} UTC" in (text or "") for text in thread)


async def test_a_restart_loses_nothing(setup: Setup, database: Database) -> None:
    setup.errors.set("payments", 0.08, since=ts(15))
    await setup.polls(0, 30)
    assert [(a.rule, a.state) for a in await alerts(database)] == [
        ("error-rate-warning", "pending"),
        ("error-rate-critical", "pending"),
    ]
    # A new process: nothing in memory, the state and the history come back from where they live.
    fresh = Alerting(
        db=database,
        catalog=setup.alerting.catalog,
        notifier=setup.alerting.notifier,
        events=setup.alerting.events,
    )
    try:
        report = await fresh.poll(now=at(45))
    finally:
        await fresh.close()
    assert [(t.rule, t.previous, t.current) for t in report.transitions] == [
        ("error-rate-critical", "pending", "firing")
    ]
    (message,) = alert_messages(setup.bot.fake)
    assert "payments: error-rate-critical* — firing" in text_of(message)


async def test_unavailable_metrics_are_said_once_and_never_fire_or_resolve(setup: Setup) -> None:
    setup.errors.set("checkout", 0.08, since=ts(0))
    await setup.polls(0, 30)
    [firing] = [a for a in await alerts(setup.bot.services.db) if a.state == "firing"]
    setup.errors.set("checkout", 0.001, since=ts(31))
    setup.api.fail_with(503)
    reports = await setup.polls(45, 90)
    assert all(r.unavailable for r in reports)
    notices = [m for m in setup.bot.fake.messages if "Metrics unavailable" in (m.text or "")]
    assert len(notices) == 1
    assert "HTTP 503" in (notices[0].text or "")
    still = next(a for a in await alerts(setup.bot.services.db) if a.id == firing.id)
    assert still.state == "firing"  # no data is not a recovery
    setup.api.fail_with(None)
    await setup.polls(105, 135)
    back = [m for m in setup.bot.fake.messages if "Metrics answer again" in (m.text or "")]
    assert len(back) == 1
    resolved = next(a for a in await alerts(setup.bot.services.db) if a.id == firing.id)
    assert resolved.state == "resolved"


# --- buttons --------------------------------------------------------------------------------------


async def fire_checkout(setup: Setup) -> Any:
    setup.errors.set("checkout", 0.08, since=ts(0))
    await setup.polls(0, 30)
    (message,) = alert_messages(setup.bot.fake)
    return message


async def test_acknowledge_updates_the_message_in_place_once(setup: Setup) -> None:
    message = await fire_checkout(setup)
    bot = setup.bot
    pressed = buttons(message)[messaging.ACKNOWLEDGE]["value"]
    await bot.slack.click(
        messaging.ACKNOWLEDGE, channel_id=message.channel, message_ts=message.ts, user_id="U0BOB"
    )
    await bot.settle()
    now = bot.fake.find_message(message.channel, message.ts)
    assert now is not None and now.updated
    assert "Acknowledged by <@U0BOB>" in text_of(now)
    assert messaging.ACKNOWLEDGE not in buttons(now)
    # A second press (someone else, or a retry) changes nothing and says who was first.
    await bot.slack.click(
        messaging.ACKNOWLEDGE,
        value=pressed,
        channel_id=message.channel,
        message_ts=message.ts,
        user_id="U0ALICE",
    )
    await bot.settle()
    replies = [m.text or "" for m in bot.fake.messages if m.source == "response_url"]
    assert any("already acknowledged by <@U0BOB>" in text for text in replies)
    [critical] = [a for a in await alerts(bot.services.db) if a.rule == "error-rate-critical"]
    assert (critical.state, critical.acknowledged_by) == ("acknowledged", "U0BOB")
    entries = await audit.entries(bot.services.db, action="button:alert_acknowledge")
    assert [e.outcome for e in entries] == ["refused", "ok"]
    # Acknowledged still resolves when the value recovers.
    setup.errors.set("checkout", 0.001, since=ts(40))
    await setup.polls(45, 75)
    now = bot.fake.find_message(message.channel, message.ts)
    assert now is not None and "— resolved" in text_of(now)


async def test_only_owners_silence_and_a_silence_holds_back_new_alerts(setup: Setup) -> None:
    message = await fire_checkout(setup)
    bot = setup.bot
    await bot.slack.click(
        messaging.SILENCE, channel_id=message.channel, message_ts=message.ts, user_id="U0BOB"
    )
    await bot.settle()
    replies = [m.text or "" for m in bot.fake.messages if m.source == "response_url"]
    assert any("only the owners of checkout (<@U0ALICE>) may silence" in t for t in replies)
    await bot.slack.click(
        messaging.SILENCE, channel_id=message.channel, message_ts=message.ts, user_id="U0ALICE"
    )
    await bot.settle()
    now = bot.fake.find_message(message.channel, message.ts)
    assert now is not None and "silenced by <@U0ALICE> until" in text_of(now)
    assert messaging.SILENCE not in buttons(now)
    # It resolves, then breaches again within the hour: recorded, but not posted.
    setup.errors.set("checkout", 0.001, since=ts(40))
    setup.errors.set("checkout", 0.08, since=ts(100))
    reports = await setup.polls(45, 150)
    refired = [t for r in reports for t in r.transitions if t.current == "firing"]
    assert [t.rule for t in refired] == ["error-rate-critical"]
    assert len(alert_messages(bot.fake)) == 1
    assert [
        e.outcome for e in await audit.entries(bot.services.db, action="button:alert_silence")
    ] == [
        "ok",
        "refused",
    ]


async def test_a_storm_is_one_message_per_service_and_survives_rate_limits(
    fake_slack: FakeSlack, sqlite_database: Database, prometheus_api: PrometheusApi, tmp_path: Path
) -> None:
    names = [f"svc-{n:02d}" for n in range(40)]
    services = "".join(
        f"  - {{name: {name}, targets: {{dev: {{kind: compose, project: p, file: f.yml,"
        f" service: web}}}}}}\n"
        for name in names
    )
    rules = "alerts:\n" + "".join(
        f"  - {{name: rule-{n}, metric: error_rate, op: '>', threshold: 0.0{n + 1},"
        f" severity: {'critical' if n == 0 else 'warning'}}}\n"
        for n in range(5)
    )
    path = alerting_catalog(tmp_path, prometheus_api.url, services=services, rules=rules)
    burning = Timeline()
    for name in names:
        burning.set(name, 0.5, since=0)
    prometheus_api.answer(ERRORS, ["checkout", "payments", *names], burning)
    prometheus_api.answer(LATENCY, [], burning)
    fake_slack.ratelimit("chat.postMessage", 20)
    catalog = load_catalog(path, {})
    async with start_bot(fake_slack, sqlite_database, catalog, config_path=path) as bot:
        bot.services.alerts.paging = None
        try:
            report = await bot.services.alerts.poll(now=at(0))
        finally:
            await bot.services.alerts.close()
    assert len([t for t in report.transitions if t.current == "firing"]) == 200
    assert report.posted == 200
    top = alert_messages(fake_slack)
    assert len(top) == 40
    assert all("rule-0* — firing (critical)" in text_of(m) for m in top)
    alerts_in_threads = [
        m for m in alert_messages(fake_slack, top_level=False) if "— firing" in text_of(m)
    ]
    assert len(alerts_in_threads) == 160
    roots = {m.ts for m in top}
    assert {m.thread_ts for m in alerts_in_threads} == roots
    assert all(a.message_ts for a in await alerts(sqlite_database))
    statuses = [c.status for c in fake_slack.calls_to("chat.postMessage")]
    assert statuses.count(429) > 0  # Slack pushed back, and the client waited and went on


# --- certificates ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_certificates_warn_30_days_ahead_and_turn_critical_at_7(
    fake_slack: FakeSlack,
    database: Database,
    prometheus_api: PrometheusApi,
    tmp_path: Path,
    ca: trustme.CA,
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = utc_now()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]  # nothing listens here once the socket is closed
    async with tls_server(ca, now + timedelta(days=20)) as port:
        path = alerting_catalog(tmp_path, prometheus_api.url)
        path.write_text(
            path.read_text()
            + f"certificates:\n  - {{host: 127.0.0.1, port: {port}}}\n"
            + f"  - {{host: 127.0.0.1, port: {nobody}, warn_before: 10d}}\n"
        )
        catalog = load_catalog(path, {})
        environ = {"SSL_CERT_FILE": str(ca_file)}
        async with start_bot(
            fake_slack, database, catalog, config_path=path, environ=environ
        ) as bot:
            bot.services.alerts.paging = None
            alerting = bot.services.alerts
            first = await alerting.check_certificates(now=now)
            await alerting.check_certificates(now=now + timedelta(hours=24))
            later = await alerting.check_certificates(now=now + timedelta(days=14))
            await alerting.close()
    assert first[0].startswith(f"127.0.0.1:{port}: expires") and first[0].endswith("(warning)")
    assert later[0].endswith("(critical)")
    assert "could not check" in first[1]
    (message,) = alert_messages(fake_slack)
    shown = text_of(message)
    assert f"TLS certificate of 127.0.0.1:{port}* — firing (critical)" in shown
    assert "in 6 days" in shown and "warns 30 days before expiry" in shown
    thread = [m.text or "" for m in fake_slack.messages if m.thread_ts == message.ts]
    assert any("Now critical" in text for text in thread)
    unreadable = [m for m in fake_slack.messages if "Could not check the TLS" in (m.text or "")]
    assert len(unreadable) == 1  # said once, not every day
    assert f"127.0.0.1:{nobody}" in (unreadable[0].text or "")
    [alert] = [a for a in await alerts(database) if a.rule == "tls-certificate"]
    assert (alert.state, alert.severity) == ("firing", "critical")


async def test_roll_back_from_the_alert_is_the_manual_rollback(
    fake_slack: FakeSlack,
    sqlite_database: Database,
    prometheus_api: PrometheusApi,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    path = alerting_catalog(tmp_path, prometheus_api.url, extra="  environment: dev\n")
    errors = Timeline()
    errors.set("checkout", 0.001, since=0)
    prometheus_api.answer(ERRORS, ["checkout"], errors)
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    catalog = load_catalog(path, {})
    async with start_bot(
        fake_slack, sqlite_database, catalog, environ=environ, config_path=path
    ) as bot:
        bot.services.alerts.paging = None
        try:
            for version in ("v2", "v3"):
                await bot.slack.command("/deploy", f"checkout dev {version}")
                await finish(bot)
            start = utc_now()
            errors.set("checkout", 0.2, since=start.timestamp() - 1)
            for n in range(3):
                await bot.services.alerts.poll(now=start + n * STEP)
            (message,) = alert_messages(fake_slack)
            assert "v3 by <@U0ALICE>, just now" in text_of(message)
            roll_back = buttons(message)[messaging.ROLL_BACK]
            assert roll_back["value"] == "checkout|dev|v2"
            await bot.slack.click(
                messaging.ROLL_BACK,
                channel_id=message.channel,
                message_ts=message.ts,
                user_id="U0ALICE",
            )
            await finish(bot)
        finally:
            await bot.services.alerts.close()
    assert kube.image("shop-dev", "checkout") == "registry.example/checkout:v2"
    async with sqlite_database.session() as session:
        rollback = await session.scalar(select(Deploy).where(Deploy.strategy == "rollback"))
    assert rollback is not None and (rollback.state, rollback.version) == ("succeeded", "v2")
    actions = [e.action for e in await audit.entries(sqlite_database)]
    assert "rollback:requested" in actions and "button:deploy_rollback" in actions
