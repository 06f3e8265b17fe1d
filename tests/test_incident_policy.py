"""The pure cores of incidents: the severity suggestion and the paging policy, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.catalog import BusinessHours, Catalog
from bot.commands import Help, IncidentCommander, IncidentForm, IncidentStats, parse
from bot.incidents.classify import AlertFact, DeployFact, LiveState, suggest_severity
from bot.incidents.messaging import channel_name, slugify
from bot.incidents.policy import NoPage, PageAt, PageNow, paging_decision, reminder_due

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2025, 6, 11, 9, 0, tzinfo=UTC)  # a Wednesday


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "severity", "reason"),
    [
        ("checkout is down", "P0", '"is down"'),
        ("Complete outage of the storefront", "P0", '"complete outage"'),
        ("data loss in the orders table", "P0", '"data loss"'),
        ("possible security breach: leaked API keys", "P0", "a security breach"),
        ("nobody can log in", "P0", "every user is affected"),
        ("search results degraded for many users", "P1", '"degraded"'),
        ("checkout is slow", "P1", '"slow"'),
        ("payments return 502 errors", "P1", "a feature is failing or slow"),
        ("minor issue with the search filters", "P2", '"minor"'),
        ("intermittent failures for some users", "P2", '"intermittent"'),
        ("typo on the login page", "P3", '"typo"'),
        ("button colour is wrong, no user impact", "P3", "a cosmetic issue"),
        ("something looks odd", "P2", "defaulting to a minor issue"),
        # Negations do not count: "no data loss" is not data loss.
        ("no data loss, but checkout is slow", "P1", '"slow"'),
        ("not down, only a typo in the footer", "P3", '"typo"'),
        # The most severe signal wins and every signal is named.
        ("typo in the error page and the site is down", "P0", '"typo"'),
    ],
)
def test_the_description_suggests_a_severity_and_says_why(
    text: str, severity: str, reason: str
) -> None:
    suggestion = suggest_severity(text)
    assert suggestion.severity == severity, suggestion
    assert any(reason in line for line in suggestion.reasons), suggestion.reasons
    assert suggestion.explain().startswith(f"Suggested {severity} (")


def _deploy(minutes_ago: int, state: str = "failed", strategy: str = "rolling") -> DeployFact:
    return DeployFact(
        12, "checkout", "prod", "v42", state, strategy, NOW - timedelta(minutes=minutes_ago)
    )


@pytest.mark.parametrize(
    ("text", "state", "severity", "reason"),
    [
        (
            "checkout problem",
            LiveState(
                firing_alerts=(
                    AlertFact("checkout", "error-rate-critical", "critical", 0.12, 0.05),
                ),
                now=NOW,
            ),
            "P1",
            "critical alert error-rate-critical is firing on checkout (0.12 against a threshold "
            "of 0.05)",
        ),
        (
            "checkout problem",
            LiveState(firing_alerts=(AlertFact("checkout", "cpu-warning", "warning"),), now=NOW),
            "P2",
            "warning alert cpu-warning is firing on checkout",
        ),
        (
            "checkout problem",
            LiveState(error_rates={"checkout": 0.62}, now=NOW),
            "P0",
            "checkout fails 62% of requests (≥ 50%: effectively an outage)",
        ),
        (
            "checkout problem",
            LiveState(error_rates={"checkout": 0.08}, now=NOW),
            "P1",
            "checkout fails 8% of requests (≥ 5%)",
        ),
        (
            "checkout problem",
            LiveState(error_rates={"checkout": 0.02}, now=NOW),
            "P2",
            "checkout fails 2% of requests (≥ 1%)",
        ),
        (
            "a typo",
            LiveState(recent_deploys=(_deploy(10),), now=NOW),
            "P2",
            "deploy #12 of checkout v42 to prod failed 10 min ago",
        ),
        (
            "a typo",
            LiveState(recent_deploys=(_deploy(5, "rolled_back"),), now=NOW),
            "P2",
            "deploy #12 of checkout v42 to prod was rolled back 5 min ago",
        ),
        (
            "a typo",
            LiveState(recent_deploys=(_deploy(3, "succeeded", "rollback"),), now=NOW),
            "P2",
            "checkout in prod was rolled back to v42 3 min ago",
        ),
        # A failed deploy two hours ago is history, not a signal.
        ("a typo", LiveState(recent_deploys=(_deploy(120),), now=NOW), "P3", '"typo"'),
        # Live state outranks mild words: the alert says it is worse than "minor".
        (
            "minor glitch",
            LiveState(error_rates={"checkout": 0.5}, now=NOW),
            "P0",
            "effectively an outage",
        ),
    ],
)
def test_the_live_state_weighs_in(text: str, state: LiveState, severity: str, reason: str) -> None:
    suggestion = suggest_severity(text, state)
    assert suggestion.severity == severity, suggestion
    assert any(reason in line for line in suggestion.reasons), suggestion.reasons


WEEKDAYS_9_TO_6_BERLIN = BusinessHours(timezone="Europe/Berlin")
WEEKDAYS_9_TO_6_UTC = BusinessHours()


@pytest.mark.parametrize(
    ("severity", "now", "hours", "expected"),
    [
        # P0 pages now, whatever the time.
        ("P0", berlin(2025, 6, 11, 3), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        ("P0", berlin(2025, 6, 11, 11), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        ("P0", berlin(2025, 6, 14, 3), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        ("P0", berlin(2025, 6, 14, 11), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        # P1: now in business hours (Wednesday 11:00) …
        ("P1", berlin(2025, 6, 11, 11), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        # … else at the start of the next business day: Wednesday 03:00 → Wednesday 09:00,
        ("P1", berlin(2025, 6, 11, 3), WEEKDAYS_9_TO_6_BERLIN, berlin(2025, 6, 11, 9)),
        # Saturday 03:00 and 11:00 → Monday 09:00, Friday 19:00 → Monday 09:00.
        ("P1", berlin(2025, 6, 14, 3), WEEKDAYS_9_TO_6_BERLIN, berlin(2025, 6, 16, 9)),
        ("P1", berlin(2025, 6, 14, 11), WEEKDAYS_9_TO_6_BERLIN, berlin(2025, 6, 16, 9)),
        ("P1", berlin(2025, 6, 13, 19), WEEKDAYS_9_TO_6_BERLIN, berlin(2025, 6, 16, 9)),
        # Across the switch to summer time (Sunday 30 March 2025): Monday 09:00 is 07:00 UTC.
        (
            "P1",
            berlin(2025, 3, 29, 3),
            WEEKDAYS_9_TO_6_BERLIN,
            datetime(2025, 3, 31, 7, tzinfo=UTC),
        ),
        # Time zones: 08:30 UTC is 10:30 in Berlin (business hours) but before 09:00 in UTC.
        ("P1", datetime(2025, 6, 11, 8, 30, tzinfo=UTC), WEEKDAYS_9_TO_6_BERLIN, PageNow),
        (
            "P1",
            datetime(2025, 6, 11, 8, 30, tzinfo=UTC),
            WEEKDAYS_9_TO_6_UTC,
            datetime(2025, 6, 11, 9, tzinfo=UTC),
        ),
        # P2: no page, a follow-up in 24 h; P3: nothing.
        ("P2", berlin(2025, 6, 11, 3), WEEKDAYS_9_TO_6_BERLIN, "followup"),
        ("P2", berlin(2025, 6, 14, 11), WEEKDAYS_9_TO_6_BERLIN, "followup"),
        ("P3", berlin(2025, 6, 11, 11), WEEKDAYS_9_TO_6_BERLIN, None),
        ("P3", berlin(2025, 6, 14, 3), WEEKDAYS_9_TO_6_BERLIN, None),
    ],
)
def test_paging_decision(
    severity: str, now: datetime, hours: BusinessHours, expected: object
) -> None:
    decision = paging_decision(severity, now, hours)
    if expected is PageNow:
        assert isinstance(decision, PageNow), decision
    elif isinstance(expected, datetime):
        assert isinstance(decision, PageAt), decision
        assert decision.when == expected
        assert decision.when.tzinfo is not None
        assert "unless someone acknowledges first" in decision.reason
    elif expected == "followup":
        assert decision == NoPage(decision.reason, followup_due=now + timedelta(hours=24))
        assert "follow-up due in 1d" in decision.reason
    else:
        assert decision == NoPage(decision.reason, followup_due=None)
        assert "next sprint" in decision.reason


def test_the_paging_reason_names_the_business_hours() -> None:
    decision = paging_decision("P1", berlin(2025, 6, 14, 3), WEEKDAYS_9_TO_6_BERLIN)
    assert isinstance(decision, PageAt)
    assert "MON,TUE,WED,THU,FRI 09:00–18:00 Europe/Berlin" in decision.reason
    assert "Mon 2025-06-16 09:00 Europe/Berlin" in decision.reason


@pytest.mark.parametrize(
    ("severity", "since_update", "since_reminder", "due"),
    [
        ("P0", 14, None, False),
        ("P0", 15, None, True),
        ("P0", 40, 10, False),  # reminded 10 min ago: once per period
        ("P0", 40, 15, True),
        ("P1", 29, None, False),
        ("P1", 30, None, True),
        ("P2", 600, None, False),  # P2 and P3 get no update reminders
        ("P3", 600, None, False),
    ],
)
def test_reminder_due_once_per_period(
    severity: str, since_update: int, since_reminder: int | None, due: bool
) -> None:
    every = {"P0": timedelta(minutes=15), "P1": timedelta(minutes=30)}
    reminded = NOW - timedelta(minutes=since_reminder) if since_reminder is not None else None
    result = reminder_due(
        severity=severity,
        last_update=NOW - timedelta(minutes=since_update),
        last_reminder=reminded,
        now=NOW,
        update_every=every,
    )
    assert (result is not None) == due


@pytest.mark.parametrize(
    ("title", "attempt", "name"),
    [
        ("Checkout is DOWN!", 1, "inc-7-checkout-is-down"),
        ("Checkout is DOWN!", 2, "inc-7-checkout-is-down-2"),
        ("Zahlungen schlagen fehl — Ümlaute", 1, "inc-7-zahlungen-schlagen-fehl-umlaute"),
        ("!!!", 1, "inc-7-incident"),
        ("x" * 200, 1, "inc-7-" + "x" * 74),
        ("x" * 200, 12, "inc-7-" + "x" * 71 + "-12"),
    ],
)
def test_channel_names_fit_slack(title: str, attempt: int, name: str) -> None:
    assert channel_name("inc", 7, title, attempt) == name
    assert len(name) <= 80
    assert slugify(title) == slugify(slugify(title))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", IncidentForm()),  # `/incident` alone opens the declare form
        ("   ", IncidentForm()),
        ("help", Help()),
        ("stats 7d", IncidentStats(("7d",))),
        ("commander <@U0BOB|bob>", IncidentCommander("<@U0BOB|bob>")),
    ],
)
def test_incident_grammar(catalog: Catalog, text: str, expected: object) -> None:
    assert parse("/incident", text, catalog) == expected
