"""Metric sources (Prometheus, CloudWatch) behind one interface; see `bot.metrics.base`.
bot/plugins.py lists the sources."""

from bot.metrics.base import MetricSource, MetricsUnavailable, Sample, Series, by_label

__all__ = ["MetricSource", "MetricsUnavailable", "Sample", "Series", "by_label"]
