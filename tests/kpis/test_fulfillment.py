"""``fulfillment_propagation`` runs from the first WMS or carrier shipment to Shopify seeing
it: a fulfillment made in Shopify alone is not a 0 s propagation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.kpis import actions, bruteforce, queries
from observatory.lib.clock import now
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db


def send(client: Client, *events: dict[str, Any]) -> None:
    answer = client.post(
        "/api/v1/events",
        orjson.dumps(list(events)),
        content_type="application/cloudevents-batch+json",
    )
    assert answer.status_code == 200 and not answer.json()["rejected"], answer.content


def test_only_warehouse_or_carrier_shipments_start_it(ingest_client: Client) -> None:
    t = now() - timedelta(hours=2)
    shopify = {"stage": "shipped", "operation": "fulfillments/create"}
    send(
        ingest_client,
        # #P1: the warehouse ships, Shopify shows it 90 s later
        event("p1-c", t, "shopify", {"order_number": "#P1", "shopify_order_id": "1"},
              stage="captured", channel="web"),
        event("p1-s", t + timedelta(minutes=30), "wms",
              {"order_number": "#P1", "shipment_id": "SH-P1"}, stage="shipped"),
        event("p1-f", t + timedelta(minutes=31, seconds=30), "shopify",
              {"shopify_order_id": "1", "shipment_id": "SH-P1"}, **shopify),
        # #P2: fulfilled in Shopify alone (no warehouse or carrier said it shipped)
        event("p2-c", t, "shopify", {"order_number": "#P2", "shopify_order_id": "2"},
              stage="captured", channel="web"),
        event("p2-f", t + timedelta(minutes=40), "shopify", {"shopify_order_id": "2"}, **shopify),
    )  # fmt: skip
    tick()
    actions.do_fill_rollups()
    at = now()
    window = (t - timedelta(hours=1), at)
    values = queries.kpi_values(*window, at=at)
    ful = values["fulfillment_propagation"]
    assert ful["count"] == 1
    assert ful["p50_s"] == pytest.approx(90, rel=0.01)
    assert bruteforce.compare(values, bruteforce.kpi_values(*window, at=at)) == []
