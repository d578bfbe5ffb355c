"""Triage's scheduled work (thin: the work is in actions)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from celery import shared_task

from observatory.triage.actions import do_sweep

#: the sweep, by name: the stage below (the stitch command) runs it without importing it
SWEEP = "observatory.triage.tasks.sweep"


@shared_task(name=SWEEP, ignore_result=True)
def sweep(now: str | None = None, full: bool = False) -> dict[str, Any]:
    """Open and close exceptions from what the stitcher wrote. ``now`` (ISO 8601) judges
    SLAs as of that business time, over the traffic as sent so far."""
    if now is None:
        return asdict(do_sweep(full=full))
    at = datetime.fromisoformat(now)
    return asdict(do_sweep(clock=lambda: at, full=full))
