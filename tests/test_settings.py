"""Settings from the environment (a contract): defaults, and one clear line for each mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import DEFAULT_DATABASE_URL, Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 3000
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.config_path == Path("opsbot.yml")
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.pagerduty_api_url == "https://api.pagerduty.com"
    assert settings.pagerduty_events_url == "https://events.pagerduty.com"
    assert settings.socket_mode is False


def test_every_contract_variable_is_read() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_API_URL": "http://127.0.0.1:9/api",
        "OPSBOT_CONFIG": "/etc/opsbot.yml",
        "DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "PORT": "8080",
        "LOG_LEVEL": "debug",
        "PAGERDUTY_API_KEY": "pd-key",
        "PAGERDUTY_API_URL": "https://127.0.0.1:9443",
        "PAGERDUTY_EVENTS_URL": "https://127.0.0.1:9444",
    }
    settings = Settings.from_env(env)
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.config_path == Path("/etc/opsbot.yml")
    assert (settings.port, settings.log_level) == (8080, "DEBUG")
    assert settings.socket_mode is True
    assert settings.pagerduty_api_key == "pd-key"
    assert set(settings.secrets()) == {"xoxb-1", "secret", "xapp-1", "pd-key"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT: must be a number, got 'http'"),
        ({"PORT": "70000"}, "PORT: must be between 0 and 65535, got 70000"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: must start with sqlite+aiosqlite://"),
        ({"SLACK_API_URL": "slack.com"}, "SLACK_API_URL: must be an http(s) URL"),
        ({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE: no such file"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxp-user"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN"),
    ],
)
def test_serving_slack_needs_consistent_credentials(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env).require_slack()
    assert caught.value.variable == variable


def run_opsbot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"PORT": "abc"}, "opsbot: PORT: must be a number, got 'abc'"),
        (
            {"OPSBOT_CONFIG": "examples/opsbot.yml"},
            "opsbot: SLACK_BOT_TOKEN: is required to serve Slack",
        ),
        (
            {"OPSBOT_CONFIG": "examples/opsbot.yml", "SLACK_BOT_TOKEN": "xoxb-1"},
            "opsbot: SLACK_SIGNING_SECRET: is required in HTTP mode",
        ),
        (
            {"OPSBOT_CONFIG": "nowhere/opsbot.yml", "SLACK_BOT_TOKEN": "xoxb-1"},
            "opsbot: OPSBOT_CONFIG: no catalog at nowhere/opsbot.yml",
        ),
        (
            {
                "OPSBOT_CONFIG": "examples/opsbot.yml",
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x",
            },
            "opsbot: DATABASE_URL: cannot reach or upgrade the database:",
        ),
    ],
)
def test_opsbot_run_exits_2_with_one_line(env: dict[str, str], line: str) -> None:
    result = run_opsbot("run", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(line)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
