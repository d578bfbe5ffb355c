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
    cut = cutoff(at or now())
    # ids below ``floor`` were given before the cutoff's day (PostgreSQL; 0 on SQLite,
    # whose ids carry no day); hop ids grow with the time hops are received, so the hops
    # from ``floor`` up to the first one received since the cutoff are the rest to go
    floor = partitions.day_floor(cut.date())
    first_kept = first_received_since(cut, floor)
    # 1. whole days (PostgreSQL): each partition below the first hop kept
    for table in DAY_PARTITIONED:
        for p, rows in partitions.drop_below(table, first_kept):
            if rows:
                yield (table, rows)
            if table == HOPS:  # the rows written with the day's hops, elsewhere
                for other, column in WITH_HOP:
                    if other not in DAY_PARTITIONED:
                        yield from _prune(
                            other, f"{column} >= %s AND {column} < %s", [p.low, p.high], column
                        )
    # 2. by age, with their rows: the oldest kept day's hops received before the cutoff
    # (on SQLite, all of them), then those stored before the table was partitioned
    yield from _prune(HOPS, "id >= %s AND id < %s", [floor, first_kept], "id", WITH_HOP)
    yield from _prune(HOPS, "id < %s AND received_at < %s", [floor, cut], "id", WITH_HOP)
    yield from _prune(StreamLag._meta.db_table, "hour < %s", [cut], "id")


def _prune(
    table: str,
    where: str,
    params: list[object],
    key: str,
    also: tuple[tuple[str, str], ...] = (),
) -> Iterator[tuple[str, int]]:
    for n in bulk.prune(table, where, params, chunk=settings.PRUNE_CHUNK, key=key, also=also):
        yield (table, n)
