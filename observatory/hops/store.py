"""Set-based, idempotent writing of hop records (the ingest hot path).

One request's records go in with a handful of statements whatever their number:

* PostgreSQL: take ids for the hops from the sequence (one query), then binary ``COPY``
  the hops, their keys and their places in the stitcher's queue inside a savepoint. New
  hops are the common case, so nothing is looked up first: the unique uid index is the
  check. If any hop was stored before (a re-sent batch) or by a concurrent request, the
  COPY fails on that index; the savepoint is rolled back and the batch goes in through
  ``INSERT ... ON CONFLICT (uid) DO NOTHING RETURNING``, after which the ids of the hops
  already stored are looked up.
* SQLite: the transaction holds the write lock from ``BEGIN IMMEDIATE`` (settings), so
  ids are taken past the highest one and rows (queue rows too) go in with
  ``executemany``.

Callers own the transaction (``hops.actions.do_store_hops``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction

from observatory.hops.models import DuplicateDelivery, Hop, HopKey, Stitched, TouchedHour, Waiting
from observatory.lib import queues
from tracing.records import HopRecord

HOP_TABLE = Hop._meta.db_table
KEY_TABLE = HopKey._meta.db_table
WAITING_TABLE = Waiting._meta.db_table
STITCHED_TABLE = Stitched._meta.db_table
DUP_TABLE = DuplicateDelivery._meta.db_table

HOP_COLUMNS = (
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
)
KEY_COLUMNS = ("hop_id", "kind", "value", "fanout")
#: Wire types of HOP_COLUMNS for binary COPY (half the client CPU of text COPY, whose
#: datetime formatting alone cost 2 µs a value). jsonb goes as its binary form, a
#: version byte and the JSON text, so it is sent as raw bytes.
HOP_COPY_TYPES = (
    "int8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "float8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "bool",
    "text",
    "text",
    "text",
    "text",
    "numeric",
    "text",
    "timestamptz",
    "bytea",
    "bytea",
)
KEY_COPY_TYPES = ("int8", "text", "text", "bool")
_JSON_AT = (HOP_COLUMNS.index("attributes"), HOP_COLUMNS.index("extra"))
_JSONB_VERSION = b"\x01"
_EMPTY_JSONB = _JSONB_VERSION + b"{}"
_LOOKUP_CHUNK = 900  # SQLite's classic limit on bound parameters is 999


@dataclass
class StoreResult:
    """What one batch did: uid -> hop id of the hops stored now, and the duplicates."""

    stored: dict[str, int] = field(default_factory=dict)
    #: uids that were already stored (or repeated within the batch), in arrival order
    duplicates: list[str] = field(default_factory=list)


def _jsonb(value: dict[str, Any]) -> bytes:
    """``value`` in jsonb's binary form (see HOP_COPY_TYPES)."""
    return _JSONB_VERSION + orjson.dumps(value, default=str) if value else _EMPTY_JSONB


def _as_text_json(row: tuple[Any, ...]) -> list[Any]:
    """A row of :func:`_hop_row` with its JSON columns as text, for parameter binding."""
    out = list(row)
    for i in _JSON_AT:
        out[i] = out[i][1:].decode()
    return out


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
        _jsonb(r.attributes),
        _jsonb(r.extra),
    )


def _key_rows(hop_id: int, r: HopRecord) -> Iterable[tuple[Any, ...]]:
    return ((hop_id, k.kind, k.value, k.fanout) for k in r.keys)


