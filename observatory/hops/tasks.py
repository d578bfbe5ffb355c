"""Hop store upkeep run by Celery beat (thin: the work is in actions)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from observatory.hops.models import Hop
from observatory.lib.clock import now


@shared_task(name="observatory.hops.tasks.purge_expired", ignore_result=True)
def purge_expired() -> int:
    """Delete hops older than HOP_RETENTION_DAYS (their keys and duplicates cascade)."""
    cutoff = now() - timedelta(days=settings.HOP_RETENTION_DAYS)
    deleted, _ = Hop.objects.filter(received_at__lt=cutoff, start_time__lt=cutoff).delete()
    return deleted
