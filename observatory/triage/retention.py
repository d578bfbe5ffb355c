"""Retention of exceptions (docs/retention.md): kept as long as their transactions
(``RETENTION_DAYS["transactions"]``): a closed one that long after it closed, any one
with its transaction when that goes. Runs before the transactions' prune."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.hops.queries import pruned_below
from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.transactions.models import Transaction
from observatory.triage.models import UNRESOLVED, Issue, TriagedHop

ISSUES = Issue._meta.db_table
TRIAGED = TriagedHop._meta.db_table


def cutoff(at: datetime) -> datetime:
    return at - timedelta(days=settings.RETENTION_DAYS["transactions"])


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the exceptions past retention, and the marks of triaged hops since pruned;
    yields (table, rows deleted) as it goes."""
    cut = cutoff(at or now())
    chunk = settings.PRUNE_CHUNK
    open_states = ", ".join(f"'{s}'" for s in UNRESOLVED)
    where = (
        f"(state NOT IN ({open_states}) AND COALESCE(resolved_at, opened_at) < %s)"
        f" OR transaction_id IN (SELECT id FROM {Transaction._meta.db_table}"
        " WHERE updated_at < %s)"
    )
    for n in bulk.prune(ISSUES, where, [cut, cut], chunk=chunk):
        yield (ISSUES, n)
    for n in bulk.prune(TRIAGED, "hop_id < %s", [pruned_below()], chunk=chunk, key="hop_id"):
        yield (TRIAGED, n)
