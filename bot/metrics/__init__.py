"""Metric sources (Prometheus, CloudWatch) behind one interface; see `bot.metrics.base`."""

from bot.metrics.base import (
    MetricSource,
    MetricsUnavailable,
    Sample,
    Series,
    by_label,
    make_source,
)

__all__ = ["MetricSource", "MetricsUnavailable", "Sample", "Series", "by_label", "make_source"]
