"""The pipeline tick and the prune as Celery tasks (thin: the order is in ``wiring``)."""

from __future__ import annotations

import logging
from collections import Counter

from celery import shared_task

from observatory.lib import shutdown
from observatory.pipeline import wiring

log = logging.getLogger(__name__)

#: the task ingest nudges, by name (the write edge never imports the stages above it)
TICK = "observatory.pipeline.tasks.tick"


@shared_task(name=TICK, ignore_result=True)
def tick() -> None:
    """Stitch every waiting hop, then sweep the exception queue (beat, and nudges)."""
    wiring.tick()


@shared_task(name="observatory.pipeline.tasks.prune", ignore_result=True)
def prune() -> None:
    """Make the hop partitions ahead and apply retention (beat, hourly), logging what
    went."""
    deleted: Counter[str] = Counter()
    for table, n in wiring.prune():
        deleted[table] += n
        if shutdown.requested():  # stopping: the next hourly run deletes the rest
            break
    if deleted:
        log.info("pruned %s", ", ".join(f"{t} {n:,}" for t, n in sorted(deleted.items())))
