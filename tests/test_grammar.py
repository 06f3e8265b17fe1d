"""The slash-command grammar (a contract): every accepted form and the exact refusal of the rest."""

from __future__ import annotations

import pytest

from bot.catalog import Catalog
from bot.commands import (
    DeployHistory,
    DeployLock,
    DeployRequest,
    DeployStatus,
    DeployUnlock,
    Help,
    IncidentDeclare,
    IncidentResolve,
    IncidentSeverity,
    IncidentUpdate,
    Invalid,
    OncallShow,
    Parsed,
    PostmortemDone,
    PostmortemDraft,
    RollbackRequest,
    parse,
)


@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/deploy", "checkout prod", DeployRequest("checkout", "prod")),
        ("/deploy", "checkout prod v1.2.3", DeployRequest("checkout", "prod", "v1.2.3")),
        (
            "/deploy",
            "checkout dev 42 --strategy canary --dry-run",
            DeployRequest("checkout", "dev", "42", strategy="canary", dry_run=True),
        ),
        (
            "/deploy",
            "--dry-run checkout staging --strategy=blue-green",
            DeployRequest("checkout", "staging", None, strategy="blue-green", dry_run=True),
        ),
        ("/deploy", "status", DeployStatus(None)),
        ("/deploy", "status payments", DeployStatus("payments")),
        ("/deploy", "history checkout", DeployHistory("checkout", None)),
        ("/deploy", "history checkout prod", DeployHistory("checkout", "prod")),
        (
            "/deploy",
            "lock checkout prod db migration running",
            DeployLock("checkout", "prod", "db migration running"),
        ),
        ("/deploy", "unlock checkout prod", DeployUnlock("checkout", "prod")),
        ("/rollback", "checkout prod", RollbackRequest("checkout", "prod", None)),
        ("/rollback", "payments prod 41", RollbackRequest("payments", "prod", "41")),
        ("/incident", "declare P1 checkout is slow", IncidentDeclare("P1", "checkout is slow")),
        ("/incident", "declare checkout is slow", IncidentDeclare(None, "checkout is slow")),
        ("/incident", "severity p0", IncidentSeverity("P0")),
        ("/incident", "update rolled back, watching", IncidentUpdate("rolled back, watching")),
        ("/incident", "resolve", IncidentResolve("")),
        ("/postmortem", "INC-7", PostmortemDraft("INC-7")),
        ("/postmortem", "", PostmortemDraft(None)),
        ("/postmortem", "done inc-7", PostmortemDone("INC-7")),
        ("/oncall", "", OncallShow(None)),
        ("/oncall", "checkout", OncallShow("checkout")),
    ],
)
def test_accepted_forms(catalog: Catalog, command: str, text: str, expected: Parsed) -> None:
    parsed = parse(command, text, catalog)
    assert parsed == expected
    assert isinstance(parsed, Parsed)
    assert parsed.command == command


@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("/deploy", ""),
        ("/deploy", "help"),
        ("/deploy", "HELP"),
        ("/rollback", ""),
        ("/incident", "help"),
        ("/postmortem", "help"),
        ("/oncall", "help"),
    ],
)
def test_help_forms(catalog: Catalog, command: str, text: str) -> None:
    assert parse(command, text, catalog) == Help()


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        (
            "/deploy",
            "chekout prod",
            "unknown service or subcommand 'chekout'. Did you mean checkout? Services: checkout, payments; subcommands: status, history, lock, unlock, help.",
        ),
        (
            "/deploy",
            "checkout prd",
            "unknown environment 'prd'. Did you mean prod? Valid environments: dev, staging, prod.",
        ),
        (
            "/deploy",
            "checkout",
            "a deploy needs a service and an environment: `/deploy <service> <env>`.",
        ),
        (
            "/deploy",
            "checkout prod v1 extra",
            "too many arguments: 'extra'. A deploy takes <service> <env> [<version>].",
        ),
        (
            "/deploy",
            "checkout prod v1/../../etc",
            "version 'v1/../../etc' is not valid: use 1–128 letters, digits, '.', '_' or '-'.",
        ),
        (
            "/deploy",
            "checkout prod " + "a" * 129,
            "version '" + "a" * 40 + "' is not valid: use 1–128 letters, digits, '.', '_' or '-'.",
        ),
        (
            "/deploy",
            "checkout prod --strategy yolo",
            "--strategy takes one of rolling, blue-green, canary, recreate, got 'yolo'.",
        ),
        (
            "/deploy",
            "checkout prod --strategy",
            "--strategy takes one of rolling, blue-green, canary, recreate, got nothing.",
        ),
        (
            "/deploy",
            "checkout prod --force",
            "unknown option --force. Options: --strategy, --dry-run.",
        ),
        (
            "/deploy",
            "lock checkout prod",
            "a lock needs a reason: `/deploy lock <service> <env> <reason…>`.",
        ),
        ("/deploy", "unlock checkout", "usage: `/deploy unlock <service> <env>`."),
        ("/deploy", "history", "usage: `/deploy history <service> [<env>]`."),
        ("/deploy", "status a b", "`/deploy status` takes at most one service."),
        ("/deploy", "status nope", "unknown service 'nope'. Valid services: checkout, payments."),
        ("/deploy", 'checkout "prod', "cannot read the arguments: No closing quotation"),
        (
            "/rollback",
            "checkout prod 1 2",
            "too many arguments: `/rollback <service> <env> [<version>]`.",
        ),
        (
            "/rollback",
            "checkout prod $(rm)",
            "version '$(rm)' is not valid: use 1–128 letters, digits, '.', '_' or '-'.",
        ),
        (
            "/incident",
            "declare P1",
            "an incident needs a title: `/incident declare [P0-P3] <title…>`.",
        ),
        ("/incident", "severity P5", "usage: `/incident severity P0|P1|P2|P3`."),
        ("/incident", "update", "an update needs text: `/incident update <text…>`."),
        ("/incident", "role scribe", "usage: `/incident role <role> @user`."),
        (
            "/incident",
            "delcare P1 x",
            "unknown subcommand 'delcare'. Did you mean declare? Subcommands: declare, update, severity, commander, role, resolve, list, stats, help.",
        ),
        ("/postmortem", "done 7", "usage: `/postmortem done INC-<n>`."),
        ("/oncall", "nope", "unknown service 'nope'. Valid services: checkout, payments."),
        ("/nope", "", "opsbot does not know the command /nope"),
    ],
)
def test_rejected_forms_say_exactly_why(
    catalog: Catalog, command: str, text: str, message: str
) -> None:
    result = parse(command, text, catalog)
    assert isinstance(result, Invalid)
    assert result.message == message


@pytest.mark.parametrize(
    ("command", "text", "corrected"),
    [
        ("/deploy", "chekout prod v2", "/deploy checkout prod v2"),
        ("/deploy", "checkout prd", "/deploy checkout prd".replace("prd", "prod")),
        ("/incident", "delcare P1 db down", "/incident declare P1 db down"),
        ("/oncall", "paymnts", "/oncall payments"),
        ("/deploy", "zzz prod", None),
    ],
)
def test_typos_carry_the_corrected_command(
    catalog: Catalog, command: str, text: str, corrected: str | None
) -> None:
    result = parse(command, text, catalog)
    assert isinstance(result, Invalid)
    assert result.corrected == corrected
