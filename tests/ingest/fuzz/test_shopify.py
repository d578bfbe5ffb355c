"""The corpus through ``POST /webhooks/shopify``: signed deliveries, one a request."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.hops.models import Hop
from tests.ingest.fuzz.expect import (
    Expect,
    Reject,
    Store,
    assert_amount,
    assert_stored_rows_fit,
    check,
    cut,
    no_server_error,
)

SHOPIFY_DATA = Path(__file__).resolve().parents[2] / "data" / "shopify"
SECRET = "shpss_fuzz_secret"
SHOP = "acme-outdoor.myshopify.com"


@dataclass(frozen=True)
class DeliveryCase:
    name: str
    expect: Expect
    headers: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    topic: str = "orders/create"


def _delivery(client: Client, event_id: str, case: DeliveryCase | None) -> tuple[Any, str]:
    payload = orjson.loads((SHOPIFY_DATA / "orders_create.json").read_bytes())
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": "2026-11-20T09:30:00.123456789Z",
        "X-Shopify-API-Version": "2025-01",
    }
    if case is not None:
        payload.update(case.payload)
        headers["X-Shopify-Topic"] = case.topic
        headers.update(case.headers)
    raw = orjson.dumps(payload)
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()
    headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(digest).decode()
    response = client.post(
        "/webhooks/shopify", raw, content_type="application/json", headers=headers
    )
    uid = f"shopify:{headers['X-Shopify-Shop-Domain'].strip().lower()}:{headers['X-Shopify-Event-Id'].strip()}"
    return response, uid


DELIVERY_CASES = [
    DeliveryCase("event-id-5000", Reject("X-Shopify-Event-Id"), {"X-Shopify-Event-Id": "e" * 5000}),
    DeliveryCase("event-id-255", Store(), {"X-Shopify-Event-Id": "e" * 255}),
    DeliveryCase("event-id-nul", Reject("X-Shopify-Event-Id"), {"X-Shopify-Event-Id": "e-\x001"}),
    DeliveryCase(
        "shop-domain-5000", Reject("X-Shopify-Shop-Domain"), {"X-Shopify-Shop-Domain": "s" * 5000}
    ),
    DeliveryCase(
        "shop-domain-255", Store(), {"X-Shopify-Shop-Domain": "s" * 241 + ".myshopify.com"}
    ),
    DeliveryCase(
        "triggered-at-year-1-shifted",
        Reject("X-Shopify-Triggered-At"),
        {"X-Shopify-Triggered-At": "0001-01-01T00:00:00+01:00"},
    ),
    DeliveryCase(
        "triggered-at-2201",
        Reject("X-Shopify-Triggered-At"),
        {"X-Shopify-Triggered-At": "2201-01-01T00:00:00Z"},
    ),
    DeliveryCase("total-price-1e30", Reject("total_price"), payload={"total_price": "1e30"}),
    DeliveryCase(
        "total-price-max",
        Store(lambda hop: assert_amount(hop, "999999999999.99")),
        payload={"total_price": "999999999999.99"},
    ),
    DeliveryCase("currency-7", Reject("currency"), payload={"currency": "EURO123"}),
    DeliveryCase(
        "location-id-70",
        Reject("location_id"),
        payload={"source_name": "pos", "location_id": "1" * 70},
    ),
    DeliveryCase("topic-300", Store(cut("operation")), topic="orders/" + "x" * 293),
]


@pytest.mark.django_db
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in DELIVERY_CASES])
def test_shopify(client: Client, case: DeliveryCase, settings: Any) -> None:
    settings.SHOPIFY_WEBHOOK_SECRET = [SECRET]
    good, good_uid = _delivery(client, "good-1", None)
    assert good.status_code == 200, good.content
    response, bad_uid = _delivery(client, "bad-2", case)
    no_server_error(response)
    if isinstance(case.expect, Reject):
        assert response.status_code == 400, response.content
        assert case.expect.word in response.json()["error"], response.json()
    else:
        assert response.status_code == 200, response.content[:300]
    stored = set(Hop.objects.values_list("uid", flat=True))
    check(case.expect, stored, bad_uid, good_uid)
    assert_stored_rows_fit()
