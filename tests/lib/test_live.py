"""Live push through the configured channel layer (in memory, or Redis in CI's PostgreSQL
half): a coalesced topic reaches a dashboard's channel at most once per ``COALESCE_S``,
and the last change of a burst always arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django import db

from observatory.lib import live

# no test transaction around: after-commit work runs at once, as outside a request's
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(live, "_coalesced", live._Coalescer())  # no timer of another test
    layer = get_channel_layer()
    name: str = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.GROUP, name)
    yield name
    async_to_sync(layer.group_discard)(live.GROUP, name)


def received(channel: str, seconds: float) -> list[tuple[float, dict[str, Any]]]:
    """(arrival time, message) of what reaches ``channel`` within ``seconds``."""
    layer = get_channel_layer()

    async def drain() -> list[tuple[float, dict[str, Any]]]:
        out = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=left)
            except TimeoutError:
                break
            out.append((time.monotonic(), message))
        return out

    return async_to_sync(drain)()


def test_a_burst_of_a_coalesced_topic_arrives_as_the_first_and_the_last(channel: str) -> None:
    began = time.monotonic()
    for n in range(5):  # outside a transaction: each is published (or held) at once
        live.publish_on_commit("hops.stored", {"n": n}, coalesce=True)
    got = received(channel, 1.5)
    assert [m["payload"] for _, m in got] == [{"n": 0}, {"n": 4}]
    assert {m["topic"] for _, m in got} == {"hops.stored"}
    first, last = got[0][0], got[1][0]
    assert first - began < live.COALESCE_S  # the first of a quiet spell goes at once
    assert last - began >= live.COALESCE_S * 0.9  # the rest waited for their time


def test_a_coalesced_topic_once_quiet_again_goes_at_once(channel: str) -> None:
    live.publish_on_commit("hops.stored", {"n": 1}, coalesce=True)
    time.sleep(live.COALESCE_S * 1.5)
    began = time.monotonic()
    live.publish_on_commit("hops.stored", {"n": 2}, coalesce=True)
    got = received(channel, 0.6)
    assert [m["payload"] for _, m in got] == [{"n": 1}, {"n": 2}]
    assert got[1][0] - began < live.COALESCE_S


def test_other_topics_are_each_published(channel: str) -> None:
    for n in range(3):
        live.publish_on_commit("alerts", {"n": n})
    got = received(channel, 0.5)
    assert [m["payload"] for _, m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_under_an_asgi_loop_the_held_publish_is_sent_on_that_loop(channel: str) -> None:
    # An ASGI server runs a sync view in a thread of its own (sync_to_async) and the
    # dashboards' channels wait on the server's loop: the timer's publish must reach them
    # there, whatever the layer (the in-memory one's queues belong to that loop).
    from asgiref.sync import sync_to_async

    layer = get_channel_layer()

    async def server() -> tuple[list[dict[str, Any]], float]:
        def view(n: int) -> None:  # a request's after-commit publish
            try:
                live.publish_on_commit("hops.stored", {"n": n}, coalesce=True)
            finally:  # as Django does when a request ends: else the thread keeps the
                # connection (on PostgreSQL, out of the pool until the test database is
                # dropped, which it then stops)
                db.connection.close()

        began = time.monotonic()
        for n in range(3):
            await sync_to_async(view, thread_sensitive=False)(n)
        got = []
        for _ in range(2):
            got.append(await asyncio.wait_for(layer.receive(channel), timeout=3))
        took = time.monotonic() - began
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), timeout=live.COALESCE_S * 2)
        return got, took

    got, took = asyncio.run(server())
    assert [m["payload"] for m in got] == [{"n": 0}, {"n": 2}]
    # sent from the timer's own loop, the loop here would not wake for it until the wait's
    # timeout
    assert took < 1.0
