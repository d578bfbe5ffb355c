"""Retention of the hop store (docs/retention.md): hops and everything written with them
are kept ``RETENTION_DAYS["hops"]`` days from when they were received.

Hop ids grow with the time hops are received, so what goes is every hop below the first
one received since the cutoff. On PostgreSQL a day whose every hop is below it is dropped
whole: the day's partition of the hop, key and stitched tables (``lib.partitions``). What
is left (part of the oldest kept day, hops stored before the table was partitioned, every
hop on SQLite) is deleted in chunks, oldest first, with its rows in the other tables;
then the receipts, duplicates and queue rows of the days dropped.

Nothing outside this app is touched: transactions, their timelines and exceptions
outlive their hops (each app prunes its own tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings

from observatory.hops.models import (
    DuplicateDelivery,
    Hop,
    HopKey,
    Receipt,
    Stitched,
    StreamLag,
    Waiting,
)
from observatory.hops.queries import first_received_since
from observatory.hops.store import DAY_PARTITIONED
from observatory.lib import bulk, partitions
from observatory.lib.clock import now

HOPS = Hop._meta.db_table
#: (table, column) of every row written with a hop, pointing at it
WITH_HOP = (
    (HopKey._meta.db_table, "hop_id"),
    (Waiting._meta.db_table, "hop_id"),
    (Stitched._meta.db_table, "hop_id"),
    (DuplicateDelivery._meta.db_table, "hop_id"),
    (Receipt._meta.db_table, "hop_id"),
)


def cutoff(at: datetime) -> datetime:
    return at - timedelta(days=settings.RETENTION_DAYS["hops"])


def do_make_partitions(*, at: datetime | None = None) -> list[str]:
    """Make the day partitions from yesterday to ``HOP_PARTITIONS_AHEAD_DAYS`` ahead that
    are missing (PostgreSQL; none on SQLite); their names."""
    first = ((at or now()) - timedelta(days=1)).date()
    days = settings.HOP_PARTITIONS_AHEAD_DAYS + 2
    return [name for table in DAY_PARTITIONED for name in partitions.ensure(table, first, days)]


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the hops received before the cutoff, and their rows; yields (table, rows
    deleted) as it goes."""
    chunk = settings.PRUNE_CHUNK
    # hop ids grow with the time they were received: everything below the first hop
    # received since the cutoff goes
    first_kept = first_received_since(cutoff(at or now()))
    for table in DAY_PARTITIONED:  # whole days first (PostgreSQL)
        for _, rows in partitions.drop_below(table, first_kept):
            if rows:
                yield (table, rows)
    for n in bulk.prune(HOPS, "id < %s", [first_kept], chunk=chunk, also=WITH_HOP):
        yield (HOPS, n)
    for table, column in WITH_HOP:  # the rows of the days dropped
        if table not in DAY_PARTITIONED:
            for n in bulk.prune(table, f"{column} < %s", [first_kept], chunk=chunk, key=column):
                yield (table, n)
    for n in bulk.prune(StreamLag._meta.db_table, "hour < %s", [cutoff(at or now())], chunk=chunk):
        yield (StreamLag._meta.db_table, n)