def store_records(records: Sequence[HopRecord], received_at: datetime) -> StoreResult:
    """Store what is new among ``records``; report the rest as duplicates.

    Must run inside ``transaction.atomic()``: the caller commits, and a 200 answer is
    sent only after that commit.
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
    if connection.vendor == "postgresql":
        result.stored = _insert_postgresql(list(unique.values()), received_at)
        existing = existing_ids([uid for uid in unique if uid not in result.stored])
    else:
        existing = existing_ids(list(unique))
        new = [r for uid, r in unique.items() if uid not in existing]
        if new:
            result.stored = _insert_portable(new, received_at)
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
    """uid -> hop id for those of ``uids`` already stored (one query per 900 on SQLite)."""
    found: dict[str, int] = {}
    if not uids:
        return found
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"SELECT uid, id FROM {HOP_TABLE} WHERE uid = ANY(%s)", [uids])
            found.update(cur.fetchall())
        else:
            for i in range(0, len(uids), _LOOKUP_CHUNK):
                chunk = uids[i : i + _LOOKUP_CHUNK]
                marks = ",".join(["%s"] * len(chunk))
                cur.execute(f"SELECT uid, id FROM {HOP_TABLE} WHERE uid IN ({marks})", chunk)
                found.update(cur.fetchall())
    return found


_sequence: str | None = None


def _take_ids_postgresql(cur: Any, n: int) -> list[int]:
    global _sequence
    if _sequence is None:
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [HOP_TABLE])
        _sequence = cur.fetchone()[0]
    cur.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [_sequence, n])
    return [row[0] for row in cur.fetchall()]


def _insert_postgresql(new: list[HopRecord], received_at: datetime) -> dict[str, int]:
    from psycopg.errors import UniqueViolation

    cols = ", ".join(HOP_COLUMNS)
    with connection.cursor() as wrapper:
        cur = wrapper.cursor  # psycopg's own cursor: COPY and executemany(returning=True)
        ids = _take_ids_postgresql(cur, len(new))
        rows = [_hop_row(i, r, received_at) for i, r in zip(ids, new, strict=True)]
        try:
            with transaction.atomic():  # a savepoint: the fallback below may need it
                with cur.copy(f"COPY {HOP_TABLE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(HOP_COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                _copy_keys(cur, zip(ids, new, strict=True))
                _copy_waiting(cur, ids)
            return {r.uid: i for i, r in zip(ids, new, strict=True)}
        except (IntegrityError, UniqueViolation):
            pass  # a concurrent request stored some of these uids first
        marks = ", ".join(["%s"] * len(HOP_COLUMNS))
        stored: dict[str, int] = {}
        kept: list[tuple[int, HopRecord]] = []
        by_id = dict(zip(ids, new, strict=True))
        cur.executemany(
            f"INSERT INTO {HOP_TABLE} ({cols}) VALUES ({marks}) "
            "ON CONFLICT (uid) DO NOTHING RETURNING id",
            [_as_text_json(row) for row in rows],
            returning=True,
        )
        while True:
            row = cur.fetchone()
            if row is not None:
                kept.append((row[0], by_id[row[0]]))
                stored[by_id[row[0]].uid] = row[0]
            if not cur.nextset():
                break
        _copy_keys(cur, kept)
        _copy_waiting(cur, [hop_id for hop_id, _ in kept])
        return stored


def _copy_keys(cur: Any, pairs: Iterable[tuple[int, HopRecord]]) -> None:
    cols = ", ".join(KEY_COLUMNS)
    with cur.copy(f"COPY {KEY_TABLE} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(KEY_COPY_TYPES)
        for hop_id, r in pairs:
            for k in r.keys:
                copy.write_row((hop_id, k.kind, k.value, k.fanout))


def _copy_waiting(cur: Any, hop_ids: Iterable[int]) -> None:
    with cur.copy(f"COPY {WAITING_TABLE} (hop_id) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(("int8",))
        for hop_id in hop_ids:
            copy.write_row((hop_id,))


def _insert_portable(new: list[HopRecord], received_at: datetime) -> dict[str, int]:
    """SQLite (and any other backend): explicit ids under the transaction's write lock."""
    ops = connection.ops
    amount_field = Hop._meta.get_field("amount")
    with connection.cursor() as cur:
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {HOP_TABLE}")
        top = cur.fetchone()[0]
        if connection.vendor == "sqlite":
            cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [HOP_TABLE])
            seq = cur.fetchone()
            top = max(top, seq[0] if seq else 0)
        ids = list(range(top + 1, top + 1 + len(new)))
        rows = []
        for i, r in zip(ids, new, strict=True):
            row = _as_text_json(_hop_row(i, r, received_at))
            row[6] = ops.adapt_datetimefield_value(r.start_time)
            row[7] = ops.adapt_datetimefield_value(r.end_time)
            row[20] = ops.adapt_decimalfield_value(
                r.amount, amount_field.max_digits, amount_field.decimal_places
            )
            row[22] = ops.adapt_datetimefield_value(received_at)
            rows.append(row)
        marks = ", ".join(["%s"] * len(HOP_COLUMNS))
        cur.executemany(
            f"INSERT INTO {HOP_TABLE} ({', '.join(HOP_COLUMNS)}) VALUES ({marks})", rows
        )
        cur.executemany(
            f"INSERT INTO {KEY_TABLE} ({', '.join(KEY_COLUMNS)}) VALUES (%s, %s, %s, %s)",
            [kr for i, r in zip(ids, new, strict=True) for kr in _key_rows(i, r)],
        )
        cur.executemany(f"INSERT INTO {WAITING_TABLE} (hop_id) VALUES (%s)", [(i,) for i in ids])
    return {r.uid: i for i, r in zip(ids, new, strict=True)}


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
