"""Liveness and readiness probes."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu import Connection


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers: nothing else is checked."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:
        return f"database: {exc.__class__.__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    try:
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        with Connection(settings.CELERY_BROKER_URL, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker: {exc.__class__.__name__}: {exc}"
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the Celery broker both answer."""
    problems = [p for p in (_check_database(), _check_broker()) if p]
    checks = {"database": "ok", "broker": "ok"}
    for p in problems:
        checks[p.split(":", 1)[0]] = p.split(":", 1)[1].strip()
    return JsonResponse(
        {"status": "ok" if not problems else "unavailable", "checks": checks},
        status=200 if not problems else 503,
    )
