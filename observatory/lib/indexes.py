"""Index kinds the models declare that PostgreSQL and SQLite build differently."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.indexes import BrinIndex
from django.db.models import Index


class TimeIndex(BrinIndex):
    """An index on a time that grows with its table (a hop's start, when it was
    stitched): BRIN on PostgreSQL, a few pages for millions of rows and nearly free to
    keep up on insert; an ordinary b-tree on SQLite, which has no BRIN."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "postgresql":
            return Index.create_sql(self, model, schema_editor, using=using, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)
