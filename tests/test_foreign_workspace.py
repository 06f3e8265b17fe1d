"""Requests from a workspace or organisation other than the installed one: 403, audited."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest

from bot import audit
from handlers.workspace import ACTION, foreign_workspace
from tests.conftest import SIGNING_SECRET, RunningBot
from tests.fakes.slack_client import SlackRequests

INSTALLED = "T0OPSBOT"  # the fake Slack's auth.test


@pytest.mark.parametrize(
    ("installed_team", "installed_enterprise", "team", "enterprise", "refused"),
    [
        ("T1", None, "T1", None, None),
        ("T1", None, "T2", None, "workspace T2 is not the one opsbot is installed in"),
        ("T1", None, "T1", "E1", "organisation E1 is not the one opsbot is installed in"),
        ("T1", None, None, None, "the request names no workspace"),
        ("T1", "E1", "T1", "E1", None),
        ("T1", "E1", "T1", None, None),
        ("T1", "E1", "T1", "E2", "organisation E2 is not the one opsbot is installed in"),
        ("T1", "E1", "T2", "E1", "workspace T2 is not the one opsbot is installed in"),
        # an org-wide installation takes every workspace of its organisation, and only those
        (None, "E1", "T7", "E1", None),
        (None, "E1", None, "E1", None),
        (None, "E1", "T7", "E2", "organisation E2 is not the one opsbot is installed in"),
        (None, "E1", "T7", None, None),
        (None, None, "T1", None, "opsbot's installation is unknown"),
    ],
)
def test_which_requests_belong_to_the_installation(
    installed_team: str | None,
    installed_enterprise: str | None,
    team: str | None,
    enterprise: str | None,
    refused: str | None,
) -> None:
    verdict = foreign_workspace(
        installed_team=installed_team,
        installed_enterprise=installed_enterprise,
        team=team,
        enterprise=enterprise,
    )
    assert verdict == refused


def foreign(bot: RunningBot, team_id: str = "T0OTHER") -> SlackRequests:
    requests = SlackRequests(bot.base_url, SIGNING_SECRET, fake=bot.fake)
    requests.team_id = team_id
    return requests


async def assert_refused_and_audited(bot: RunningBot, status: int, team_id: str) -> None:
    assert status == 403
    await bot.settle()
    entries = await audit.entries(bot.services.db)
    assert [(e.action, e.outcome, e.detail["team_id"]) for e in entries] == [
        (ACTION, "refused", team_id)
    ]
    assert bot.fake.messages == []
    assert {call.method for call in bot.fake.calls} <= {"auth.test"}


async def test_a_command_from_another_workspace_is_refused(bot: RunningBot) -> None:
    status, text, _ = await foreign(bot).command("/deploy", "checkout prod v42")
    assert "workspace T0OTHER is not the one opsbot is installed in" in text
    await assert_refused_and_audited(bot, status, "T0OTHER")
    status, _, _ = await bot.slack.command("/deploy", "help")
    assert status == 200


async def test_a_button_from_another_workspace_is_refused(bot: RunningBot) -> None:
    status, _, _ = await foreign(bot).click("rerun_command", value="/deploy help")
    await assert_refused_and_audited(bot, status, "T0OTHER")


async def test_an_event_from_another_workspace_is_refused(bot: RunningBot) -> None:
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> hi", "channel": "C1"}
    status, _, _ = await foreign(bot).event(event)
    await assert_refused_and_audited(bot, status, "T0OTHER")


async def test_a_command_from_another_organisation_is_refused(bot: RunningBot) -> None:
    fields = dict(parse_qsl(bot.slack.slash_command_body("/deploy", "help")))
    fields["enterprise_id"] = "E0OTHER"
    status, text, _ = await bot.slack.post(urlencode(fields))
    assert "organisation E0OTHER" in text
    await assert_refused_and_audited(bot, status, INSTALLED)
