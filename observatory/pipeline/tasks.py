"""The pipeline tick as a Celery task (thin: the order is in ``wiring``)."""

from __future__ import annotations

from celery import shared_task

from observatory.pipeline import wiring

#: the task ingest nudges, by name (the write edge never imports the stages above it)
TICK = "observatory.pipeline.tasks.tick"


@shared_task(name=TICK, ignore_result=True)
def tick() -> None:
    """Stitch every waiting hop, then sweep the exception queue (beat, and nudges)."""
    wiring.tick()
