"""The fake PagerDuty speaks what the official `pagerduty` client sends, over verified HTTPS."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl

import pagerduty as pd
import pytest

from bot.oncall.pagerduty import PagerDutyApi, PagerDutyError
from bot.settings import Settings, SettingsError
from tests.fakes.pagerduty import FakePagerDuty, OncallUser

ALICE = OncallUser("PALICE1", "Alice Doe", "alice@example.com")
BOB = OncallUser("PBOB001", "Bob Roe", "bob@example.com")


def verified(fake: FakePagerDuty) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(fake.ca_path))


def rest_client(fake: FakePagerDuty, **kwargs: object) -> pd.RestApiV2Client:
    return pd.RestApiV2Client(fake.api_key, base_url=fake.url, verify=verified(fake), **kwargs)


async def test_events_api_trigger_acknowledge_resolve_as_pagerduty_receives_them(
    pagerduty: FakePagerDuty,
) -> None:
    client = pagerduty_events(pagerduty, "R0CHECKOUT")
    key = await asyncio.to_thread(
        client.trigger,
        "checkout error rate 7%",
        "opsbot/checkout",
        dedup_key="alert:checkout:error-rate",
        severity="critical",
        custom_details={"value": 0.07},
    )
    assert key == "alert:checkout:error-rate"
    await asyncio.to_thread(client.acknowledge, key)
    await asyncio.to_thread(client.resolve, key)
    bodies = [r.json for r in pagerduty.requests_to("POST", "/v2/enqueue")]
    assert bodies[0] == {
        "event_action": "trigger",
        "routing_key": "R0CHECKOUT",
        "dedup_key": "alert:checkout:error-rate",
        "payload": {
            "summary": "checkout error rate 7%",
            "source": "opsbot/checkout",
            "severity": "critical",
            "custom_details": {"value": 0.07},
        },
    }
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    incident = pagerduty.incident_for("alert:checkout:error-rate")
    assert incident is not None and incident.status == "resolved"
    client.close()


async def test_a_malformed_event_gets_400_with_the_reason(pagerduty: FakePagerDuty) -> None:
    client = pagerduty_events(pagerduty, "R0CHECKOUT")
    with pytest.raises(pd.HttpError) as caught:
        await asyncio.to_thread(client.trigger, "x", "src", severity="fatal")
    assert caught.value.response.status_code == 400
    body = caught.value.response.json()
    assert body["status"] == "invalid event"
    assert "'payload.severity' is invalid (critical, error, warning, info)" in body["errors"]
    client.close()


def pagerduty_events(fake: FakePagerDuty, routing_key: str) -> pd.EventsApiV2Client:
    return pd.EventsApiV2Client(routing_key, base_url=fake.url, verify=verified(fake))


async def test_oncalls_are_filtered_by_policy_and_paginated(pagerduty: FakePagerDuty) -> None:
    pagerduty.set_oncall("PCHECK1", 1, ALICE)
    pagerduty.set_oncall("PCHECK1", 2, BOB)
    pagerduty.set_oncall("POTHER1", 1, BOB)
    client = rest_client(pagerduty)
    client.default_page_size = 1  # one entry per page: list_all must follow `more`
    entries = await asyncio.to_thread(
        client.list_all,
        "oncalls",
        params={"escalation_policy_ids": ["PCHECK1"], "include": ["users"]},
    )
    assert [(e["escalation_level"], e["user"]["email"]) for e in entries] == [
        (1, "alice@example.com"),
        (2, "bob@example.com"),
    ]
    assert {e["escalation_policy"]["id"] for e in entries} == {"PCHECK1"}
    pages = pagerduty.requests_to("GET", "/oncalls")
    assert [r.query["offset"] for r in pages] == [["0"], ["1"]]
    assert pages[0].query["escalation_policy_ids[]"] == ["PCHECK1"]
    assert pages[0].headers["Authorization"] == f"Token token={pagerduty.api_key}"
    client.close()


async def test_rest_needs_the_api_token(pagerduty: FakePagerDuty) -> None:
    client = pd.RestApiV2Client if False else None  # noqa: F841 - readability below
    wrong = pagerduty_rest_with_key(pagerduty, "not-the-key")
    with pytest.raises(pd.HttpError) as caught:
        await asyncio.to_thread(wrong.list_all, "oncalls")
    assert caught.value.response.status_code == 401
    wrong.close()


def pagerduty_rest_with_key(fake: FakePagerDuty, key: str) -> pd.RestApiV2Client:
    return pd.RestApiV2Client(key, base_url=fake.url, verify=verified(fake))


async def test_incidents_are_found_by_key_and_escalated_with_from(
    pagerduty: FakePagerDuty,
) -> None:
    pagerduty.add_integration("R0CHECKOUT", "PCHECK1")
    events = pagerduty_events(pagerduty, "R0CHECKOUT")
    await asyncio.to_thread(events.trigger, "down", "src", dedup_key="k-1")
    client = rest_client(pagerduty)
    incidents = await asyncio.to_thread(
        client.list_all, "incidents", params={"incident_key": "k-1"}
    )
    assert [(i["incident_key"], i["escalation_policy"]["id"]) for i in incidents] == [
        ("k-1", "PCHECK1")
    ]
    with pytest.raises(pd.HttpError) as caught:  # no From header
        await asyncio.to_thread(
            client.rput, f"incidents/{incidents[0]['id']}", json={"escalation_level": 2}
        )
    assert "From header is required" in caught.value.response.text
    with_from = rest_client(pagerduty, default_from="opsbot@example.com")
    updated = await asyncio.to_thread(
        with_from.rput,
        f"incidents/{incidents[0]['id']}",
        json={"type": "incident_reference", "escalation_level": 2},
    )
    assert updated["escalation_level"] == 2
    put = pagerduty.requests_to("PUT", f"/incidents/{incidents[0]['id']}")[-1]
    assert put.headers["From"] == "opsbot@example.com"
    assert put.json == {"incident": {"type": "incident_reference", "escalation_level": 2}}
    for c in (events, client, with_from):
        c.close()


async def test_the_certificate_is_verified(pagerduty: FakePagerDuty) -> None:
    untrusting = pd.EventsApiV2Client("R0X", base_url=pagerduty.url)
    untrusting.max_network_attempts = 0
    with pytest.raises(pd.Error) as caught:
        await asyncio.to_thread(untrusting.trigger, "x", "src")
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value.__cause__)
    untrusting.close()


async def test_injected_failures_then_recovery(pagerduty: FakePagerDuty) -> None:
    api = PagerDutyApi(dataclasses.replace(Settings(), **pagerduty.settings_changes()))
    api.sleep_timer = 0.01
    pagerduty.fail_next(3, status=500)  # the client retries 500 twice, then gives up
    with pytest.raises(PagerDutyError, match="PagerDuty answered HTTP 500"):
        await api.trigger("R0X", dedup_key="k", summary="s", source="src", severity="critical")
    assert len(pagerduty.requests_to("POST", "/v2/enqueue")) == 3
    pagerduty.fail_next(2, status=429)
    assert (
        await api.trigger("R0X", dedup_key="k", summary="s", source="src", severity="critical")
        == "k"
    )
    await pagerduty.refuse_connections()
    with pytest.raises(PagerDutyError, match=r"PagerDuty is unreachable .*ConnectError"):
        await api.trigger("R0X", dedup_key="k", summary="s", source="src", severity="critical")
    await pagerduty.accept_connections()
    assert await api.acknowledge("R0X", "k") is None
    assert pagerduty.events[-1]["event_action"] == "acknowledge"
    api.close()


async def test_an_http_url_is_refused_with_a_clear_message(pagerduty: FakePagerDuty) -> None:
    plain = pagerduty.url.replace("https://", "http://")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PAGERDUTY_EVENTS_URL": plain})
    assert str(caught.value) == (
        f"PAGERDUTY_EVENTS_URL: must be an https:// URL (PagerDuty is only spoken over TLS), "
        f"got '{plain}'"
    )
    # And the client itself, should a Settings be built by hand.
    api = PagerDutyApi(Settings(pagerduty_events_url=plain))
    with pytest.raises(PagerDutyError) as refused:
        await api.trigger("R0X", dedup_key="k", summary="s", source="src", severity="critical")
    assert "PAGERDUTY_EVENTS_URL: API base URL must use scheme https://" in str(refused.value)
    assert pagerduty.requests == []


async def test_the_ca_file_setting_is_checked_and_read(pagerduty: FakePagerDuty) -> None:
    settings = Settings.from_env(pagerduty.environ())
    assert settings.pagerduty_ca_file == pagerduty.ca_path
    assert settings.pagerduty_from == "opsbot@example.com"
    assert pagerduty.api_key in settings.secrets()
    with pytest.raises(SettingsError, match=r"PAGERDUTY_CA_FILE: no such file: /nope\.pem"):
        Settings.from_env({"PAGERDUTY_CA_FILE": "/nope.pem"})
    with pytest.raises(SettingsError, match="PAGERDUTY_FROM: must be the e-mail"):
        Settings.from_env({"PAGERDUTY_FROM": "opsbot"})


async def test_ssl_cert_file_is_trusted_when_no_pagerduty_ca_file_is_set(
    pagerduty: FakePagerDuty,
) -> None:
    settings = Settings.from_env(
        {"PAGERDUTY_EVENTS_URL": pagerduty.url, "SSL_CERT_FILE": str(pagerduty.ca_path)}
    )
    assert settings.pagerduty_ca_file is None
    api = PagerDutyApi(settings)
    assert (
        await api.trigger(
            "R0X", dedup_key="via-ssl-cert-file", summary="s", source="src", severity="info"
        )
        == "via-ssl-cert-file"
    )
    api.close()


async def test_a_dropped_connection_is_retried_by_the_client(pagerduty: FakePagerDuty) -> None:
    api = PagerDutyApi(dataclasses.replace(Settings(), **pagerduty.settings_changes()))
    api.sleep_timer = 0.01
    pagerduty.drop_next(1, path="/v2/enqueue")
    await api.resolve("R0X", "k-dropped")
    assert len(pagerduty.requests_to("POST", "/v2/enqueue")) == 2
    assert [e["dedup_key"] for e in pagerduty.events] == ["k-dropped"]
    api.close()
