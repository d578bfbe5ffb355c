"""The hand-off between stages: per-consumer queue tables (docs/architecture.md "Data flow").

A stage below writes one row per (consumer, value) for every consumer named in
``settings.PIPELINE_CONSUMERS``; each consumer claims its own rows (takes them out of the
queue) inside its transaction, so a crash puts them back, and concurrent claims skip each
other's rows on PostgreSQL. Values are whatever the queue holds: transaction ids, hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import models

_BATCH = 900  # bound parameters per statement on SQLite


def enqueue(model: type[models.Model], field: str, values: Iterable[Any]) -> int:
    """Queue ``values`` for every consumer (a value already queued for one is kept once)."""
    unique = sorted(set(values))
    rows = [
        model(**{"consumer": consumer, field: value})
        for consumer in settings.PIPELINE_CONSUMERS
        for value in unique
    ]
    model._default_manager.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(unique)


def claim(
    model: type[models.Model], field: str, consumer: str, limit: int | None = None
) -> list[Any]:
    """Take up to ``limit`` of ``consumer``'s queued values out of the queue (in the
    caller's transaction); their values, sorted."""
    qs = model._default_manager.filter(consumer=consumer).order_by("pk")
    qs = qs.select_for_update(skip_locked=True)
    picked: Sequence[tuple[int, Any]] = list(
        (qs[:limit] if limit is not None else qs).values_list("pk", field)
    )
    ids = [pk for pk, _ in picked]
    for i in range(0, len(ids), _BATCH):
        model._default_manager.filter(pk__in=ids[i : i + _BATCH]).delete()
    return sorted({value for _, value in picked})


def clear(model: type[models.Model], consumer: str) -> None:
    """Drop everything queued for ``consumer`` (it is about to read everything anyway)."""
    model._default_manager.filter(consumer=consumer).delete()
