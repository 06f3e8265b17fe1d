"""The console: `opsbot shell` and the local Slack stand-in it runs the bot against."""
