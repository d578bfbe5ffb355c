"""Retention of reconciliation (docs/retention.md): items, batches and day results are kept
as long as transactions (``RETENTION_DAYS["transactions"]``), counted from their business
day. Runs before the transactions' prune."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.reconciliation.models import Batch, Item, Result

TABLES = (Item._meta.db_table, Batch._meta.db_table, Result._meta.db_table)


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the items, batches and results of days past retention; yields (table, rows
    deleted) as it goes."""
    cut = ((at or now()) - timedelta(days=settings.RETENTION_DAYS["transactions"])).date()
    for table in TABLES:
        for n in bulk.prune(table, "day < %s", [cut], chunk=settings.PRUNE_CHUNK):
            yield (table, n)
