"""Retention of the KPI tables (docs/retention.md): minute rollups are kept
``RETENTION_DAYS["minute_rollups"]`` days, hour and day rollups, backlog samples and the
exceptions and alerts seen ``RETENTION_DAYS["hour_rollups"]``; the open-stage and bucket
rows of a transaction go with it. Runs before the transactions' prune."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.kpis import queries
from observatory.kpis.models import (
    MINUTE,
    AlertSeen,
    BacklogSample,
    HopRollup,
    IssueSeen,
    OpenStage,
    OrderRollup,
    TxBucket,
)
from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.transactions.retention import TRANSACTIONS
from observatory.transactions.retention import cutoff as transactions_cutoff


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the KPI rows past retention; yields (table, rows deleted) as it goes."""
    at = at or now()
    chunk = settings.PRUNE_CHUNK
    minutes = queries.minutes_from(at)
    hours = at - timedelta(days=settings.RETENTION_DAYS["hour_rollups"])
    gone = f"transaction_id IN (SELECT id FROM {TRANSACTIONS} WHERE updated_at < %s)"
    pruned_tx = transactions_cutoff(at)
    plan: list[tuple[str, str, list[object], str]] = [
        (OrderRollup._meta.db_table, "resolution = %s AND bucket < %s", [MINUTE, minutes], "id"),
        (HopRollup._meta.db_table, "resolution = %s AND bucket < %s", [MINUTE, minutes], "id"),
        (OrderRollup._meta.db_table, "bucket < %s", [hours], "id"),
        (HopRollup._meta.db_table, "bucket < %s", [hours], "id"),
        (BacklogSample._meta.db_table, "at < %s", [hours], "id"),
        (IssueSeen._meta.db_table, "opened_at < %s", [hours], "issue_id"),
        (AlertSeen._meta.db_table, "fired_at < %s", [hours], "alert_id"),
        (OpenStage._meta.db_table, gone, [pruned_tx], "id"),
        (TxBucket._meta.db_table, gone, [pruned_tx], "transaction_id"),
    ]
    for table, where, params, key in plan:
        for n in bulk.prune(table, where, params, chunk=chunk, key=key):
            yield (table, n)
