"""Liveness and readiness probes.

``/readyz`` tells an anonymous caller (a load balancer, anyone on the internet) only
``ok`` or ``unavailable``: which check failed, and how (a host and port in a driver's
message), is logged, and shown to signed-in staff only.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu import Connection

from observatory.lib import outage

log = logging.getLogger(__name__)


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
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        with Connection(settings.CELERY_BROKER_URL, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker: {exc.__class__.__name__}: {exc}"
    return None


def _staff(request: HttpRequest) -> bool:
    user: Any = getattr(request, "user", None)
    try:
        return bool(user is not None and user.is_authenticated and user.is_staff)
    except outage.UNAVAILABLE:  # the session is in the database, which is down
        return False


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database and the Celery broker both answer."""
    problems = [p for p in (_check_database(), _check_broker()) if p]
    for p in problems:
        log.warning("readyz: %s", p)
    body: dict[str, Any] = {"status": "ok" if not problems else "unavailable"}
    if _staff(request):
        checks = {"database": "ok", "broker": "ok"}
        for p in problems:
            checks[p.split(":", 1)[0]] = p.split(":", 1)[1].strip()
        body["checks"] = checks
    response = JsonResponse(body, status=200 if not problems else 503)
    if problems:
        response["Retry-After"] = outage.RETRY_AFTER_S
    return response
