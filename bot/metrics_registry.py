"""The bot's own Prometheus metrics, served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "opsbot_slack_requests",
            "Requests received on /slack/events, by command (or request kind) and outcome.",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "opsbot_ack_seconds",
            "Time from receiving a Slack request to sending its acknowledgment.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
            registry=self.registry,
        )
        self.actions = Counter(
            "opsbot_actions",
            "Commands and button presses carried out after the ack, by action and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
