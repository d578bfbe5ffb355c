"""The ingest endpoints' gate under ASGI: the size limit and the token before the body.

Django's ASGI handler reads a request's whole body (spooled to disk past 2.5 MB) before any
view runs, so under ASGI a view's own checks come too late. For a POST to an ingest path
this gate runs the view's door first (``views.DOORS``): a ``Content-Length`` over
``INGEST_MAX_BODY_BYTES`` is a 413 and a missing or bad token a 401/403, both before a byte
of the body is read. A body without ``Content-Length`` (chunked) is read as it comes and
refused with a 413 as soon as it passes the limit. The body then goes on to Django, and
the token the door let in rides along in the scope, so the view does not look it up again.

Under WSGI (gunicorn) nothing reads the body before the view, which runs the same door
itself and then reads at most the limit (``limits.read_body``).

The door runs outside Django's request cycle, whose end is what gives a request's database
connection back (to the pool on PostgreSQL) and drops one the database broke: the gate does
both itself around each door. It used to keep one connection in its thread for good, so
after a database restart every ingest request was a 503 until the server restarted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpResponse
from django.urls import Resolver404, resolve

from observatory.ingest import views

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: any ASGI application (Django's handler types its arguments more narrowly)
App = Callable[..., Awaitable[None]]


def _door(path: str) -> views.Door | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return views.DOORS.get(match.func)


async def _answer(send: Send, response: HttpResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


def _over_limit(as_otlp: bool, headers: dict[str, str], limit: int) -> HttpResponse:
    message = f"body is over the limit of {limit} bytes"
    if as_otlp:
        as_json = headers.get("content-type", "").split(";")[0].strip().lower() == (
            "application/json"
        )
        return views.otlp_error(413, message, as_json)
    return views.json_answer(413, {"error": message})


def _run_door(door: views.Door, headers: dict[str, str], query: dict[str, str]) -> Any:
    """``door`` with its database connection handled as a request's would be."""
    close_old_connections()
    try:
        return door(headers, query)
    finally:
        close_old_connections()


class IngestGate:
    """ASGI middleware in front of Django: see the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        door = _door(scope["path"])
        if door is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        passed = await sync_to_async(_run_door)(door, headers, query)
        if isinstance(passed, HttpResponse):
            return await _answer(send, passed)

        limit = settings.INGEST_MAX_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                over = _over_limit(door is views.otlp_door, headers, limit)
                return await _answer(send, over)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect Django listens for

        return await self.app({**scope, views.PASSED_TOKEN: passed}, replay, send)
