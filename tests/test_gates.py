"""Deploy gates: who may deploy and approve, freeze windows, promotion order, precedence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.catalog import Catalog, Environment
from bot.deploys.gates import (
    GateResult,
    check_approval_rules,
    check_deployer,
    check_freeze,
    check_promotion,
    evaluate,
)
from bot.messages import text
from tests.helpers.messages import verdict

BERLIN = ZoneInfo("Europe/Berlin")


def environment(**fields: Any) -> Environment:
    return Environment.model_validate({"name": "prod", **fields})


# --- deployer ------------------------------------------------------------------------------------

PROD_DEPLOYERS = environment(deployers=["U0ALICE", "S0OPS"])


@pytest.mark.parametrize(
    ("env", "user", "groups", "passed", "reason"),
    [
        (environment(name="dev"), "U0BOB", [], True, "deployer: anyone may deploy to dev"),
        (PROD_DEPLOYERS, "U0ALICE", [], True, "deployer: <@U0ALICE> may deploy to prod"),
        (
            PROD_DEPLOYERS,
            "U0BOB",
            ["S0DEVS", "S0OPS"],
            True,
            "deployer: <@U0BOB> may deploy to prod as a member of <!subteam^S0OPS>",
        ),
        (
            PROD_DEPLOYERS,
            "U0BOB",
            ["S0DEVS"],
            False,
            "deployer: <@U0BOB> may not deploy to prod; deployers are <@U0ALICE>, <!subteam^S0OPS>",
        ),
        # A user id is never taken for a group the user belongs to, nor the other way round.
        (
            environment(deployers=["U0ALICE"]),
            "W0CAROL",
            ["U0ALICE"],
            False,
            "deployer: <@W0CAROL> may not deploy to prod; deployers are <@U0ALICE>",
        ),
    ],
)
def test_deployer(
    env: Environment, user: str, groups: list[str], passed: bool, reason: str
) -> None:
    assert verdict(check_deployer(env, user, groups)) == ("deployer", passed, reason)


# --- freeze --------------------------------------------------------------------------------------

WEEKEND = {"cron": "0 18 * * FRI", "duration": "2d14h", "timezone": "Europe/Berlin"}
YEAR_END = {"cron": "0 0 20 DEC *", "duration": "14d", "reason": "year-end"}
FROZEN_ENV = environment(freeze=[{**WEEKEND, "reason": "weekend"}, YEAR_END])


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN)  # type: ignore[misc]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


OPEN = (True, "freeze: prod is not frozen")
UNTIL_MONDAY = (
    False,
    "freeze: prod is frozen for weekend until Mon 2026-11-30 08:00 Europe/Berlin",
)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(berlin(2026, 11, 27, 17, 59, 59), OPEN, id="just before the start"),
        pytest.param(berlin(2026, 11, 27, 18, 0), UNTIL_MONDAY, id="exactly at the start"),
        pytest.param(utc(2026, 11, 27, 17, 0), UNTIL_MONDAY, id="the start, asked in UTC"),
        pytest.param(berlin(2026, 11, 29, 3, 0), UNTIL_MONDAY, id="in the middle"),
        pytest.param(berlin(2026, 11, 30, 7, 59, 59), UNTIL_MONDAY, id="just before the end"),
        pytest.param(berlin(2026, 11, 30, 8, 0), OPEN, id="exactly at the end"),
        pytest.param(berlin(2026, 11, 25, 12, 0), OPEN, id="midweek"),
        # Spring forward on Sun 2026-03-29: the window still ends at 08:00 local wall time,
        # one real hour earlier than 62 hours after the start.
        pytest.param(
            berlin(2026, 3, 30, 7, 59),
            (False, "freeze: prod is frozen for weekend until Mon 2026-03-30 08:00 Europe/Berlin"),
            id="DST spring: before the local end",
        ),
        pytest.param(berlin(2026, 3, 30, 8, 0), OPEN, id="DST spring: at the local end"),
        pytest.param(berlin(2026, 3, 30, 8, 30), OPEN, id="DST spring: not 62 real hours"),
        # Fall back on Sun 2026-10-25: the window lasts 63 real hours and ends at 08:00 local.
        pytest.param(
            berlin(2026, 10, 26, 7, 30),
            (False, "freeze: prod is frozen for weekend until Mon 2026-10-26 08:00 Europe/Berlin"),
            id="DST autumn: 62 real hours have passed, the local end has not",
        ),
        pytest.param(berlin(2026, 10, 26, 8, 0), OPEN, id="DST autumn: at the local end"),
        # Two windows at once: the freeze lasts until the later end, and since the weekend of
        # 1-4 January begins before year-end is over, until that weekend ends.
        pytest.param(
            berlin(2026, 12, 26, 12, 0),
            (
                False,
                "freeze: prod is frozen for weekend and year-end until"
                " Mon 2027-01-04 08:00 Europe/Berlin",
            ),
            id="overlapping windows",
        ),
        pytest.param(
            utc(2026, 12, 23, 12, 0),
            (
                False,
                "freeze: prod is frozen for year-end and weekend until"
                " Mon 2027-01-04 08:00 Europe/Berlin",
            ),
            id="a window that runs into another",
        ),
        pytest.param(berlin(2027, 1, 4, 8, 0), OPEN, id="after both"),
    ],
)
def test_freeze(now: datetime, expected: tuple[bool, str]) -> None:
    assert verdict(check_freeze(FROZEN_ENV, now)) == ("freeze", *expected)


def test_freeze_without_reason_says_only_until_when() -> None:
    env = environment(freeze=[{"cron": "30 9 * * *", "duration": "1h", "timezone": "UTC"}])
    assert verdict(check_freeze(env, utc(2026, 5, 4, 10, 0))) == (
        "freeze",
        False,
        "freeze: prod is frozen until Mon 2026-05-04 10:30 UTC",
    )


def test_environment_without_windows_is_never_frozen() -> None:
    assert verdict(check_freeze(environment(), utc(2026, 5, 4, 10, 0))) == ("freeze", *OPEN)


# --- promotion -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_name", "version", "succeeded", "passed", "reason"),
    [
        ("dev", "v43", [], True, "promotion: dev does not require an earlier deploy"),
        ("staging", "v43", [], True, "promotion: staging does not require an earlier deploy"),
        ("prod", "v42", ["v41", "v42"], True, "promotion: v42 succeeded in staging"),
        (
            "prod",
            "v43",
            ["v42"],
            False,
            "promotion: v43 has not succeeded in staging; prod only takes versions that did,"
            " so deploy it to staging first",
        ),
    ],
)
def test_promotion(
    catalog: Catalog,
    env_name: str,
    version: str,
    succeeded: list[str],
    passed: bool,
    reason: str,
) -> None:
    env = catalog.environment(env_name)
    assert env is not None
    result = check_promotion(catalog, env, version, succeeded)
    assert verdict(result) == ("promotion", passed, reason)


# --- approval ------------------------------------------------------------------------------------

APPROVED_BY = environment(approvals=1, approvers=["U0APPROVER", "S0LEADS"])
ASK = "ask one of <@U0APPROVER>, <!subteam^S0LEADS>"


@pytest.mark.parametrize(
    ("env", "requester", "approver", "groups", "passed", "reason"),
    [
        pytest.param(
            APPROVED_BY,
            "U0ALICE",
            "U0APPROVER",
            [],
            True,
            "approval: <@U0APPROVER> may approve deploys to prod",
            id="listed approver",
        ),
        pytest.param(
            APPROVED_BY,
            "U0ALICE",
            "U0CAROL",
            ["S0LEADS"],
            True,
            "approval: <@U0CAROL> may approve deploys to prod as a member of <!subteam^S0LEADS>",
            id="group approver accepted",
        ),
        pytest.param(
            APPROVED_BY,
            "U0ALICE",
            "U0BOB",
            ["S0DEVS"],
            False,
            "approval: <@U0BOB> may not approve deploys to prod; approvers are <@U0APPROVER>,"
            " <!subteam^S0LEADS>",
            id="non-approver refused",
        ),
        pytest.param(
            APPROVED_BY,
            "U0APPROVER",
            "U0APPROVER",
            [],
            False,
            f"approval: <@U0APPROVER> requested this deploy and cannot approve it; {ASK}",
            id="requester cannot approve own deploy",
        ),
        pytest.param(
            APPROVED_BY,
            "U0CAROL",
            "U0CAROL",
            ["S0LEADS"],
            False,
            f"approval: <@U0CAROL> requested this deploy and cannot approve it; {ASK}",
            id="not even through a group",
        ),
        pytest.param(
            environment(),
            "U0ALICE",
            "U0BOB",
            [],
            True,
            "approval: <@U0BOB> may approve deploys to prod",
            id="without approvers anyone else may",
        ),
        pytest.param(
            environment(),
            "U0ALICE",
            "U0ALICE",
            [],
            False,
            "approval: <@U0ALICE> requested this deploy and cannot approve it; ask someone else",
            id="without approvers still not oneself",
        ),
    ],
)
def test_approval_rules(
    env: Environment, requester: str, approver: str, groups: list[str], passed: bool, reason: str
) -> None:
    result = check_approval_rules(env, requester, approver, groups)
    assert verdict(result) == ("approval", passed, reason)


# --- precedence ----------------------------------------------------------------------------------


def ok(gate: str) -> GateResult:
    return GateResult(gate, True, text(f"{gate}: fine"))


def refused(gate: str) -> GateResult:
    return GateResult(gate, False, text(f"{gate}: no"))


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([], None),
        ([ok("deployer"), ok("freeze"), ok("check:lint")], None),
        ([refused("check:lint"), refused("freeze"), ok("deployer")], refused("freeze")),
        ([refused("certificates"), refused("promotion")], refused("promotion")),
        ([refused("check:lint"), refused("certificates")], refused("certificates")),
        ([refused("freeze"), refused("lock"), refused("deployer")], refused("deployer")),
        ([refused("freeze"), refused("lock")], refused("lock")),
        ([refused("check:b"), refused("check:a")], refused("check:b")),
        ([refused("other"), refused("check:a")], refused("check:a")),
        (
            [
                GateResult("certificates", False, text("a")),
                GateResult("certificates", False, text("b")),
            ],
            GateResult("certificates", False, text("a")),
        ),
    ],
)
def test_evaluate_reports_the_first_refusal_in_gate_order(
    results: list[GateResult], expected: GateResult | None
) -> None:
    assert evaluate(results) == expected
