"""Model instances from a hand-written WHERE clause, for the few hot reads where building
the ORM query costs more than running it.

The order lookup (``GET /api/v1/orders/{key}``) runs some nine small index lookups, and
compiling them in the ORM on every request cost more than running them
(docs/performance.md, "Reading orders"). ``fetch`` keeps
what the ORM gives back (model instances, values converted by the same backend and field
converters the compiler applies, so JSON is decoded and SQLite's datetimes are aware) and
builds its SELECT once per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

from observatory.lib.routers import reads

M = TypeVar("M", bound=Model)
_Converter = Callable[[Any, Any, Any], Any]

#: model -> (column list, attribute names, (index, converters, column expression) ...)
_shapes: dict[type[Model], tuple[str, list[str], list[tuple[int, list[_Converter], Any]]]] = {}


def column_of(field: Field[Any, Any]) -> str:
    """A concrete field's column (``Field.column`` is typed optional: not for these)."""
    assert field.column is not None, field
    return field.column


def _shape(model: type[Model]) -> tuple[str, list[str], list[tuple[int, list[_Converter], Any]]]:
    shape = _shapes.get(model)
    if shape is None:
        meta, quote = model._meta, connection.ops.quote_name
        fields = list(meta.concrete_fields)
        columns = ", ".join(f"{quote(meta.db_table)}.{quote(column_of(f))}" for f in fields)
        converters = []
        for i, f in enumerate(fields):
            col = f.get_col(meta.db_table)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                converters.append((i, found, col))
        shape = _shapes[model] = (columns, [f.attname for f in fields], converters)
    return shape


def fetch(model: type[M], where: str, params: Sequence[Any], order_by: str) -> list[M]:
    """``model`` rows ``WHERE where ORDER BY order_by`` (plain SQL over its own table, with
    ``%s`` placeholders), as model instances. One query."""
    columns, names, converters = _shape(model)
    table = connection.ops.quote_name(model._meta.db_table)
    # the primary, or the replica where the router sends reads of this model
    db = reads(model)
    with db.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order_by}", params)
        rows = cur.fetchall()
    out = []
    for row in rows:
        if converters:
            values = list(row)
            for i, found, col in converters:
                for convert in found:
                    values[i] = convert(values[i], col, db)
            row = values
        out.append(model.from_db(db.alias, names, row))
    return out
