"""Tables partitioned by day on PostgreSQL (declarative range partitions on the id).

A partitioned table's ids carry the UTC day they were given in: ``day << 32 | n``, where
``day`` counts days since 1970-01-01 and ``n`` comes from the table's sequence (the
column's default, ``<table>_next_id()``, gives them; ``bulk.take_ids`` evaluates the same
default). Day ``d``'s partition, ``<table>_pYYYYMMDD``, holds the ids from ``d << 32`` up
to the next day's. So:

* the id stays the primary key, unique across the whole table, and a lookup by id reads
  one partition;
* ids still grow with time, and stay below 2**53 (JavaScript reads them exactly);
* retention drops a whole day's partition (:func:`drop_below`) instead of deleting rows.

Rows stored before a table was partitioned keep their small ids, in the ``_legacy``
partition below the first day; the prune deletes them by age in chunks.

On SQLite every function here is a no-op: its tables stay plain and the prune deletes by
age (``docs/retention.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

EPOCH = date(1970, 1, 1)
SHIFT = 32
_BOUND = re.compile(r"FROM \('?(\w+)'?\) TO \('?(\w+)'?\)")

#: (table, day) pairs known to have a partition, per process
_made: set[tuple[str, date]] = set()


def supported() -> bool:
    return connection.vendor == "postgresql"


def day_base(day: date) -> int:
    """The first id of ``day``'s partition."""
    return (day - EPOCH).days << SHIFT


def day_of(hop_id: int) -> date:
    """The day an id was given in (``EPOCH`` for an id from before partitioning)."""
    return EPOCH + timedelta(days=hop_id >> SHIFT)


def name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


@dataclass(frozen=True)
class Partition:
    name: str
    #: ids from ``low`` (None: from the lowest) up to ``high``, exclusive
    low: int | None
    high: int | None


def partition(
    schema_editor: BaseDatabaseSchemaEditor,
    table: str,
    key: str,
    *,
    ahead: int,
    identity: str | None = "id",
    day_ids: bool = False,
) -> None:
    """Turn ``table`` into one partitioned by day on ``key`` (a migration step).

    ``key`` is the table's own id (``day_ids``: its default becomes the day-carrying
    ``<table>_next_id()``) or a hop id it holds. ``identity`` names the column that had an
    identity default: it gets a sequence of its own. The rows stored so far are copied
    once, into the ``_legacy`` partition for ids given before; the table's indexes are
    made again, under the same names, on the partitioned table (where they cover every
    partition). Foreign keys pointing at the table must have no database constraint. A
    no-op on SQLite.
    """
    if schema_editor.connection.vendor != "postgresql":
        return
    old = f"{table}_unpartitioned"
    run = schema_editor.execute
    today = datetime.now(UTC).date()
    indexes = _indexes(schema_editor, table)
    primary = _primary_key(schema_editor, table)
    run(f"ALTER TABLE {table} RENAME TO {old}")
    run(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    for index, _ in indexes:
        run(f"DROP INDEX {index}")
    run(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING STORAGE) "
        f"PARTITION BY RANGE ({key})"
    )
    if identity:
        run(f"CREATE SEQUENCE {table}_ids")
        if day_ids:
            run(
                f"CREATE FUNCTION {table}_next_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$ "
                "SELECT (floor(extract(epoch FROM clock_timestamp()) / 86400)::bigint "
                f"<< {SHIFT}) | (nextval('{table}_ids') & {(1 << SHIFT) - 1}) $$"
            )
            run(f"ALTER TABLE {table} ALTER COLUMN {identity} SET DEFAULT {table}_next_id()")
        else:
            run(
                f"SELECT setval('{table}_ids', "
                f"(SELECT COALESCE(MAX({identity}), 0) + 1 FROM {old}), false)"
            )
            run(f"ALTER TABLE {table} ALTER COLUMN {identity} SET DEFAULT nextval('{table}_ids')")
        run(f"ALTER SEQUENCE {table}_ids OWNED BY {table}.{identity}")
    columns = primary if key in primary else [*primary, key]
    run(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(columns)})")
    run(
        f"CREATE TABLE {table}_legacy PARTITION OF {table} "
        f"FOR VALUES FROM (MINVALUE) TO ({day_base(today - timedelta(days=1))})"
    )
    for day in range(-1, ahead + 1):
        run(_create_sql(table, today + timedelta(days=day)))
    run(f"INSERT INTO {table} SELECT * FROM {old}")
    run(f"DROP TABLE {old}")
    for _, definition in indexes:
        run(definition)


