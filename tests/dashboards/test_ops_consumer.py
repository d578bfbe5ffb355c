"""The ops dashboard's websocket (``/ws/ops/``), through the real ASGI routing and session
auth, with channels' WebsocketCommunicator."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from observatory.lib import live
from observatory.lib.clock import now
from observatory.routing import build_application
from tests.dashboards import seed
from tests.dashboards.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def app() -> Any:
    from django.core.asgi import get_asgi_application

    return build_application(get_asgi_application())


def session_cookie(username: str = "olivia") -> bytes:
    client = Client()
    client.force_login(make_user(username, "ops"))
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(cookie: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(app(), "/ws/ops/", headers=headers)


def snapshot(message: str) -> dict[str, Any]:
    body = json.loads(message)
    assert body["type"] == "snapshot"
    return body


def orders_24h(html: str) -> int:
    marker = 'data-testid="orders-24h">'
    return int(html.split(marker, 1)[1].split("<", 1)[0])


def test_refuses_a_socket_without_a_signed_in_user(db: None) -> None:
    async def run() -> None:
        ws = communicator(None)
        connected, code = await ws.connect()
        assert not connected and code == 4401

    async_to_sync(run)()


def test_refuses_a_foreign_origin(db: None) -> None:
    async def run(cookie: bytes) -> None:
        ws = WebsocketCommunicator(
            app(), "/ws/ops/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
        )
        connected, _ = await ws.connect()
        assert not connected

    async_to_sync(run)(session_cookie())


def test_pushes_the_page_at_once_then_on_every_change(settings: Any, ingest_client: Client) -> None:
    settings.DASHBOARD_POLL_S = 30  # nothing from polling here: only pushes
    cookie = session_cookie()

    async def run() -> None:
        ws = communicator(cookie)
        connected, _ = await ws.connect()
        assert connected
        html = str(snapshot(await ws.receive_from(timeout=5))["html"])
        assert orders_24h(html) == 0 and "No orders yet" in html
        # orders arrive and are stitched; the pipeline publishes after its commits
        await sync_to_async(seed.seed)(ingest_client)
        html = str(snapshot(await ws.receive_from(timeout=5))["html"])
        while orders_24h(html) != 2:  # a push per commit: take the newest
            html = str(snapshot(await ws.receive_from(timeout=5))["html"])
        assert 'data-system="erp"' in html
        await ws.send_to(text_data="ping")
        while True:
            body = json.loads(await ws.receive_from(timeout=5))
            if body["type"] == "pong":
                break
        await ws.disconnect()

    async_to_sync(run)()


def test_a_published_event_wakes_it_up(settings: Any, ingest_client: Client) -> None:
    settings.DASHBOARD_POLL_S = 30
    cookie = session_cookie()

    async def run() -> None:
        ws = communicator(cookie)
        connected, _ = await ws.connect()
        assert connected
        assert orders_24h(snapshot(await ws.receive_from(timeout=5))["html"]) == 0
        # written without publishing; then another process's event arrives through the layer
        await sync_to_async(_store_pos_hop)()
        layer = get_channel_layer()
        await layer.group_send(live.GROUP, {"type": "live.event", "topic": "hops.stored"})
        html = str(snapshot(await ws.receive_from(timeout=3))["html"])
        assert 'data-system="pos"' in html
        await ws.disconnect()

    async_to_sync(run)()


def _store_pos_hop() -> None:
    from observatory.hops.models import Hop

    at = now()
    Hop.objects.create(
        uid=f"test:pos:{at.timestamp()}",
        via="event",
        system="pos",
        operation="sale",
        start_time=at - timedelta(seconds=5),
        end_time=at,
        received_at=at,
        duration_ms=42,
    )


def test_polls_when_no_event_crosses_processes(settings: Any, ingest_client: Client) -> None:
    """The in-memory layer does not reach another process (the Celery worker): the
    consumer notices a change by itself within its poll interval."""
    settings.DASHBOARD_POLL_S = 0.2
    cookie = session_cookie()
    seed.seed(ingest_client)

    async def run() -> None:
        ws = communicator(cookie)
        connected, _ = await ws.connect()
        assert connected
        before = str(snapshot(await ws.receive_from(timeout=5))["html"])
        assert 'data-system="pos"' not in before
        await sync_to_async(_store_pos_hop)()  # no channel-layer event at all
        after = str(snapshot(await ws.receive_from(timeout=3))["html"])
        assert 'data-system="pos"' in after
        await ws.disconnect()

    async_to_sync(run)()


def test_a_tab_that_went_away_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture, ingest_client: Client
) -> None:
    """A browser tab closed (or a laptop lid shut) drops the connection without a close
    frame; until the server notices, a push finds the client gone: uvicorn's ``send``
    raises ``ClientDisconnected``, as the server in front of the app here does. The
    consumer stops quietly: no traceback in the log."""
    import logging

    from uvicorn.protocols.utils import ClientDisconnected

    gone = False

    def server(application: Any) -> Any:
        async def serve(scope: Any, receive: Any, send: Any) -> None:
            async def send_unless_gone(message: Any) -> None:
                if gone and message["type"] == "websocket.send":
                    raise ClientDisconnected()
                await send(message)

            await application(scope, receive, send_unless_gone)

        return serve

    cookie = session_cookie()
    application = server(app())
    # the consumer's own log, whatever Django's logging setup does to the root logger's
    consumer_log = logging.getLogger("observatory.dashboards.consumers")
    consumer_log.addHandler(caplog.handler)

    async def run() -> None:
        nonlocal gone
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        ws = WebsocketCommunicator(application, "/ws/ops/", headers=[*headers, (b"cookie", cookie)])
        connected, _ = await ws.connect()
        assert connected
        snapshot(await ws.receive_from(timeout=5))
        gone = True
        await sync_to_async(seed.seed)(ingest_client)  # the figures change: a push
        assert await ws.receive_nothing(timeout=2)
        await ws.disconnect()

    try:
        async_to_sync(run)()
    finally:
        consumer_log.removeHandler(caplog.handler)
    errors = [r for r in caplog.handler.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
