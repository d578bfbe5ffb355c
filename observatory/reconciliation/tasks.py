"""Reconciliation's scheduled work (thin: the work is in actions)."""

from __future__ import annotations

from celery import shared_task

from observatory.reconciliation.actions import do_reconcile


@shared_task(name="observatory.reconciliation.tasks.reconcile", ignore_result=True)
def reconcile() -> None:
    """Run the rules that are due on what the stitcher touched since (beat, 30 s)."""
    do_reconcile()
