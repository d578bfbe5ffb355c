"""Row plumbing the fill's steps share: ids in chunks one ``IN (...)`` takes, and plain
tuples inserted in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from observatory.lib import bulk

_IN = 900  # ids per IN (...) on SQLite


def in_chunks(items: Sequence[Any], size: int = _IN) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def insert_rows(model: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert plain tuples (no model objects: a day of store-level rollups is thousands of
    rows), by ``lib.bulk``: binary COPY on PostgreSQL."""
    bulk.insert(bulk.Table.of(model, columns), list(rows))
