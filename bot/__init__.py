"""opsbot: a ChatOps deploy and incident bot for Slack."""

__version__ = "0.1.0"
