"""The stitcher's scheduled work (thin: the work is in actions)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

from observatory.transactions.actions import do_stitch


@shared_task(name="observatory.transactions.tasks.stitch", ignore_result=True)
def stitch() -> dict[str, Any]:
    """Stitch every waiting hop into transactions."""
    return asdict(do_stitch())
