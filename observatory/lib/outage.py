"""The database being unreachable is a 503 with ``Retry-After``, never a 500.

Django wraps the driver's errors in its own ``OperationalError``/``InterfaceError``, but
code that talks to psycopg's own cursor (the ingest COPY in ``hops.store``) sees
psycopg's, and a pool that cannot hand out a connection within ``DB_POOL_TIMEOUT`` raises
``psycopg_pool.PoolTimeout`` (a psycopg ``OperationalError``). ``UNAVAILABLE`` holds them
all, so every door answers alike: the ingest views catch it, the JSON API's exception
handler (``observatory/api.py``) and this module's middleware turn it into a 503 for
every other view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)

#: Seconds a client should wait before retrying, on every 503 of an outage.
RETRY_AFTER_S = "5"
MESSAGE = "the database is unavailable, retry later"


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


#: What an outage looks like, from Django or from the driver itself.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    *_driver_errors(),
)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """The 503 of an outage: JSON under ``/api/``, ``/v1/`` and ``/webhooks/``, text
    elsewhere; ``Retry-After`` on both."""
    if request.path.startswith(("/api/", "/v1/", "/webhooks/")):
        response: HttpResponse = JsonResponse({"detail": MESSAGE}, status=503)
    else:
        response = HttpResponse(
            "Observatory cannot reach its database right now. Try again in a moment.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    response["Retry-After"] = RETRY_AFTER_S
    return response


class DatabaseOutageMiddleware:
    """A view that raised one of ``UNAVAILABLE`` answers 503 instead of 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not is_unavailable(exc):
            return None
        log.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
        return unavailable_response(request)
