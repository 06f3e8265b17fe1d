"""CloudWatchSource against moto's server: the query grammar, ratios, and one call per batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.catalog import MetricsSource
from bot.metrics import MetricsUnavailable, Sample, Series, by_label
from bot.metrics.cloudwatch import (
    MAX_QUERIES_PER_CALL,
    CloudWatchSource,
    MetricStat,
    parse_query,
    period_for,
)
from bot.plugins import make_source
from tests.fakes.aws import REGION, MotoServer, aws_client, moto_env, running_moto

MINUTE = timedelta(minutes=1)
SYNTAX_HINT = "write Namespace:MetricName{Dim=Value,…}:Stat[:period]"


def error_rate(function: str) -> str:
    return (
        f"AWS/Lambda:Errors{{FunctionName={function}}}:Sum:60"
        f" / AWS/Lambda:Invocations{{FunctionName={function}}}:Sum:60"
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with running_moto() as server:
        yield server


@pytest.fixture
def start() -> datetime:
    """A whole minute in the recent past: the first of the minutes the tests put data into."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - 10 * MINUTE


@pytest.fixture
async def source(moto: MotoServer) -> AsyncIterator[CloudWatchSource]:
    source = CloudWatchSource(region=None, env=moto.env)
    yield source
    await source.close()


@dataclass
class GetMetricDataCalls:
    """What the client sent to GetMetricData, seen through botocore's own event hooks."""

    requests: int = 0  # HTTP requests that went out (retries included)
    queries: list[int] = field(default_factory=list)  # MetricDataQueries per API call

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-send.cloudwatch.GetMetricData", self._sent)
        client.meta.events.register("provide-client-params.cloudwatch.GetMetricData", self._params)

    def _sent(self, **kwargs: Any) -> None:
        self.requests += 1

    def _params(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.queries.append(len(params["MetricDataQueries"]))


@pytest.fixture
def calls(source: CloudWatchSource) -> GetMetricDataCalls:
    counter = GetMetricDataCalls()
    counter.attach(source.client)
    return counter


def put(moto: MotoServer, metric: str, function: str, points: list[tuple[datetime, float]]) -> None:
    aws_client(moto.env, "cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": function}],
                "Timestamp": at,
                "Value": value,
                "Unit": "Count",
            }
            for at, value in points
        ],
    )


def put_lambda_traffic(
    moto: MotoServer, function: str, start: datetime, per_minute: list[tuple[float, float]]
) -> None:
    """(errors, invocations) for consecutive minutes from `start`, a few datapoints each."""
    errors, invocations = [], []
    for minute, (failed, total) in enumerate(per_minute):
        at = start + minute * MINUTE
        # Two datapoints a minute: the Sum statistic must add them up.
        errors += [
            (at + timedelta(seconds=5), failed / 2),
            (at + timedelta(seconds=35), failed / 2),
        ]
        invocations += [
            (at + timedelta(seconds=5), total / 2),
            (at + timedelta(seconds=35), total / 2),
        ]
    put(moto, "Errors", function, errors)
    put(moto, "Invocations", function, invocations)


async def test_error_rate_is_errors_over_invocations_per_timestamp(
    moto: MotoServer, source: CloudWatchSource, start: datetime
) -> None:
    put_lambda_traffic(moto, "thumbnails", start, [(2, 100), (5, 50), (0, 40)])

    [series] = await source.range(
        error_rate("thumbnails"), start=start, end=start + 3 * MINUTE, step=MINUTE
    )

    assert series.labels == {"FunctionName": "thumbnails"}
    assert series.samples == (
        Sample(at=start, value=0.02),
        Sample(at=start + MINUTE, value=0.1),
        Sample(at=start + 2 * MINUTE, value=0.0),
    )
    assert by_label([series]).keys() == {""}


async def test_instant_is_the_latest_datapoint(
    moto: MotoServer, source: CloudWatchSource, start: datetime
) -> None:
    put_lambda_traffic(moto, "resize", start, [(1, 100), (3, 60)])

    [series] = await source.instant(error_rate("resize"), at=start + 3 * MINUTE)

    assert series.samples == (Sample(at=start + MINUTE, value=0.05),)


async def test_instant_without_recent_data_has_no_series(
    moto: MotoServer, source: CloudWatchSource, start: datetime
) -> None:
    put_lambda_traffic(moto, "old-job", start, [(1, 100)])

    assert await source.instant(error_rate("old-job"), at=start + 30 * MINUTE) == []


