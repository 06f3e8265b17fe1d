"""On-call set-ups: the PagerDuty and static catalogs, their people, a bot on the fake PagerDuty."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from bot.catalog import load_catalog
from bot.db.session import Database
from bot.oncall.pagerduty import PagerDutyApi
from bot.settings import Settings
from tests.conftest import RunningBot, start_bot
from tests.fakes.pagerduty import FakePagerDuty, OncallUser
from tests.fakes.slack import FakeSlack

DATA = Path(__file__).resolve().parent.parent / "data"
PAGERDUTY_CATALOG = DATA / "oncall-pagerduty.yml"
STATIC_CATALOG = DATA / "oncall-static.yml"

ALICE = OncallUser("PALICE1", "Alice Doe", "alice@example.com")
BOB = OncallUser("PBOB001", "Bob Roe", "bob@example.com")


def add_people(fake_slack: FakeSlack) -> None:
    """Alice, Bob and Carol in the Slack workspace, findable by their PagerDuty e-mail."""
    fake_slack.add_user("U0ALICE", "alice", "alice@example.com", "Alice Doe")
    fake_slack.add_user("U0BOB", "bob", "bob@example.com", "Bob Roe")
    fake_slack.add_user("U0CAROL", "carol", "carol@example.com", "Carol Loe")


def pd_settings(pagerduty: FakePagerDuty, **changes: object) -> Settings:
    return dataclasses.replace(Settings(), **pagerduty.settings_changes(), **changes)


def fast(api: PagerDutyApi) -> PagerDutyApi:
    """The client's retry back-off, lowered so failing tests do not sleep for seconds."""
    api.sleep_timer = 0.01
    return api


@contextlib.asynccontextmanager
async def start_pagerduty_bot(
    fake: FakeSlack, database: Database, pagerduty: FakePagerDuty, config_path: Path
) -> AsyncIterator[RunningBot]:
    """opsbot as `opsbot run` builds it (conftest.start_bot), pointed at the fake PagerDuty."""
    async with start_bot(
        fake,
        database,
        load_catalog(config_path, {}),
        config_path=config_path,
        prepare=lambda services: fast(services.oncall.pagerduty),
        **pagerduty.settings_changes(),
    ) as running:
        yield running
