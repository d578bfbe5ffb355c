"""Lookup by any key, prefix search and timeline reads; the ingest nudge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.ingest import actions as ingest_actions
from observatory.transactions import queries
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import Transaction

from .stitching import T0, event, post_events, tx_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(ingest_client: Client) -> None:
    post_events(
        ingest_client,
        event("a", {"order_number": "#1001", "shopify_order_id": "450789469"}, system="shopify",
              stage="captured", t=0),
        event("b", {"order_number": "#1001", "erp_sales_order": "SO-48213"},
              platform_status="Pending Fulfillment", t=30),
        event("c", {"erp_sales_order": "SO-48213", "tracking_number": "1Z999AA10123456784"},
              system="wms", stage="shipped", t=600),
        event("d", {"order_number": "#1002", "shopify_order_id": "77"}, system="shopify",
              stage="captured", t=60),
        event("e", {"erp_sales_order": "77"}, platform_status="Pending Approval", t=70),
    )  # fmt: skip
    do_stitch()


@pytest.mark.usefixtures("orders")
@pytest.mark.parametrize(
    "key",
    ["#1001", "1001", "SO-48213", "1Z999AA10123456784", "450789469", "order_number=#1001",
     "erp_sales_order=SO-48213", " #1001 "],
)  # fmt: skip
def test_lookup_by_any_key(key: str) -> None:
    found = queries.lookup(key)
    assert found.transaction is not None
    assert found.transaction.id == tx_of("order_number", "#1001").id


@pytest.mark.usefixtures("orders")
def test_lookup_misses_and_ambiguities() -> None:
    assert not queries.lookup("#404").found
    assert not queries.lookup("order_number=1001").found  # kind=value is exact
    assert not queries.lookup("").found
    both = queries.lookup("77")
    assert both.transaction is None
    assert {t.id for t in both.candidates} == {
        tx_of("shopify_order_id", "77").id,
        tx_of("erp_sales_order", "77").id,
    }
    assert queries.lookup("shopify_order_id=77").found


def test_lookup_follows_merges(ingest_client: Client) -> None:
    post_events(
        ingest_client, event("x", {"order_number": "#9"}), event("y", {"shopify_order_id": "9"})
    )
    do_stitch()
    ids = sorted(Transaction.objects.values_list("id", flat=True))
    post_events(ingest_client, event("z", {"order_number": "#9", "shopify_order_id": "9"}))
    do_stitch()
    winner = queries.get_transaction(ids[1])
    assert winner is not None and winner.id == ids[0]
    found = queries.lookup("9")  # "#9" and "9" are now keys of one transaction
    assert found.transaction is not None and found.transaction.id == ids[0]


@pytest.mark.usefixtures("orders")
def test_search_by_prefix() -> None:
    hits = queries.search("100", clock=lambda: T0)
    assert [h.value for h in hits] == ["#1002", "#1001"]  # newest first
    assert hits[1].stage == "shipped" and hits[1].age is not None
    assert [h.value for h in queries.search("SO-")] == ["SO-48213"]
    assert [h.kind for h in queries.search("erp_sales_order=7")] == ["erp_sales_order"]
    assert queries.search("zzz") == []


@pytest.mark.usefixtures("orders")
def test_search_and_lookup_query_counts() -> None:
    with CaptureQueriesContext(connection) as q:
        queries.search("#", limit=50)
    assert len(q) == 1
    with CaptureQueriesContext(connection) as q:
        queries.lookup("1001")
    assert len(q) == 1


def test_timeline_query_count_does_not_grow(ingest_client: Client) -> None:
    def grow(n: int, prefix: str) -> Transaction:
        post_events(
            ingest_client,
            *[
                event(f"{prefix}{i}", {"order_number": f"#{prefix}", "shipment_id": f"{prefix}-{i}"},
                      system="wms", stage="shipped" if i else "captured", t=i)
                for i in range(n)
            ],
        )  # fmt: skip
        do_stitch()
        return tx_of("order_number", f"#{prefix}")

    counts = []
    for n, prefix in ((2, "small"), (40, "large")):
        tx = grow(n, prefix)
        with CaptureQueriesContext(connection) as q:
            data = queries.timeline(tx)
            for hop in data.hops:
                list(hop.keys.all())
        assert len(data.hops) == n and len(data.keys) == n + 1
        counts.append(len(q))
    assert counts[0] == counts[1] <= 8


# --- the nudge after ingest -----------------------------------------------------------------


def test_ingest_nudges_the_stitcher_at_most_once_a_second(
    ingest_client: Client, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    def post(*events: Any) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            post_events(ingest_client, *events)

    sent: list[Any] = []
    clock = [1000.0]
    monkeypatch.setattr(ingest_actions.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(ingest_actions, "_nudge_at", float("-inf"))
    names: set[str] = set()

    def send_task(name: str, **kw: Any) -> None:
        names.add(name)
        sent.append(kw.get("countdown"))

    # the broker seam: the nudge is a task sent by name
    monkeypatch.setattr(ingest_actions, "current_app", SimpleNamespace(send_task=send_task))
    post(event("n1", {"order_number": "#1"}))
    assert sent == [None]  # at once
    clock[0] += 0.25
    post(event("n2", {"order_number": "#2"}))
    assert sent == [None, pytest.approx(0.75)]  # deferred to the end of the second
    clock[0] += 0.25
    post(event("n3", {"order_number": "#3"}))
    assert len(sent) == 2  # the deferred one covers it
    post(event("n1", {"order_number": "#1"}))  # a duplicate: no nudge
    clock[0] += 5
    post(event("n4", {"order_number": "#4"}))
    assert sent[-1] is None and len(sent) == 3
    assert names == {"observatory.pipeline.tasks.tick"}


def test_a_broken_broker_never_fails_ingest(
    ingest_client: Client, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    def boom(name: str, **kw: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(ingest_actions, "_nudge_at", float("-inf"))
    monkeypatch.setattr(ingest_actions, "current_app", SimpleNamespace(send_task=boom))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        post_events(ingest_client, event("b1", {"order_number": "#1"}))
    assert callbacks
