"""POST /api/v1/events with events made by the `cloudevents` SDK, in every mode."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from django.test import Client

from observatory.hops.models import DuplicateDelivery, Hop

ERP = "https://erp.example.com/netsuite"


def posting(event_id: str, order: str, **data: Any) -> CloudEvent:
    return CloudEvent(
        {
            "id": event_id,
            "source": ERP,
            "type": "com.acme.erp.salesorder.posted",
            "time": "2026-11-20T10:15:00Z",
        },
        {
            "system": "erp",
            "keys": {"order_number": order, "erp_sales_order": f"SO-{event_id}"},
            "platform_status": "Pending Fulfillment",
            "duration_ms": 420,
            **data,
        },
    )


def post_event(client: Client, event: CloudEvent, *, binary: bool = False) -> Any:
    headers, body = (to_binary if binary else to_structured)(event)
    ctype = headers.pop("content-type", headers.pop("Content-Type", "application/json"))
    return client.post("/api/v1/events", body, content_type=ctype, headers=dict(headers))


@pytest.mark.django_db
def test_structured_event_becomes_a_hop(ingest_client: Client) -> None:
    response = post_event(ingest_client, posting("48213", "#1001"))
    assert response.status_code == 200, response.content
    answer = orjson.loads(response.content)
    assert [a["id"] for a in answer["accepted"]] == ["48213"]
    assert answer["duplicates"] == [] and answer["rejected"] == []
    hop = Hop.objects.get()
    assert hop.system == "erp"
    assert hop.via == "event"
    assert hop.source == ERP
    assert hop.platform_status == "Pending Fulfillment"
    assert hop.start_time.isoformat() == "2026-11-20T10:15:00+00:00"
    assert hop.duration_ms == pytest.approx(420)
    assert {(k.kind, k.value) for k in hop.keys.all()} == {
        ("order_number", "#1001"),
        ("erp_sales_order", "SO-48213"),
    }


@pytest.mark.django_db
def test_binary_mode_event(ingest_client: Client) -> None:
    response = post_event(ingest_client, posting("48214", "#1002"), binary=True)
    assert response.status_code == 200, response.content
    assert Hop.objects.get().keys.filter(kind="order_number", value="#1002").exists()


@pytest.mark.django_db
def test_redelivered_event_is_a_duplicate(ingest_client: Client) -> None:
    assert post_event(ingest_client, posting("48213", "#1001")).status_code == 200
    again = post_event(ingest_client, posting("48213", "#1001"), binary=True)
    assert again.status_code == 200
    answer = orjson.loads(again.content)
    assert answer["accepted"] == []
    assert [d["id"] for d in answer["duplicates"]] == ["48213"]
    assert Hop.objects.count() == 1
    assert DuplicateDelivery.objects.count() == 1


@pytest.mark.django_db
def test_batch_mixing_good_duplicate_and_invalid_events(ingest_client: Client) -> None:
    assert post_event(ingest_client, posting("1", "#1001")).status_code == 200

    def as_dict(event: CloudEvent) -> dict[str, Any]:
        return orjson.loads(to_structured(event)[1])

    no_source = as_dict(posting("3", "#1003"))
    del no_source["source"]
    bad_outcome = as_dict(posting("4", "#1004", outcome="exploded"))
    batch = [
        as_dict(posting("1", "#1001")),  # already stored
        as_dict(posting("2", "#1002")),  # new
        no_source,
        bad_outcome,
        as_dict(posting("5", "#1005")),  # new
    ]
    response = ingest_client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert response.status_code == 200
    answer = orjson.loads(response.content)
    assert [a["id"] for a in answer["accepted"]] == ["2", "5"]
    assert [d["id"] for d in answer["duplicates"]] == ["1"]
    rejected = {r["index"]: r["reason"] for r in answer["rejected"]}
    assert set(rejected) == {2, 3}
    assert "source" in rejected[2]
    assert "outcome" in rejected[3]
    assert Hop.objects.count() == 3


@pytest.mark.django_db
def test_batch_of_only_invalid_events_is_400(ingest_client: Client) -> None:
    response = ingest_client.post(
        "/api/v1/events",
        orjson.dumps([{"id": "1", "specversion": "1.0"}]),
        content_type="application/cloudevents-batch+json",
    )
    assert response.status_code == 400
    assert orjson.loads(response.content)["rejected"][0]["index"] == 0
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_missing_required_attribute_in_structured_mode(ingest_client: Client) -> None:
    event = orjson.loads(to_structured(posting("9", "#9"))[1])
    del event["type"]
    response = ingest_client.post(
        "/api/v1/events", orjson.dumps(event), content_type="application/cloudevents+json"
    )
    assert response.status_code == 400
    assert "type" in orjson.loads(response.content)["rejected"][0]["reason"]


@pytest.mark.django_db
def test_fan_out_list_of_orders(ingest_client: Client) -> None:
    event = CloudEvent(
        {"id": "b-1", "source": ERP, "type": "com.acme.erp.batch.posted"},
        {"system": "erp", "keys": {"order_number": ["#1", "#2", "#3"], "batch_id": "B-1"}},
    )
    assert post_event(ingest_client, event).status_code == 200
    hop = Hop.objects.get()
    fanned = sorted(k.value for k in hop.keys.filter(kind="order_number", fanout=True))
    assert fanned == ["#1", "#2", "#3"]


@pytest.mark.django_db
def test_events_bad_inputs(ingest_client: Client, ingest_token: str) -> None:
    garbage = ingest_client.post(
        "/api/v1/events", b"{{{", content_type="application/cloudevents+json"
    )
    assert garbage.status_code == 400
    plain = ingest_client.post("/api/v1/events", b"hello", content_type="text/plain")
    assert plain.status_code == 415
    body, ctype = (
        orjson.dumps(orjson.loads(to_structured(posting("1", "#1"))[1])),
        ("application/cloudevents+json"),
    )
    assert Client().post("/api/v1/events", body, content_type=ctype).status_code == 401
    assert Hop.objects.count() == 0
