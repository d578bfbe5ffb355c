"""Set-based SQL for the hot paths (the hop store, the stitcher), on PostgreSQL and SQLite.

The one place where the two databases are told apart for bulk work; ``docs/architecture.md``
and ``docs/performance.md`` say what each costs and why:

* a written table is a :class:`Table`: its columns and their types, read off the model
  that owns it, so a column list is never kept in step by position with a list of types;
* :func:`insert`: binary ``COPY`` on PostgreSQL (half the client CPU of text COPY), an
  ``executemany`` of adapted values on SQLite;
* :func:`run`: a statement with its parameters bound on the server and its rows read in
  binary on PostgreSQL (psycopg adapts a list element by element, and parsing timestamps
  from text is costly: docs/performance.md); large arrays go as one text literal each
  (:func:`int_array`, :func:`text_array`);
* :func:`select_in`, :func:`update`, :func:`delete_ids`: the usual shapes, in one
  statement on PostgreSQL and in chunks of bound parameters on SQLite;
* :func:`take_ids`: ids for rows written with explicit ids: the id column's default on
  PostgreSQL (a sequence, or a day-partitioned table's function); on SQLite past the
  highest id ever given (``sqlite_sequence``), which is safe because its transactions begin
  ``IMMEDIATE`` and hold the write lock (settings);
* :func:`prune`: deletion by age in bounded chunks, for retention;
* expressions the two spell differently (:func:`greatest`, :func:`true`, :func:`false`,
  :func:`day_in_zone`: the calendar day of a time in an IANA zone, ``AT TIME ZONE`` on
  PostgreSQL and a function registered on every SQLite connection,
  :func:`register_sqlite_functions`, that uses ``zoneinfo``).

Every statement goes through Django's connection and its cursor wrappers, so query logs
(``CaptureQueriesContext``) and ``connection.execute_wrapper`` see them, COPY included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from django.db import connection, models, transaction
from django.db.backends.utils import CursorDebugWrapper
from django.utils.dateparse import parse_datetime

from observatory.lib import rows

#: bound parameters per statement on SQLite (its classic limit is 999)
CHUNK = 900

#: PostgreSQL wire type of each Django field type, for binary COPY
_PG_TYPES = {
    "AutoField": "int4",
    "BigAutoField": "int8",
    "BigIntegerField": "int8",
    "BinaryField": "bytea",
    "BooleanField": "bool",
    "DateField": "date",
    "CharField": "text",
    "DateTimeField": "timestamptz",
    "DecimalField": "numeric",
    "FloatField": "float8",
    "ForeignKey": "int8",
    "IntegerField": "int4",
    "JSONField": "jsonb",
    "OneToOneField": "int8",
    "PositiveBigIntegerField": "int8",
    "PositiveIntegerField": "int4",
    "PositiveSmallIntegerField": "int2",
    "SmallIntegerField": "int2",
    "TextField": "text",
}
_JSONB_VERSION = b"\x01"


@dataclass(frozen=True)
class Column:
    name: str
    #: PostgreSQL wire type for binary COPY (``jsonb`` values go in jsonb's binary form)
    pg_type: str
    field: models.Field[Any, Any]


@dataclass(frozen=True)
class Table:
    """A written table: its name and the columns a writer sets, in the writer's order."""

    name: str
    columns: tuple[Column, ...]

    @classmethod
    def of(cls, model: type[models.Model], names: Sequence[str]) -> Table:
        """The columns ``names`` (attribute or column names) of ``model``'s table."""
        by_column = {f.column: f for f in model._meta.concrete_fields}
        by_name = {f.name: f for f in model._meta.concrete_fields}
        cols = []
        for name in names:
            f = by_column.get(name) or by_name[name]
            kind = f.get_internal_type()
            target = (
                f.target_field.get_internal_type() if isinstance(f, models.ForeignKey) else kind
            )
            pg = _PG_TYPES.get(target, "text")
            cols.append(Column(rows.column_of(f), pg, f))
        return cls(model._meta.db_table, tuple(cols))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def copy_types(self) -> list[str]:
        """The binary COPY types of the columns (jsonb goes as its binary form: bytea)."""
        return [c.pg_type if c.pg_type != "jsonb" else "bytea" for c in self.columns]


