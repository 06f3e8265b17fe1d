"""The certificates gate: runbook "SSL certificates valid (> 30 days remaining)", checked before
a deploy to the last environment for the catalog's `certificates` and the service's HTTPS host.

`check_certificate` is the pure decision; `probe_certificate` reads the certificate
(bot/certificates.py) and turns an unreachable host into a refusal that says why.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from bot.catalog import Catalog, Environment, Service
from bot.certificates import CertificateUnavailable, certificate_expiry, default_ssl_context
from bot.deploys.gates import GateResult
from bot.messages import text

__all__ = ["certificate_gates", "check_certificate", "probe_certificate"]

GATE = "certificates"


async def certificate_gates(
    catalog: Catalog,
    svc: Service,
    env: Environment,
    *,
    now: datetime,
    environ: Mapping[str, str],
) -> list[GateResult]:
    """The gate for every certificate a deploy of `svc` to `env` depends on (none before the
    last environment)."""
    names = catalog.environment_names()
    if not names or env.name != names[-1]:
        return []
    hosts = {(c.host, c.port): c.warn_before for c in catalog.certificates}
    if svc.health is not None and not svc.health.per_instance:
        # The service's own host, when it serves HTTPS, must be valid for 30 days too (a
        # per-pod URL names no host of its own: the pods' addresses are not known yet).
        url = urlsplit(svc.health.url_for(env=env.name, service=svc.name))
        if url.scheme == "https" and url.hostname:
            hosts.setdefault((url.hostname, url.port or 443), timedelta(days=30))
    if not hosts:
        return []
    context = default_ssl_context(environ)
    return [
        await probe_certificate(host, port, now=now, min_valid=min_valid, ssl_context=context)
        for (host, port), min_valid in hosts.items()
    ]


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
            GATE, False, text(f"{GATE}: the certificate of {where} expired on {when}; renew it")
        )
    if left <= min_valid:
        return GateResult(
            GATE,
            False,
            text(
                f"{GATE}: the certificate of {where} expires on {when}, in {_span(left)};"
                f" it must be valid for more than {_span(min_valid)}, so renew it first"
            ),
        )
    return GateResult(
        GATE,
        True,
        text(f"{GATE}: the certificate of {where} is valid until {when}, {_span(left)} left"),
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
            GATE, False, text(f"{GATE}: could not check the certificate of {host}:{port}: {err}")
        )
    return check_certificate(host, expires, now, min_valid, port=port)
