"""The slash-command grammar (a contract): every accepted form and the exact refusal of the rest."""

from __future__ import annotations

import pytest

from bot.catalog import Catalog
from bot.commands import Help, Invalid, Parsed, parse


@pytest.mark.parametrize(
    ("command", "text", "action", "args"),
    [
        (
            "/deploy",
            "checkout prod",
            "deploy",
            {
                "service": "checkout",
                "environment": "prod",
                "version": None,
                "strategy": None,
                "dry_run": False,
            },
        ),
        (
            "/deploy",
            "checkout prod v1.2.3",
            "deploy",
            {
                "service": "checkout",
                "environment": "prod",
                "version": "v1.2.3",
                "strategy": None,
                "dry_run": False,
            },
        ),
        (
            "/deploy",
            "checkout dev 42 --strategy canary --dry-run",
            "deploy",
            {
                "service": "checkout",
                "environment": "dev",
                "version": "42",
                "strategy": "canary",
                "dry_run": True,
            },
        ),
        (
            "/deploy",
            "--dry-run checkout staging --strategy=blue-green",
            "deploy",
            {
                "service": "checkout",
                "environment": "staging",
                "version": None,
                "strategy": "blue-green",
                "dry_run": True,
            },
        ),
        ("/deploy", "status", "status", {"service": None}),
        ("/deploy", "status payments", "status", {"service": "payments"}),
        ("/deploy", "history checkout", "history", {"service": "checkout", "environment": None}),
        (
            "/deploy",
            "history checkout prod",
            "history",
            {"service": "checkout", "environment": "prod"},
        ),
        (
            "/deploy",
            "lock checkout prod db migration running",
            "lock",
            {"service": "checkout", "environment": "prod", "reason": "db migration running"},
        ),
        (
            "/deploy",
            "unlock checkout prod",
            "unlock",
            {"service": "checkout", "environment": "prod"},
        ),
        (
            "/rollback",
            "checkout prod",
            "rollback",
            {"service": "checkout", "environment": "prod", "version": None},
        ),
        (
            "/rollback",
            "payments prod 41",
            "rollback",
            {"service": "payments", "environment": "prod", "version": "41"},
        ),
        (
            "/incident",
            "declare P1 checkout is slow",
            "declare",
            {"severity": "P1", "title": "checkout is slow"},
        ),
        (
            "/incident",
            "declare checkout is slow",
            "declare",
            {"severity": None, "title": "checkout is slow"},
        ),
        ("/incident", "severity p0", "severity", {"severity": "P0"}),
        ("/incident", "update rolled back, watching", "update", {"text": "rolled back, watching"}),
        ("/incident", "resolve", "resolve", {"text": ""}),
        ("/postmortem", "INC-7", "draft", {"incident": "INC-7"}),
        ("/postmortem", "", "draft", {"incident": None}),
        ("/postmortem", "done inc-7", "done", {"incident": "INC-7"}),
        ("/oncall", "", "show", {"service": None}),
        ("/oncall", "checkout", "show", {"service": "checkout"}),
    ],
)
def test_accepted_forms(catalog: Catalog, command: str, text: str, action: str, args: dict) -> None:
    assert parse(command, text, catalog) == Parsed(command, action, args)


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
