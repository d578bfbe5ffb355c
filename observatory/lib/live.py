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
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

#: The channel-layer group every live dashboard joins.
GROUP = "observatory.live"


def publish(topic: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every open dashboard now (call only outside a transaction)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "live.event", "topic": topic, "payload": payload}
    try:
        if _main_loop_running():
            async_to_sync(layer.group_send)(GROUP, message)
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), _loop()).result()
    except Exception:  # a full or unreachable layer must not fail the write that called us
        log.warning("live publish of %s failed", topic, exc_info=True)


def _main_loop_running() -> bool:
    """Whether ``async_to_sync`` would run on a server's event loop (under ASGI, or in an
    event loop's own thread, where it refuses) rather than make one of its own."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    return (
        loop is not None
        and getattr(local, "main_event_loop_pid", None) == os.getpid()
        and loop.is_running()
    )


_loop_lock = threading.Lock()
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, on a daemon thread of its own.

    Where no server loop runs (a WSGI worker, a Celery task), ``async_to_sync`` would
    start a thread and an event loop for every publish, and a Redis layer would connect
    anew each time: a tenth of a 512-span ingest request's CPU under gunicorn
    (docs/performance.md, "Ingest against a bare COPY"). One loop serves them all.
    """
    global _publisher
    with _loop_lock:
        if _publisher is None or _publisher[0] != os.getpid():  # made anew after a fork
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="live-publish", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


def publish_on_commit(topic: str, payload: dict[str, Any]) -> None:
    """Publish once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish(topic, payload))
