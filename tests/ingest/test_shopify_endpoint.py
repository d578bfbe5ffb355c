"""POST /webhooks/shopify with captured Shopify payloads, signed over the raw bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from observatory.hops.models import DuplicateDelivery, Hop, HopKey

DATA = Path(__file__).resolve().parent.parent / "data" / "shopify"
SECRET = "shpss_test_secret"


def sign(raw: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def deliver(
    client: Client,
    topic: str,
    raw: bytes,
    *,
    event_id: str = "e-1",
    signature: str | None = None,
    query: str = "",
) -> Any:
    return client.post(
        f"/webhooks/shopify{query}",
        raw,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature if signature is not None else sign(raw),
            "X-Shopify-Shop-Domain": "acme-outdoor.myshopify.com",
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Webhook-Id": f"w-{event_id}",
            "X-Shopify-Triggered-At": "2026-11-20T09:30:00.123456789Z",
            "X-Shopify-API-Version": "2025-01",
        },
    )


@pytest.fixture(autouse=True)
def shopify_secret(settings: Any) -> None:
    settings.SHOPIFY_WEBHOOK_SECRET = ["old-secret-being-rotated-out", SECRET]


@pytest.mark.django_db
def test_orders_create_becomes_a_shopify_hop_without_pii(ingest_client: Client) -> None:
    raw = (DATA / "orders_create.json").read_bytes()
    response = deliver(ingest_client, "orders/create", raw)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "accepted"}
    hop = Hop.objects.get()
    assert (hop.system, hop.operation, hop.via) == ("shopify", "orders/create", "shopify")
    assert hop.uid == "shopify:acme-outdoor.myshopify.com:e-1"
    assert hop.start_time.isoformat() == "2026-11-20T09:30:00.123456+00:00"
    keys = {(k.kind, k.value) for k in hop.keys.all()}
    assert ("shopify_order_id", "820982911946154508") in keys
    assert any(kind == "order_number" and value.startswith("#") for kind, value in keys)
    # the payload carries customer e-mails, names and addresses: none is stored
    stored = str(hop.attributes) + str(hop.extra) + hop.status_message
    for secret_word in ("jon@example.com", "john@example.com", "Steve Shipper", "Shipping Street"):
        assert secret_word.encode() in raw
        assert secret_word not in stored
    assert not HopKey.objects.filter(value__contains="@").exists()


@pytest.mark.django_db
def test_fulfillment_carries_tracking_numbers(ingest_client: Client) -> None:
    raw = (DATA / "fulfillments_create.json").read_bytes()
    assert deliver(ingest_client, "fulfillments/create", raw).status_code == 200
    kinds = set(Hop.objects.get().keys.values_list("kind", flat=True))
    assert {"shopify_order_id", "fulfillment_id", "tracking_number"} <= kinds


@pytest.mark.django_db
def test_redelivery_is_a_duplicate(ingest_client: Client) -> None:
    raw = (DATA / "orders_paid.json").read_bytes()
    assert deliver(ingest_client, "orders/paid", raw, event_id="e-9").status_code == 200
    again = deliver(ingest_client, "orders/paid", raw, event_id="e-9")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert Hop.objects.count() == 1
    assert DuplicateDelivery.objects.count() == 1


@pytest.mark.django_db
def test_bad_or_missing_signature_is_401_and_stores_nothing(ingest_client: Client) -> None:
    raw = (DATA / "orders_create.json").read_bytes()
    forged = deliver(ingest_client, "orders/create", raw, signature=sign(raw, "wrong"))
    assert forged.status_code == 401
    assert "X-Shopify-Hmac-Sha256" in forged.json()["error"]
    # a signature over re-serialised JSON does not match the raw bytes
    tampered = raw.replace(b'"currency":"USD"', b'"currency":"EUR"')
    assert deliver(ingest_client, "orders/create", tampered, signature=sign(raw)).status_code == 401
    assert deliver(ingest_client, "orders/create", raw, signature="").status_code == 401
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_token_in_the_subscription_url(ingest_token: str) -> None:
    raw = (DATA / "orders_create.json").read_bytes()
    anonymous = deliver(Client(), "orders/create", raw)
    assert anonymous.status_code == 401
    via_query = deliver(Client(), "orders/create", raw, query=f"?token={ingest_token}")
    assert via_query.status_code == 200
    assert Hop.objects.count() == 1


@pytest.mark.django_db
def test_missing_topic_is_400(ingest_client: Client) -> None:
    raw = b'{"id": 1}'
    response = ingest_client.post(
        "/webhooks/shopify",
        raw,
        content_type="application/json",
        headers={"X-Shopify-Hmac-Sha256": sign(raw), "X-Shopify-Event-Id": "e-2"},
    )
    assert response.status_code == 400
    assert "topic" in response.json()["error"].lower()
    assert Hop.objects.count() == 0