async def test_minutes_without_invocations_are_skipped_not_divided_by_zero(
    moto: MotoServer, source: CloudWatchSource, start: datetime
) -> None:
    put_lambda_traffic(moto, "idle", start, [(0, 0), (1, 10)])

    [series] = await source.range(
        error_rate("idle"), start=start, end=start + 2 * MINUTE, step=MINUTE
    )

    assert series.samples == (Sample(at=start + MINUTE, value=0.1),)


async def test_range_many_asks_every_query_in_one_get_metric_data_call(
    moto: MotoServer, source: CloudWatchSource, calls: GetMetricDataCalls, start: datetime
) -> None:
    functions = ("orders", "invoices", "emails")
    for number, function in enumerate(functions, start=1):
        put_lambda_traffic(moto, function, start, [(number, 100), (number * 2, 100)])
    queries = {function: error_rate(function) for function in functions}
    # Shares its statistic with the denominator of "orders": asked for once.
    queries["orders-invocations"] = "AWS/Lambda:Invocations{FunctionName=orders}:Sum:60"

    answers = await source.range_many(queries, start=start, end=start + 2 * MINUTE, step=MINUTE)

    assert calls.requests == 1
    assert calls.queries == [6]  # 3 × errors and invocations; the shared one not twice
    assert [s.value for s in answers["orders"][0].samples] == [0.01, 0.02]
    assert [s.value for s in answers["invoices"][0].samples] == [0.02, 0.04]
    assert [s.value for s in answers["emails"][0].samples] == [0.03, 0.06]
    assert [s.value for s in answers["orders-invocations"][0].samples] == [100, 100]


async def test_more_queries_than_one_call_takes_are_split_in_500s(
    moto: MotoServer, source: CloudWatchSource, calls: GetMetricDataCalls, start: datetime
) -> None:
    put_lambda_traffic(moto, "batch-0", start, [(1, 10)])
    queries = {
        f"q{number}": f"AWS/Lambda:Invocations{{FunctionName=batch-{number}}}:Sum:60"
        for number in range(MAX_QUERIES_PER_CALL + 20)
    }

    answers = await source.range_many(queries, start=start, end=start + MINUTE, step=MINUTE)

    assert calls.queries == [MAX_QUERIES_PER_CALL, 20]
    assert answers["q0"][0].samples == (Sample(at=start, value=10.0),)
    assert answers["q1"] == []


async def test_period_follows_the_step_when_the_query_names_none(
    moto: MotoServer, source: CloudWatchSource, start: datetime
) -> None:
    put_lambda_traffic(moto, "reports", start, [(1, 10), (1, 10), (1, 10), (1, 10)])

    [series] = await source.range(
        "AWS/Lambda:Invocations{FunctionName=reports}:Sum",
        start=start,
        end=start + 4 * MINUTE,
        step=2 * MINUTE,
    )

    assert series.samples == (
        Sample(at=start, value=20.0),
        Sample(at=start + 2 * MINUTE, value=20.0),
    )


async def test_bad_query_is_refused_before_any_call(
    source: CloudWatchSource, calls: GetMetricDataCalls, start: datetime
) -> None:
    with pytest.raises(ValueError, match="unknown statistic 'Total'"):
        await source.range_many(
            {"ok": error_rate("thumbnails"), "bad": "AWS/Lambda:Errors:Total"},
            start=start,
            end=start + MINUTE,
            step=MINUTE,
        )

    assert calls.requests == 0


async def test_unreachable_endpoint_is_unavailable() -> None:
    with running_moto() as gone:
        env = gone.env
    source = CloudWatchSource(region=None, env=env, max_attempts=1, connect_timeout=1)
    now = datetime.now(UTC)

    with pytest.raises(MetricsUnavailable) as caught:
        await source.instant(error_rate("thumbnails"), at=now)

    message = str(caught.value)
    assert message.startswith(f"CloudWatch {REGION} at {env['AWS_ENDPOINT_URL']} is unreachable:")
    assert "\n" not in message
    assert caught.value.failures == {}


async def test_make_source_takes_the_catalog_region_over_aws_region(moto: MotoServer) -> None:
    source = make_source(
        MetricsSource(source="cloudwatch", region="us-west-2"), env=moto_env(moto.endpoint_url)
    )
    assert isinstance(source, CloudWatchSource)
    assert source.region == "us-west-2"
    assert source.endpoint_url == moto.endpoint_url


def test_cloudwatch_without_any_region_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"metrics\.region in the catalog or AWS_REGION"):
        make_source(MetricsSource(source="cloudwatch"), env={})


# --- the grammar ---------------------------------------------------------------------------------

ERRORS = MetricStat("AWS/Lambda", "Errors", (("FunctionName", "thumbnails"),), "Sum", 60)


