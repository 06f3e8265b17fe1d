"""TLS certificate expiry: probe a host's certificate and decide whether it is valid long enough.

The runbook's pre-deployment checklist wants "SSL certificates valid (> 30 days remaining)" and
its monitoring section "alert 30 days before expiration": the deploy gate and the daily check both
use `certificate_expiry` (I/O) and `check_certificate` (the pure decision), or `probe_certificate`
which combines them and turns an unreachable host into a refusal that says why.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from bot.deploys.gates import GateResult

__all__ = [
    "CertificateUnavailable",
    "certificate_expiry",
    "check_certificate",
    "default_ssl_context",
    "probe_certificate",
]

GATE = "certificates"


class CertificateUnavailable(Exception):
    """The certificate could not be read; `str(error)` says why in a few words."""


def default_ssl_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying client context trusting the system CAs plus the file in SSL_CERT_FILE.

    OpenSSL reads SSL_CERT_FILE *instead of* the system bundle; loading both keeps public hosts
    working when SSL_CERT_FILE adds a private CA. Loading the bundle costs tens of milliseconds,
    so contexts are built once per SSL_CERT_FILE.
    """
    environ = os.environ if environ is None else environ
    return _context_for(environ.get("SSL_CERT_FILE"))


@functools.lru_cache(maxsize=8)
def _context_for(extra_cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    for cafile in (paths.openssl_cafile, extra_cafile):
        if cafile and os.path.isfile(cafile):
            context.load_verify_locations(cafile=cafile)
    if paths.openssl_capath and os.path.isdir(paths.openssl_capath):
        context.load_verify_locations(capath=paths.openssl_capath)
    return context


async def certificate_expiry(
    host: str,
    port: int = 443,
    *,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> datetime:
    """The `notAfter` (UTC) of the certificate `host:port` presents in a verified TLS handshake.

    Raises `CertificateUnavailable` when the host cannot be reached, the handshake fails (an
    expired or untrusted certificate fails verification) or it takes longer than `timeout` s.
    """
    context = ssl_context or default_ssl_context()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
            ssl_object = writer.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert() if ssl_object is not None else None
    except TimeoutError:
        raise CertificateUnavailable(f"no answer within {timeout:g}s") from None
    except ssl.SSLCertVerificationError as err:
        raise CertificateUnavailable(err.verify_message or str(err)) from None
    except ssl.SSLError as err:
        raise CertificateUnavailable(f"TLS handshake failed ({err.reason or err})") from None
    except OSError as err:
        raise CertificateUnavailable(_os_reason(err)) from None
    finally:
        if writer is not None:
            writer.close()
            # A peer that vanishes during the TLS close is no reason to fail the check.
            try:
                async with asyncio.timeout(timeout):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass
    if not peer or "notAfter" not in peer:
        raise CertificateUnavailable("the server presented no certificate")
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(str(peer["notAfter"])), tz=UTC)


def _os_reason(err: OSError) -> str:
    # asyncio words a refused connection "Connect call failed (addr)": say what happened instead.
    if isinstance(err, socket.gaierror) or not err.errno:
        return err.strerror or str(err) or type(err).__name__
    return os.strerror(err.errno)


def _span(delta: timedelta) -> str:
    """A duration in words, rounded to what matters: "10 days", "5 hours", "1 minute"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = round(delta.total_seconds() / size)
        if count >= 1 or unit == "minute":
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    raise AssertionError("unreachable")  # pragma: no cover


def check_certificate(
    host: str,
    expires: datetime,
    now: datetime,
    min_valid: timedelta = timedelta(days=30),
    *,
    port: int = 443,
) -> GateResult:
    """Is the certificate of `host:port`, expiring at `expires`, valid for more than `min_valid`?"""
    where = f"{host}:{port}"
    left = expires - now
    when = f"{expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if left <= timedelta(0):
        return GateResult(
            GATE, False, f"{GATE}: the certificate of {where} expired on {when}; renew it"
        )
    if left <= min_valid:
        return GateResult(
            GATE,
            False,
            f"{GATE}: the certificate of {where} expires on {when}, in {_span(left)};"
            f" it must be valid for more than {_span(min_valid)}, so renew it first",
        )
    return GateResult(
        GATE, True, f"{GATE}: the certificate of {where} is valid until {when}, {_span(left)} left"
    )


async def probe_certificate(
    host: str,
    port: int = 443,
    *,
    now: datetime,
    min_valid: timedelta = timedelta(days=30),
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> GateResult:
    """Read the certificate of `host:port` and decide; an unreachable host is a refusal."""
    try:
        expires = await certificate_expiry(host, port, timeout=timeout, ssl_context=ssl_context)
    except CertificateUnavailable as err:
        return GateResult(
            GATE, False, f"{GATE}: could not check the certificate of {host}:{port}: {err}"
        )
    return check_certificate(host, expires, now, min_valid, port=port)
