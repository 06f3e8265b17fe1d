"""The Slack app manifest and the Dockerfile promise what a Slack admin and an operator rely on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PATH = ROOT / "app-manifest.yml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
SLACK_APP_DOC = ROOT / "docs" / "slack-app.md"

# The commands the bot registers listeners for; each must be declared or Slack never sends it.
BOT_COMMANDS = ("/deploy", "/rollback", "/incident", "/postmortem", "/oncall")
BOT_EVENTS = (
    "app_mention",
    "reaction_added",
    "pin_added",
    "message.channels",
    "message.groups",
    "member_joined_channel",
)
# Slack refuses to subscribe a bot event unless the app also holds the scope the event needs.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "reaction_added": "reactions:read",
    "member_joined_channel": "channels:read",
    "pin_added": "pins:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def commands(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["command"]: entry for entry in manifest["features"]["slash_commands"]}


@pytest.fixture(scope="module")
def bot_scopes(manifest: dict[str, Any]) -> list[str]:
    return manifest["oauth_config"]["scopes"]["bot"]


@pytest.fixture(scope="module")
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    text = DOCKERFILE_PATH.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_manifest_targets_a_supported_schema_version(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"]["major_version"] in (1, 2)


def test_manifest_respects_slack_display_limits(manifest: dict[str, Any]) -> None:
    display = manifest["display_information"]
    assert 1 <= len(display["name"]) <= 35
    assert 1 <= len(display["description"]) <= 140
    assert 1 <= len(manifest["features"]["bot_user"]["display_name"]) <= 80


@pytest.mark.parametrize("command", BOT_COMMANDS)
def test_every_registered_command_is_declared_with_the_bolt_endpoint(
    commands: dict[str, dict[str, Any]], command: str
) -> None:
    assert command in commands, f"{command} is not declared in app-manifest.yml"
    declared = commands[command]
    assert declared["url"].startswith("https://")
    assert declared["url"].endswith("/slack/events")
    assert declared["description"].strip()
    assert declared["usage_hint"].strip()
    # /incident takes @user (commander, role): escaping makes Slack send <@U…|name>, the only
    # reliable form of a mention; the other commands take names and versions, kept verbatim.
    assert declared["should_escape"] is (command == "/incident")


def test_commands_fit_slack_limits(commands: dict[str, dict[str, Any]]) -> None:
    for name, declared in commands.items():
        assert re.fullmatch(r"/[a-z0-9_-]{1,31}", name), name
        assert len(declared["description"]) <= 2000, name
        assert len(declared["usage_hint"]) <= 1000, name


def test_deploy_usage_hint_documents_the_grammar(commands: dict[str, dict[str, Any]]) -> None:
    hint = commands["/deploy"]["usage_hint"]
    for word in ("<service>", "<env>", "--dry-run", "status", "history", "lock", "unlock"):
        assert word in hint
    for strategy in ("rolling", "blue-green", "canary", "recreate"):
        assert strategy in hint
    assert "P0-P3" in commands["/incident"]["usage_hint"]


def test_interactivity_is_on_and_points_at_the_bolt_endpoint(manifest: dict[str, Any]) -> None:
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"].endswith("/slack/events")


def test_events_are_subscribed_at_the_bolt_endpoint(manifest: dict[str, Any]) -> None:
    events = manifest["settings"]["event_subscriptions"]
    assert events["request_url"].endswith("/slack/events")
    assert set(BOT_EVENTS) <= set(events["bot_events"])


def test_every_subscribed_event_has_the_scope_slack_requires(
    manifest: dict[str, Any], bot_scopes: list[str]
) -> None:
    for event in manifest["settings"]["event_subscriptions"]["bot_events"]:
        if event in EVENT_SCOPES:
            assert EVENT_SCOPES[event] in bot_scopes, f"{event} needs {EVENT_SCOPES[event]}"


def test_all_urls_share_one_host(
    manifest: dict[str, Any], commands: dict[str, dict[str, Any]]
) -> None:
    # The docs tell HTTP-mode admins to replace one host name; a stray second host would be missed.
    urls = [declared["url"] for declared in commands.values()]
    urls.append(manifest["settings"]["event_subscriptions"]["request_url"])
    urls.append(manifest["settings"]["interactivity"]["request_url"])
    hosts = {url.split("/")[2] for url in urls}
    assert len(hosts) == 1, hosts


def test_core_scopes_are_requested(bot_scopes: list[str]) -> None:
    assert "commands" in bot_scopes
    assert "chat:write" in bot_scopes


def test_email_lookup_scope_is_requested_for_pagerduty_mentions(bot_scopes: list[str]) -> None:
    # users.lookupByEmail turns a PagerDuty on-call e-mail into a Slack mention.
    assert "users:read.email" in bot_scopes
    assert "users:read" in bot_scopes


def test_scopes_are_unique_and_each_is_justified_in_the_docs(bot_scopes: list[str]) -> None:
    assert len(bot_scopes) == len(set(bot_scopes))
    doc = SLACK_APP_DOC.read_text(encoding="utf-8")
    for scope in bot_scopes:
        assert f"| `{scope}` |" in doc, f"{scope} has no row in docs/slack-app.md"


def test_bot_acts_only_as_itself(manifest: dict[str, Any]) -> None:
    assert not manifest["oauth_config"]["scopes"].get("user")


def test_mode_switches_are_booleans(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert isinstance(settings["socket_mode_enabled"], bool)
    assert isinstance(settings["org_deploy_enabled"], bool)
    assert settings["token_rotation_enabled"] is False


def test_dockerfile_entrypoint_is_opsbot_run(
    dockerfile_instructions: list[tuple[str, str]],
) -> None:
    entrypoints = [args for keyword, args in dockerfile_instructions if keyword == "ENTRYPOINT"]
    cmds = [args for keyword, args in dockerfile_instructions if keyword == "CMD"]
    assert entrypoints[-1] == '["opsbot"]'
    assert cmds[-1] == '["run"]'


def test_dockerfile_runs_as_a_non_root_user(
    dockerfile_instructions: list[tuple[str, str]],
) -> None:
    last_from = max(i for i, (kw, _) in enumerate(dockerfile_instructions) if kw == "FROM")
    users = [args for kw, args in dockerfile_instructions[last_from:] if kw == "USER"]
    assert users, "the runtime stage never switches away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_exposes_the_port_its_healthcheck_probes(
    dockerfile_instructions: list[tuple[str, str]],
) -> None:
    exposed = [args for kw, args in dockerfile_instructions if kw == "EXPOSE"]
    healthchecks = [args for kw, args in dockerfile_instructions if kw == "HEALTHCHECK"]
    assert exposed == ["3000"]
    assert len(healthchecks) == 1
    assert "/healthz" in healthchecks[0]
    assert "'3000'" in healthchecks[0]
