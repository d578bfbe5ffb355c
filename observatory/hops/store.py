"""Set-based, idempotent writing of hop records (the ingest hot path).

One request's records go in with a handful of statements whatever their number:

take ids for the hops, write their receipts (uids), then the hops, their keys and their
places in the stitcher's queue (binary ``COPY`` on PostgreSQL, ``executemany`` on SQLite).
New hops are the common case, so nothing is looked up first: the receipts' unique uid
index is the check. On PostgreSQL one statement takes the ids, inserts the receipts with
``ON CONFLICT (uid) DO NOTHING`` and queues the hops that went in for the stitcher
(``lib.bulk.insert_new_taking_ids``: one round trip); a request's own transaction first
tries it without ``ON CONFLICT`` and, if a uid was stored, starts again with it
(``hops.actions.do_store_hops``). On SQLite the receipts go in inside a savepoint, and if
any uid is stored, the savepoint is rolled back and they go in through ``INSERT ... ON
CONFLICT (uid) DO NOTHING RETURNING``. A hop stored before (a re-sent batch, a day or a
month later: receipts are one table across the hop table's day partitions) or by a
concurrent request is skipped: only the hops whose receipt went in are written, and the
ids of the others are looked up. ``lib.bulk`` is where the two databases differ.

Callers own the transaction (``hops.actions.do_store_hops``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from observatory.hops.models import (
    DuplicateDelivery,
    Hop,
    HopKey,
    Receipt,
    Stitched,
    TouchedHour,
    Waiting,
)
from observatory.lib import bulk, partitions, queues
from tracing.records import HopRecord

#: The written tables, their columns read off the models (``lib.bulk.Table``)
HOPS = bulk.Table.of(
    Hop,
    (
        "id",
        "uid",
        "via",
        "source",
        "system",
        "operation",
        "start_time",
        "end_time",
        "duration_ms",
        "outcome",
        "status_message",
        "trace_id",
        "span_id",
        "parent_span_id",
        "retry_attempt",
        "replay",
        "platform_status",
        "stage",
        "channel",
        "store_id",
        "amount",
        "currency",
        "received_at",
        "attributes",
        "extra",
    ),
)
KEYS = bulk.Table.of(HopKey, ("hop_id", "kind", "value", "fanout"))
WAITING = bulk.Table.of(Waiting, ("hop_id",))
RECEIPTS = bulk.Table.of(Receipt, ("hop_id", "uid"))
#: partitioned by day on the hop id on PostgreSQL (``lib.partitions``)
DAY_PARTITIONED = (HOPS.name, KEYS.name, Stitched._meta.db_table)
HOP_TABLE = HOPS.name


@dataclass
class StoreResult:
    """What one batch did: uid -> hop id of the hops stored now, and the duplicates."""

    stored: dict[str, int] = field(default_factory=dict)
    #: uids that were already stored (or repeated within the batch), in arrival order
    duplicates: list[str] = field(default_factory=list)


def _hop_row(hop_id: int, r: HopRecord, received_at: datetime) -> tuple[Any, ...]:
    return (
        hop_id,
        r.uid,
        r.via,
        r.source,
        r.system,
        r.operation,
        r.start_time,
        r.end_time,
        (r.end_time - r.start_time).total_seconds() * 1000.0,
        r.outcome,
        r.status_message,
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        r.retry_attempt,
        r.replay,
        r.platform_status,
        r.stage,
        r.channel,
        r.store_id,
        r.amount,
        r.currency,
        received_at,
        bulk.jsonb(r.attributes),
        bulk.jsonb(r.extra),
    )


def _key_rows(pairs: Iterable[tuple[int, HopRecord]]) -> list[tuple[Any, ...]]:
    """The key rows of ``(hop id, record)`` pairs (one comprehension: a generator a record
    cost as much as its rows)."""
    return [(hop_id, kind, value, fanout) for hop_id, r in pairs for kind, value, fanout in r.keys]


def store_records(
    records: Sequence[HopRecord], received_at: datetime, *, expect_new: bool = False
) -> StoreResult:
    """Store what is new among ``records``; report the rest as duplicates.

    Must run inside ``transaction.atomic()``: the caller commits, and a 200 answer is
    sent only after that commit. With ``expect_new`` (PostgreSQL), a record whose uid is
    stored already fails the transaction with ``IntegrityError`` instead (the caller
    starts again without it): the receipts then go in without ``ON CONFLICT``.
    """
    result = StoreResult()
    unique: dict[str, HopRecord] = {}
    repeats: list[str] = []
    for r in records:
        if r.uid in unique:
            repeats.append(r.uid)
        else:
            unique[r.uid] = r
    if not unique:
        return result
    result.stored = _insert(list(unique.values()), received_at, expect_new)
    existing = existing_ids([uid for uid in unique if uid not in result.stored])
    ids = {**existing, **result.stored}
    result.duplicates = [uid for uid in unique if uid in existing] + repeats
    _record_duplicates([ids[uid] for uid in result.duplicates], received_at)
    # a repeat counts in its hop's hour: the stages that count deliveries redo that hour
    queues.enqueue(
        TouchedHour,
        "hour",
        (
            unique[uid].start_time.replace(minute=0, second=0, microsecond=0)
            for uid in result.duplicates
        ),
    )
    return result


def existing_ids(uids: list[str]) -> dict[str, int]:
    """uid -> hop id for those of ``uids`` already stored."""
    return dict(bulk.select_in(RECEIPTS.name, "uid, hop_id", "uid", uids))


def _insert(new: list[HopRecord], received_at: datetime, expect_new: bool) -> dict[str, int]:
    """Write the hops of ``new`` whose uid has no receipt yet; uid -> id of those."""
    # the partitions the database's clock can give ids in now (the worker makes them
    # days ahead: this is a catalog lookup once a day per process)
    for table in DAY_PARTITIONED:
        partitions.ensure(table, (datetime.now(UTC) - timedelta(days=1)).date(), 3)
    queued = bulk.postgresql()
    if queued:
        # ids, receipts and the places in the stitcher's queue in one statement, the stored
        # uids skipped by ON CONFLICT (unless they are not expected at all)
        ids, inserted = bulk.insert_new_taking_ids(
            HOP_TABLE, RECEIPTS, [r.uid for r in new], queue=WAITING, skip_stored=not expect_new
        )
        pairs = list(zip(ids, new, strict=True))
        if inserted < len(pairs):  # some of these uids are stored already: which went in
            kept = {uid for (uid,) in bulk.select_in(RECEIPTS.name, "uid", "hop_id", ids)}
            pairs = [(i, r) for i, r in pairs if r.uid in kept]
    else:
        pairs = list(zip(bulk.take_ids(HOP_TABLE, len(new)), new, strict=True))
        receipts = [(i, r.uid) for i, r in pairs]
        try:
            with transaction.atomic():  # a savepoint: the fallback below may need it
                bulk.insert(RECEIPTS, receipts)
        except IntegrityError:  # some of these uids are stored already
            kept = bulk.insert_new(RECEIPTS, receipts, "uid")
            pairs = [(i, r) for i, r in pairs if r.uid in kept]
    bulk.insert(HOPS, [_hop_row(i, r, received_at) for i, r in pairs])
    bulk.insert(KEYS, _key_rows(pairs))
    if not queued:  # their places in the stitcher's queue
        bulk.insert(WAITING, [(i,) for i, _ in pairs])
    return {r.uid: i for i, r in pairs}


def queue_for_stitching(hop_ids: Sequence[int]) -> None:
    """Put hops stored before back in the stitcher's queue, to be stitched again (after a
    status map changed, say); the stitcher's result depends only on the hops, so this is
    always safe."""
    Stitched.objects.filter(hop_id__in=hop_ids).delete()
    Waiting.objects.bulk_create([Waiting(hop_id=i) for i in hop_ids], ignore_conflicts=True)


def _record_duplicates(hop_ids: list[int], received_at: datetime) -> None:
    if hop_ids:
        DuplicateDelivery.objects.bulk_create(
            [DuplicateDelivery(hop_id=i, received_at=received_at) for i in hop_ids]
        )
