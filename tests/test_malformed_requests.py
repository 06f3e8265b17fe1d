"""Malformed requests to /slack/events get 400/401/403/413 at once, and the bot keeps serving.

Each request is written byte for byte on a raw socket (no client library would send most of
them). Whatever arrives — broken framing, odd headers, bodies that are signed but unreadable —
the answer is a 4xx within 5 seconds, never a 5xx, a traceback in the log or a hang; nothing is
written (no audit row, no call to Slack); and a good signed request right after still gets 200.

The HTTP edge does not touch the database before it accepts a request, so these run on SQLite
only.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, urlencode

import pytest

from bot import audit
from bot.catalog import Catalog
from bot.db.session import Database
from bot.web import MAX_BODY_BYTES, slack_signature
from tests.conftest import SIGNING_SECRET, RunningBot, start_bot
from tests.fakes.slack import FakeSlack
from tests.helpers.raw_http import Header, RawResponse, http_request, send_raw

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
REFUSALS = {400, 401, 403, 413}

# A slash command Slack could send; every case below breaks one thing about it (or about an
# interaction or an event).
COMMAND = urlencode(
    {"team_id": "T0OPSBOT", "user_id": "U0ALICE", "command": "/deploy", "text": "help"}
).encode()


def now() -> str:
    return str(int(time.time()))


def signed_headers(
    body: bytes, *, timestamp: str | None = None, content_type: str = FORM
) -> list[Header]:
    """Content-Type and a correct v0 signature over `body` with `timestamp` as sent (any text)."""
    timestamp = timestamp if timestamp is not None else now()
    return [
        ("Content-Type", content_type),
        ("X-Slack-Request-Timestamp", timestamp),
        ("X-Slack-Signature", slack_signature(SIGNING_SECRET, timestamp, body)),
    ]


def signed(body: bytes, *, content_type: str = FORM, **options: bool) -> bytes:
    return http_request(signed_headers(body, content_type=content_type), body, **options)


def with_signature(signature: bytes) -> bytes:
    headers = [
        ("Content-Type", FORM),
        ("X-Slack-Request-Timestamp", now()),
        ("X-Slack-Signature", signature),
    ]
    return http_request(headers, COMMAND)


def signed_at(timestamp: str) -> bytes:
    """Correctly signed, with a timestamp that is not plain ASCII digits."""
    return http_request(signed_headers(COMMAND, timestamp=timestamp), COMMAND)


def arabic_indic(digits: str) -> str:
    return digits.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


def fullwidth(digits: str) -> str:
    return digits.translate(str.maketrans("0123456789", "０１２３４５６７８９"))


def superscript(digits: str) -> str:
    return digits.translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def header_twice(name: str, second: str) -> bytes:
    headers = signed_headers(COMMAND)
    headers.append((name, second))
    return http_request(headers, COMMAND)


def framed(extra: list[Header], body: bytes) -> bytes:
    """Signed over `body`, with the framing headers given instead of one Content-Length."""
    return http_request(signed_headers(COMMAND) + extra, body, content_length=False)


def chunked(*chunks: bytes) -> bytes:
    return framed([("Transfer-Encoding", "chunked")], b"".join(chunks))


def deeply_nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def block_actions(**extra: object) -> dict[str, object]:
    return {
        "type": "block_actions",
        "team": {"id": "T0OPSBOT"},
        "user": {"id": "U0ALICE", "team_id": "T0OPSBOT"},
        "actions": [{"action_id": "rerun_command", "value": "/deploy help"}],
        **extra,
    }


def payload_form(payload: str) -> bytes:
    return signed(urlencode({"payload": payload}).encode())


def event_json(event_text: str) -> bytes:
    body = (
        '{"type": "event_callback", "team_id": "T0OPSBOT", "event_id": "Ev0001", '
        f'"event": {{"type": "app_mention", "user": "U0ALICE", "blocks": {event_text}}}}}'
    ).encode()
    return signed(body, content_type=JSON)


def gzip_encoded(body: bytes) -> bytes:
    """Content-Encoding: gzip, signed over the bytes on the wire (as a Slack signature would be)."""
    headers = [*signed_headers(body), ("Content-Encoding", "gzip")]
    return http_request(headers, body)


# name -> the request's bytes (built at test time: timestamps must be fresh)
CASES: dict[str, Callable[[], bytes]] = {
    # X-Slack-Signature
    "signature_not_ascii": lambda: with_signature(("v0=" + "é" * 64).encode()),
    "signature_not_utf8": lambda: with_signature(b"v0=" + b"\xff" * 64),
    "signature_very_long": lambda: with_signature(b"v0=" + b"0" * 7000),
    "signature_sent_twice": lambda: header_twice("X-Slack-Signature", "v0=" + "0" * 64),
    # X-Slack-Request-Timestamp, each correctly signed over the timestamp as sent
    "timestamp_5000_digits": lambda: signed_at("1" * 5000),
    "timestamp_superscript_digits": lambda: signed_at(superscript(now())),
    "timestamp_arabic_indic_digits": lambda: signed_at(arabic_indic(now())),
    "timestamp_fullwidth_digits": lambda: signed_at(fullwidth(now())),
    "timestamp_with_sign": lambda: signed_at("+" + now()),
    "timestamp_not_utf8": lambda: with_signature(b"v0=" + b"0" * 64).replace(
        b"X-Slack-Request-Timestamp: ", b"X-Slack-Request-Timestamp: \xff\xfe", 1
    ),
    "timestamp_sent_twice": lambda: header_twice("X-Slack-Request-Timestamp", "1"),
    # framing
    "content_length_conflicting": lambda: framed(
        [("Content-Length", str(len(COMMAND))), ("Content-Length", str(len(COMMAND) - 5))],
        COMMAND,
    ),
    "content_length_with_chunked": lambda: framed(
        [("Content-Length", str(len(COMMAND))), ("Transfer-Encoding", "chunked")],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(COMMAND), COMMAND),
    ),
    "content_length_not_a_number": lambda: framed([("Content-Length", "12abc")], COMMAND),
    "content_length_negative": lambda: framed([("Content-Length", "-1")], COMMAND),
    "transfer_encoding_not_chunked": lambda: framed([("Transfer-Encoding", "gzip")], COMMAND),
    "chunk_size_not_hex": lambda: chunked(b"zz\r\n", COMMAND, b"\r\n0\r\n\r\n"),
    "chunk_longer_than_its_size": lambda: chunked(b"5\r\n", COMMAND, b"\r\n0\r\n\r\n"),
    "body_never_arrives": lambda: framed([("Content-Length", str(len(COMMAND) + 10))], COMMAND),
    # headers and the request line
    "header_line_oversized": lambda: http_request(
        [*signed_headers(COMMAND), ("X-Filler", "a" * 20_000)], COMMAND
    ),
    "header_with_nul": lambda: http_request(
        [*signed_headers(COMMAND), ("X-Slack-Retry-Reason", b"http\x00timeout")], COMMAND
    ),
    "header_with_bare_cr": lambda: http_request(
        [*signed_headers(COMMAND), ("X-Slack-Retry-Reason", b"http\rtimeout")], COMMAND
    ),
    "header_without_colon": lambda: http_request(
        [*signed_headers(COMMAND), ("X-Broken header line", b"")], COMMAND
    ).replace(b"X-Broken header line: ", b"X-Broken header line"),
    "request_target_oversized": lambda: http_request(
        signed_headers(COMMAND), COMMAND, path="/slack/events?" + "a" * 20_000
    ),
    # Content-Encoding: Slack never compresses its requests
    "gzip_not_gzip": lambda: gzip_encoded(COMMAND),
    "gzip_bomb": lambda: gzip_encoded(gzip.compress(b"command=/deploy&text=" + b"0" * 50_000_000)),
    # signed bodies that cannot be read
    "form_not_utf8": lambda: signed(COMMAND.replace(b"text=help", b"text=\xff\xfe")),
    "form_percent_encoded_not_utf8": lambda: signed(COMMAND.replace(b"text=help", b"text=%FF%FE")),
    "payload_percent_encoded_not_utf8": lambda: signed(
        b"payload=" + quote(json.dumps(block_actions(note="QQ"))).replace("QQ", "%C3%28").encode()
    ),
    "payload_lone_surrogate": lambda: payload_form(json.dumps(block_actions(note="\ud800"))),
    "payload_nested_100000_deep": lambda: payload_form(
        json.dumps(block_actions()).replace(
            '"actions"', f'"x": {deeply_nested(100_000)}, "actions"'
        )
    ),
    "payload_nested_500_deep": lambda: payload_form(
        json.dumps(block_actions()).replace('"actions"', f'"x": {deeply_nested(500)}, "actions"')
    ),
    "event_nested_100000_deep": lambda: event_json(deeply_nested(100_000)),
    "event_nested_500_deep": lambda: event_json(deeply_nested(500)),
    "event_lone_surrogate": lambda: event_json('["\\udfff"]'),
    "event_number_with_5000_digits": lambda: event_json("[" + "9" * 5000 + "]"),
}


@pytest.fixture
async def bot(
    fake_slack: FakeSlack, sqlite_database: Database, catalog: Catalog
) -> AsyncIterator[RunningBot]:
    async with start_bot(fake_slack, sqlite_database, catalog) as running:
        yield running


def port_of(bot: RunningBot) -> int:
    return int(bot.base_url.rsplit(":", 1)[1])


async def assert_refused(
    bot: RunningBot, caplog: pytest.LogCaptureFixture, request: bytes
) -> RawResponse:
    """`request` is refused with a 4xx in time, nothing happened, and the bot still serves."""
    calls_before = len(bot.fake.calls)
    response = await send_raw(port_of(bot), request, timeout=5)
    assert response.status in REFUSALS, (response.status, response.body[:300])
    await bot.settle()
    assert await audit.entries(bot.services.db) == []
    assert bot.fake.calls[calls_before:] == []
    assert [r.getMessage() for r in caplog.records if is_a_problem(r)] == []
    status, text, _ = await bot.slack.command("/deploy", "help")
    assert status == 200, text
    return response


def is_a_problem(record: logging.LogRecord) -> bool:
    return (
        bool(record.exc_info)
        or record.levelno >= logging.ERROR
        or "Traceback" in record.getMessage()
    )


@pytest.mark.parametrize("case", sorted(CASES))
async def test_malformed_request_is_refused_and_the_bot_keeps_serving(
    bot: RunningBot, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.INFO)
    await assert_refused(bot, caplog, CASES[case]())


async def test_a_body_over_the_limit_is_refused_before_it_is_sent(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    headers = [*signed_headers(b""), ("Content-Length", str(MAX_BODY_BYTES + 1))]
    request = http_request(headers, b"", content_length=False)  # and the body never comes
    response = await assert_refused(bot, caplog, request)
    assert response.status == 413
    assert response.seconds < 2


async def test_a_chunked_body_over_the_limit_gets_413(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = b"text=" + b"a" * MAX_BODY_BYTES
    request = framed(
        [("Transfer-Encoding", "chunked")], b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    assert (await assert_refused(bot, caplog, request)).status == 413


# Requests Slack does send, which the checks above must not refuse.
ACCEPTED: dict[str, Callable[[], bytes]] = {
    "command_with_non_ascii_text": lambda: signed(
        COMMAND.replace(b"text=help", b"text=" + quote("help déploiement ✓").encode())
    ),
    "payload_with_escaped_emoji": lambda: payload_form(
        json.dumps(block_actions(note="ship it 🚀"), ensure_ascii=True)
    ),
    "payload_nested_as_deep_as_rich_text": lambda: payload_form(
        json.dumps(block_actions()).replace('"actions"', f'"x": {deeply_nested(40)}, "actions"')
    ),
    "event_with_escaped_emoji": lambda: event_json(json.dumps(["🚀"], ensure_ascii=True)),
    "event_with_a_latin1_url_in_its_text": lambda: event_json('["see https://x.example/caf%E9"]'),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_well_formed_requests_that_look_unusual_are_accepted(
    bot: RunningBot, case: str
) -> None:
    response = await send_raw(port_of(bot), ACCEPTED[case](), timeout=5)
    assert response.status == 200, response.body[:300]
