"""Alerting: metric rules and certificate expiry → alerts in the database, Slack and PagerDuty."""
