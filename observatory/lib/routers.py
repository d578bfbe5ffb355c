"""Reads that may be a moment stale go to a read replica (docs/scaling.md).

With ``DATABASE_REPLICA_URL`` set, settings add a ``replica`` database alias and install
``ReplicaRouter``. The router sends a read to the replica only when all of these hold:

* the code asked for it: a request the ``ReplicaReadsMiddleware`` lets through (a GET or
  HEAD of a page or of a read API in ``REPLICA_PATHS``, from a client that has not just
  written), or a block inside ``replica_reads()`` (the ops dashboard's websocket);
* the model belongs to an app whose reads tolerate a moment's lag (``REPLICA_APPS``: hops,
  transactions, exceptions, KPI rollups, alerts). Sessions, users and tokens always read the
  primary: a sign-in or a token just made must work at once;
* no transaction is open on the primary: what runs inside one reads what it writes.

Everything else reads the primary: ingest, the stitcher, the sweep, the KPI fill, alert
evaluation and delivery run in Celery tasks or POST requests, where nothing asks for the
replica. Writes always go to the primary, and migrations never run on the replica.

A signed-in browser that has just written (any POST, PUT, PATCH or DELETE with a session
cookie: acknowledging an exception, editing a rule) gets a short-lived cookie
(``REPLICA_PIN_COOKIE``, ``DATABASE_REPLICA_PIN_S`` seconds) that keeps its reads on the
primary, so the page it is sent back to shows what it did. Ingest senders and API scripts
carry no session cookie and get none.

Raw SQL reads (``with connection.cursor()``) bypass routers: those that should follow them
take their connection from ``reads(model)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

#: The replica's database alias (settings add it when ``DATABASE_REPLICA_URL`` is set).
REPLICA = "replica"
#: Apps whose tables may be read a moment stale: the read models of the pages and KPIs.
REPLICA_APPS = frozenset({"hops", "transactions", "triage", "kpis", "alerts", "dashboards"})
#: GET and HEAD of these paths read ``REPLICA_APPS`` from the replica: the ops dashboard
#: and its live part, the executive and systems pages, order lookup and the order page, the
#: trace page, the exception queue page; in the JSON API the KPIs, orders, traces and systems. The alert
#: pages, the admin, and the exception and alert API (scripts that acknowledge, then read
#: back, carry no cookie) stay on the primary.
REPLICA_PATHS = re.compile(
    r"^/(?:$|ops/live/$|executive/|systems/|orders/|traces/|exceptions/$"
    r"|api/v1/(?:kpis|orders|traces|systems)(?:/|$))"
)
#: The cookie that keeps a client that just wrote on the primary.
REPLICA_PIN_COOKIE = "observatory_primary"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_allowed: ContextVar[bool] = ContextVar("replica_reads", default=False)

P = ParamSpec("P")
R = TypeVar("R")


def configured() -> bool:
    """Whether a replica alias exists (``DATABASE_REPLICA_URL`` was set)."""
    return REPLICA in connections.settings


@contextmanager
def replica_reads() -> Iterator[None]:
    """Inside this block, reads that the router allows go to the replica (when there is
    one). Writes, and reads inside a transaction, still go to the primary."""
    token = _allowed.set(True)
    try:
        yield
    finally:
        _allowed.reset(token)


def on_replica(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside ``replica_reads()`` (for ``database_sync_to_async``, whose thread
    does not see the caller's block)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with replica_reads():
            return fn(*args, **kwargs)

    return wrapper


def reads(model: type[Model]) -> BaseDatabaseWrapper:
    """The connection a raw SQL read of ``model``'s table should use."""
    return connections[router.db_for_read(model) or DEFAULT_DB_ALIAS]


class ReplicaRouter:
    """Reads of ``REPLICA_APPS`` inside ``replica_reads()`` and outside a transaction on the
    primary go to the replica; everything else to the primary (``None``: Django's own
    choice, which is the primary, or the database an instance came from)."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        if (
            _allowed.get()
            and model._meta.app_label in REPLICA_APPS
            and not connections[DEFAULT_DB_ALIAS].in_atomic_block
            and configured()
        ):
            return REPLICA
        return None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        """The replica holds the primary's rows: an instance read from either may point at
        one read from the other."""
        both = {obj1._state.db or DEFAULT_DB_ALIAS, obj2._state.db or DEFAULT_DB_ALIAS}
        return True if both <= {DEFAULT_DB_ALIAS, REPLICA} else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        """Never on the replica: it follows the primary's schema by replication."""
        return False if db == REPLICA else None


class ReplicaReadsMiddleware:
    """Runs a GET or HEAD of ``REPLICA_PATHS`` inside ``replica_reads()``, unless the client
    wrote within ``DATABASE_REPLICA_PIN_S`` seconds; pins a signed-in client that writes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.pin_s = settings.DATABASE_REPLICA_PIN_S

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in _SAFE:
            response = self.get_response(request)
            if self.pin_s > 0 and settings.SESSION_COOKIE_NAME in request.COOKIES:
                response.set_cookie(
                    REPLICA_PIN_COOKIE,
                    "1",
                    max_age=self.pin_s,
                    httponly=True,
                    samesite="Lax",
                    secure=settings.SESSION_COOKIE_SECURE,
                )
            return response
        if (
            request.method in ("GET", "HEAD")
            and REPLICA_PIN_COOKIE not in request.COOKIES
            and REPLICA_PATHS.match(request.path_info)
        ):
            with replica_reads():
                return self.get_response(request)
        return self.get_response(request)
