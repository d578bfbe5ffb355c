"""Triage's scheduled work (thin: the work is in actions)."""

from __future__ import annotations

from celery import shared_task

from observatory.triage.actions import do_pipeline_tick


@shared_task(name="observatory.triage.tasks.pipeline_tick", ignore_result=True)
def pipeline_tick() -> None:
    """Stitch every waiting hop, then sweep SLAs and the exception queue (beat, 5 s)."""
    do_pipeline_tick()