def postgresql() -> bool:
    return connection.vendor == "postgresql"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def jsonb(value: dict[str, Any] | None) -> bytes:
    """``value`` in jsonb's binary form (a version byte, then the JSON text)."""
    return _JSONB_VERSION + (orjson.dumps(value, default=str) if value else b"{}")


def int_array(ids: Iterable[int]) -> str:
    """A ``bigint[]`` parameter as its text literal (cast it in the SQL: ``%s::bigint[]``):
    a join, where psycopg would adapt the list element by element (3 µs each)."""
    return "{" + ",".join(map(str, ids)) + "}"


def text_array(values: Iterable[str]) -> str:
    """A ``text[]`` parameter as its text literal (``%s::text[]``), every element quoted."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


# --- through Django's cursor, seen by its query log and execute wrappers --------------------


@contextmanager
def _logged(wrapper: Any, sql: str, params: Any) -> Iterator[None]:
    with (
        wrapper.debug_sql(sql, params) if isinstance(wrapper, CursorDebugWrapper) else nullcontext()
    ):
        yield


def run(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql``; its rows (``[]`` for a statement that returns none). On PostgreSQL the
    parameters are bound on the server and rows read in binary."""
    with connection.cursor() as wrapper:
        if not postgresql():
            wrapper.execute(sql, list(params))
            return list(wrapper.fetchall()) if wrapper.description else []

        def binary(sql: str, params: Any, many: bool, context: Any) -> Any:
            from psycopg import Cursor

            with connection.wrap_database_errors, Cursor(connection.connection) as raw:
                raw.execute(sql, params, binary=True)
                return list(raw.fetchall()) if raw.description else []

        with _logged(wrapper, sql, params):
            rows: list[tuple[Any, ...]] = wrapper._execute_with_wrappers(sql, params, False, binary)
            return rows


