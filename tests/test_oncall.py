"""Who is on call (PagerDuty `oncalls` or the static rotation) and `/oncall` through the bot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.catalog import Catalog, load_catalog
from bot.db.session import Database
from bot.messages import Mention, text
from bot.oncall.pagerduty import PagerDutyApi
from bot.oncall.schedule import OncallDirectory, OncallUnavailable
from bot.slack.people import SlackPeople
from bot.slack.render import mrkdwn
from tests.conftest import BOT_TOKEN
from tests.fakes.pagerduty import FakePagerDuty, OncallUser
from tests.fakes.slack import FakeSlack
from tests.helpers.messages import text_of
from tests.helpers.oncall import (
    ALICE,
    BOB,
    PAGERDUTY_CATALOG,
    STATIC_CATALOG,
    add_people,
    fast,
    pd_settings,
    start_pagerduty_bot,
)

HANDOFF = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
DANA = OncallUser("PDANA01", "Dana Poe", "dana@example.com")  # not in Slack


def directory(
    catalog: Catalog,
    pagerduty: FakePagerDuty,
    fake_slack: FakeSlack,
    clock: Callable[[], datetime] | None = None,
) -> OncallDirectory:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.api_url)
    options = {"clock": clock} if clock else {}
    return OncallDirectory(
        catalog=catalog,
        pagerduty=fast(PagerDutyApi(pd_settings(pagerduty))),
        people=SlackPeople(client),
        **options,
    )


# ------------------------------------------------------------------ PagerDuty provider


async def test_pagerduty_primary_and_secondary_become_slack_mentions(
    pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    add_people(fake_slack)
    pagerduty.set_oncall("PCHECK1", 1, ALICE)
    pagerduty.set_oncall("PCHECK1", 2, DANA)
    pagerduty.set_oncall("PDEFAULT1", 1, BOB)
    oncall = directory(load_catalog(PAGERDUTY_CATALOG, {}), pagerduty, fake_slack)

    checkout = await oncall.who("checkout")
    assert checkout.source == "pagerduty" and checkout.escalation_policy == "PCHECK1"
    assert checkout.primary is not None and checkout.primary.shown == Mention("U0ALICE")
    # Dana has no Slack account with that e-mail: her PagerDuty name is shown instead.
    assert checkout.secondary is not None and checkout.secondary.shown == "Dana Poe"

    payments = await oncall.who("payments")  # no policy of its own: oncall.escalation_policy
    assert payments.escalation_policy == "PDEFAULT1"
    assert payments.primary is not None and payments.primary.shown == Mention("U0BOB")
    assert payments.secondary is None

    asked = pagerduty.requests_to("GET", "/oncalls")
    assert [r.query["escalation_policy_ids[]"] for r in asked] == [["PCHECK1"], ["PDEFAULT1"]]
    assert all(r.query["include[]"] == ["users"] for r in asked)
    lookups = [c.args["email"] for c in fake_slack.calls_to("users.lookupByEmail")]
    assert lookups == ["alice@example.com", "dana@example.com", "bob@example.com"]
    oncall.close()


async def test_pagerduty_failing_says_why(pagerduty: FakePagerDuty, fake_slack: FakeSlack) -> None:
    oncall = directory(load_catalog(PAGERDUTY_CATALOG, {}), pagerduty, fake_slack)
    pagerduty.fail_next(3, status=503)
    with pytest.raises(OncallUnavailable, match="on-call lookup: PagerDuty answered HTTP 503"):
        await oncall.who("checkout")
    oncall.close()


async def test_no_escalation_policy_is_explained(
    pagerduty: FakePagerDuty, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    text = PAGERDUTY_CATALOG.read_text().replace("  escalation_policy: PDEFAULT1\n", "")
    path = tmp_path / "opsbot.yml"
    path.write_text(text)
    oncall = directory(load_catalog(path, {}), pagerduty, fake_slack)
    with pytest.raises(OncallUnavailable) as caught:
        await oncall.who("payments")
    assert str(caught.value) == (
        "no escalation policy is configured (set services[payments].pagerduty.escalation_policy"
        " or oncall.escalation_policy)"
    )
    assert pagerduty.requests == []
    oncall.close()


# ------------------------------------------------------------------ static provider


@pytest.mark.parametrize(
    ("now", "primary", "secondary", "until"),
    [
        # Monday 2025-01-06 09:00 Berlin is 08:00 UTC: the first shift starts.
        (datetime(2025, 1, 6, 8, 0, tzinfo=UTC), "<@U0ALICE>", "<@U0CAROL>", "2025-01-13 08:00"),
        (datetime(2025, 1, 13, 7, 59, tzinfo=UTC), "<@U0ALICE>", "<@U0CAROL>", "2025-01-13 08:00"),
        (datetime(2025, 1, 13, 8, 0, tzinfo=UTC), "<@U0BOB>", "<@U0ALICE>", "2025-01-20 08:00"),
        # Summer time: the handoff stays at 09:00 Berlin, now 07:00 UTC.
        (datetime(2025, 7, 14, 7, 0, tzinfo=UTC), "<@U0BOB>", "<@U0ALICE>", "2025-07-21 07:00"),
    ],
)
async def test_static_rotation_follows_the_catalog(
    pagerduty: FakePagerDuty,
    fake_slack: FakeSlack,
    now: datetime,
    primary: str,
    secondary: str,
    until: str,
) -> None:
    add_people(fake_slack)
    catalog = load_catalog(STATIC_CATALOG, {})
    oncall = directory(catalog, pagerduty, fake_slack, clock=lambda: now)
    found = await oncall.who("checkout")
    assert found.source == "static"
    assert found.primary is not None and mrkdwn(text(found.primary.shown)) == primary
    assert found.secondary is not None and mrkdwn(text(found.secondary.shown)) == secondary
    assert found.until is not None and f"{found.until:%Y-%m-%d %H:%M}" == until
    assert pagerduty.requests == []  # a static rotation never asks PagerDuty
    oncall.close()


# ------------------------------------------------------------------ /oncall through the bot


async def test_oncall_command_lists_every_service(
    fake_slack: FakeSlack, database: Database, pagerduty: FakePagerDuty
) -> None:
    add_people(fake_slack)
    pagerduty.set_oncall("PCHECK1", 1, ALICE, until=HANDOFF)
    pagerduty.set_oncall("PCHECK1", 2, DANA, until=HANDOFF)
    pagerduty.set_oncall("PDEFAULT1", 1, BOB, until=HANDOFF)
    async with start_pagerduty_bot(fake_slack, database, pagerduty, PAGERDUTY_CATALOG) as bot:
        status, _, _ = await bot.slack.command("/oncall", "")
        assert status == 200
        await bot.settle()
        answer = bot.fake.messages[-1]
        assert answer.ephemeral_for or answer.source == "response_url"
        lines = (answer.text or "").splitlines()
        assert lines == [
            "• *checkout*: primary <@U0ALICE>, secondary Dana Poe (PagerDuty, escalation "
            "policy PCHECK1, until Mon 2030-01-07 09:00 UTC)",
            "• *payments*: primary <@U0BOB>, secondary nobody (PagerDuty, escalation policy "
            "PDEFAULT1, until Mon 2030-01-07 09:00 UTC)",
        ]
        assert "SLA: acknowledge within 1s, engage within 2s" in text_of(answer)

        await bot.slack.command("/oncall", "checkout")
        await bot.settle()
        assert (bot.fake.messages[-1].text or "").startswith("• *checkout*: primary <@U0ALICE>")
        assert len((bot.fake.messages[-1].text or "").splitlines()) == 1

        # A typo is answered in the ack itself, with the likely service.
        _, body, _ = await bot.slack.command("/oncall", "checkuot")
        assert "checkuot" in body and "checkout" in body and "Traceback" not in body


async def test_oncall_command_says_when_pagerduty_is_down(
    fake_slack: FakeSlack, database: Database, pagerduty: FakePagerDuty
) -> None:
    async with start_pagerduty_bot(fake_slack, database, pagerduty, PAGERDUTY_CATALOG) as bot:
        await pagerduty.refuse_connections()
        await bot.slack.command("/oncall", "checkout")
        await bot.settle()
        text = bot.fake.messages[-1].text or ""
        assert text.startswith("• *checkout*: unknown: on-call lookup: PagerDuty is unreachable")
        assert "Traceback" not in text
