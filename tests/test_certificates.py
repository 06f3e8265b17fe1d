"""TLS certificate expiry: the pure decision, and real handshakes with a local TLS server."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from bot.certificates import certificate_expiry, default_ssl_context
from bot.deploys.certificate_gate import check_certificate, probe_certificate
from tests.fakes.tls import tls_server
from tests.helpers.messages import verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOST = "shop.example.com"


@pytest.mark.parametrize(
    ("expires", "passed", "reason"),
    [
        pytest.param(
            NOW + timedelta(days=10),
            False,
            "certificates: the certificate of shop.example.com:443 expires on 2026-12-11 12:00"
            " UTC, in 10 days; it must be valid for more than 30 days, so renew it first",
            id="10 days left",
        ),
        pytest.param(
            NOW + timedelta(days=90),
            True,
            "certificates: the certificate of shop.example.com:443 is valid until 2027-03-01"
            " 12:00 UTC, 90 days left",
            id="90 days left",
        ),
        pytest.param(
            NOW + timedelta(days=30),
            False,
            "certificates: the certificate of shop.example.com:443 expires on 2026-12-31 12:00"
            " UTC, in 30 days; it must be valid for more than 30 days, so renew it first",
            id="exactly 30 days is not more than 30",
        ),
        pytest.param(
            NOW + timedelta(days=30, minutes=1),
            True,
            "certificates: the certificate of shop.example.com:443 is valid until 2026-12-31"
            " 12:01 UTC, 30 days left",
            id="just over 30 days",
        ),
        pytest.param(
            NOW + timedelta(hours=5),
            False,
            "certificates: the certificate of shop.example.com:443 expires on 2026-12-01 17:00"
            " UTC, in 5 hours; it must be valid for more than 30 days, so renew it first",
            id="hours left",
        ),
        pytest.param(
            NOW - timedelta(days=2),
            False,
            "certificates: the certificate of shop.example.com:443 expired on 2026-11-29 12:00"
            " UTC; renew it",
            id="already expired",
        ),
    ],
)
def test_check_certificate(expires: datetime, passed: bool, reason: str) -> None:
    assert verdict(check_certificate(HOST, expires, NOW)) == ("certificates", passed, reason)


def test_check_certificate_with_its_own_minimum_and_port() -> None:
    result = check_certificate(HOST, NOW + timedelta(days=10), NOW, timedelta(days=7), port=8443)
    assert verdict(result) == (
        "certificates",
        True,
        "certificates: the certificate of shop.example.com:8443 is valid until 2026-12-11 12:00"
        " UTC, 10 days left",
    )


# --- against a local TLS server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


ServerFactory = Callable[[datetime], AbstractAsyncContextManager[int]]


@pytest.fixture
def server(ca: trustme.CA) -> ServerFactory:
    return lambda not_after: tls_server(ca, not_after)


def expiry_in(days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


async def test_reads_not_after_from_the_handshake(server: ServerFactory, ca: trustme.CA) -> None:
    not_after = expiry_in(42)
    async with server(not_after) as port:
        expires = await certificate_expiry("127.0.0.1", port, ssl_context=client_context(ca))
    assert expires == not_after


async def test_certificate_expiring_in_10_days_is_refused_with_its_date(
    server: ServerFactory, ca: trustme.CA
) -> None:
    not_after = expiry_in(10)
    async with server(not_after) as port:
        result = await probe_certificate(
            "127.0.0.1", port, now=not_after - timedelta(days=10), ssl_context=client_context(ca)
        )
    assert verdict(result) == (
        "certificates",
        False,
        f"certificates: the certificate of 127.0.0.1:{port} expires on"
        f" {not_after:%Y-%m-%d %H:%M} UTC, in 10 days; it must be valid for more than 30 days,"
        " so renew it first",
    )


async def test_certificate_valid_for_90_days_passes(server: ServerFactory, ca: trustme.CA) -> None:
    not_after = expiry_in(90)
    async with server(not_after) as port:
        result = await probe_certificate(
            "127.0.0.1", port, now=not_after - timedelta(days=90), ssl_context=client_context(ca)
        )
    assert verdict(result) == (
        "certificates",
        True,
        f"certificates: the certificate of 127.0.0.1:{port} is valid until"
        f" {not_after:%Y-%m-%d %H:%M} UTC, 90 days left",
    )


async def test_default_context_trusts_the_ca_in_ssl_cert_file(
    server: ServerFactory, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    not_after = expiry_in(90)
    async with server(not_after) as port:
        context = default_ssl_context({"SSL_CERT_FILE": str(bundle)})
        assert await certificate_expiry("127.0.0.1", port, ssl_context=context) == not_after


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_host_is_refused_with_the_reason() -> None:
    port = free_port()
    result = await probe_certificate("127.0.0.1", port, now=NOW, timeout=2)
    assert verdict(result) == (
        "certificates",
        False,
        f"certificates: could not check the certificate of 127.0.0.1:{port}: Connection refused",
    )


async def test_untrusted_certificate_is_refused_with_the_verification_error(
    server: ServerFactory,
) -> None:
    async with server(expiry_in(90)) as port:
        result = await probe_certificate(
            "127.0.0.1", port, now=NOW, ssl_context=ssl.create_default_context()
        )
    assert verdict(result) == (
        "certificates",
        False,
        f"certificates: could not check the certificate of 127.0.0.1:{port}:"
        " unable to get local issuer certificate",
    )


async def test_expired_certificate_fails_verification(
    server: ServerFactory, ca: trustme.CA
) -> None:
    async with server(expiry_in(-1)) as port:
        result = await probe_certificate(
            "127.0.0.1", port, now=datetime.now(UTC), ssl_context=client_context(ca)
        )
    assert verdict(result) == (
        "certificates",
        False,
        f"certificates: could not check the certificate of 127.0.0.1:{port}:"
        " certificate has expired",
    )


async def test_silent_server_times_out() -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # never answers the TLS client hello
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe_certificate("127.0.0.1", port, now=NOW, timeout=0.2)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted.is_set()
    assert verdict(result) == (
        "certificates",
        False,
        f"certificates: could not check the certificate of 127.0.0.1:{port}: no answer within 0.2s",
    )
