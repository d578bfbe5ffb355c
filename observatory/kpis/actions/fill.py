"""The fill: ``do_fill_rollups`` runs its three steps, each in its own database
transaction(s), under one lock; the third, sampling the reconciliation backlog, is here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from observatory.kpis import compute, queries
from observatory.kpis.actions.collect import collect
from observatory.kpis.actions.rollups import chunk_hours, work_chunk
from observatory.kpis.models import HOPS, ORDERS, BacklogSample, DirtyHour
from observatory.lib import bulk, live, shutdown
from observatory.lib.clock import now
from observatory.lib.pace import Pacer

log = logging.getLogger(__name__)

LIVE_TOPIC = "kpis.changed"
_LOCK_ID = 0x6B_7069_6673  # "kpifs"
#: Hour buckets per chunk, learnt per process from the chunks' times (``lib.pace``),
#: never more than ``KPIS_FILL_CHUNK_HOURS``.
_PACE = Pacer(first=12, least=1)


@dataclass
class FillResult:
    queued: dict[str, int] = field(default_factory=lambda: {ORDERS: 0, HOPS: 0})
    recomputed: dict[str, int] = field(default_factory=lambda: {ORDERS: 0, HOPS: 0})
    chunks: int = 0
    remaining: int = 0
    backlog_sampled: bool = False
    full: bool = False

    @property
    def changed(self) -> bool:
        return any(self.recomputed.values()) or self.backlog_sampled


def do_fill_rollups(
    *, full: bool = False, max_chunks: int | None = None, at: datetime | None = None
) -> FillResult:
    """Bring the rollups up to date with the source rows (see the package docstring).

    ``full`` requeues every hour. ``max_chunks`` bounds the work of one call (the rest
    stays queued); each chunk takes as many hours as fit in ``PIPELINE_CHUNK_S``
    (``lib.pace``), and none starts once the worker's shutdown has (``lib.shutdown``).
    ``at`` is "now" for retention and the backlog gauge (default: the clock); change
    detection always runs on the wall clock, as the stitcher stamps.
    """
    result = FillResult(full=full)
    with transaction.atomic():
        _lock()
        collect(full, result)
    while (max_chunks is None or result.chunks < max_chunks) and not shutdown.requested():
        # timed inside the transaction: on SQLite its BEGIN waits for the write lock
        with transaction.atomic(), _PACE.chunk(chunk_hours()) as paced:
            _lock()
            if shutdown.requested():  # it began while this chunk waited for the lock
                break
            paced.got = work_chunk(at or now(), result, paced.size)
            if not paced.got:
                break
        result.chunks += 1
    result.remaining = DirtyHour.objects.count()
    with transaction.atomic():
        _lock()
        result.backlog_sampled = _sample_backlog(at or now())
    if result.changed:
        live.publish(
            LIVE_TOPIC,
            {"orders_hours": result.recomputed[ORDERS], "hops_hours": result.recomputed[HOPS]},
        )
    return result


def _lock() -> None:
    bulk.lock(_LOCK_ID)


def backlog_sample_every() -> timedelta:
    return timedelta(seconds=int(settings.KPIS_BACKLOG_SAMPLE_S))


def _sample_backlog(at: datetime, *, force: bool = False) -> bool:
    """Record the live backlog by (channel, store) grouping and stage, at most once per
    ``KPIS_BACKLOG_SAMPLE_S``. Reads the partial indexes on open stages: milliseconds."""
    latest = BacklogSample.objects.aggregate(m=Max("at"))["m"]
    if not force and latest is not None and at - latest < backlog_sample_every():
        return False
    counts: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for stage, members in queries.backlog_members(None, at, at=at).items():
        for tx_id, channel, store in members:
            for ch, st in compute.groupings(channel, store):
                counts[(ch, st, stage)].add(tx_id)
                counts[(ch, st, compute.ALL)].add(tx_id)
    for st_ in (compute.ALL,):
        counts.setdefault((compute.ALL, compute.ALL, st_), set())
    BacklogSample.objects.bulk_create(
        [
            BacklogSample(at=at, channel=ch, store=st, stage=stage, count=len(ids))
            for (ch, st, stage), ids in counts.items()
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return True
