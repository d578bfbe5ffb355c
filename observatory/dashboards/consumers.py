"""Websocket consumers: the ops dashboard's live part, pushed as it changes.

A connected dashboard gets the live part of the page at once, then again whenever the
figures behind it change: on a ``live.event`` from the channel layer (every app publishes
after commit through ``observatory.lib.live``), and, because the in-memory layer does not
cross processes (the Celery worker stitches in another one), on a cheap poll every
``DASHBOARD_POLL_S`` seconds of a one-statement fingerprint of the data. Ages in the page
move on by themselves, so it is also re-sent every ``REFRESH_S`` seconds regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from observatory.dashboards import ops, series
from observatory.lib import live
from observatory.lib.clock import now
from observatory.lib.routers import on_replica

log = logging.getLogger(__name__)

#: Re-send at least this often: "last hop 3 min ago" must not freeze.
REFRESH_S = 15.0
#: Several events in a burst cause one refresh.
DEBOUNCE_S = 0.2
#: Close code for a socket opened without a signed-in user.
UNAUTHORIZED = 4401


class OpsConsumer(AsyncWebsocketConsumer):
    """``/ws/ops/``: pushes ``{"type": "snapshot", "html": ..., "at": ...}``."""

    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        self.wake = asyncio.Event()
        self.joined = False
        if self.channel_layer is not None:
            try:
                await self.channel_layer.group_add(live.GROUP, self.channel_name)
                self.joined = True
            except Exception:  # an unreachable layer: polling still keeps the page live
                log.warning("ops dashboard could not join the live group", exc_info=True)
        await self.accept()
        self.task = asyncio.create_task(self.run())

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if getattr(self, "joined", False) and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(live.GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """``ping`` -> ``pong`` (the page checks the line is alive); ``refresh`` -> now."""
        if text_data == "ping":
            await self.send(text_data='{"type":"pong"}')
        elif text_data == "refresh":
            self.wake.set()

    async def live_event(self, event: dict[str, Any]) -> None:
        """Something changed somewhere (after its commit): refresh soon."""
        self.wake.set()

    async def run(self) -> None:
        poll = float(settings.DASHBOARD_POLL_S)
        last: tuple[Any, ...] | None = None
        sent = 0.0
        while True:
            try:
                # a moment's lag is fine here: read from the replica when there is one
                fp = await database_sync_to_async(on_replica(series.fingerprint))()
                if fp != last or time.monotonic() - sent >= REFRESH_S:
                    query = (self.scope.get("query_string") or b"").decode("latin-1")[:512]
                    html = await database_sync_to_async(on_replica(ops.cached_live))(fp, query)
                    await self.send(
                        text_data=orjson.dumps(
                            {"type": "snapshot", "html": html, "at": now().isoformat()}
                        ).decode()
                    )
                    last, sent = fp, time.monotonic()
            except asyncio.CancelledError:
                raise
            except OSError:
                # the tab went away before its close reached us (the server's
                # ClientDisconnected is an OSError): nothing to report, nobody to send to
                log.debug("ops dashboard client went away")
                return
            except Exception:  # a failed read must not end the live page: try again
                log.exception("ops dashboard refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=poll)
            if self.wake.is_set():
                await asyncio.sleep(DEBOUNCE_S)
                self.wake.clear()
