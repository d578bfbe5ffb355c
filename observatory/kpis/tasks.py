"""KPI scheduled work (thin: the work is in actions)."""

from __future__ import annotations

from celery import shared_task

from observatory.kpis.actions import do_fill_rollups


@shared_task(name="observatory.kpis.tasks.fill_rollups", ignore_result=True)
def fill_rollups() -> None:
    """Recompute the rollup buckets that changed since the last fill (beat, 10 s)."""
    do_fill_rollups()
