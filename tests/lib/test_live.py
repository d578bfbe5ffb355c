"""Live push (observatory/lib/live.py): a publish reaches the dashboards' group whether a
server's event loop runs (ASGI) or not (a WSGI worker, a task), through the real layer."""

from __future__ import annotations

import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from observatory.lib import live


def _joined() -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.GROUP, channel)
    return layer, channel


def test_a_publish_without_a_server_loop_reaches_the_group() -> None:
    layer, channel = _joined()
    try:
        for n in range(3):  # the process's publishing loop, made once, serves each
            live.publish("hops.stored", {"systems": {"erp": n}})
            message = async_to_sync(layer.receive)(channel)
            assert message == {
                "type": "live.event",
                "topic": "hops.stored",
                "payload": {"systems": {"erp": n}},
            }
    finally:
        async_to_sync(layer.group_discard)(live.GROUP, channel)


def test_a_publish_from_another_thread_reaches_the_group() -> None:
    layer, channel = _joined()
    try:
        worker = threading.Thread(target=live.publish, args=("hops.stored", {"systems": {}}))
        worker.start()
        worker.join()
        assert async_to_sync(layer.receive)(channel)["topic"] == "hops.stored"
    finally:
        async_to_sync(layer.group_discard)(live.GROUP, channel)


def test_a_publish_inside_a_server_loop_runs_on_it() -> None:
    layer, channel = _joined()

    async def served() -> Any:
        from asgiref.sync import sync_to_async

        # a sync view under ASGI: async_to_sync goes back to this loop
        await sync_to_async(live.publish)("hops.stored", {"systems": {"pos": 1}})
        return await layer.receive(channel)

    try:
        assert async_to_sync(served)()["payload"] == {"systems": {"pos": 1}}
    finally:
        async_to_sync(layer.group_discard)(live.GROUP, channel)