@pytest.mark.parametrize(
    ("text", "numerator", "denominator"),
    [
        ("AWS/Lambda:Errors{FunctionName=thumbnails}:Sum:60", ERRORS, None),
        ("AWS/Lambda:Errors{ FunctionName = thumbnails }:sum:1m", ERRORS, None),
        (
            "AWS/Lambda:Errors{FunctionName=thumbnails}:Sum:60"
            " / AWS/Lambda:Invocations{FunctionName=thumbnails}:Sum:60",
            ERRORS,
            MetricStat("AWS/Lambda", "Invocations", (("FunctionName", "thumbnails"),), "Sum", 60),
        ),
        (
            "AWS/ApplicationELB:TargetResponseTime{LoadBalancer=app/shop/1f2e,TargetGroup=tg}:p99",
            MetricStat(
                "AWS/ApplicationELB",
                "TargetResponseTime",
                (("LoadBalancer", "app/shop/1f2e"), ("TargetGroup", "tg")),
                "p99",
                None,
            ),
            None,
        ),
        ("Shop:Orders:SampleCount:5", MetricStat("Shop", "Orders", (), "SampleCount", 5), None),
        ("Shop:Orders{}:Maximum:300", MetricStat("Shop", "Orders", (), "Maximum", 300), None),
        ("Shop:Orders:p99.9:5m", MetricStat("Shop", "Orders", (), "p99.9", 300), None),
    ],
)
def test_accepted_queries(text: str, numerator: MetricStat, denominator: MetricStat | None) -> None:
    query = parse_query(text)
    assert (query.numerator, query.denominator) == (numerator, denominator)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("AWS/Lambda:Errors", "'AWS/Lambda:Errors' has no statistic (add :Sum, :Average,"),
        ("Errors:Sum", "'Errors:Sum' has no namespace (e.g. AWS/Lambda:Errors:Sum)"),
        ("AWS/Lambda:Errors:Total", "unknown statistic 'Total' (use Sum, Average,"),
        ("AWS/Lambda:Errors:Sum:45", "period '45' is not one CloudWatch accepts"),
        ("AWS/Lambda:Errors:Sum:soon", "bad period 'soon' (seconds such as 60, or 1m, 5m)"),
        ("AWS/Lambda:Errors:Sum:60:1", "has too many ':' parts"),
        ("AWS/Lambda:Errors{FunctionName}:Sum", "bad dimension 'FunctionName' (write Name=Value)"),
        ("AWS/Lambda:Errors{A=1,A=2}:Sum", "dimension 'A' appears twice"),
        ("AWS/Lambda:Errors{A=1:Sum", "unbalanced braces"),
        ("AWS/Lambda:Errors{A=1}Sum", "expected ':' and the statistic after '}'"),
        ("AWS/Lambda:Errors:Sum /", "a ratio needs a metric on both sides of ' / '"),
        ("A:B:Sum / C:D:Sum / E:F:Sum", "only one ratio is supported (A / B)"),
        ("Lambda Errors:Sum", "does not start with Namespace:MetricName"),
    ],
)
def test_rejected_queries_say_why_and_how_to_write_one(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_query(text)

    message = str(caught.value)
    assert message.startswith(f"bad CloudWatch query {text.strip()!r}: ")
    assert reason in message
    assert SYNTAX_HINT in message


@pytest.mark.parametrize(
    ("step", "period"),
    [
        (timedelta(seconds=1), 1),
        (timedelta(seconds=3), 5),
        (timedelta(seconds=15), 30),
        (timedelta(seconds=31), 60),
        (timedelta(minutes=1), 60),
        (timedelta(seconds=90), 120),
    ],
)
def test_period_for_step_rounds_up_to_one_cloudwatch_accepts(step: timedelta, period: int) -> None:
    assert period_for(step) == period


# --- shared by both sources ----------------------------------------------------------------------


def test_by_label_refuses_series_the_query_did_not_aggregate() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    one = Series(labels={"service": "checkout", "pod": "a"}, samples=(Sample(at, 1.0),))
    two = Series(labels={"service": "checkout", "pod": "b"}, samples=(Sample(at, 2.0),))

    with pytest.raises(
        ValueError, match=r"more than one series service='checkout'.*by \(service\)"
    ):
        by_label([one, two])
    assert by_label([one], "pod") == {"a": one}


async def test_naive_datetimes_are_refused(source: CloudWatchSource) -> None:
    with pytest.raises(ValueError, match="has no timezone"):
        await source.instant(error_rate("thumbnails"), at=datetime(2025, 1, 1))
