"""TLS certificate expiry: read when a host's certificate expires, over a verified handshake.

The runbook's pre-deployment checklist wants "SSL certificates valid (> 30 days remaining)" and
its monitoring section "alert 30 days before expiration": the deploy gate
(bot/deploys/certificate_gate.py) and the daily check (bot/alerts) both read `certificate_expiry`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = [
    "CertificateUnavailable",
    "certificate_expiry",
    "default_ssl_context",
]


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
