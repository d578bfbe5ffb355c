"""The stitcher's queue and log (``hops.Waiting``, ``hops.Stitched``): every stored hop
is queued in the transaction that stores it, the stitcher's claim takes it out and logs
when, and the migration that introduced them carried ``Hop.stitched_at`` over both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from observatory.hops.models import Hop, Stitched, Waiting
from observatory.hops.store import queue_for_stitching
from observatory.transactions.actions import do_stitch
from tests.transactions.stitching import event, post_events

T1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_stored_hops_wait_until_a_claim_takes_them(ingest_client: Client) -> None:
    post_events(ingest_client, event("q1", {"order_number": "#1"}), event("q2", {"sku": "A"}))
    hops = set(Hop.objects.values_list("id", flat=True))
    assert set(Waiting.objects.values_list("hop_id", flat=True)) == hops
    assert not Stitched.objects.exists()

    assert do_stitch(clock=lambda: T1).hops == 2
    assert not Waiting.objects.exists()
    assert dict(Stitched.objects.values_list("hop_id", "at")) == dict.fromkeys(hops, T1)

    # a re-sent event is a duplicate delivery: nothing new waits
    post_events(ingest_client, event("q1", {"order_number": "#1"}))
    assert not Waiting.objects.exists()
    assert do_stitch().hops == 0


def test_queued_again_a_hop_is_stitched_again_and_logged_at_the_new_time(
    ingest_client: Client,
) -> None:
    post_events(ingest_client, event("r1", {"order_number": "#2"}))
    do_stitch(clock=lambda: T1)
    hop = Hop.objects.get()
    queue_for_stitching([hop.id])
    assert list(Waiting.objects.values_list("hop_id", flat=True)) == [hop.id]
    assert not Stitched.objects.exists()
    later = T1 + timedelta(hours=1)
    assert do_stitch(clock=lambda: later).hops == 1
    assert Stitched.objects.get(hop=hop).at == later


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_stitched_at_over_and_back(ingest_client: Client) -> None:
    post_events(ingest_client, event("m1", {"order_number": "#3"}), event("m2", {"sku": "B"}))
    stitched, waiting = sorted(Hop.objects.values_list("id", flat=True))
    do_stitch(clock=lambda: T1)
    queue_for_stitching([waiting])
    before = [
        ("hops", "0004_hopkey_without_fk_constraint"),
        ("kpis", "0004_kpi_reads_from_rollups"),
    ]
    before.append(("triage", "0002_owner_routes_and_failed_hop_index"))
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old_hop = executor.loader.project_state(before).apps.get_model("hops", "Hop")
        assert list(old_hop.objects.order_by("id").values_list("id", "stitched_at")) == [
            (stitched, T1),
            (waiting, None),
        ]
        # a hop waiting before the migration, and one stitched at another time
        old_hop.objects.filter(id=stitched).update(stitched_at=None)
        old_hop.objects.filter(id=waiting).update(stitched_at=T1)
    finally:
        # forward to the latest of every app (later migrations depend on these)
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert list(Waiting.objects.values_list("hop_id", flat=True)) == [stitched]
    assert dict(Stitched.objects.values_list("hop_id", "at")) == {waiting: T1}
