"""The pages' scheduled work (thin: the work is in ``summary.py``)."""

from __future__ import annotations

from celery import shared_task

from observatory.dashboards.summary import send_weekly_summary

WEEKLY_SUMMARY = "observatory.dashboards.tasks.weekly_summary"


@shared_task(name=WEEKLY_SUMMARY, ignore_result=True)
def weekly_summary() -> int:
    """The weekly executive summary e-mail; how many recipients it went to."""
    return send_weekly_summary()