def executemany(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if not rows:
        return
    if not postgresql():
        rows = [tuple(adapt(v) for v in row) for row in rows]
    with connection.cursor() as cur:
        cur.executemany(sql, rows)


def adapt(value: Any) -> Any:
    """A Python value as SQLite takes it in raw SQL (psycopg adapts them itself)."""
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def bind(value: Any) -> Any:
    """``value`` as a parameter of :func:`run`: as it is on PostgreSQL (psycopg adapts it),
    :func:`adapt`-ed on SQLite (datetimes as the text it stores and compares)."""
    return value if postgresql() else adapt(value)


def _bound(column: Column, value: Any) -> Any:
    """``value`` of ``column`` as a bound parameter: a jsonb value (:func:`jsonb`) as its
    JSON text; on SQLite, datetimes and decimals as text too."""
    if column.pg_type == "jsonb" and isinstance(value, bytes):
        value = value[1:].decode()
    return value if postgresql() else adapt(value)


def insert(table: Table, rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in ``table.columns`` order; jsonb ones as :func:`jsonb`)."""
    cols = ", ".join(table.names)
    if postgresql():
        sql = f"COPY {table.name} ({cols}) FROM STDIN (FORMAT BINARY)"
        # psycopg's own errors (a unique violation, the server going away mid-COPY) become
        # Django's, as for any statement through its cursor
        with (
            connection.cursor() as wrapper,
            _logged(wrapper, sql, None),
            connection.wrap_database_errors,
            wrapper.cursor.copy(sql) as copy,
        ):
            copy.set_types(table.copy_types)
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(table.columns))
    bound = [tuple(_bound(c, v) for c, v in zip(table.columns, row, strict=True)) for row in rows]
    if bound:
        with connection.cursor() as cur:
            cur.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", bound)


def select_in(table: str, cols: str, column: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``SELECT cols FROM table WHERE column IN values`` (one statement on PostgreSQL)."""
    if not values:
        return []
    if postgresql():
        if isinstance(values[0], int):
            return run(
                f"SELECT {cols} FROM {table} WHERE {column} = ANY(%s::bigint[])",
                [int_array(values)],
            )
        return run(
            f"SELECT {cols} FROM {table} WHERE {column} = ANY(%s::text[])", [text_array(values)]
        )
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cur:
        for chunk in chunks(values):
            marks = ", ".join(["%s"] * len(chunk))
            cur.execute(f"SELECT {cols} FROM {table} WHERE {column} IN ({marks})", list(chunk))
            out.extend(cur.fetchall())
    return out


def update(table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE table SET cols = row[:-1] WHERE id = row[-1]`` for each row."""
    sets = ", ".join(f"{c} = %s" for c in cols)
    executemany(f"UPDATE {table} SET {sets} WHERE id = %s", rows)


def delete_ids(table: str, ids: Sequence[int], column: str = "id") -> None:
    if not ids:
        return
    if postgresql():
        run(f"DELETE FROM {table} WHERE {column} = ANY(%s::bigint[])", [int_array(ids)])
        return
    with connection.cursor() as cur:
        for chunk in chunks(ids):
            cur.execute(
                f"DELETE FROM {table} WHERE {column} IN ({', '.join(['%s'] * len(chunk))})",
                list(chunk),
            )


_id_sources: dict[str, str] = {}


def _id_source(table: str) -> str:
    """The SQL expression that gives a new id of ``table`` on PostgreSQL (its id column's
    default, or its identity sequence), read from the catalog once per process."""
    if table not in _id_sources:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
                " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
                " WHERE d.adrelid = %s::regclass AND a.attname = 'id'",
                [table],
            )
            default = cur.fetchone()
            if default is None:  # an identity column
                cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                default = (f"nextval('{cur.fetchone()[0]}')",)
        _id_sources[table] = default[0]
    return _id_sources[table]


def take_ids(table: str, n: int) -> list[int]:
    """Ids for ``n`` rows of ``table`` written with explicit ids (see the module
    docstring): on PostgreSQL what the id column's default gives (a day-partitioned
    table's own function, ``lib.partitions``), else its sequence; on SQLite past the
    highest id ever given, under the write lock."""
    if n == 0:
        return []
    with connection.cursor() as cur:
        if postgresql():
            cur.execute(f"SELECT {_id_source(table)} FROM generate_series(1, %s)", [n])
            return [r[0] for r in cur.fetchall()]
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        top = cur.fetchone()[0]
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        seq = cur.fetchone()
        top = max(top, seq[0] if seq else 0)
        return list(range(top + 1, top + 1 + n))


def prune(
    table: str,
    where: str,
    params: Sequence[Any] = (),
    *,
    chunk: int,
    key: str = "id",
    also: Sequence[tuple[str, str]] = (),
    unlink: Sequence[tuple[str, str]] = (),
) -> Iterator[int]:
    """Delete the rows of ``table`` matching ``where``, ``chunk`` at a time, lowest
    ``key`` first, each chunk in a transaction of its own together with the rows of
    ``also`` (``(table, column)`` pairs) that point at it, and with the references of
    ``unlink`` to it set to NULL; yields each chunk's count.

    Bounded work per statement, as healthchecks' and GlitchTip's prune commands do: no
    lock is held for long, and an interrupted prune has lost nothing it did."""
    while True:
        with transaction.atomic():
            ids = [
                r[0]
                for r in run(
                    f"SELECT {key} FROM {table} WHERE {where} ORDER BY {key} LIMIT {int(chunk)}",
                    params,
                )
            ]
            if not ids:
                return
            for other, column in also:
                delete_ids(other, ids, column)
            for other, column in unlink:
                for part in chunks(ids):
                    marks = ", ".join(["%s"] * len(part))
                    run(f"UPDATE {other} SET {column} = NULL WHERE {column} IN ({marks})", part)
            delete_ids(table, ids, key)
        yield len(ids)
        if len(ids) < chunk:
            return


# --- serialising writers ----------------------------------------------------------------


def lock(key: int) -> None:
    """Wait for the transaction-scoped advisory lock ``key`` (PostgreSQL). SQLite needs
    none: its transactions begin ``IMMEDIATE`` and hold the one write lock (settings)."""
    if postgresql():
        run("SELECT pg_advisory_xact_lock(%s)", [key])


def try_lock(key: int) -> bool:
    """Take the transaction-scoped advisory lock ``key`` if free (always on SQLite)."""
    if not postgresql():
        return True
    return bool(run("SELECT pg_try_advisory_xact_lock(%s)", [key])[0][0])


def plan_for_many_small_lookups() -> None:
    """Many small index lookups in this transaction: PostgreSQL's JIT compiling them costs
    more than they do."""
    if postgresql():
        run("SET LOCAL jit = off")


# --- idempotent inserts ---------------------------------------------------------------------


def insert_new_taking_ids(
    id_table: str,
    table: Table,
    values: Sequence[str],
    *,
    queue: Table | None = None,
    skip_stored: bool = True,
) -> tuple[list[int], int]:
    """PostgreSQL only: :func:`take_ids` for ``len(values)`` rows of ``id_table``, and the
    rows (id, value) of the two-column ``table`` (an id, then a unique text column) whose
    value is not stored yet inserted, all in one statement: one round trip, where taking
    the ids, a savepoint, a COPY and the savepoint's release take five. The ids of the rows
    that went in are also inserted into the one-column table ``queue``, if given. Returns
    the ids, in the order of ``values``, and how many rows went in; the ids of the values
    that were stored already are used for nothing.

    With ``skip_stored`` false the rows go in without ``ON CONFLICT``, a quarter cheaper
    for the database (no speculative insertion, docs/performance.md), and a value stored
    already fails the statement with ``IntegrityError`` (and so the transaction): for a
    caller that expects new values and can start again with ``skip_stored``.
    """
    if not values:
        return [], 0
    id_column, unique = table.names
    skip = f" ON CONFLICT ({unique}) DO NOTHING" if skip_stored else ""
    queued = (
        f", queued AS (INSERT INTO {queue.name} ({queue.names[0]}) SELECT id FROM stored)"
        if queue is not None
        else ""
    )
    (ids, stored), *_ = run(
        f"WITH new AS MATERIALIZED ("
        f" SELECT {_id_source(id_table)} AS id, v.value, v.n"
        f" FROM unnest(%s::text[]) WITH ORDINALITY AS v(value, n)"
        f"), stored AS ("
        f" INSERT INTO {table.name} ({id_column}, {unique}) SELECT id, value FROM new ORDER BY n"
        f"{skip} RETURNING {id_column} AS id"
        f"){queued} SELECT (SELECT array_agg(id ORDER BY n) FROM new),"
        f" (SELECT count(*) FROM stored)",
        [text_array(values)],
    )
    return list(ids), int(stored)


def insert_new(table: Table, rows: Sequence[Sequence[Any]], unique: str) -> set[Any]:
    """Insert those of ``rows`` whose ``unique`` column value is not stored yet (one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per chunk, on both databases); the
    ``unique`` values inserted."""
    at = table.index(unique)
    marks = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
    per = max(1, (CHUNK if not postgresql() else 30_000) // len(table.columns))
    stored: set[Any] = set()
    for chunk in chunks(rows, per):
        values = [_bound(c, v) for row in chunk for c, v in zip(table.columns, row, strict=True)]
        stored.update(
            r[0]
            for r in run(
                f"INSERT INTO {table.name} ({', '.join(table.names)}) VALUES "
                f"{', '.join([marks] * len(chunk))} ON CONFLICT ({unique}) DO NOTHING "
                f"RETURNING {table.names[at]}",
                values,
            )
        )
    return stored


# --- expressions the two databases spell differently ------------------------------------------


def greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if postgresql() else f"MAX({a}, {b})"


def true() -> str:
    return "TRUE" if postgresql() else "1"


def false() -> str:
    return "FALSE" if postgresql() else "0"


#: the SQLite function :func:`day_in_zone` calls
SQLITE_DAY = "observatory_business_day"


def day_in_zone(moment: str, zone_sql: str) -> str:
    """SQL for the date ``moment`` (an expression of type timestamptz) falls on in the
    zone ``zone_sql`` (an expression naming an IANA zone). On SQLite a function of
    :func:`register_sqlite_functions`: Django's own ``django_datetime_cast_date`` reads
    ``Etc/GMT+10`` as an offset of +10 hours, the opposite of what the zone is."""
    if postgresql():
        return f"(({moment}) AT TIME ZONE ({zone_sql}))::date"
    return f"{SQLITE_DAY}({moment}, {zone_sql})"


def _sqlite_day(stamp: str | None, zone_name: str | None) -> str | None:
    if stamp is None or not zone_name:
        return None
    at = parse_datetime(stamp)
    if at is None:
        return None
    if at.tzinfo is None:  # stored in UTC, naive
        at = at.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return at.astimezone(zone).date().isoformat()


def register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: :func:`day_in_zone`'s function on SQLite."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_DAY, 2, _sqlite_day, deterministic=True)


def database_knows_zone(name: str) -> bool:
    """Whether the database computes days in the IANA zone ``name`` (PostgreSQL has its
    own copy of the zone database; SQLite uses Python's)."""
    if not postgresql():
        return True
    return bool(run("SELECT 1 FROM pg_timezone_names WHERE name = %s", [name]))
