"""Two stitchers racing on PostgreSQL: a chunk resolves its components without the write
lock, so another worker may stitch a hop of the same order in between (docs/architecture.md,
"The stitcher"). The chunk that waited for the lock must write against that, not against
the components it read before: no hop stitched twice, none dropped."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from observatory.lib import bulk
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import TransactionHop
from observatory.transactions.stitch import resolve
from tests.transactions.stitching import (
    assert_consistent,
    event,
    hop_inputs,
    live,
    partition,
    post_events,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _while_waiting_for_the_lock(monkeypatch: pytest.MonkeyPatch, other: Any) -> None:
    """Run ``other`` (on a connection of its own, to commit) the first time a chunk is
    about to take the stitcher's write lock."""
    real = bulk.lock
    fired: list[bool] = []

    def lock(key: int) -> None:
        if not fired:
            fired.append(True)
            failed: list[BaseException] = []

            def run() -> None:
                try:
                    other()
                except BaseException as exc:
                    failed.append(exc)
                finally:
                    connections.close_all()

            thread = threading.Thread(target=run)
            thread.start()
            thread.join(60)
            assert not failed, failed
        real(key)

    monkeypatch.setattr(bulk, "lock", lock)


def test_a_link_stitched_while_a_chunk_waits_for_the_lock(
    ingest_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not bulk.postgresql():
        pytest.skip("SQLite's IMMEDIATE transactions serialise whole chunks: no race")
    # two orders known apart: #1001 (Shopify's capture) and Shopify order 999
    post_events(
        ingest_client,
        event("a", {"order_number": "#1001"}, system="shopify", t=0, stage="captured"),
        event("b", {"shopify_order_id": "999"}, system="middleware", t=5, stage="validated"),
    )
    do_stitch()
    assert len(live()) == 2
    # another hop of #1001 waits; this chunk claims it and resolves {a, c}
    post_events(ingest_client, event("c", {"order_number": "#1001"}, t=10, stage="posted"))

    def another_worker() -> None:
        # meanwhile the hop linking #1001 with Shopify order 999 arrives and another
        # worker stitches it: one transaction holds a, b, c, d
        post_events(
            Client(HTTP_AUTHORIZATION=ingest_client.defaults["HTTP_AUTHORIZATION"]),
            event("d", {"order_number": "#1001", "shopify_order_id": "999"}, t=20),
        )
        do_stitch()

    _while_waiting_for_the_lock(monkeypatch, another_worker)
    do_stitch()

    hops = {h.id for h in hop_inputs()}
    links = list(TransactionHop.objects.values_list("hop_id", flat=True))
    assert sorted(links) == sorted(hops), "every hop in exactly one transaction"
    [tx] = live()
    assert tx.hop_count == 4
    assert partition() == resolve(hop_inputs()).partition()
    assert_consistent()


def test_without_a_race_a_chunk_reads_its_components_once(
    ingest_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second read is for the race only: stitching in several chunks and passes, late
    links, fan-out and conflicts included, never takes it."""
    from observatory.transactions import actions
    from tests.transactions.test_stitcher import mixed_traffic

    reads: list[int] = []
    real = actions._resolve_components

    def counted(*args: Any) -> Any:
        reads.append(1)
        return real(*args)

    monkeypatch.setattr(actions, "_resolve_components", counted)
    events = [
        *mixed_traffic(8),
        event("k1", {"order_number": "#1", "erp_sales_order": "SO-2"}, t=5),  # a conflict
    ]
    chunks = 0
    for start in range(0, len(events), 5):
        post_events(ingest_client, *events[start : start + 5])
        chunks += do_stitch(limit_chunk=3).chunks
    assert len(reads) == chunks
    assert partition() == resolve(hop_inputs()).partition()