def unpartition(
    schema_editor: BaseDatabaseSchemaEditor,
    table: str,
    key: str,
    *,
    identity: str | None = "id",
    day_ids: bool = False,
) -> None:
    """Undo :func:`partition` (a migration's reverse): one plain table with every row."""
    if schema_editor.connection.vendor != "postgresql":
        return
    run = schema_editor.execute
    gone = f"{table}_partitioned"
    indexes = _indexes(schema_editor, table)
    primary = [c for c in _primary_key(schema_editor, table) if c != key or c == identity]
    if not primary:
        primary = [key]
    run(f"ALTER TABLE {table} RENAME TO {gone}")
    run(f"ALTER TABLE {gone} RENAME CONSTRAINT {table}_pkey TO {gone}_pkey")
    for index, _ in indexes:
        run(f"DROP INDEX {index}")
    run(f"CREATE TABLE {table} (LIKE {gone} INCLUDING STORAGE)")
    if identity:
        run(f"ALTER TABLE {table} ALTER COLUMN {identity} ADD GENERATED BY DEFAULT AS IDENTITY")
    run(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(primary)})")
    run(f"INSERT INTO {table} SELECT * FROM {gone}")
    if identity:
        run(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{identity}'), "
            f"(SELECT COALESCE(MAX({identity}), 0) + 1 FROM {table}), false)"
        )
    run(f"DROP TABLE {gone} CASCADE")
    if day_ids:
        run(f"DROP FUNCTION {table}_next_id()")
    for _, definition in indexes:
        run(definition)


def _indexes(schema_editor: BaseDatabaseSchemaEditor, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of ``table``'s indexes other than its primary key."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY c.relname",
            [table],
        )
        return [(name, definition) for name, definition in cur.fetchall()]


def _primary_key(schema_editor: BaseDatabaseSchemaEditor, table: str) -> list[str]:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY "
            "AS k(attnum, n) ON true JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n",
            [table],
        )
        return [r[0] for r in cur.fetchall()]


def _create_sql(table: str, day: date) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name(table, day)} PARTITION OF {table} "
        f"FOR VALUES FROM ({day_base(day)}) TO ({day_base(day + timedelta(days=1))})"
    )


def ensure(table: str, first: date, days: int) -> list[str]:
    """Make the partitions of ``days`` days from ``first`` that do not exist yet; their
    names. Each process remembers the partitions it found, so the hop store can call this
    with every batch (one it made is looked up again once its transaction may have
    committed: a rolled-back one is made again)."""
    if not supported():
        return []
    made: list[str] = []
    wanted = [first + timedelta(days=i) for i in range(days)]
    missing = [d for d in wanted if (table, d) not in _made]
    if not missing:
        return made
    existing = {p.name for p in partitions(table)}
    with connection.cursor() as cur:
        for day in missing:
            if name(table, day) in existing:
                _made.add((table, day))
            else:
                cur.execute(_create_sql(table, day))
                made.append(name(table, day))
    return made


def partitions(table: str) -> list[Partition]:
    """``table``'s partitions, lowest ids first ([] on SQLite, or for a plain table)."""
    if not supported():
        return []
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [table],
        )
        found = []
        for relname, bound in cur.fetchall():
            match = _BOUND.search(bound or "")
            if not match:
                continue
            low, high = match.groups()
            found.append(
                Partition(
                    relname,
                    None if low == "MINVALUE" else int(low),
                    None if high == "MAXVALUE" else int(high),
                )
            )
    return sorted(found, key=lambda p: (p.low is not None, p.low or 0))


def drop_below(table: str, first_kept: int) -> list[tuple[Partition, int]]:
    """Drop the day partitions whose every id is below ``first_kept``; each one dropped,
    with the rows it held. The ``_legacy`` partition stays (the prune empties it)."""
    gone = [
        p
        for p in partitions(table)
        if p.low is not None and p.high is not None and p.high <= first_kept
    ]
    dropped = []
    with connection.cursor() as cur:
        for p in gone:
            count = rows_in(p.name)
            cur.execute(f"ALTER TABLE {table} DETACH PARTITION {p.name}")
            cur.execute(f"DROP TABLE {p.name}")
            dropped.append((p, count))
            _made.discard((table, day_of(p.low or 0)))
    return dropped


def day_floor(day: date) -> int:
    """The first id of ``day``'s partition: every id below it was given before ``day``
    (0 on SQLite, whose ids carry no day)."""
    return day_base(day) if supported() else 0


def rows_in(partition_name: str) -> int:
    """How many rows a partition holds (counted, before it is dropped)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {partition_name}")
        return int(cur.fetchone()[0])
