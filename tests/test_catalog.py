"""The catalog opsbot.yml: durations, the runbook's defaults, and every kind of problem."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError

import bot.catalog as catalog_module
from bot.catalog import (
    RESERVED_SERVICE_NAMES,
    AlertRule,
    BusinessHours,
    Catalog,
    CatalogError,
    ComposeTarget,
    KubernetesTarget,
    LambdaTarget,
    OncallSchedule,
    RollbackTrigger,
    format_duration,
    load_catalog,
    parse_duration,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "opsbot.yml"

# A small valid catalog; the problem table edits one line of it (or appends lines at line 17 on),
# so the expected line numbers below can be read off this text.
BASE = """\
slack:
  channels: {deploys: C0DEPLOYS, alerts: C0ALERTS, incidents: C0INCIDENTS}
environments:
  - name: dev
  - name: staging
  - name: prod
    approvals: 1
    approvers: [U0ALICE]
services:
  - name: checkout
    targets:
      dev: {kind: kubernetes, namespace: shop, deployment: checkout, container: app, image: reg/co}
      prod: {kind: lambda, function: checkout, alias: live, artifact: "s3://b/co/{version}.zip"}
  - name: reports
    targets:
      dev: {kind: compose, project: reports, file: compose.yml, service: web}
"""


def write(tmp_path: Path, text: str, name: str = "opsbot.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(path, environ={} if environ is None else environ)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0s", timedelta(0)),
        (" 64h ", timedelta(hours=64)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["10 minutes", "", "5", "1.5h", "-5m", "15M", "30m1h", "1h 30m", "m", "2w", "5ms", "h1"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"bad duration {text!r} (write e.g. 30s, 15m, 2h, 30d)"


def test_parse_duration_rejects_a_duration_too_long_for_timedelta() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("999999999999d")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=2, seconds=5), "2d5s"),
    ],
)
def test_format_duration_is_the_inverse_of_parse_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


# --- the example ---------------------------------------------------------------------------------


def test_example_validates_with_an_empty_environment() -> None:
    catalog = load_catalog(EXAMPLE, environ={})
    assert catalog.summary == "ok: 3 services, 3 environments"
    assert catalog.summary() == "ok: 3 services, 3 environments"
    assert catalog.environment_names() == ["dev", "staging", "prod"]
    assert catalog.service_names() == ["checkout", "thumbnails", "reports"]
    kinds = {
        service.name: {type(t) for t in service.targets.values()} for service in catalog.services
    }
    assert kinds == {
        "checkout": {KubernetesTarget},
        "thumbnails": {LambdaTarget},
        "reports": {ComposeTarget},
    }


def test_example_prod_has_approval_monitoring_and_a_weekend_freeze() -> None:
    prod = load_catalog(EXAMPLE, environ={}).environment("prod")
    assert prod is not None
    assert (prod.approvals, prod.monitor, prod.require_previous) == (1, timedelta(minutes=10), True)
    [window] = prod.freeze
    assert (window.cron, window.duration, window.reason) == (
        "0 18 * * FRI",
        timedelta(hours=64),
        "weekend",
    )
    start = window.trigger().get_next_fire_time(None, datetime(2025, 1, 6, tzinfo=UTC))
    assert start == datetime(2025, 1, 10, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))


def test_example_takes_the_routing_key_from_the_environment_when_set() -> None:
    catalog = load_catalog(EXAMPLE, environ={"CHECKOUT_PD_ROUTING_KEY": "R0SECRET"})
    checkout = catalog.service("checkout")
    assert checkout is not None and checkout.pagerduty is not None
    assert checkout.pagerduty.routing_key == "R0SECRET"
    assert "R0SECRET" not in repr(checkout)
    assert load_catalog(EXAMPLE, environ={}).oncall.default_routing_key == "example-routing-key"


def _field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        for nested in re.findall(r"\b([A-Z]\w+)\b", str(field.annotation)):
            candidate = getattr(catalog_module, nested, None)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _field_names(candidate, seen)
    return names


def test_example_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    written = set(re.findall(r"([a-z_]+):", text))
    assert _field_names(Catalog, set()) - written == set()


# --- defaults are the runbook's numbers ---------------------------------------------------------


def minimal(tmp_path: Path) -> Catalog:
    return load_catalog(write(tmp_path, BASE), environ={})


def test_alert_defaults_are_the_runbook_alerting_table(tmp_path: Path) -> None:
    rules = [
        (a.name, a.metric, a.op, a.threshold, a.for_, a.severity) for a in minimal(tmp_path).alerts
    ]
    assert rules == [
        ("error-rate-warning", "error_rate", ">", 0.01, timedelta(minutes=5), "warning"),
        ("error-rate-critical", "error_rate", ">", 0.05, timedelta(minutes=2), "critical"),
        ("latency-p99-warning", "latency_p99", ">", 2.0, timedelta(minutes=10), "warning"),
        ("cpu-warning", "cpu", ">", 0.80, timedelta(minutes=15), "warning"),
        ("disk-free-critical", "disk_free", "<", 0.10, timedelta(0), "critical"),
    ]


def test_rollback_trigger_defaults_are_the_runbook_automated_triggers(tmp_path: Path) -> None:
    triggers = [
        (t.name, t.metric, t.op, t.threshold, t.baseline_factor, t.for_)
        for t in minimal(tmp_path).rollback_triggers
    ]
    assert triggers == [
        ("error-rate", "error_rate", ">", 0.05, None, timedelta(minutes=2)),
        ("latency-p99-baseline", "latency_p99", ">", None, 5.0, timedelta(minutes=5)),
        ("health-failing", "health_failing", ">", 0.5, None, timedelta(0)),
    ]


def test_policy_defaults_are_the_runbook_numbers(tmp_path: Path) -> None:
    catalog = minimal(tmp_path)
    assert catalog.oncall.provider == "pagerduty"
    assert catalog.oncall.ack_within == timedelta(minutes=15)
    assert catalog.oncall.engage_within == timedelta(minutes=30)
    hours = catalog.oncall.business_hours
    assert (hours.timezone, hours.days, hours.start, hours.end) == (
        "UTC",
        ["MON", "TUE", "WED", "THU", "FRI"],
        time(9),
        time(18),
    )
    assert catalog.incidents.postmortem_due == timedelta(hours=48)
    assert catalog.metrics.source == "prometheus"
    assert catalog.metrics.url == "http://localhost:9090"
    assert catalog.metrics.poll_interval == timedelta(seconds=15)
    assert catalog.slack.incident_channel_prefix == "inc"
    assert catalog.certificates == []


def test_certificate_defaults(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, BASE + "certificates: [{host: shop.example}]\n"), {})
    [certificate] = catalog.certificates
    assert (certificate.port, certificate.warn_before) == (443, timedelta(days=30))


def test_environment_and_target_defaults(tmp_path: Path) -> None:
    catalog = minimal(tmp_path)
    dev = catalog.environment("dev")
    assert dev is not None
    assert (
        dev.approvals,
        dev.approvers,
        dev.deployers,
        dev.monitor,
        dev.require_previous,
        dev.freeze,
    ) == (0, [], [], timedelta(0), False, [])
    checkout, reports = catalog.services
    kubernetes, aws_lambda = checkout.targets["dev"], checkout.targets["prod"]
    assert isinstance(kubernetes, KubernetesTarget) and kubernetes.strategy == "rolling"
    assert isinstance(aws_lambda, LambdaTarget)
    assert (aws_lambda.strategy, aws_lambda.steps, aws_lambda.step_wait) == (
        "canary",
        [10, 50, 100],
        timedelta(minutes=2),
    )
    assert reports.targets["dev"].strategy == "recreate"
    assert (checkout.health, checkout.smoke, checkout.pagerduty, checkout.playbook) == (
        None,
        None,
        None,
        None,
    )
    assert (checkout.metrics, checkout.aliases, checkout.channel) == ({}, [], None)


def test_given_alerts_replace_the_defaults(tmp_path: Path) -> None:
    text = BASE + "alerts: []\nrollback_triggers: []\n"
    catalog = load_catalog(write(tmp_path, text), environ={})
    assert (catalog.alerts, catalog.rollback_triggers) == ([], [])


# --- lookups ------------------------------------------------------------------------------------


def test_lookups_follow_names_aliases_and_promotion_order() -> None:
    catalog = load_catalog(EXAMPLE, environ={})
    checkout = catalog.service("checkout")
    assert catalog.service("co") is checkout
    assert catalog.service("Checkout") is checkout
    assert catalog.service("nope") is None
    assert checkout is not None and checkout.target("prod") is checkout.targets["prod"]
    assert catalog.environment("nope") is None
    previous = catalog.previous_environment("prod")
    assert previous is not None and previous.name == "staging"
    assert catalog.previous_environment("dev") is None
    assert catalog.previous_environment("nope") is None


def test_reserved_names_are_the_deploy_subcommands() -> None:
    assert {"help", "status", "history", "lock", "unlock", "list"} == RESERVED_SERVICE_NAMES


# --- ${VAR} ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${NS}", {"NS": "shop"}, "shop"),
        ("${NS:-fallback}", {}, "fallback"),
        ("${NS:-fallback}", {"NS": ""}, "fallback"),
        ("${NS:-fallback}", {"NS": "shop"}, "shop"),
        ("pre-${NS}-post", {"NS": "shop"}, "pre-shop-post"),
        ("${A}${B}", {"A": "sh", "B": "op"}, "shop"),
        ("$${NS}", {}, "${NS}"),
        ("plain", {}, "plain"),
    ],
)
def test_variables_are_substituted_in_values(
    tmp_path: Path, value: str, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, edited("namespace: shop,", f"namespace: '{value}',"))
    target = load_catalog(path, environ=environ).services[0].targets["dev"]
    assert isinstance(target, KubernetesTarget)
    assert target.namespace == expected


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOT_TEST_NAMESPACE", "from-os")
    path = write(tmp_path, edited("namespace: shop,", "namespace: '${OPSBOT_TEST_NAMESPACE}',"))
    target = load_catalog(str(path)).services[0].targets["dev"]
    assert isinstance(target, KubernetesTarget) and target.namespace == "from-os"


def test_a_value_from_a_variable_is_not_echoed_in_problems(tmp_path: Path) -> None:
    path = write(tmp_path, edited("    approvals: 1", "    approvals: ${APPROVALS}"))
    assert problems_of(path, {"APPROVALS": "s3cr3t"}) == [
        f"{path}:7: environments[2].approvals: expected a whole number, got the value of"
        " ${APPROVALS}"
    ]


# --- YAML features ------------------------------------------------------------------------------


def test_anchors_merge_keys_and_x_keys_are_allowed(tmp_path: Path) -> None:
    text = (
        "x-kube: &kube {kind: kubernetes, namespace: shop, deployment: d, container: app,"
        " image: reg/app}\n"
        + edited(
            "      dev: {kind: compose, project: reports, file: compose.yml, service: web}",
            "      dev: {<<: *kube, namespace: reports}",
        )
    )
    target = load_catalog(write(tmp_path, text), environ={}).services[1].targets["dev"]
    assert isinstance(target, KubernetesTarget)
    assert (target.namespace, target.deployment) == ("reports", "d")


def test_unquoted_clock_times_stay_times(tmp_path: Path) -> None:
    text = BASE + "oncall: {business_hours: {start: 08:30, end: 17:45, days: [mon, sat]}}\n"
    hours = load_catalog(write(tmp_path, text), environ={}).oncall.business_hours
    assert (hours.start, hours.end, hours.days) == (time(8, 30), time(17, 45), ["MON", "SAT"])


# --- problems: file:line: key.path: message -------------------------------------------------------

SPEC_CASES = [
    # (id, old line, new line, expected problem without the file name)
    (
        "duplicate-service",
        "  - name: reports",
        "  - name: checkout",
        "14: services[1].name: duplicate service name 'checkout'",
    ),
    (
        "unknown-environment",
        "      prod: {kind: lambda",
        "      prd: {kind: lambda",
        "13: services[0].targets.prd: unknown environment 'prd' (environments: dev, staging, prod)",
    ),
    (
        "bad-duration",
        "  - name: prod",
        "  - name: prod\n    monitor: 10 minutes",
        "7: environments[2].monitor: bad duration '10 minutes' (write e.g. 30s, 15m, 2h, 30d)",
    ),
    (
        "reserved-service-name",
        "  - name: reports",
        "  - name: status",
        "14: services[1].name: 'status' is a reserved word (a /deploy subcommand: help, history,"
        " list, lock, status, unlock)",
    ),
    (
        "unknown-key",
        "  - name: dev",
        "  - {name: dev, aprovals: 1}",
        "4: environments[0].aprovals: unknown key 'aprovals' (did you mean 'approvals'?)",
    ),
    (
        "unknown-key-lists-allowed",
        "  - name: dev",
        "  - {name: dev, zzz: 1}",
        "4: environments[0].zzz: unknown key 'zzz' (allowed: name, approvals, approvers, deployers,"
        " monitor, require_previous, freeze, approval_timeout)",
    ),
    (
        "unknown-key-in-target",
        "container: app,",
        "container: app, replicas: 3,",
        "12: services[0].targets.dev.replicas: unknown key 'replicas' (allowed: kind, namespace,"
        " deployment, container, image, service, context, strategy, steps, step_wait,"
        " ready_timeout)",
    ),
    (
        "wrong-type-int",
        "    approvals: 1",
        "    approvals: one",
        "7: environments[2].approvals: expected a whole number, got 'one'",
    ),
    (
        "wrong-type-str",
        "namespace: shop,",
        "namespace: 42,",
        "12: services[0].targets.dev.namespace: expected a string, got 42 (put it in quotes)",
    ),
    (
        "wrong-type-list",
        "    approvers: [U0ALICE]",
        "    approvers: U0ALICE",
        "8: environments[2].approvers: expected a list, got 'U0ALICE'",
    ),
    (
        "wrong-type-bool",
        "  - name: staging",
        "  - {name: staging, require_previous: maybe}",
        "5: environments[1].require_previous: expected true or false, got 'maybe'",
    ),
    (
        "wrong-type-null",
        "  - name: staging",
        "  - {name: staging, approvers: }",
        "5: environments[1].approvers: expected a list, got nothing (null)",
    ),
    (
        "negative",
        "    approvals: 1",
        "    approvals: -1",
        "7: environments[2].approvals: must be >= 0, got -1",
    ),
    (
        "bad-cron",
        "  - name: staging",
        '  - {name: staging, freeze: [{cron: "61 18 * * FRI", duration: 64h}]}',
        "5: environments[1].freeze[0].cron: bad cron expression '61 18 * * FRI': Error validating"
        " expression '61': the last value (61) is higher than the maximum value (59)",
    ),
    (
        "cron-field-count",
        "  - name: staging",
        '  - {name: staging, freeze: [{cron: "0 18 * *", duration: 64h}]}',
        "5: environments[1].freeze[0].cron: bad cron expression '0 18 * *': expected 5 fields"
        " (minute hour day-of-month month day-of-week), got 4",
    ),
    (
        "cron-numeric-weekday",
        "  - name: staging",
        '  - {name: staging, freeze: [{cron: "0 18 * * 5", duration: 64h}]}',
        "5: environments[1].freeze[0].cron: bad cron expression '0 18 * * 5': write the day of week"
        " as names (MON-FRI, SAT,SUN), not numbers",
    ),
    (
        "freeze-zero-duration",
        "  - name: staging",
        '  - {name: staging, freeze: [{cron: "0 18 * * FRI", duration: 0s}]}',
        "5: environments[1].freeze[0].duration: must be longer than 0s",
    ),
    (
        "unknown-timezone",
        "  - name: staging",
        '  - {name: staging, freeze: [{cron: "0 18 * * FRI", duration: 1h, timezone: Mars/Base}]}',
        "5: environments[1].freeze[0].timezone: unknown timezone 'Mars/Base' (write an IANA name"
        " such as Europe/Berlin or UTC)",
    ),
    (
        "unset-variable",
        "alias: live,",
        "alias: '${ALIAS}',",
        "13: services[0].targets.prod.alias: environment variable ALIAS is not set",
    ),
    (
        "bad-variable-reference",
        "alias: live,",
        "alias: '${1X}',",
        "13: services[0].targets.prod.alias: bad variable reference '${1X}' (write ${NAME} or"
        " ${NAME:-default})",
    ),
    (
        "unclosed-variable",
        "alias: live,",
        "alias: '${X',",
        "13: services[0].targets.prod.alias: bad variable reference '${' (write ${NAME} or"
        " ${NAME:-default})",
    ),
    (
        "unreadable-scalar",
        "  - name: dev",
        "  - {name: dev, approvers: [2025-13-01]}",
        "4: environments[0].approvers[0]: cannot read '2025-13-01': month must be in 1..12",
    ),
    (
        "duplicate-environment",
        "  - name: staging",
        "  - name: dev",
        "5: environments[1].name: duplicate environment name 'dev'",
    ),
    (
        "bad-environment-name",
        "  - name: staging",
        "  - name: Staging Area",
        "5: environments[1].name: bad name 'Staging Area' (use lowercase letters, digits, '-' and"
        " '_', at most 63)",
    ),
    (
        "approvers-required",
        "    approvers: [U0ALICE]",
        "    deployers: [U0ALICE]",
        "6: environments[2].approvers: required when approvals is 1: who may approve deploys to"
        " prod?",
    ),
    (
        "too-few-approvers",
        "    approvals: 1",
        "    approvals: 2",
        "8: environments[2].approvers: 2 approvals need at least 2 approvers, got 1",
    ),
    (
        "slack-user-id",
        "    approvers: [U0ALICE]",
        "    approvers: [alice]",
        "8: environments[2].approvers[0]: 'alice' is not a Slack user or user-group id"
        " (U…, W… or S…)",
    ),
    (
        "slack-channel-id",
        "alerts: C0ALERTS,",
        "alerts: '#alerts',",
        "2: slack.channels.alerts: '#alerts' is not a Slack channel id (C… or G…)",
    ),
    (
        "channel-prefix",
        "incidents: C0INCIDENTS}",
        "incidents: C0INCIDENTS}\n  incident_channel_prefix: Incident",
        "3: slack.incident_channel_prefix: bad channel prefix 'Incident' (lowercase letters,"
        " digits, '-' and '_', at most 21)",
    ),
    (
        "missing-channel",
        ", incidents: C0INCIDENTS}",
        "}",
        "2: slack.channels.incidents: required, but missing",
    ),
    (
        "first-requires-previous",
        "  - name: dev",
        "  - {name: dev, require_previous: true}",
        "4: environments[0].require_previous: dev is the first environment: there is no previous"
        " one to require",
    ),
    (
        "previous-target-missing",
        "    approvals: 1",
        "    require_previous: true",
        "13: services[0].targets.prod: prod requires a deploy to staging first (require_previous),"
        " but the service has no staging target",
    ),
    (
        "missing-required-key",
        "container: app, ",
        "",
        "12: services[0].targets.dev.container: required, but missing",
    ),
    (
        "missing-kind",
        "{kind: compose, ",
        "{",
        "16: services[1].targets.dev.kind: required, but missing (one of kubernetes, lambda,"
        " compose)",
    ),
    (
        "unknown-kind",
        "{kind: compose,",
        "{kind: nomad,",
        "16: services[1].targets.dev.kind: unknown kind 'nomad' (kinds: kubernetes, lambda,"
        " compose)",
    ),
    (
        "strategy-per-kind",
        "service: web}",
        "service: web, strategy: rolling}",
        "16: services[1].targets.dev.strategy: must be 'recreate', got 'rolling'",
    ),
    (
        "image-with-tag",
        "image: reg/co}",
        "image: 'reg/co:1.2'}",
        "12: services[0].targets.dev.image: write the image without a tag or digest ('reg/co:1.2');"
        " the deployed version is the tag",
    ),
    (
        "blue-green-needs-service",
        "image: reg/co}",
        "image: reg/co, strategy: blue-green}",
        "12: services[0].targets.dev.service: required for strategy blue-green (the Service whose"
        " selector switches)",
    ),
    (
        "artifact-without-version",
        '"s3://b/co/{version}.zip"',
        '"s3://b/co/latest.zip"',
        "13: services[0].targets.prod.artifact: artifact 's3://b/co/latest.zip' must contain"
        " {version} (e.g. s3://bucket/key/{version}.zip)",
    ),
    (
        "artifact-not-s3",
        '"s3://b/co/{version}.zip"',
        '"https://b/co/{version}.zip"',
        "13: services[0].targets.prod.artifact: bad artifact 'https://b/co/{version}.zip' (write"
        " s3://bucket/key/{version}.zip)",
    ),
    (
        "artifact-placeholder",
        '"s3://b/co/{version}.zip"',
        '"s3://b/{env}/{version}.zip"',
        "13: services[0].targets.prod.artifact: unknown placeholder {env} in"
        " 's3://b/{env}/{version}.zip' (allowed: {version})",
    ),
    (
        "steps-increase",
        "alias: live,",
        "alias: live, steps: [50, 10, 100],",
        "13: services[0].targets.prod.steps: steps must increase, got [50, 10, 100]",
    ),
    (
        "steps-end-at-100",
        "alias: live,",
        "alias: live, steps: [10, 50],",
        "13: services[0].targets.prod.steps: the last step must be 100 (all traffic), got [10, 50]",
    ),
    (
        "steps-are-percentages",
        "alias: live,",
        "alias: live, steps: [0, 100],",
        "13: services[0].targets.prod.steps: steps are percentages between 1 and 100, got [0, 100]",
    ),
    (
        "no-targets",
        "      dev: {kind: compose, project: reports, file: compose.yml, service: web}",
        "      {}",
        "15: services[1].targets: must have at least 1 entry",
    ),
    (
        "empty-string",
        "project: reports,",
        "project: '',",
        "16: services[1].targets.dev.project: must not be empty",
    ),
]

APPENDED_CASES = [
    # (id, lines appended after line 16, expected problem without the file name)
    (
        "reserved-alias",
        "    aliases: [lock]",
        "17: services[1].aliases[0]: 'lock' is a reserved word (a /deploy subcommand: help,"
        " history, list, lock, status, unlock)",
    ),
    (
        "alias-taken",
        "    aliases: [rep, checkout]",
        "17: services[1].aliases[1]: 'checkout' is already used by service 'checkout'",
    ),
    (
        "wrong-type-mapping",
        "    health: yes",
        "17: services[1].health: expected a mapping (key: value), got true",
    ),
    (
        "unset-routing-key",
        "    pagerduty: {routing_key: '${PD_KEY}'}",
        "17: services[1].pagerduty.routing_key: environment variable PD_KEY is not set",
    ),
    (
        "escalation-policy-id",
        "    pagerduty: {routing_key: k, escalation_policy: sre}",
        "17: services[1].pagerduty.escalation_policy: 'sre' is not a PagerDuty escalation policy id"
        " (P…)",
    ),
    (
        "smoke-shell-string",
        "    smoke: {command: './smoke.sh {env}'}",
        "17: services[1].smoke.command: must be an argument list such as"
        ' [./scripts/smoke-test.sh, "{env}"], not a shell string',
    ),
    (
        "smoke-placeholder",
        "    smoke: {command: [./smoke.sh, '{region}']}",
        "17: services[1].smoke.command[1]: unknown placeholder {region} in '{region}' (allowed:"
        " {env}, {service}, {version})",
    ),
    (
        "smoke-bad-brace",
        "    smoke: {command: [./smoke.sh, '{env']}",
        "17: services[1].smoke.command[1]: bad placeholder in '{env' (write e.g. {env})",
    ),
    (
        "health-url",
        "    health: {url: 'ftp://reports/healthz'}",
        "17: services[1].health.url: bad URL 'ftp://reports/healthz' (write http://… or https://…)",
    ),
    (
        "metric-key",
        "    metrics: {Error-Rate: 'sum(x)'}",
        "17: services[1].metrics.Error-Rate: bad metric name 'Error-Rate' (a name such as"
        " error_rate: lowercase letters, digits and '_'; the query itself belongs in a service's"
        " metrics map)",
    ),
    (
        "builtin-metric",
        "    metrics: {health_failing: 'up == 0'}",
        "17: services[1].metrics: health_failing is measured by opsbot itself; choose another name",
    ),
    (
        "owner-id",
        "    owners: [U0ERIN, erin@example.com]",
        "17: services[1].owners[1]: 'erin@example.com' is not a Slack user or user-group id"
        " (U…, W… or S…)",
    ),
    (
        "service-channel",
        "    channel: reports",
        "17: services[1].channel: 'reports' is not a Slack channel id (C… or G…)",
    ),
    (
        "playbook-name",
        "    playbook: Blue Green",
        "17: services[1].playbook: bad name 'Blue Green' (use lowercase letters, digits, '-' and"
        " '_', at most 63)",
    ),
    (
        "alert-metric-is-a-name",
        "alerts: [{name: high, metric: 'rate(x[5m])', op: '>', threshold: 1, severity: warning}]",
        "17: alerts[0].metric: bad metric name 'rate(x[5m])' (a name such as error_rate: lowercase"
        " letters, digits and '_'; the query itself belongs in a service's metrics map)",
    ),
    (
        "alert-op",
        "alerts: [{name: high, metric: cpu, op: '>=', threshold: 1, severity: warning}]",
        "17: alerts[0].op: must be '>' or '<', got '>='",
    ),
    (
        "alert-percent",
        "alerts: [{name: high, metric: cpu, op: '>', threshold: 5%, severity: warning}]",
        "17: alerts[0].threshold: write ratios as fractions, not percentages: '5%' is 0.05",
    ),
    (
        "alert-severity",
        "alerts: [{name: high, metric: cpu, op: '>', threshold: 1, severity: page}]",
        "17: alerts[0].severity: must be 'warning' or 'critical', got 'page'",
    ),
    (
        "alert-threshold-number",
        "alerts: [{name: high, metric: cpu, op: '>', threshold: lots, severity: warning}]",
        "17: alerts[0].threshold: expected a number, got 'lots'",
    ),
    (
        "duplicate-alert",
        "alerts:\n  - {name: a, metric: cpu, op: '>', threshold: 1, severity: warning}\n"
        "  - {name: a, metric: cpu, op: '>', threshold: 2, severity: critical}",
        "19: alerts[1].name: duplicate alert name 'a'",
    ),
    (
        "trigger-both-limits",
        "rollback_triggers: [{name: r, metric: cpu, op: '>', threshold: 1, baseline_factor: 2}]",
        "17: rollback_triggers[0].threshold: write exactly one of threshold (an absolute value) or"
        " baseline_factor (a multiple of the pre-deploy baseline)",
    ),
    (
        "trigger-no-limit",
        "rollback_triggers: [{name: r, metric: cpu, op: '>'}]",
        "17: rollback_triggers[0].threshold: write exactly one of threshold (an absolute value) or"
        " baseline_factor (a multiple of the pre-deploy baseline)",
    ),
    (
        "trigger-factor-positive",
        "rollback_triggers: [{name: r, metric: cpu, op: '>', baseline_factor: 0}]",
        "17: rollback_triggers[0].baseline_factor: must be > 0, got 0",
    ),
    (
        "duplicate-trigger",
        "rollback_triggers: [{name: r, metric: cpu, op: '>', threshold: 1},"
        " {name: r, metric: cpu, op: '<', threshold: 0}]",
        "17: rollback_triggers[1].name: duplicate rollback trigger name 'r'",
    ),
    (
        "static-needs-schedule",
        "oncall: {provider: static}",
        "17: oncall.schedule: required when provider is static",
    ),
    (
        "schedule-only-static",
        "oncall: {schedule: {start: 2025-01-06, shifts: [{primary: U0A}]}}",
        "17: oncall.schedule: only used with provider: static",
    ),
    (
        "oncall-provider",
        "oncall: {provider: opsgenie}",
        "17: oncall.provider: must be 'pagerduty' or 'static', got 'opsgenie'",
    ),
    (
        "oncall-escalation-policy",
        "oncall: {escalation_policy: default}",
        "17: oncall.escalation_policy: 'default' is not a PagerDuty escalation policy id (P…)",
    ),
    (
        "engage-before-ack",
        "oncall: {ack_within: 30m, engage_within: 15m}",
        "17: oncall.engage_within: must not be shorter than ack_within (30m)",
    ),
    (
        "schedule-person",
        "oncall:\n  provider: static\n  schedule:\n    start: 2025-01-06\n"
        "    shifts: [{primary: alice}]",
        "21: oncall.schedule.shifts[0].primary: 'alice' is not a Slack user id (U… or W…) or an"
        " e-mail address",
    ),
    (
        "schedule-date",
        "oncall: {provider: static, schedule: {start: soon, shifts: [{primary: U0A}]}}",
        "17: oncall.schedule.start: expected a date (YYYY-MM-DD), got 'soon'",
    ),
    (
        "business-hours-order",
        "oncall: {business_hours: {start: '18:00', end: '09:00'}}",
        "17: oncall.business_hours.end: must be after start (18:00)",
    ),
    (
        "business-hours-clock",
        "oncall: {business_hours: {start: 9am}}",
        "17: oncall.business_hours.start: bad time of day '9am' (write HH:MM, e.g. 09:00 or 18:30)",
    ),
    (
        "business-hours-day",
        "oncall: {business_hours: {days: [MON, FUNDAY]}}",
        "17: oncall.business_hours.days[1]: bad day 'FUNDAY' (write one of MON, TUE, WED, THU, FRI,"
        " SAT, SUN)",
    ),
    (
        "postmortem-due",
        "incidents: {postmortem_due: two days}",
        "17: incidents.postmortem_due: bad duration 'two days' (write e.g. 30s, 15m, 2h, 30d)",
    ),
    (
        "bare-number-duration",
        "metrics: {poll_interval: 15}",
        "17: metrics.poll_interval: bad duration 15 (write e.g. 30s, 15m, 2h, 30d)",
    ),
    (
        "metrics-source",
        "metrics: {source: datadog}",
        "17: metrics.source: must be 'prometheus' or 'cloudwatch', got 'datadog'",
    ),
    (
        "metrics-url",
        "metrics: {url: prometheus:9090}",
        "17: metrics.url: bad URL 'prometheus:9090' (write http://… or https://…)",
    ),
    (
        "cloudwatch-url",
        "metrics: {source: cloudwatch, url: 'http://x'}",
        "17: metrics.url: only used with source: prometheus (cloudwatch takes region)",
    ),
    (
        "certificate-url",
        "certificates: [{host: 'https://shop.example'}]",
        "17: certificates[0].host: write a host name, not a URL: 'https://shop.example'",
    ),
    (
        "certificate-host",
        "certificates: [{host: 'bad_host!'}]",
        "17: certificates[0].host: bad host name 'bad_host!'",
    ),
    (
        "certificate-port",
        "certificates: [{host: shop.example, port: 70000}]",
        "17: certificates[0].port: must be <= 65535, got 70000",
    ),
    (
        "duplicate-yaml-key",
        "certificates: []\ncertificates: []",
        "18: certificates: duplicate key 'certificates' (first on line 17)",
    ),
    (
        "unknown-top-level-key",
        "certificate: []",
        "17: certificate: unknown key 'certificate' (did you mean 'certificates'?)",
    ),
    ("non-scalar-key", "x-anchors: {[a, b]: 1}", "17: x-anchors: keys must be plain words"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [pytest.param(old, new, expected, id=case) for case, old, new, expected in SPEC_CASES],
)
def test_each_problem_is_reported_with_file_line_and_key_path(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path = write(tmp_path, edited(old, new))
    assert problems_of(path) == [f"{path}:{expected}"]


@pytest.mark.parametrize(
    ("appended", "expected"),
    [pytest.param(appended, expected, id=case) for case, appended, expected in APPENDED_CASES],
)
def test_each_problem_in_a_later_section_is_reported(
    tmp_path: Path, appended: str, expected: str
) -> None:
    path = write(tmp_path, BASE + appended + "\n")
    assert problems_of(path) == [f"{path}:{expected}"]


def test_all_problems_of_a_file_are_reported_in_line_order(tmp_path: Path) -> None:
    text = edited("  - name: reports", "  - name: checkout")
    text = text.replace("  - name: staging", "  - {name: staging, monitor: 10 minutes}")
    text = text.replace("      prod: {kind: lambda", "      prd: {kind: lambda")
    text += "    pagerduty: {routing_key: '${PD_KEY}'}\nalerts: [{name: a}]\n"
    path = write(tmp_path, text, name="catalog.yml")
    assert problems_of(path) == [
        f"{path}:5: environments[1].monitor: bad duration '10 minutes' (write e.g. 30s, 15m, 2h,"
        " 30d)",
        f"{path}:13: services[0].targets.prd: unknown environment 'prd' (environments: dev,"
        " staging, prod)",
        f"{path}:14: services[1].name: duplicate service name 'checkout'",
        f"{path}:17: services[1].pagerduty.routing_key: environment variable PD_KEY is not set",
        f"{path}:18: alerts[0].metric: required, but missing",
        f"{path}:18: alerts[0].op: required, but missing",
        f"{path}:18: alerts[0].threshold: required, but missing",
        f"{path}:18: alerts[0].severity: required, but missing",
    ]


def test_the_file_name_is_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, edited("  - name: reports", "  - name: checkout"))
    monkeypatch.chdir(tmp_path)
    assert problems_of(Path("opsbot.yml")) == [
        "opsbot.yml:14: services[1].name: duplicate service name 'checkout'"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            edited(
                "  channels: {deploys: C0DEPLOYS, alerts: C0ALERTS, incidents: C0INCIDENTS}",
                "  channels: {deploys: C0DEPLOYS, alerts: C0ALERTS",
            ),
            "3: (file): invalid YAML: expected ',' or '}', but got ':' (while parsing a flow"
            " mapping, which starts on line 2)",
            id="unclosed-flow-mapping",
        ),
        pytest.param(
            edited("    approvals: 1", "    approvals: 1\n\tfoo: 1"),
            "8: (file): invalid YAML: found character '\\t' that cannot start any token (while"
            " scanning for the next token)",
            id="tab",
        ),
        pytest.param(
            BASE + "x-a: !!python/object:os.system {}\nx-b: !!python/name:os.system ''\n"
            "x-c: !!set [a]\n",
            "17: x-a: unsupported tag 'tag:yaml.org,2002:python/object:os.system'\n"
            "opsbot.yml:18: x-b: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/name:os.system'\n"
            "opsbot.yml:19: x-c: unsupported tag 'tag:yaml.org,2002:set'",
            id="unsafe-tags",
        ),
        pytest.param(
            "a: 1\n---\nb: 2\n",
            "2: (file): invalid YAML: expected a single document in the stream, but found"
            " another document",
            id="two-documents",
        ),
        pytest.param(
            "# nothing here\n",
            "1: (top level): the file is empty: expected slack, environments and services",
            id="empty",
        ),
        pytest.param(
            "- slack\n",
            "1: (top level): expected a mapping (key: value), got a list",
            id="not-a-mapping",
        ),
        pytest.param(
            "slack: {channels: {deploys: C0D, alerts: C0A, incidents: C0I}}\n",
            "1: environments: required, but missing\nopsbot.yml:1: services: required, but missing",
            id="missing-sections",
        ),
        pytest.param(
            "slack: {channels: {deploys: C0D, alerts: C0A, incidents: C0I}}\n"
            "environments: []\nservices: []\n",
            "2: environments: must have at least 1 entry",
            id="no-environments",
        ),
    ],
)
def test_file_level_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    assert "\n".join(problems_of(Path("opsbot.yml"))) == f"opsbot.yml:{expected}"


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    assert problems_of(path) == [f"{path}:1: (file): no such file"]


def test_an_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("slack: caf\xe9\n".encode("latin-1"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: (file): cannot read the file: ")


def test_a_catalog_built_in_code_is_cross_checked_too() -> None:
    data = {
        "slack": {"channels": {"deploys": "C0D", "alerts": "C0A", "incidents": "C0I"}},
        "environments": [{"name": "dev"}],
        "services": [
            {
                "name": "a",
                "targets": {"qa": {"kind": "compose", "project": "p", "file": "f", "service": "s"}},
            }
        ],
    }
    with pytest.raises(ValidationError, match=r"services\[0\]\.targets\.qa: unknown environment"):
        Catalog.model_validate(data)


# --- behaviour of the small policy models ---------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (datetime(2025, 1, 6, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")), True),  # Monday 09:00
        (datetime(2025, 1, 6, 7, 59, tzinfo=UTC), False),  # Monday 08:59 in Berlin
        (datetime(2025, 1, 6, 8, 0, tzinfo=UTC), True),
        (datetime(2025, 1, 10, 17, 0, tzinfo=UTC), False),  # Friday 18:00 in Berlin: closed
        (datetime(2025, 1, 11, 12, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_business_hours_contain_weekday_office_hours(when: datetime, inside: bool) -> None:
    hours = BusinessHours(timezone="Europe/Berlin")
    assert hours.contains(when) is inside


@pytest.mark.parametrize(
    ("rotation", "when", "primary"),
    [
        ("weekly", datetime(2025, 1, 6, 9, 0, tzinfo=UTC), "U0ALICE"),
        ("weekly", datetime(2025, 1, 13, 8, 59, tzinfo=UTC), "U0ALICE"),
        ("weekly", datetime(2025, 1, 13, 9, 0, tzinfo=UTC), "bob@example.com"),
        ("weekly", datetime(2025, 1, 20, 9, 0, tzinfo=UTC), "U0ALICE"),
        ("weekly", datetime(2025, 1, 6, 8, 0, tzinfo=UTC), "bob@example.com"),  # before start
        ("daily", datetime(2025, 1, 7, 9, 0, tzinfo=UTC), "bob@example.com"),
    ],
)
def test_static_schedule_rotates_shifts(rotation: str, when: datetime, primary: str) -> None:
    schedule = OncallSchedule.model_validate(
        {
            "rotation": rotation,
            "start": "2025-01-06",
            "shifts": [
                {"primary": "U0ALICE", "secondary": "U0BOB"},
                {"primary": "bob@example.com"},
            ],
        }
    )
    assert schedule.start == date(2025, 1, 6)
    assert schedule.shift_at(when).primary == primary


def test_static_schedule_hands_off_at_local_time_across_daylight_saving() -> None:
    schedule = OncallSchedule.model_validate(
        {
            "start": "2025-03-24",
            "timezone": "Europe/Berlin",
            "handoff": "09:00",
            "shifts": [{"primary": "U0A"}, {"primary": "U0B"}],
        }
    )
    berlin = ZoneInfo("Europe/Berlin")
    # Summer time began on 2025-03-30; the handoff stays at 09:00 local time.
    assert schedule.shift_at(datetime(2025, 3, 31, 8, 59, tzinfo=berlin)).primary == "U0A"
    assert schedule.shift_at(datetime(2025, 3, 31, 9, 0, tzinfo=berlin)).primary == "U0B"


def test_rollback_trigger_limit_is_absolute_or_relative_to_the_baseline() -> None:
    absolute = RollbackTrigger.model_validate(
        {"name": "e", "metric": "error_rate", "op": ">", "threshold": 0.05}
    )
    relative = RollbackTrigger.model_validate(
        {"name": "l", "metric": "latency_p99", "op": ">", "baseline_factor": 5, "for": "5m"}
    )
    assert absolute.limit(baseline=1.0) == 0.05
    assert relative.limit(baseline=0.2) == pytest.approx(1.0)
    assert relative.limit() is None
    assert relative.for_ == timedelta(minutes=5)


def test_smoke_command_and_health_url_fill_in_placeholders() -> None:
    service = load_catalog(EXAMPLE, environ={}).service("checkout")
    assert service is not None and service.smoke is not None and service.health is not None
    argv = service.smoke.argv(env="prod", service="checkout", version="1.2.3")
    assert argv == ["./scripts/smoke-test.sh", "prod", "1.2.3"]
    url = service.health.url_for(env="staging", service="checkout")
    assert url == "http://checkout.staging.shop.example/healthz"


def test_alert_rules_accept_timedeltas_in_code() -> None:
    rule = AlertRule.model_validate(
        {
            "name": "x",
            "metric": "cpu",
            "op": ">",
            "threshold": 1,
            "severity": "warning",
            "for": timedelta(minutes=1),
        }
    )
    assert rule.for_ == timedelta(minutes=1)


def test_the_configuration_doc_examples_validate_together(tmp_path: Path) -> None:
    doc = (EXAMPLE.parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    catalog = load_catalog(write(tmp_path, "".join(snippets)), environ={"CHECKOUT_PD_KEY": "k"})
    assert catalog.summary == "ok: 3 services, 3 environments"
