"""The scratch database every PostgreSQL benchmark works in (shared by the benches).

    open_scratch("observatory_bench_x", reuse=False)

drops and creates that database on the server of ``DATABASE_URL`` (kept with
``reuse``), points ``DATABASE_URL`` at it and sets Django up. The loading benches COPY
their rows in with the helpers below: the tables' secondary indexes dropped, rebuilt
after the load, the sequences set past the ids loaded.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def scratch_url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


def create_database(base: str, name: str) -> None:
    import psycopg

    admin = scratch_url(base, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(base: str, name: str) -> None:
    import psycopg

    admin = scratch_url(base, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_scratch(name: str, *, reuse: bool = False) -> None:
    """Django on the scratch database ``name`` (created anew unless ``reuse``)."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must point at a PostgreSQL server (the scratch db is made there)")
    if not reuse:
        create_database(base, name)
    os.environ["DATABASE_URL"] = scratch_url(base, name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "observatory.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")

    import django

    django.setup()


def collect_static() -> None:
    """What the pages need before a bench renders them: DEBUG is off, so they name their
    static files by the manifest collectstatic writes."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


# --- loading it: binary COPY with the secondary indexes dropped ------------------------------

#: the transaction table's columns a loading bench writes (its stage columns follow)
TX_COLS = (
    "id", "kind", "channel", "store_id", "current_stage", "amount", "currency", "first_hop_at",
    "last_hop_at", "hop_count", "failed_hop_count", "created_at", "updated_at",
)  # fmt: skip
TX_TYPES = ("int8", "text", "text", "text", "text", "numeric", "text", "timestamptz",
            "timestamptz", "int4", "int4", "timestamptz", "timestamptz")  # fmt: skip
STAGE_COLS = ("id", "transaction_id", "stage", "at", "system", "platform_status", "hop_id",
              "amount", "currency", "fanout")  # fmt: skip
STAGE_TYPES = ("int8", "int8", "text", "timestamptz", "text", "text", "int8", "numeric", "text",
               "bool")  # fmt: skip

#: buffer name -> (table, columns, binary COPY types)
Specs = dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]


def transaction_tables() -> Specs:
    """The COPY specs of what the stitcher writes per transaction: the transaction with its
    stage columns (``tx``), its stage-reached rows (``stage``), its memberships (``txhop``)."""
    from observatory.transactions.models import (
        STAGE_COLUMNS,
        StageReached,
        Transaction,
        TransactionHop,
    )

    return {
        "tx": (
            Transaction._meta.db_table,
            TX_COLS + tuple(f"{s}_at" for s in STAGE_COLUMNS),
            TX_TYPES + ("timestamptz",) * len(STAGE_COLUMNS),
        ),
        "stage": (StageReached._meta.db_table, STAGE_COLS, STAGE_TYPES),
        "txhop": (
            TransactionHop._meta.db_table,
            ("id", "transaction_id", "hop_id"),
            ("int8", "int8", "int8"),
        ),
    }


def secondary_indexes(cur: Any, names: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the tables' indexes that are neither a primary key
    nor unique: drop them for a load, and :func:`rebuild_indexes` after it."""
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i "
        "WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) "
        "AND i.indexdef NOT LIKE 'CREATE UNIQUE %%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) "
        "ORDER BY i.tablename, i.indexname",
        [names],
    )
    return list(cur.fetchall())


def rebuild_indexes(cur: Any, indexes: list[tuple[str, str]], *, each: bool = False) -> float:
    """Make ``indexes`` (:func:`secondary_indexes`) again, printing each one's time with
    ``each``; the seconds it took. An index of a partitioned table is listed ``ON ONLY``
    it: made so, it would cover no partition (and stay invalid), so it is made on the
    whole table."""
    start = time.perf_counter()
    for name, sql in indexes:
        t = time.perf_counter()
        cur.execute(sql.replace(" ON ONLY ", " ON "))
        if each:
            print(f"  index {name}: {time.perf_counter() - t:.1f} s")
    return time.perf_counter() - start


def copy_rows(cur: Any, specs: Specs, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """COPY (binary) and clear the buffered ``rows`` of each table of ``specs``, in order."""
    for name, (table, cols, types) in specs.items():
        if not rows[name]:
            continue
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows[name]:
                copy.write_row(row)
        rows[name].clear()


def reset_sequences(cur: Any, names: list[str]) -> None:
    """Set the id sequence of each table past the highest id loaded (a table without an
    ``id`` column, or without a sequence for it, is left alone)."""
    for table in names:
        cur.execute(
            "SELECT pg_get_serial_sequence(table_name, 'id') FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s AND column_name = 'id'",
            [table],
        )
        found = cur.fetchone()
        sequence = found[0] if found else None
        if sequence:
            cur.execute(f"SELECT setval('{sequence}', (SELECT COALESCE(MAX(id), 1) FROM {table}))")
