"""Observatory: the Django server (ingest, stitching, triage, KPIs, alerts, dashboards)."""

from observatory.celery import app as celery_app

__all__ = ["celery_app"]
