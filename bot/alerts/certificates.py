"""TLS certificates close to expiry as alerts: warning `warn_before` (30 days) ahead, critical at
7 days (it pages), resolved once renewed; a certificate that cannot be read is said once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from bot import audit
from bot.alerts import messaging
from bot.alerts.delivery import Delivery
from bot.alerts.states import ALERT_MACHINE, OPEN, AlertEvent, AlertState, guard
from bot.catalog import Catalog, TlsCertificate
from bot.certificates import CertificateUnavailable, certificate_expiry, default_ssl_context
from bot.db.models import Alert, MetricOutage, utc_now
from bot.db.session import Database
from bot.events import EventBus, ServiceEvent
from bot.messages import Emoji, Message, Notifier, text

log = logging.getLogger(__name__)

CERTIFICATE_RULE = "tls-certificate"
CRITICAL_BEFORE = timedelta(days=7)


class CertificateChecks:
    """The daily check of the catalog's `certificates`."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        notifier: Notifier,
        events: EventBus,
        env: Mapping[str, str],
        delivery: Delivery,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notifier = notifier
        self.events = events
        self.env = env
        self.delivery = delivery

    async def check_all(self, now: datetime | None = None) -> list[str]:
        """Check every certificate, then deliver; one line per certificate saying what was found."""
        now = now or utc_now()
        context = default_ssl_context(dict(self.env) or None)
        lines = []
        for certificate in self.catalog.certificates:
            lines.append(await self._check(certificate, now, context))
        await self.delivery.deliver(now)
        return lines

    async def _check(self, certificate: TlsCertificate, now: datetime, context: Any) -> str:
        where = f"{certificate.host}:{certificate.port}"
        outage_key = f"certificate {where}"
        try:
            expires = await certificate_expiry(
                certificate.host, certificate.port, ssl_context=context
            )
        except CertificateUnavailable as err:
            await self._unreadable(outage_key, where, str(err), now)
            return f"{where}: could not check: {err}"
        async with self.db.transaction() as session:
            await session.execute(delete(MetricOutage).where(MetricOutage.key == outage_key))
        left = expires - now
        severity = (
            "critical"
            if left <= CRITICAL_BEFORE
            else "warning"
            if left <= certificate.warn_before
            else None
        )
        async with self.db.session() as session:
            alert = await session.scalar(
                select(Alert).where(
                    Alert.service == where[:128],
                    Alert.rule == CERTIFICATE_RULE,
                    Alert.state.in_(OPEN),
                )
            )
        details = {
            "kind": "certificate",
            "host": certificate.host,
            "port": certificate.port,
            "expires": expires.isoformat(),
            "warn_days": certificate.warn_before.days,
            "critical_days": CRITICAL_BEFORE.days,
        }
        if severity is None:
            if alert is not None:
                await self._renewed(alert, details, expires, now)
            return f"{where}: valid until {expires:%Y-%m-%d}"
        if alert is None:
            await self._open(certificate, where, severity, left, details, expires, now)
        elif alert.severity != severity:
            await self._worsen(alert, severity, left, details, now)
        return f"{where}: expires {expires:%Y-%m-%d} ({severity})"

    async def _renewed(
        self, alert: Alert, details: dict[str, Any], expires: datetime, now: datetime
    ) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.state.in_(guard(AlertEvent.RESOLVE)))
                .values(
                    state=ALERT_MACHINE.target(AlertEvent.RESOLVE),
                    resolved_at=now,
                    details={
                        **details,
                        "resolve_reason": f"renewed, valid until {expires:%Y-%m-%d}",
                    },
                )
            )

    async def _open(
        self,
        certificate: TlsCertificate,
        where: str,
        severity: str,
        left: timedelta,
        details: dict[str, Any],
        expires: datetime,
        now: datetime,
    ) -> None:
        limit = CRITICAL_BEFORE if severity == "critical" else certificate.warn_before
        state = ALERT_MACHINE.next(AlertState.INACTIVE, AlertEvent.FIRE)
        async with self.db.transaction() as session:
            row = Alert(
                service=where[:128],
                rule=CERTIFICATE_RULE,
                severity=severity,
                state=state,
                value=round(left.total_seconds() / 86400, 1),
                threshold=float(limit.days),
                started_at=now,
                fired_at=now,
                channel=self.catalog.slack.channels.alerts,
                dedup_key=f"opsbot-certificate-{where}-{uuid.uuid4().hex[:12]}",
                details=details,
            )
            session.add(row)
            await session.flush()
            await audit.record(
                session,
                actor="opsbot",
                action=f"alert:{state}",
                outcome=state,
                detail={"alert": row.id, "certificate": where, "expires": expires.isoformat()},
            )
        await self.events.publish(
            ServiceEvent(
                kind="alert",
                text=f"Certificate of {where} expires on {expires:%Y-%m-%d} ({severity})",
                at=now,
                key=f"alert:{row.id}:{state}",
                data={"alert_id": row.id, "rule": CERTIFICATE_RULE, "severity": severity},
            )
        )

    async def _worsen(
        self,
        alert: Alert,
        severity: str,
        left: timedelta,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        """Warning → critical: the same alert and message, more urgent; it pages now."""
        new_details = {**(alert.details or {}), **details}
        state = ALERT_MACHINE.next(AlertState(alert.state), AlertEvent.WORSEN)
        value = round(left.total_seconds() / 86400, 1)
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.state.in_(guard(AlertEvent.WORSEN)))
                .values(
                    severity=severity,
                    state=state,
                    value=value,
                    threshold=float(CRITICAL_BEFORE.days),
                    details=new_details,
                    message_state=None,
                )
            )
        alert.severity, alert.details, alert.state, alert.value = (
            severity,
            new_details,
            state,
            value,
        )
        if alert.message_ts:
            await self.delivery.note(
                alert,
                Message(
                    text(
                        Emoji("red_circle"),
                        f" Now critical: {messaging.certificate_left(alert, now)}.",
                    )
                ),
            )
            if severity == "critical":
                await self.delivery.page(alert)

    async def _unreadable(self, key: str, where: str, reason: str, now: datetime) -> None:
        async with self.db.session() as session:
            known = await session.get(MetricOutage, key)
        if known is not None:
            return
        try:
            await self.notifier.post(
                self.catalog.slack.channels.alerts,
                Message(
                    text(
                        Emoji("warning"),
                        f" Could not check the TLS certificate of {where}: {reason}."
                        " opsbot tries again at the next daily check and says so once it can.",
                    )
                ),
            )
        except Exception:
            log.exception("could not report the unreadable certificate of %s", where)
            return
        async with self.db.transaction() as session:
            session.add(MetricOutage(key=key, since=now, reason=reason))
