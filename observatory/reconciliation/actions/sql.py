"""What the run's statements share: table names, running SQL with named parameters, and
values bound the way each database compares them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import connection

from observatory.hops.models import HopKey
from observatory.lib import bulk
from observatory.reconciliation.models import Batch, Item, Queued, Result, StoreZone
from observatory.transactions.models import StageReached, Transaction, TransactionHop

ITEMS = Item._meta.db_table
BATCHES = Batch._meta.db_table
RESULTS = Result._meta.db_table
QUEUED = Queued._meta.db_table
ZONES = StoreZone._meta.db_table
TXS = Transaction._meta.db_table
STAGES = StageReached._meta.db_table
TXHOPS = TransactionHop._meta.db_table
HOPKEYS = HopKey._meta.db_table

#: values per IN list on SQLite (bound parameters per statement)
CHUNK = bulk.CHUNK


def execute(sql: str, params: dict[str, Any] | Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``%(name)s`` parameters with a dict, ``%s`` with a list) through
    Django's cursor; its rows, if it returns any."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []


def write(sql: str, params: dict[str, Any] | Sequence[Any] = ()) -> int:
    """Run a writing statement; the rows it wrote."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount)


def literal(value: Decimal) -> str:
    """A decimal as an SQL number literal (on SQLite a bound decimal is text, and text
    compares greater than any number)."""
    return format(Decimal(value), "f")


def as_date(value: Any) -> date:
    """A date column read back (SQLite gives text from raw SQL)."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def chunked(values: Iterable[Any]) -> Iterator[list[Any]]:
    """``values`` (sorted, without repeats) in lists short enough for one IN (...)."""
    ordered = sorted(set(values))
    size = len(ordered) or 1 if bulk.postgresql() else CHUNK
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def marks(n: int) -> str:
    return ", ".join(["%s"] * n)
