"""Retention of alert history (docs/retention.md): delivery attempts, sent or failed
notifications, alert events, resolved alerts and ended silences are kept
``RETENTION_DAYS["alerts"]`` days. A notification still waiting to be sent is kept, and
so is what it needs; an alert still pending or firing is never pruned."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.alerts.models import (
    N_PENDING,
    RESOLVED,
    Alert,
    AlertEvent,
    DeliveryAttempt,
    Notification,
    Silence,
)
from observatory.lib import bulk
from observatory.lib.clock import now

ALERTS = Alert._meta.db_table
EVENTS = AlertEvent._meta.db_table
NOTIFICATIONS = Notification._meta.db_table
ATTEMPTS = DeliveryAttempt._meta.db_table
SILENCES = Silence._meta.db_table


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the alert history past retention; yields (table, rows deleted)."""
    cut = (at or now()) - timedelta(days=settings.RETENTION_DAYS["alerts"])
    chunk = settings.PRUNE_CHUNK
    plan: list[tuple[str, str, list[object], tuple[tuple[str, str], ...]]] = [
        (ATTEMPTS, "at < %s", [cut], ()),
        (
            NOTIFICATIONS,
            "status <> %s AND created_at < %s",
            [N_PENDING, cut],
            ((ATTEMPTS, "notification_id"),),
        ),
        (
            EVENTS,
            f"at < %s AND NOT EXISTS (SELECT 1 FROM {NOTIFICATIONS} n"
            f" WHERE n.event_id = {EVENTS}.id)",
            [cut],
            (),
        ),
        (
            ALERTS,
            f"state = %s AND resolved_at < %s"
            f" AND NOT EXISTS (SELECT 1 FROM {EVENTS} e WHERE e.alert_id = {ALERTS}.id)"
            f" AND NOT EXISTS (SELECT 1 FROM {NOTIFICATIONS} n WHERE n.alert_id = {ALERTS}.id)",
            [RESOLVED, cut],
            (),
        ),
        (
            SILENCES,
            f"ends_at < %s AND NOT EXISTS (SELECT 1 FROM {ALERTS} a"
            f" WHERE a.silenced_by_id = {SILENCES}.id)",
            [cut],
            (),
        ),
    ]
    for table, where, params, also in plan:
        unlink = ((ALERTS, "inhibited_by_id"),) if table == ALERTS else ()
        for n in bulk.prune(table, where, params, chunk=chunk, also=also, unlink=unlink):
            yield (table, n)
