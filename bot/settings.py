"""Settings read from the environment: the names here are a contract with operators."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_PAGERDUTY_API_URL = "https://api.pagerduty.com"
DEFAULT_PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///opsbot.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting is missing or contradicts another; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    config_path: Path = Path("opsbot.yml")
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000
    log_level: str = "INFO"
    pagerduty_api_key: str | None = None
    pagerduty_api_url: str = DEFAULT_PAGERDUTY_API_URL
    pagerduty_events_url: str = DEFAULT_PAGERDUTY_EVENTS_URL
    # An extra CA trusted for both PagerDuty URLs (a proxy's, or a test fake's); else SSL_CERT_FILE.
    pagerduty_ca_file: Path | None = None
    # The PagerDuty user (e-mail) named in the `From` header of REST changes (escalations).
    pagerduty_from: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def has_slack_credentials(self) -> bool:
        return bool(self.slack_bot_token)

    def secrets(self) -> list[str]:
        """Values that must never reach a log line."""
        values = [self.slack_bot_token, self.slack_signing_secret, self.slack_app_token]
        values.append(self.pagerduty_api_key)
        values.append(self.environ.get("AWS_SECRET_ACCESS_KEY"))
        return [v for v in values if v]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        port_text = get("PORT") or "3000"
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError("PORT", f"must be a number, got {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise SettingsError("PORT", f"must be between 0 and 65535, got {port}")

        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")

        database_url = get("DATABASE_URL") or DEFAULT_DATABASE_URL
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                "DATABASE_URL",
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg://",
            )

        value = get("SLACK_API_URL")
        if value and not value.startswith(("http://", "https://")):
            raise SettingsError("SLACK_API_URL", f"must be an http(s) URL, got {value!r}")
        for name in ("PAGERDUTY_API_URL", "PAGERDUTY_EVENTS_URL"):
            value = get(name)
            # The pagerduty client refuses anything else (UrlError) at the first page.
            if value and not value.startswith("https://"):
                raise SettingsError(
                    name,
                    f"must be an https:// URL (PagerDuty is only spoken over TLS), got {value!r}",
                )

        pagerduty_ca_file = get("PAGERDUTY_CA_FILE")
        if pagerduty_ca_file and not Path(pagerduty_ca_file).is_file():
            raise SettingsError("PAGERDUTY_CA_FILE", f"no such file: {pagerduty_ca_file}")
        pagerduty_from = get("PAGERDUTY_FROM")
        if pagerduty_from and "@" not in pagerduty_from:
            raise SettingsError(
                "PAGERDUTY_FROM", f"must be the e-mail of a PagerDuty user, got {pagerduty_from!r}"
            )

        slack_api_url = get("SLACK_API_URL") or DEFAULT_SLACK_API_URL
        if not slack_api_url.endswith("/"):
            slack_api_url += "/"

        cert_file = get("SSL_CERT_FILE")
        if cert_file and not Path(cert_file).is_file():
            raise SettingsError("SSL_CERT_FILE", f"no such file: {cert_file}")

        return cls(
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=slack_api_url,
            config_path=Path(get("OPSBOT_CONFIG") or "opsbot.yml"),
            database_url=database_url,
            port=port,
            log_level=log_level,
            pagerduty_api_key=get("PAGERDUTY_API_KEY"),
            pagerduty_api_url=get("PAGERDUTY_API_URL") or DEFAULT_PAGERDUTY_API_URL,
            pagerduty_events_url=get("PAGERDUTY_EVENTS_URL") or DEFAULT_PAGERDUTY_EVENTS_URL,
            pagerduty_ca_file=Path(pagerduty_ca_file) if pagerduty_ca_file else None,
            pagerduty_from=pagerduty_from,
            environ=env,
        )

    def require_slack(self) -> None:
        """Check the settings `opsbot run` needs to talk to Slack."""
        if not self.slack_bot_token:
            raise SettingsError("SLACK_BOT_TOKEN", "is required to serve Slack")
        if not self.slack_bot_token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN", "must be a bot token starting with xoxb-")
        if self.slack_app_token:
            if not self.slack_app_token.startswith("xapp-"):
                raise SettingsError(
                    "SLACK_APP_TOKEN", "must be an app-level token starting with xapp-"
                )
        elif not self.slack_signing_secret:
            raise SettingsError(
                "SLACK_SIGNING_SECRET",
                "is required in HTTP mode (set it, or set SLACK_APP_TOKEN for Socket Mode)",
            )
