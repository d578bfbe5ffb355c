"""Writes on the hop store."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from observatory.hops import streams
from observatory.hops.models import DroppedLogRecords, InventorySnapshot, Stream, StreamLag
from observatory.hops.store import StoreResult, store_records
from observatory.lib import bulk
from observatory.lib.clock import Clock, now
from observatory.lib.sketch import Sketch, merge
from tracing.privacy import MaskPolicy
from tracing.records import HopRecord, SnapshotRecord


@lru_cache(maxsize=1)
def mask_policy() -> MaskPolicy:
    return MaskPolicy(
        settings.PII_KEY_PATTERNS,
        settings.PII_VALUE_PATTERNS,
        settings.PII_SPARE_KEY_PATTERNS,
        # keys the digest that stands for a source with PII in the delivery identity
        digest_key=hashlib.sha256(f"pii-digest:{settings.SECRET_KEY}".encode()).digest(),
    )


def mask_hops(records: Sequence[HopRecord]) -> None:
    """Mask PII out of ``records`` in place (tracing/privacy.py).

    Call it before opening the write transaction: masking is pure CPU, and on SQLite the
    transaction holds the database's one write lock from its first statement.
    """
    policy = mask_policy()
    for r in records:
        policy.mask_record(r)


def do_count_dropped_logs(dropped: Mapping[str, int], at: datetime) -> None:
    """Add ``dropped`` (log records without business keys, by system) to the running totals
    of ``DroppedLogRecords``: an upsert per system, as the stitcher counts unknown statuses
    (``transactions.actions``), on SQLite as on PostgreSQL."""
    table = DroppedLogRecords._meta.db_table
    bulk.executemany(
        f"INSERT INTO {table} (system, count, last_at) VALUES (%s, %s, %s) "
        f"ON CONFLICT (system) DO UPDATE SET count = {table}.count + excluded.count, "
        "last_at = excluded.last_at",
        # one order for every writer: no deadlock between two
        [(system, n, at) for system, n in sorted(dropped.items())],
    )


def do_store_hops(
    records: Sequence[HopRecord], *, received_at: datetime | None = None, masked: bool = False
) -> StoreResult:
    """Store the new ones of ``records``, idempotently, in one transaction.

    Records are masked first unless ``masked`` says :func:`mask_hops` did it already, so
    no caller can store unmasked PII. Re-sent hops are stored once and counted as duplicate
    deliveries. When this returns outside an enclosing transaction, everything it reports
    as stored is committed.
    """
    received_at = received_at or now()
    if not masked:
        mask_hops(records)
    if bulk.postgresql() and not transaction.get_connection().in_atomic_block:
        # New hops are the common case: their receipts go in without ON CONFLICT, which
        # costs the database a quarter less (docs/performance.md). If one was stored
        # already, that statement fails, the transaction rolls back and the batch goes in
        # again with the stored ones skipped.
        try:
            with transaction.atomic():
                return store_records(records, received_at, expect_new=True)
        except IntegrityError:
            pass
    with transaction.atomic():
        return store_records(records, received_at)


def do_store_snapshots(
    records: Sequence[SnapshotRecord], *, received_at: datetime | None = None
) -> int:
    """Keep the latest snapshot of each (system, sku, location) by business time: one
    upsert per 500 rows, which changes a row only for a later ``as_of`` (a late or re-sent
    older snapshot changes nothing). Returns how many distinct rows were offered."""
    received_at = received_at or now()
    latest: dict[tuple[str, str, str], SnapshotRecord] = {}
    for r in records:
        key = (r.system, r.sku, r.location)
        held = latest.get(key)
        if held is None or r.as_of >= held.as_of:
            latest[key] = r
    table = InventorySnapshot._meta.db_table
    rows = list(latest.values())
    with transaction.atomic():
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            for r in chunk:
                params += [r.system, r.sku, r.location, r.quantity, r.as_of, received_at]
            bulk.run(
                f"INSERT INTO {table} (system, sku, location, quantity, as_of, received_at) "
                f"VALUES {values} ON CONFLICT (system, sku, location) DO UPDATE SET "
                "quantity = excluded.quantity, as_of = excluded.as_of, "
                f"received_at = excluded.received_at WHERE excluded.as_of > {table}.as_of",
                [bulk.adapt(p) for p in params] if not bulk.postgresql() else params,
            )
    return len(rows)


# --- reporting streams ----------------------------------------------------------------------


def limits() -> streams.Limits:
    return streams.Limits(
        floor_s=settings.TELEMETRY_DELAY_FLOOR_S,
        ceiling_s=settings.TELEMETRY_DELAY_CEILING_S,
        min_skew_s=settings.WATERMARK_MIN_SKEW_S,
        late_window_s=settings.WATERMARK_LATE_WINDOW_S,
    )


def stream_of(system: str, store_id: str) -> tuple[str, str]:
    """The stream a hop reports on: its system, and its store for the store systems."""
    return (system, store_id if system in settings.STORE_STREAM_SYSTEMS else "")


_STATE_FIELDS = [f.name for f in fields(streams.StreamState)]
_UPDATE_FIELDS = [f for f in _STATE_FIELDS if f not in ("system", "store_id")]


def state_of(row: Stream) -> streams.StreamState:
    return streams.StreamState(**{f: getattr(row, f) for f in _STATE_FIELDS})


def do_record_arrivals(
    hops: Iterable[tuple[str, str, datetime, datetime]],
) -> None:
    """Advance the streams of hops the stitcher just took: ``(system, store_id, business
    time, received_at)`` each. Runs inside the stitcher's write step (one writer at a
    time), with a fixed number of queries per chunk."""
    grouped: dict[tuple[str, str], list[streams.Arrival]] = defaultdict(list)
    for system, store_id, business_at, received_at in hops:
        grouped[stream_of(system, store_id)].append(streams.Arrival(business_at, received_at))
    if not grouped:
        return
    lim = limits()
    rows = {
        (r.system, r.store_id): r for r in Stream.objects.filter(system__in={s for s, _ in grouped})
    }
    new, changed = [], []
    steady: dict[tuple[str, str], list[float]] = {}
    for key, arrivals in grouped.items():
        row = rows.get(key)
        state = state_of(row) if row else _new_state(*key, lim)
        after, steady[key] = streams.record(state, arrivals, lim)
        if row is None:
            row = Stream(**{f: getattr(after, f) for f in _STATE_FIELDS})
            new.append(row)
            rows[key] = row
        else:
            for f in _UPDATE_FIELDS:
                setattr(row, f, getattr(after, f))
            changed.append(row)
    Stream.objects.bulk_create(new)
    Stream.objects.bulk_update(changed, _UPDATE_FIELDS)
    _record_lags(grouped, steady, rows)


def _new_state(system: str, store_id: str, lim: streams.Limits) -> streams.StreamState:
    configured = settings.TELEMETRY_MAX_DELAY_S.get(system)
    delay = configured if configured is not None else lim.floor_s
    return streams.StreamState(
        system=system, store_id=store_id, max_delay_s=delay, skew_s=lim.min_skew_s
    )


def _record_lags(
    grouped: dict[tuple[str, str], list[streams.Arrival]],
    steady: dict[tuple[str, str], list[float]],
    rows: dict[tuple[str, str], Stream],
) -> None:
    """Add the arrivals' lags (all, and the steady ones) to their stream's sketches of the
    hour they arrived in (a chunk's steady lags go to the hour of its newest arrival)."""
    adds: dict[tuple[int, datetime], tuple[list[float], int]] = {}
    calm: dict[tuple[int, datetime], list[float]] = defaultdict(list)
    for key, arrivals in grouped.items():
        row = rows[key]
        for a in arrivals:
            hour = a.received_at.replace(minute=0, second=0, microsecond=0)
            lags, late = adds.setdefault((row.id, hour), ([], 0))
            lags.append(a.lag_s)
            if a.lag_s > row.max_delay_s:
                adds[(row.id, hour)] = (lags, late + 1)
        newest = max(a.received_at for a in arrivals).replace(minute=0, second=0, microsecond=0)
        calm[(row.id, newest)].extend(steady.get(key, []))
        adds.setdefault((row.id, newest), ([], 0))
    held = {
        (r.stream_id, r.hour): r
        for r in StreamLag.objects.filter(
            stream_id__in={s for s, _ in adds}, hour__in={h for _, h in adds}
        )
    }
    new: list[StreamLag] = []
    changed: list[StreamLag] = []
    for (stream_id, hour), (lags, late) in adds.items():
        fresh = Sketch.from_values(lags)
        fresh_steady = Sketch.from_values(calm.get((stream_id, hour), []))
        lag_row = held.get((stream_id, hour))
        if lag_row is None:
            new.append(
                StreamLag(
                    stream_id=stream_id,
                    hour=hour,
                    count=len(lags),
                    late=late,
                    sketch=fresh.encode(),
                    steady=fresh_steady.encode(),
                )
            )
            continue
        lag_row.sketch = merge([Sketch.decode(lag_row.sketch), fresh]).encode()
        lag_row.steady = merge([Sketch.decode(lag_row.steady), fresh_steady]).encode()
        lag_row.count += len(lags)
        lag_row.late += late
        changed.append(lag_row)
    StreamLag.objects.bulk_create(new)
    StreamLag.objects.bulk_update(changed, ["sketch", "steady", "count", "late"])


def do_measure_streams(*, wall: Clock = now) -> int:
    """Measure every stream's maximum delay and skew again from its recent arrival lags
    (``streams.measure``); returns how many changed. Two queries and one update."""
    lim = limits()
    since = wall() - timedelta(hours=settings.TELEMETRY_LAG_HOURS)
    sketches: dict[int, list[Sketch]] = defaultdict(list)
    for stream_id, blob in StreamLag.objects.filter(hour__gte=since).values_list(
        "stream_id", "steady"
    ):
        sketches[stream_id].append(Sketch.decode(blob))
    changed = []
    for row in Stream.objects.all():
        configured = settings.TELEMETRY_MAX_DELAY_S.get(row.system)
        delay, skew = streams.measure(merge(sketches.get(row.id, [])), lim, configured)
        if (round(delay, 3), round(skew, 3)) != (round(row.max_delay_s, 3), round(row.skew_s, 3)):
            row.max_delay_s, row.skew_s = delay, skew
            changed.append(row)
    Stream.objects.bulk_update(changed, ["max_delay_s", "skew_s"])
    return len(changed)
