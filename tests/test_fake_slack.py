"""The Slack fake speaks the real protocol: slack_sdk, its webhook client and Bolt work with it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.console.standin import Message, SlackStandIn
from tests.fakes.slack import FakeSlack, running_fake_slack
from tests.fakes.slack_client import SlackRequests

USERS = [
    {"id": "U0ALICE", "name": "alice", "email": "alice@example.com", "real_name": "Alice Ops"},
    {"id": "U0BOB", "name": "bob", "email": "bob@example.com", "real_name": "Bob Oncall"},
]
SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* started"}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with running_fake_slack(users=USERS, usergroups={"S0SRE": ["U0ALICE", "U0BOB"]}) as f:
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=fake.api_url)


async def test_auth_test_identifies_the_bot(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.auth_test()

    assert response["user_id"] == "U0OPSBOT"
    assert response["team_id"] == "T0OPSBOT"
    assert response["bot_id"]
    call = fake.calls_to("auth.test")[0]
    assert call.headers["Authorization"] == "Bearer xoxb-test"


async def test_missing_or_foreign_token_is_refused(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as missing:
        await AsyncWebClient(base_url=fake.api_url).auth_test()
    with pytest.raises(SlackApiError) as foreign:
        await AsyncWebClient(token="secret", base_url=fake.api_url).auth_test()

    assert missing.value.response["error"] == "not_authed"
    assert foreign.value.response["error"] == "invalid_auth"


async def test_post_message_with_text_and_blocks(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel="C0DEPLOYS", text="hello")
    second = await client.chat_postMessage(
        channel="C0DEPLOYS", text="fallback", blocks=[SECTION], thread_ts=first["ts"]
    )

    assert first["channel"] == "C0DEPLOYS"
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert second["message"]["blocks"] == [SECTION]
    assert [(m.text, m.thread_ts, m.blocks) for m in fake.messages] == [
        ("hello", None, []),
        ("fallback", first["ts"], [SECTION]),
    ]
    assert fake.calls_to("chat.postMessage")[1].args["blocks"] == [SECTION]


async def test_blocks_sent_as_a_form_field_are_decoded(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    await client.api_call(
        "chat.postMessage", data={"channel": "C0DEPLOYS", "blocks": json.dumps([SECTION])}
    )

    assert fake.messages[0].blocks == [SECTION]


async def test_post_message_without_content_is_no_text(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as error, pytest.warns(UserWarning, match="text"):
        await client.chat_postMessage(channel="C0DEPLOYS")

    assert error.value.response["error"] == "no_text"


async def test_too_many_blocks_are_invalid_blocks(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        await client.chat_postMessage(channel="C0DEPLOYS", text="x", blocks=[SECTION] * 51)

    assert error.value.response["error"] == "invalid_blocks"


async def test_chat_update_changes_the_message_in_place(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="deploying")

    await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="succeeded")
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel="C0DEPLOYS", ts="1.000000", text="x")

    assert [(m.text, m.updated) for m in fake.messages] == [("succeeded", True)]
    assert missing.value.response["error"] == "message_not_found"


async def test_conversations_create_refuses_a_taken_name(client: AsyncWebClient) -> None:
    created = await client.conversations_create(name="inc-42-db-down")
    with pytest.raises(SlackApiError) as taken:
        await client.conversations_create(name="inc-42-db-down")
    with pytest.raises(SlackApiError) as invalid:
        await client.conversations_create(name="Inc 42")

    assert created["channel"]["id"].startswith("C")
    assert created["channel"]["name"] == "inc-42-db-down"
    assert taken.value.response["error"] == "name_taken"
    assert invalid.value.response["error"] == "invalid_name_specials"


async def test_users_lookup_by_email_hit_and_miss(client: AsyncWebClient) -> None:
    found = await client.users_lookupByEmail(email="bob@example.com")
    with pytest.raises(SlackApiError) as missing:
        await client.users_lookupByEmail(email="nobody@example.com")

    assert found["user"]["id"] == "U0BOB"
    assert missing.value.response["error"] == "users_not_found"


async def test_usergroups_users_list(client: AsyncWebClient) -> None:
    members = await client.usergroups_users_list(usergroup="S0SRE")
    with pytest.raises(SlackApiError) as missing:
        await client.usergroups_users_list(usergroup="S0NOPE")

    assert members["users"] == ["U0ALICE", "U0BOB"]
    assert missing.value.response["error"] == "no_such_subteam"


async def test_unknown_method(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        await client.api_call("nope.nothing")

    assert error.value.response["error"] == "unknown_method"


async def test_rate_limit_is_retried_after_retry_after(fake: FakeSlack) -> None:
    client = AsyncWebClient(
        token="xoxb-test",
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.fail_next("chat.postMessage", status=429, retry_after=0)

    response = await client.chat_postMessage(channel="C0DEPLOYS", text="hi")

    attempts = fake.calls_to("chat.postMessage")
    assert response["ok"] is True
    assert [a.status for a in attempts] == [429, 200]
    assert attempts[0].response == {"ok": False, "error": "ratelimited"}
    assert len(fake.messages) == 1


async def test_rate_limit_without_retry_handler_reaches_the_caller(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as error:
        await client.chat_postMessage(channel="C0DEPLOYS", text="hi")

    assert error.value.response.status_code == 429
    assert error.value.response.headers["Retry-After"] == "7"
    assert error.value.response["error"] == "ratelimited"


async def test_per_channel_ratelimit_answers_429(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.ratelimit("chat.postMessage", per_second=1)

    await client.chat_postMessage(channel="C0DEPLOYS", text="one")
    await client.chat_postMessage(channel="C0OTHER", text="other channel")
    with pytest.raises(SlackApiError) as error:
        await client.chat_postMessage(channel="C0DEPLOYS", text="two")

    assert error.value.response.status_code == 429
    assert int(error.value.response.headers["Retry-After"]) >= 1
    assert [m.text for m in fake.messages] == ["one", "other channel"]
    times = fake.call_times("chat.postMessage")
    assert times == sorted(times) and len(times) == 3


async def test_injected_error_raises_slack_api_error(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", error="channel_not_found")

    with pytest.raises(SlackApiError) as error:
        await client.chat_postMessage(channel="C0DEPLOYS", text="hi")
    await client.chat_postMessage(channel="C0DEPLOYS", text="again")

    assert error.value.response["error"] == "channel_not_found"
    assert [m.text for m in fake.messages] == ["again"]


async def test_injected_server_error(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("auth.test", status=500)

    with pytest.raises(SlackApiError) as error:
        await client.auth_test()

    assert error.value.response.status_code == 500


async def test_webhook_client_response_url_lands_as_ephemeral(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(url=fake.response_url("C0DEPLOYS", "U0ALICE"))

    response = await webhook.send(text="only you can see this")

    assert response.status_code == 200
    assert response.body == "ok"
    message = fake.messages[0]
    assert (message.channel, message.text, message.ephemeral_for, message.source) == (
        "C0DEPLOYS",
        "only you can see this",
        "U0ALICE",
        "response_url",
    )


async def test_response_url_in_channel_and_replace_original(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(url=fake.response_url("C0DEPLOYS", "U0ALICE"))

    await webhook.send(text="working…", response_type="in_channel")
    await webhook.send(text="done", replace_original=True)

    assert [(m.text, m.ephemeral_for, m.updated) for m in fake.messages] == [("done", None, True)]


async def test_wait_for_waits_for_a_call_made_later(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    async def post_later() -> None:
        await fake.wait_for("auth.test")
        await client.chat_postMessage(channel="C0DEPLOYS", text="later")

    task = asyncio.create_task(post_later())
    await client.auth_test()
    call = await fake.wait_for("chat.postMessage", lambda c: c.args.get("text") == "later")
    await task

    assert call.args["channel"] == "C0DEPLOYS"
    with pytest.raises(TimeoutError):
        await fake.wait_for("chat.delete", timeout=0.05)


async def test_wait_for_can_skip_earlier_calls(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C0DEPLOYS", text="old")
    start = len(fake.calls)

    waiter = asyncio.create_task(fake.wait_for("chat.postMessage", start=start))
    await client.chat_postMessage(channel="C0DEPLOYS", text="new")

    assert (await waiter).args["text"] == "new"


async def test_response_url_can_be_used_five_times(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(url=fake.response_url("C0DEPLOYS", "U0ALICE"))

    statuses = [(await webhook.send(text=f"reply {n}")).status_code for n in range(6)]
    expired = await AsyncWebhookClient(url=fake.base_url + "/commands/T0OPSBOT/9/x").send(text="x")

    assert statuses == [200] * 5 + [404]
    assert (expired.status_code, expired.body) == (404, "expired_url")


async def test_views_open_uses_a_trigger_id_once(fake: FakeSlack, client: AsyncWebClient) -> None:
    modal = {
        "type": "modal",
        "callback_id": "approve",
        "title": {"type": "plain_text", "text": "Approve deploy"},
        "blocks": [SECTION],
    }
    trigger_id = fake.issue_trigger_id()

    opened = await client.views_open(trigger_id=trigger_id, view=modal)
    with pytest.raises(SlackApiError) as reused:
        await client.views_open(trigger_id=trigger_id, view=modal)
    updated = await client.views_update(view_id=opened["view"]["id"], view=modal)

    assert opened["view"]["callback_id"] == "approve"
    assert fake.views[opened["view"]["id"]]["blocks"] == [SECTION]
    assert reused.value.response["error"] == "exchanged_trigger_id"
    assert updated["view"]["id"] == opened["view"]["id"]


async def test_threads_history_reactions_and_permalinks(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    channel = (await client.conversations_create(name="inc-1-checkout"))["channel"]["id"]
    await client.conversations_invite(channel=channel, users=["U0ALICE", "U0BOB"])
    await client.conversations_setTopic(channel=channel, topic="P1: checkout down")
    parent = await client.chat_postMessage(channel=channel, text="incident declared")
    await client.chat_postMessage(channel=channel, text="paged bob", thread_ts=parent["ts"])
    await client.reactions_add(channel=channel, timestamp=parent["ts"], name="rotating_light")
    await client.chat_postEphemeral(channel=channel, user="U0ALICE", text="just for you")

    info = await client.conversations_info(channel=channel)
    history = await client.conversations_history(channel=channel)
    replies = await client.conversations_replies(channel=channel, ts=parent["ts"])
    link = await client.chat_getPermalink(channel=channel, message_ts=parent["ts"])

    assert info["channel"]["topic"]["value"] == "P1: checkout down"
    assert info["channel"]["num_members"] == 3
    assert [m["text"] for m in history["messages"]] == ["incident declared"]
    assert history["messages"][0]["reply_count"] == 1
    assert history["messages"][0]["reactions"][0]["name"] == "rotating_light"
    assert [m["text"] for m in replies["messages"]] == ["incident declared", "paged bob"]
    assert link["permalink"].endswith(f"/archives/{channel}/p{parent['ts'].replace('.', '')}")


async def test_stand_in_reports_new_and_updated_messages() -> None:
    standin = SlackStandIn()
    seen: list[tuple[str, bool]] = []

    async def show(message: Message) -> None:
        seen.append((message.text, message.updated))

    standin.on_message = show
    await standin.start()
    try:
        client = AsyncWebClient(token="xoxb-console", base_url=standin.api_url)
        posted = await client.chat_postMessage(channel="C0DEPLOYS", text="deploying")
        await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="succeeded")
        with pytest.raises(SlackApiError) as no_socket_mode:
            await client.apps_connections_open(app_token="xapp-1-x")
    finally:
        await standin.stop()

    assert seen == [("deploying", False), ("succeeded", True)]
    assert no_socket_mode.value.response["error"] == "not_allowed_token_type"


async def test_signature_round_trips_through_slack_sdk(fake: FakeSlack) -> None:
    requests = SlackRequests("http://127.0.0.1:1", "shh", fake=fake)
    body = requests.slash_command_body("/deploy", "myapp prod")

    headers = requests.sign(body)

    assert SignatureVerifier("shh").is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    stale = requests.sign(body, timestamp=int(time.time()) - 600)
    assert not SignatureVerifier("shh").is_valid_request(body, stale)
    fields = parse_qs(body)
    assert fields["command"] == ["/deploy"]
    assert fields["response_url"][0].startswith(fake.base_url)


@asynccontextmanager
async def serving(app: AsyncApp) -> AsyncIterator[str]:
    """Serve a Bolt app on /slack/events over real HTTP; yields its base URL."""

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def bolt_app(fake: FakeSlack, signing_secret: str = "shh") -> AsyncApp:
    client = AsyncWebClient(token="xoxb-x", base_url=fake.api_url)
    return AsyncApp(client=client, signing_secret=signing_secret)


async def test_signed_command_reaches_bolt_and_respond_lands(fake: FakeSlack) -> None:
    app = bolt_app(fake)

    @app.command("/ping")
    async def ping(ack: AsyncAck, respond: AsyncRespond) -> None:
        await ack("pong")
        await respond("later pong")

    async with serving(app) as base_url:
        requests = SlackRequests(base_url, "shh", fake=fake)
        status, text, _ = await requests.command("/ping", "")
        unsigned_status, _, _ = await requests.command("/ping", "", signed=False)
        message = await fake.wait_for_message(lambda m: m.text == "later pong")

    assert (status, text) == (200, "pong")
    assert unsigned_status == 401
    assert message.ephemeral_for == "U0ALICE"


async def test_click_carries_the_message_and_replace_original_updates_it(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    app = bolt_app(fake)
    clicked: list[dict] = []

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict, respond: AsyncRespond) -> None:
        await ack()
        clicked.append(body)
        await respond(text="approved by alice", replace_original=True)

    button = {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "deploy-7",
                "text": {"type": "plain_text", "text": "Approve"},
            }
        ],
    }
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="approve?", blocks=[button])
    async with serving(app) as base_url:
        requests = SlackRequests(base_url, "shh", fake=fake)
        status, _, _ = await requests.click("approve", message_ts=posted["ts"])
        await fake.wait_for_message(lambda m: m.text == "approved by alice")

    action = clicked[0]["actions"][0]
    assert status == 200
    assert (action["value"], action["block_id"]) == ("deploy-7", "decision")
    assert clicked[0]["message"]["blocks"] == [button]
    assert [(m.ts, m.text, m.updated) for m in fake.messages] == [
        (posted["ts"], "approved by alice", True)
    ]


SLASH_PING = {
    "token": "t",
    "team_id": "T0OPSBOT",
    "team_domain": "opsbot",
    "channel_id": "C0DEPLOYS",
    "channel_name": "deploys",
    "user_id": "U0ALICE",
    "user_name": "alice",
    "command": "/ping",
    "text": "",
    "api_app_id": "A0OPSBOT",
    "is_enterprise_install": "false",
    "trigger_id": "1.2.3",
}


@asynccontextmanager
async def socket_mode(app: AsyncApp) -> AsyncIterator[AsyncSocketModeHandler]:
    handler = AsyncSocketModeHandler(app, "xapp-1-test")
    await handler.connect_async()
    try:
        yield handler
    finally:
        await handler.close_async()


async def test_socket_mode_round_trip_with_bolt(fake: FakeSlack) -> None:
    app = bolt_app(fake, signing_secret="s")

    @app.command("/ping")
    async def ping(ack: AsyncAck) -> None:
        await ack("pong")

    async with socket_mode(app):
        await fake.wait_socket_connected(timeout=5)
        payload = {**SLASH_PING, "response_url": fake.response_url("C0DEPLOYS", "U0ALICE")}
        ack = await fake.socket_send("slash_commands", payload)

    assert ack["payload"]["text"] == "pong"
    opened = fake.calls_to("apps.connections.open")[0]
    assert opened.headers["Authorization"] == "Bearer xapp-1-test"


async def test_socket_mode_event_ack_and_retry_headers(fake: FakeSlack) -> None:
    app = bolt_app(fake)
    heard = asyncio.Event()
    retry_nums: list[object] = []

    @app.event("app_mention")
    async def mention(ack: AsyncAck, request: AsyncBoltRequest) -> None:
        await ack()
        retry_nums.append(request.headers.get("x-slack-retry-num"))
        heard.set()

    requests = SlackRequests("http://unused", "shh", fake=fake)
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> hi", "ts": "1.0"}
    async with socket_mode(app):
        ack = await fake.socket_send(
            "events_api",
            json.loads(requests.event_body(event)),
            retry_attempt=1,
            retry_reason="timeout",
        )
        async with asyncio.timeout(5):
            await heard.wait()

    assert set(ack) == {"envelope_id"}
    assert retry_nums == [["1"]]


async def test_socket_mode_reconnects_after_disconnect(fake: FakeSlack) -> None:
    app = bolt_app(fake)

    @app.command("/ping")
    async def ping(ack: AsyncAck) -> None:
        await ack("pong")

    async with socket_mode(app):
        await fake.wait_socket_connected()
        await fake.socket_disconnect("refresh_requested")
        await fake.wait_socket_connected(min_connects=2)
        ack = await fake.socket_send("slash_commands", SLASH_PING)

    assert ack["payload"]["text"] == "pong"
    assert len(fake.calls_to("apps.connections.open")) == 2


async def test_connections_open_needs_an_app_token(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        await client.apps_connections_open(app_token="xoxb-test")

    assert error.value.response["error"] == "not_allowed_token_type"
