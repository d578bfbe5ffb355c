"""Live push to open dashboards, through the channel layer, always after commit.

Every app publishes through here (only ``dashboards`` imports channels' consumers), so a
rolled-back write never shows on a screen. Publishing never fails the caller: a
dashboard that misses an event catches up on its next refresh.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
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
    try:
        async_to_sync(layer.group_send)(
            GROUP, {"type": "live.event", "topic": topic, "payload": payload}
        )
    except Exception:  # a full or unreachable layer must not fail the write that called us
        log.warning("live publish of %s failed", topic, exc_info=True)


def publish_on_commit(topic: str, payload: dict[str, Any]) -> None:
    """Publish once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish(topic, payload))
