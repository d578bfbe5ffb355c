"""Retention of transactions (docs/retention.md): a transaction, its keys, stage
timeline, merges and conflicts are kept ``RETENTION_DAYS["transactions"]`` days after it
last changed. Its links to hops go with the hops (they are kept a shorter time); the
timeline stays, naming hops that may be gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.hops.queries import pruned_below
from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.transactions.models import (
    Conflict,
    Merge,
    StageReached,
    Touched,
    Transaction,
    TransactionHop,
    TransactionKey,
)

TRANSACTIONS = Transaction._meta.db_table
LINKS = TransactionHop._meta.db_table
#: (table, column) of every row that belongs to a transaction
BELONGING = (
    (TransactionKey._meta.db_table, "transaction_id"),
    (StageReached._meta.db_table, "transaction_id"),
    (LINKS, "transaction_id"),
    (Merge._meta.db_table, "winner_id"),
    (Conflict._meta.db_table, "transaction_id"),
    (Conflict._meta.db_table, "other_transaction_id"),
    (Touched._meta.db_table, "transaction_id"),
)
#: the rows of transactions merged into a pruned one stop pointing at it
MERGED_INTO = ((TRANSACTIONS, "merged_into_id"),)


def cutoff(at: datetime) -> datetime:
    return at - timedelta(days=settings.RETENTION_DAYS["transactions"])


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the links to pruned hops, and the transactions unchanged since the cutoff
    with everything that belongs to them; yields (table, rows deleted) as it goes."""
    cut = cutoff(at or now())
    chunk = settings.PRUNE_CHUNK
    for n in bulk.prune(
        LINKS,
        "hop_id < %s",
        [pruned_below()],
        chunk=chunk,
        key="hop_id",
    ):
        yield (LINKS, n)
    for n in bulk.prune(
        TRANSACTIONS,
        "updated_at < %s",
        [cut],
        chunk=chunk,
        also=BELONGING,
        unlink=MERGED_INTO,
    ):
        yield (TRANSACTIONS, n)
