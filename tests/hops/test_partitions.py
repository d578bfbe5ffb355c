"""The hop tables partitioned by day on PostgreSQL (``lib.partitions``): the migration keeps
every row and index both ways, new ids carry their day and land in that day's partition,
and the store makes a missing day's partition itself. On SQLite the tables stay plain."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from observatory.hops.models import Hop, HopKey, Receipt
from observatory.hops.store import DAY_PARTITIONED
from observatory.lib import partitions
from observatory.lib.clock import now
from tests.transactions.stitching import event, post_events

BEFORE = [("hops", "0010_receipts_and_declared_indexes")]


def indexes(table: str) -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname, regexp_replace(indexdef, ' ON [^ ]+ ', ' ON t ') FROM pg_indexes "
            "WHERE tablename = %s ORDER BY 1",
            [table],
        )
        return [f"{name}: {definition}" for name, definition in cur.fetchall()]


def partition_of(hop_id: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM hops_hop WHERE id = %s", [hop_id])
        return str(cur.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_row_and_index_both_ways(ingest_client: Client) -> None:
    post_events(ingest_client, event("p1", {"order_number": "#P1"}), event("p2", {"sku": "P"}))
    rows = sorted(Hop.objects.values_list("id", "uid"))
    keys = sorted(HopKey.objects.values_list("hop_id", "kind", "value"))
    made = {t: indexes(t) for t in DAY_PARTITIONED} if partitions.supported() else {}
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(BEFORE)
        old_hop = executor.loader.project_state(BEFORE).apps.get_model("hops", "Hop")
        # (the uids are in their older form there: a later migration rewrote events')
        assert sorted(old_hop.objects.values_list("id", flat=True)) == [i for i, _ in rows]
        assert partitions.partitions("hops_hop") == []  # a plain table again
        # a hop stored before there were partitions, with an id of the old kind
        at = now()
        old_hop.objects.create(
            id=5, uid="event:erp:old", via="event", system="erp", operation="post",
            start_time=at, end_time=at, received_at=at,
        )  # fmt: skip
        rows.append((5, "event:erp:erp:old"))  # rewritten on the way forward
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert sorted(Hop.objects.values_list("id", "uid")) == sorted(rows)
    assert sorted(HopKey.objects.values_list("hop_id", "kind", "value")) == keys
    post_events(ingest_client, event("p3", {"order_number": "#P3"}))
    new = Hop.objects.get(uid__endswith="p3")
    assert Receipt.objects.get(hop=new).uid == new.uid
    if not partitions.supported():
        return
    assert {t: indexes(t) for t in DAY_PARTITIONED} == made
    # the rows keep the partition of their id's day; an old id goes to the legacy one
    assert partition_of(5) == "hops_hop_legacy"
    assert {partition_of(i) for i, _ in rows if i != 5} == {
        partitions.name("hops_hop", now().date())
    }
    assert partitions.day_of(new.id) == now().date()
    assert partition_of(new.id) == partitions.name("hops_hop", now().date())


@pytest.mark.django_db
def test_the_store_makes_a_missing_day_itself(ingest_client: Client) -> None:
    """Should the worker not have made today's partition, the first batch of the day
    makes it rather than failing."""
    if not partitions.supported():
        assert partitions.ensure("hops_hop", now().date(), 1) == []
        return
    today = now().date()
    with connection.cursor() as cur:
        for table in DAY_PARTITIONED:
            cur.execute(f"DROP TABLE {partitions.name(table, today)}")
    partitions._made.clear()
    post_events(ingest_client, event("m1", {"order_number": "#M1"}))
    hop = Hop.objects.get()
    assert partition_of(hop.id) == partitions.name("hops_hop", today)
    assert HopKey.objects.filter(hop=hop).exists()
