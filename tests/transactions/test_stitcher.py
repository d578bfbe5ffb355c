"""The stitcher through the real ingest endpoints: post hops, run do_stitch, read back."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from observatory.hops.models import Hop, Waiting
from observatory.hops.store import queue_for_stitching
from observatory.lib import shutdown
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import (
    Conflict,
    Merge,
    StageReached,
    Transaction,
    TransactionHop,
    TransactionKey,
    UnknownStatus,
)
from observatory.transactions.stitch import resolve

from .stitching import (
    T0,
    assert_consistent,
    event,
    hop_inputs,
    live,
    partition,
    post_events,
    tx_of,
)

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parent.parent / "data"


def stages_of(tx: Transaction) -> dict[str, str]:
    return {s.stage: s.system for s in StageReached.objects.filter(transaction=tx)}


# --- late merges ----------------------------------------------------------------------------

SHOPIFY_ONLY = event(
    "a", {"shopify_order_id": "820982911946154508"}, system="shopify", t=0, stage="captured",
    channel="web", amount="49.00", currency="USD",
)  # fmt: skip
ORDER_ONLY = event("b", {"order_number": "#1001"}, system="middleware", t=5, stage="validated")
BOTH = event(
    "c",
    {"order_number": "#1001", "shopify_order_id": "820982911946154508", "erp_sales_order": "SO-1"},
    t=30,
    platform_status="Pending Fulfillment",
)


def assert_merged_order() -> Transaction:
    [tx] = live()
    assert {(k.kind, k.value) for k in tx.keys.all()} == {
        ("order_number", "#1001"),
        ("shopify_order_id", "820982911946154508"),
        ("erp_sales_order", "SO-1"),
    }
    assert tx.hop_count == 3
    assert tx.captured_at == T0
    assert tx.posted_at is not None and (tx.posted_at - T0).total_seconds() == 30
    assert tx.validated_at is not None
    assert tx.current_stage == "posted"
    assert tx.channel == "web" and str(tx.amount) == "49.00" and tx.currency == "USD"
    assert tx.kind == "order"
    assert stages_of(tx) == {"captured": "shopify", "validated": "middleware", "posted": "erp"}
    return tx


def test_late_link_merges_two_transactions(ingest_client: Client) -> None:
    post_events(ingest_client, SHOPIFY_ONLY, ORDER_ONLY)
    first = do_stitch()
    assert first.transactions_created == 2
    ids = sorted(t.id for t in live())
    loser_keys = [[k.kind, k.value] for k in TransactionKey.objects.filter(transaction_id=ids[1])]
    post_events(ingest_client, BOTH)
    second = do_stitch()
    assert second.merged == 1 and second.transactions_created == 0
    tx = assert_merged_order()
    assert tx.id == ids[0], "the lowest old id survives"
    loser = Transaction.objects.get(id=ids[1])
    assert loser.merged_into_id == tx.id and loser.hop_count == 0 and loser.captured_at is None
    merge = Merge.objects.get()
    assert (merge.winner_id, merge.loser_id) == (tx.id, ids[1])
    assert merge.hop_id == Hop.objects.get(uid__endswith=":c").id
    assert merge.keys == loser_keys
    assert_consistent()


def test_late_link_arriving_first(ingest_client: Client) -> None:
    post_events(ingest_client, BOTH)
    do_stitch()
    post_events(ingest_client, ORDER_ONLY, SHOPIFY_ONLY)
    result = do_stitch()
    assert result.merged == 0 and result.transactions_created == 0
    assert_merged_order()
    assert not Merge.objects.exists()
    assert_consistent()


def test_each_hop_stitched_alone_in_any_order(ingest_client: Client) -> None:
    for e in (ORDER_ONLY, BOTH, SHOPIFY_ONLY):
        post_events(ingest_client, e)
        do_stitch()
    assert_merged_order()


# --- 1:N, N:1, shared kinds -----------------------------------------------------------------


def test_split_shipments_all_join_the_order(ingest_client: Client) -> None:
    post_events(
        ingest_client,
        event("o", {"order_number": "#7", "erp_sales_order": "SO-7"}, stage="posted", t=0),
        event("s1", {"erp_sales_order": "SO-7", "shipment_id": "SH-1", "tracking_number": "1Z1"},
              system="wms", stage="shipped", t=100),
        event("s2", {"erp_sales_order": "SO-7", "shipment_id": "SH-2", "tracking_number": "1Z2"},
              system="wms", stage="shipped", t=200),
        event("c1", {"tracking_number": "1Z1"}, system="carrier", platform_status="delivered", t=900),
        event("c2", {"tracking_number": "1Z2"}, system="carrier", platform_status="InTransit", t=950),
    )  # fmt: skip
    do_stitch()
    [tx] = live()
    assert {k.value for k in tx.keys.all()} == {"#7", "SO-7", "SH-1", "SH-2", "1Z1", "1Z2"}
    assert tx.hop_count == 5
    assert tx.current_stage == "delivered"
    assert (tx.shipped_at - T0).total_seconds() == 100  # type: ignore[operator]


def test_values_with_quotes_commas_and_braces_link(ingest_client: Client) -> None:
    """Key values travel to PostgreSQL as array literals: quoting must hold for any text."""
    odd = 'SO "7", {x}\\y NULL'
    post_events(
        ingest_client,
        event("o", {"order_number": "#8", "erp_sales_order": odd}, stage="posted", t=0),
        event("s", {"erp_sales_order": odd, "shipment_id": "NULL"}, system="wms", t=100),
        event("t", {"shipment_id": "NULL", "tracking_number": "{1Z9}"}, system="wms", t=200),
    )
    do_stitch()
    [tx] = live()
    assert {k.value for k in tx.keys.all()} == {"#8", odd, "NULL", "{1Z9}"}
    assert tx.hop_count == 3


def test_batch_posting_fans_out_without_linking(ingest_client: Client) -> None:
    orders = [f"#{2000 + n}" for n in range(50)]
    post_events(
        ingest_client,
        *[
            event(f"cap{n}", {"order_number": o, "shopify_order_id": str(9000 + n)},
                  system="shopify", stage="captured", t=n)
            for n, o in enumerate(orders[:40])
        ],
        event("batch", {"order_number": orders, "batch_id": "NS-0400", "file": "x.csv"},
              platform_status="Pending Fulfillment", t=600),
    )  # fmt: skip
    result = do_stitch()
    assert result.transactions_created == 50 and result.merged == 0 and result.conflicts == 0
    batch = Hop.objects.get(uid__endswith=":batch")
    assert TransactionHop.objects.filter(hop=batch).count() == 50
    assert len(live()) == 50
    for tx in live():
        assert tx.posted_at is not None
        assert tx.keys.filter(kind="order_number").count() == 1
    # the 10 orders the batch names alone are transactions of a single key
    alone = tx_of("order_number", orders[45])
    assert alone.keys.count() == 1 and alone.hop_count == 1 and alone.current_stage == "posted"
    assert not TransactionKey.objects.filter(kind__in=["batch_id", "file"]).exists()


def test_shared_kinds_never_link(ingest_client: Client) -> None:
    shared = {"batch_id": "B", "file": "f.csv", "sku": "SKU1", "location": "WH1", "store_id": "S1"}
    post_events(
        ingest_client,
        event("x", {"order_number": "#1", **shared}),
        event("y", {"order_number": "#2", **shared}),
        event("z", shared),
    )
    do_stitch()
    assert {frozenset(t.keys.values_list("value", flat=True)) for t in live()} == {
        frozenset({"#1"}),
        frozenset({"#2"}),
    }
    assert not Waiting.objects.exists()


# --- conflicts ------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_two_order_numbers_through_one_erp_id_is_a_conflict(
    ingest_client: Client, reverse: bool
) -> None:
    one = event("p1", {"order_number": "#1", "erp_sales_order": "SO-9"}, stage="posted", t=0)
    two = event("p2", {"order_number": "#2", "erp_sales_order": "SO-9"}, stage="posted", t=60)
    for e in (two, one) if reverse else (one, two):
        post_events(ingest_client, e)
        do_stitch()
    first, second = tx_of("order_number", "#1"), tx_of("order_number", "#2")
    assert first.id != second.id
    assert tx_of("erp_sales_order", "SO-9").id == first.id  # the earlier hop holds it
    c = Conflict.objects.get()
    assert c.hop_id == Hop.objects.get(uid__endswith=":p2").id
    assert (c.kind, c.value, c.existing_value) == ("order_number", "#2", "#1")
    assert (c.transaction_id, c.other_transaction_id) == (first.id, second.id)
    do_stitch()
    queue_for_stitching(list(Hop.objects.values_list("id", flat=True)))
    do_stitch()
    assert Conflict.objects.count() == 1


# --- statuses -------------------------------------------------------------------------------


def shopify_post(client: Client, name: str, topic: str, event_id: str, secret: str) -> None:
    body = (DATA / "shopify" / name).read_bytes()
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    response = client.post(
        "/webhooks/shopify",
        body,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": digest,
            "X-Shopify-Shop-Domain": "acme.myshopify.com",
            "X-Shopify-Event-Id": event_id,
        },
    )
    assert response.status_code == 200, response.content


def test_shopify_webhooks_reach_stages(ingest_client: Client, settings: Any) -> None:
    settings.SHOPIFY_WEBHOOK_SECRET = ["s3cret"]
    shopify_post(ingest_client, "orders_create.json", "orders/create", "e1", "s3cret")
    shopify_post(ingest_client, "orders_paid.json", "orders/paid", "e2", "s3cret")
    shopify_post(ingest_client, "fulfillments_create.json", "fulfillments/create", "e3", "s3cret")
    do_stitch()
    tx = tx_of("shopify_order_id", "820982911946154508")
    assert set(stages_of(tx)) == {"captured", "payment_authorized", "shipped", "fulfillment_synced"}
    assert tx.fulfillment_synced_at is not None and tx.channel == "web"
    assert not UnknownStatus.objects.exists()  # fulfillment status "pending" is known


def test_unknown_statuses_are_counted_once_per_hop(ingest_client: Client) -> None:
    post_events(
        ingest_client,
        event("u1", {"order_number": "#5"}, platform_status="Awaiting Whimsy", t=0),
        event("u2", {"order_number": "#6"}, platform_status="awaiting whimsy", t=1),
        event("u3", {"order_number": "#6"}, platform_status="Pending Fulfillment", t=2),
    )
    result = do_stitch()
    assert result.unknown_statuses == 2
    assert sorted(UnknownStatus.objects.values_list("status", "count")) == [
        ("Awaiting Whimsy", 1),
        ("awaiting whimsy", 1),
    ]
    post_events(
        ingest_client, event("u4", {"order_number": "#7"}, platform_status="Awaiting Whimsy")
    )
    queue_for_stitching([Hop.objects.get(uid__endswith=":u1").id])
    do_stitch()
    counts = dict(UnknownStatus.objects.values_list("status", "count"))
    assert counts["Awaiting Whimsy"] == 3  # u4, and u1 claimed again (re-sent work counts)
    hop = Hop.objects.get(uid__endswith=":u2")
    assert hop.platform_status == "awaiting whimsy"  # kept beside its (blank) stage


# --- idempotence and cost -------------------------------------------------------------------


def snapshot() -> dict[str, Any]:
    return {
        "tx": list(Transaction.objects.order_by("id").values()),
        "keys": list(TransactionKey.objects.order_by("id").values()),
        "links": list(TransactionHop.objects.order_by("id").values()),
        "stages": list(StageReached.objects.order_by("id").values()),
        "merges": list(Merge.objects.order_by("id").values()),
        "conflicts": list(Conflict.objects.order_by("id").values()),
    }


def mixed_traffic(n: int) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        o, so, sh = f"#{i}", f"SO-{i}", f"SH-{i}"
        events += [
            event(f"m{i}a", {"order_number": o, "shopify_order_id": f"S{i}"}, system="shopify",
                  stage="captured", t=i),
            event(f"m{i}b", {"order_number": o, "erp_sales_order": so},
                  platform_status="Pending Fulfillment", t=i + 40),
            event(f"m{i}c", {"erp_sales_order": so, "shipment_id": sh, "tracking_number": f"1Z{i}"},
                  system="wms", stage="shipped", t=i + 400),
            event(f"m{i}d", {"tracking_number": f"1Z{i}"}, system="carrier",
                  platform_status="delivered", t=i + 9000),
        ]  # fmt: skip
    events.append(
        event("mbatch", {"order_number": [f"#{i}" for i in range(n)]}, stage="invoiced", t=99999)
    )
    return events


def test_rerun_changes_nothing(ingest_client: Client) -> None:
    post_events(ingest_client, *mixed_traffic(12), SHOPIFY_ONLY, ORDER_ONLY, BOTH)
    do_stitch(limit_chunk=7)
    before = snapshot()
    assert do_stitch().hops == 0
    queue_for_stitching(list(Hop.objects.values_list("id", flat=True)))
    again = do_stitch(limit_chunk=5)
    assert again.hops == Hop.objects.count()
    assert (again.transactions_created, again.merged, again.touched) == (0, 0, 0)
    assert snapshot() == before


def test_a_stop_request_ends_the_pass_after_its_chunk(ingest_client: Client) -> None:
    """The worker's warm shutdown (docs/scaling.md, "Stopping"): the chunk in progress
    commits (on PostgreSQL, one that comes to the write lock after the request rolls
    back), no other starts, and the next pass stitches the rest as if never stopped."""
    post_events(ingest_client, *mixed_traffic(12))
    hops = Hop.objects.count()

    def clock() -> datetime:
        shutdown.request()  # asked while the first chunk is at work
        return timezone.now()

    try:
        stopped = do_stitch(limit_chunk=7, clock=clock)
    finally:
        shutdown.clear()
    if connection.vendor == "postgresql":
        # it came to the stitcher's lock after the request: rolled back, nothing written
        assert stopped.chunks == 0 and Waiting.objects.count() == hops
    else:
        assert stopped.chunks == 1 and 7 <= stopped.hops < hops
        assert Waiting.objects.count() == hops - stopped.hops
    assert do_stitch(limit_chunk=7).hops == hops - stopped.hops
    assert not Waiting.objects.exists()
    assert partition() == resolve(hop_inputs()).partition()
    assert_consistent()


def test_chunk_cost_does_not_grow_with_hops(ingest_client: Client) -> None:
    post_events(ingest_client, *mixed_traffic(3))
    with CaptureQueriesContext(connection) as small:
        do_stitch()
    Hop.objects.all().delete()
    Transaction.objects.all().delete()
    post_events(ingest_client, *mixed_traffic(60))
    with CaptureQueriesContext(connection) as large:
        do_stitch()
    assert not Waiting.objects.exists()
    assert len(large) <= len(small) + 2, (
        [q["sql"][:60] for q in small.captured_queries],
        [q["sql"][:60] for q in large.captured_queries],
    )
    assert len(large) < 40


def test_db_result_equals_resolve_of_all_hops(ingest_client: Client) -> None:
    events = [
        *mixed_traffic(6),
        event("k1", {"order_number": "#1", "erp_sales_order": "SO-2"}, t=5),  # a conflict
        event("k2", {"shopify_order_id": "S3", "erp_sales_order": "SO-4"}, t=6),  # another
    ]
    for start in range(0, len(events), 4):
        post_events(ingest_client, *events[start : start + 4])
        do_stitch(limit_chunk=3)
    assert partition() == resolve(hop_inputs()).partition()
    assert Conflict.objects.count() >= 2
    assert_consistent()


def test_an_earlier_hop_arriving_late_moves_a_key_between_transactions(
    ingest_client: Client,
) -> None:
    post_events(
        ingest_client,
        event("h2", {"order_number": "#2", "erp_sales_order": "SO-1"}, stage="posted", t=20),
        event("h3", {"order_number": "#1", "erp_sales_order": "SO-1"}, stage="shipped", t=30),
    )
    do_stitch()
    assert tx_of("erp_sales_order", "SO-1").id == tx_of("order_number", "#2").id
    # a hop from before both says SO-1 is #1's: in business-time order #1 had it first
    post_events(
        ingest_client,
        event("h1", {"order_number": "#1", "erp_sales_order": "SO-1"}, stage="captured", t=10),
    )
    do_stitch()
    assert tx_of("erp_sales_order", "SO-1").id == tx_of("order_number", "#1").id
    assert partition() == resolve(hop_inputs()).partition()
    assert_consistent()
    assert len(live()) == 2
