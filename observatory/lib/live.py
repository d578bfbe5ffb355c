"""Live push to open dashboards, through the channel layer, always after commit.

Every app publishes through here (only ``dashboards`` imports channels' consumers), so a
rolled-back write never shows on a screen. Publishing never fails the caller: a
dashboard that misses an event catches up on its next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

#: The channel-layer group every live dashboard joins.
GROUP = "observatory.live"
#: A coalesced topic is published at most once per this many seconds by a process (a
#: dashboard takes several events in 0.2 s as one refresh anyway).
COALESCE_S = 0.2


def publish(
    topic: str, payload: dict[str, Any], loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """Send ``payload`` to every open dashboard now (call only outside a transaction).

    ``loop``: the ASGI server's event loop, to send on from another thread (the in-memory
    layer's queues belong to that loop); by default the caller's (asgiref's rules).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "live.event", "topic": topic, "payload": payload}
    try:
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), loop).result(5)
        else:
            async_to_sync(layer.group_send)(GROUP, message)
    except Exception:  # a full or unreachable layer must not fail the write that called us
        log.warning("live publish of %s failed", topic, exc_info=True)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The ASGI server's event loop when this thread runs a sync view for it (asgiref
    records it for the thread), else None (WSGI, Celery, a command)."""
    local = SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    return getattr(local, "main_event_loop", None)


def publish_on_commit(topic: str, payload: dict[str, Any], *, coalesce: bool = False) -> None:
    """Publish once the surrounding transaction commits (at once outside one).

    ``coalesce`` is for a topic that may come many times a second (every ingest request):
    a process then publishes it at most once per :data:`COALESCE_S`. One that comes sooner
    is held and sent when that time is up, with the latest payload of those held (a
    dashboard reads an event as "something changed", not as a count).
    """
    if coalesce:
        transaction.on_commit(lambda: _coalesced.publish(topic, payload))
    else:
        transaction.on_commit(lambda: publish(topic, payload))


class _Coalescer:
    """Publishes each topic at most once per :data:`COALESCE_S` in this process: at once
    when the last one is that old, else once when it is (a timer thread, which sends on
    the ASGI server's loop where the held publish came from one), so the last change of
    a burst is never left unpublished."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}
        #: topic -> the payload held for the timer that is on its way, and its loop
        self.held: dict[str, tuple[dict[str, Any], asyncio.AbstractEventLoop | None]] = {}

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        t = time.monotonic()
        with self.lock:
            if topic in self.held:  # a timer is on its way: it sends this payload
                self.held[topic] = (payload, _server_loop())
                return
            wait = self.sent.get(topic, -COALESCE_S) + COALESCE_S - t
            if wait > 0:
                self.held[topic] = (payload, _server_loop())
                timer = threading.Timer(wait, self.flush, (topic,))
                timer.daemon = True
                timer.start()
                return
            self.sent[topic] = t
        publish(topic, payload)

    def flush(self, topic: str) -> None:
        with self.lock:
            payload, loop = self.held.pop(topic)
            self.sent[topic] = time.monotonic()
        publish(topic, payload, loop)


_coalesced = _Coalescer()
