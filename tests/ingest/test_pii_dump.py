"""PII through the real endpoints, then a dump of every text column of the hop tables.

Each input puts one person's details into every field a sender controls (span name, status
and exception messages, store id, platform status, attributes under PII names, nested maps,
a JSON string, a key kind naming PII; a CloudEvent's source, subject, error and
extensions). Whatever the field, none of it may be in the database afterwards; the host
names of semantic-convention attributes must be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from django.db import connection, models
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from observatory.hops.models import DuplicateDelivery, Hop, HopKey

EMAIL = "jane.doe@example.com"
PHONES = ("(555) 867-5309", "555-867-5309", "5558675309", "+44 20 7946 0958")
CARD = "4111 1111 1111 1111"
STREET = "221B Baker Street"
POSTCODE = "NW1 6XE"
NAME = "Jane Doe"
#: What must not be found anywhere, and the part of it to look for.
NEEDLES = ("jane.doe", "867-5309", "5558675309", "7946 0958", "4111", "Baker", "NW1 6XE", NAME)
PERSON = f"customer {NAME}, {STREET}, London {POSTCODE}, {EMAIL}, " + ", ".join(PHONES)
HOST = "erp-1.internal.example.com"


def dump() -> str:
    """Every text column of every row of the hop tables, as one string."""
    parts: list[str] = []
    for model in (Hop, HopKey, DuplicateDelivery):
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        for row in model.objects.values_list(*fields):
            parts.extend(v if isinstance(v, str) else orjson.dumps(v).decode() for v in row)
    return "\n".join(parts)


def assert_no_pii() -> None:
    text = dump()
    assert Hop.objects.exists()
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} is stored: ...{_around(text, needle)}..."


def _around(text: str, needle: str) -> str:
    at = text.index(needle)
    return text[max(0, at - 80) : at + 80]


# --- OTLP ---------------------------------------------------------------------------------


def value(v: Any) -> AnyValue:
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, x) for k, x in v.items()]))
    return AnyValue(string_value=v)


def kv(key: str, v: Any) -> KeyValue:
    return KeyValue(key=key, value=value(v))


def otlp_body() -> bytes:
    span = Span(
        trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        name=f"send receipt to {EMAIL}",
        start_time_unix_nano=1_718_000_000_000_000_000,
        end_time_unix_nano=1_718_000_000_100_000_000,
        status=Status(code=Status.STATUS_CODE_ERROR, message=f"card {CARD} declined: {PERSON}"),
        attributes=[
            kv("retail.system", "payment"),
            kv("retail.key.order_number", "#1001"),
            kv("retail.key.customer_email", EMAIL),
            kv("retail.store_id", POSTCODE),
            kv("retail.platform_status", f"held: call {PHONES[0]}"),
            kv("buyer", NAME),
            kv("recipient", NAME),
            kv("contact", PHONES[1]),
            kv("destination", STREET),
            kv("payment.card", CARD),
            kv("customer", orjson.dumps({"name": NAME, "email": EMAIL}).decode()),
            kv("order", {"customer": {"name": NAME}, "lines": "2"}),
            kv("note", PERSON),
            kv("server.address", HOST),
            kv("url.full", f"https://{HOST}/orders?email={EMAIL}"),
        ],
    )
    event = span.events.add(name="exception", time_unix_nano=1_718_000_000_050_000_000)
    event.attributes.append(kv("exception.message", f"refund for {PERSON}"))
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[kv("service.name", "payments"), kv("host.owner", EMAIL)]
                ),
                scope_spans=[ScopeSpans(spans=[span])],
            )
        ]
    )
    return request.SerializeToString()


@pytest.mark.django_db
def test_otlp_stores_no_pii(ingest_client: Client) -> None:
    response = ingest_client.post("/v1/traces", otlp_body(), content_type="application/x-protobuf")
    assert response.status_code == 200
    assert_no_pii()
    hop = Hop.objects.get()
    assert hop.attributes["server.address"] == HOST  # a machine's address, spared
    assert hop.attributes["url.full"] == f"https://{HOST}/orders?email=[masked]"
    assert set(hop.keys.values_list("kind", flat=True)) == {"order_number"}


# --- CloudEvents --------------------------------------------------------------------------


def person_event(event_id: str) -> CloudEvent:
    return CloudEvent(
        {
            "id": event_id,
            "source": f"mailto:{EMAIL}",
            "type": "com.acme.carrier.delivered",
            "subject": f"parcel for customer {NAME} at {STREET}",
            "acmecontact": PHONES[2],
        },
        {
            "system": "carrier",
            "keys": {"tracking_number": f"1Z{event_id}"},
            "error": f"could not deliver to {PERSON}",
            "platform_status": f"Held at {POSTCODE}",
            "store_id": PHONES[3],
            "attributes": {"consignee": NAME, "detail": {"customer": {"email": EMAIL}}},
        },
    )


@pytest.mark.django_db
def test_cloudevents_store_no_pii_in_any_mode(ingest_client: Client) -> None:
    for i, convert in enumerate((to_structured, to_binary)):
        headers, body = convert(person_event(f"e-{i}"))
        headers = dict(headers)
        ctype = headers.pop("content-type", "application/json")
        response = ingest_client.post("/api/v1/events", body, content_type=ctype, headers=headers)
        assert response.status_code == 200, response.content
    batch = [orjson.loads(to_structured(person_event(f"b-{i}"))[1]) for i in range(2)]
    response = ingest_client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert response.status_code == 200, response.content
    assert Hop.objects.count() == 4
    assert_no_pii()
    # the source is a keyed digest in the delivery identity: a re-delivery still matches
    headers, body = to_structured(person_event("e-0"))
    again = ingest_client.post("/api/v1/events", body, content_type=headers["content-type"])
    assert orjson.loads(again.content)["duplicates"][0]["id"] == "e-0"


# --- Shopify ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_shopify_stores_no_pii(ingest_client: Client, settings: Any) -> None:
    settings.SHOPIFY_WEBHOOK_SECRET = ["pii-secret"]
    data = Path(__file__).resolve().parent.parent / "data" / "shopify" / "orders_create.json"
    payload = orjson.loads(data.read_bytes())
    payload["note"] = PERSON
    payload["customer"] = {"first_name": "Jane", "last_name": "Doe", "email": EMAIL}
    raw = orjson.dumps(payload)
    signature = base64.b64encode(hmac.new(b"pii-secret", raw, hashlib.sha256).digest()).decode()
    response = ingest_client.post(
        "/webhooks/shopify",
        raw,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": "acme.myshopify.com",
            "X-Shopify-Event-Id": "e-1",
        },
    )
    assert response.status_code == 200
    assert_no_pii()


# --- masking runs outside the write transaction -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_masking_happens_before_the_write_transaction(
    ingest_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracing.privacy import MaskPolicy

    seen: list[bool] = []
    mask_record = MaskPolicy.mask_record

    def watched(self: MaskPolicy, record: Any) -> None:
        seen.append(connection.in_atomic_block)
        mask_record(self, record)

    monkeypatch.setattr(MaskPolicy, "mask_record", watched)
    response = ingest_client.post("/v1/traces", otlp_body(), content_type="application/x-protobuf")
    assert response.status_code == 200
    assert seen == [False]  # masked once, with no transaction (nor SQLite's lock) open
