"""Shopify webhooks: signatures over raw bytes, keys per topic, and no customer data kept."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracing import conventions
from tracing.records import DecodeError, HopRecord, Key
from tracing.shopify import decode, verify_hmac

DATA = Path(__file__).resolve().parent.parent / "data" / "shopify"
SECRET = "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"
OLD_SECRET = "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"
SHOP = "jsmith.myshopify.com"
RECEIVED = datetime(2024, 6, 26, 16, 33, 30, tzinfo=UTC)

FIXTURES = {
    "orders/create": "orders_create.json",
    "orders/paid": "orders_paid.json",
    "orders/fulfilled": "orders_fulfilled.json",
    "orders/cancelled": "orders_cancelled.json",
    "fulfillments/create": "fulfillments_create.json",
    "fulfillments/update": "fulfillments_update.json",
    "refunds/create": "refunds_create.json",
}


def raw(topic: str) -> bytes:
    return (DATA / FIXTURES[topic]).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def delivery_headers(topic: str, body: bytes, **overrides: str | None) -> dict[str, str]:
    """Headers as Shopify sends them, lower-cased as the ingest view passes them on."""
    headers: dict[str, str | None] = {
        "content-type": "application/json",
        "x-shopify-topic": topic,
        "x-shopify-hmac-sha256": sign(body),
        "x-shopify-shop-domain": SHOP,
        "x-shopify-api-version": "2024-04",
        "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "x-shopify-triggered-at": "2024-06-26T16:33:21.803357186Z",
    }
    headers.update(overrides)
    return {name: value for name, value in headers.items() if value is not None}


def decode_one(topic: str, body: bytes | None = None, **overrides: str | None) -> HopRecord:
    body = raw(topic) if body is None else body
    result = decode(body, delivery_headers(topic, body, **overrides), RECEIVED)
    assert result.rejected == []
    [record] = result.records
    return record


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("topic", sorted(FIXTURES))
def test_signature_over_the_raw_bytes_verifies(topic: str) -> None:
    body = raw(topic)
    assert verify_hmac(body, sign(body), [SECRET])


def test_wrong_secret_is_refused() -> None:
    body = raw("orders/create")
    assert not verify_hmac(body, sign(body, "shpss_someone_else"), [SECRET])


def test_tampered_body_is_refused() -> None:
    body = raw("orders/create")
    header = sign(body)
    tampered = body.replace(b'"total_price":"1575.90"', b'"total_price":"1.00"')
    assert tampered != body
    assert not verify_hmac(tampered, header, [SECRET])


def test_reserialised_json_is_refused_only_raw_bytes_count() -> None:
    body = raw("orders/fulfilled")
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert not verify_hmac(reserialised, sign(body), [SECRET])


def test_rotation_accepts_the_old_and_the_new_secret() -> None:
    body = raw("refunds/create")
    assert verify_hmac(body, sign(body, OLD_SECRET), [SECRET, OLD_SECRET])
    assert verify_hmac(body, sign(body, SECRET), [SECRET, OLD_SECRET])
    assert not verify_hmac(body, sign(body, OLD_SECRET), [SECRET])


@pytest.mark.parametrize("header", [None, "", "not base64 at all", "   "])
def test_missing_or_garbage_header_is_refused(header: str | None) -> None:
    assert not verify_hmac(raw("orders/paid"), header, [SECRET])


def test_no_secret_configured_verifies_nothing() -> None:
    body = raw("orders/paid")
    empty_key_signature = sign(body, "")
    assert not verify_hmac(body, empty_key_signature, [])
    assert not verify_hmac(body, empty_key_signature, [""])


def test_header_whitespace_is_tolerated() -> None:
    body = raw("orders/paid")
    assert verify_hmac(body, f" {sign(body)}\r\n", [SECRET])


# --- keys per topic ------------------------------------------------------------------------


def test_orders_create() -> None:
    record = decode_one("orders/create")

    assert record.uid == f"shopify:{SHOP}:98880550-7158-44d4-b7cd-2c97c8a091b5"
    assert record.via == conventions.VIA_SHOPIFY
    assert record.system == "shopify"
    assert record.operation == "orders/create"
    assert record.platform_status == "orders/create"
    assert record.stage == ""
    assert record.outcome == conventions.OK
    assert record.source == SHOP
    # Ids beyond 2**53 keep every digit.
    assert record.keys == [
        Key("shopify_order_id", "820982911946154508"),
        Key("order_number", "#9999"),
    ]
    assert record.channel == "web"
    assert record.amount == Decimal("1575.90")
    assert record.currency == "USD"
    assert record.start_time == datetime(2024, 6, 26, 16, 33, 21, 803357, tzinfo=UTC)
    assert record.end_time == record.start_time
    assert record.attributes == {
        "shopify.financial_status": "voided",
        "shopify.fulfillment_status": "pending",
        "shopify.cancel_reason": "customer",
        "shopify.source_name": "web",
        "shopify.line_item_count": 2,
        "shopify.test": True,
        "shopify.api_version": "2024-04",
        "shopify.shop_domain": SHOP,
        "shopify.webhook_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "shopify.event_id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
    }
    assert record.extra == {
        "topic": "orders/create",
        "resource": "gid://shopify/Order/820982911946154508",
    }


def test_orders_paid() -> None:
    record = decode_one("orders/paid")
    assert record.platform_status == "orders/paid"
    assert record.amount == Decimal("36.80")
    assert record.currency == "EUR"
    assert Key("order_number", "#9999") in record.keys


def test_orders_cancelled() -> None:
    record = decode_one("orders/cancelled")
    assert record.platform_status == "orders/cancelled"
    assert record.attributes["shopify.cancel_reason"] == "customer"
    assert Key("shopify_order_id", "820982911946154508") in record.keys


def test_orders_fulfilled_carries_its_fulfillments_and_tracking_numbers() -> None:
    record = decode_one("orders/fulfilled")

    assert record.keys == [
        Key("shopify_order_id", "450789469"),
        Key("order_number", "#1001"),
        Key("fulfillment_id", "255858046"),
        Key("tracking_number", "1Z2345"),
    ]
    assert not any(key.fanout for key in record.keys)
    assert record.platform_status == "orders/fulfilled"
    assert record.amount == Decimal("598.94")
    assert record.attributes["shopify.financial_status"] == "partially_refunded"
    assert record.attributes["shopify.line_item_count"] == 3


def test_fulfillments_create() -> None:
    record = decode_one("fulfillments/create")

    assert record.keys == [
        Key("shopify_order_id", "820982911946154508"),
        Key("fulfillment_id", "123456"),
        Key("tracking_number", "1z827wk74630"),
    ]
    # shipment_status is null: the fulfillment status is the platform status.
    assert record.platform_status == "pending"
    assert record.operation == "fulfillments/create"
    assert record.attributes["shopify.tracking_company"] == "UPS"
    assert record.amount is None
    assert record.channel == ""


def test_fulfillments_update() -> None:
    record = decode_one("fulfillments/update")
    assert record.keys == [
        Key("shopify_order_id", "450789469"),
        Key("fulfillment_id", "255858046"),
        Key("tracking_number", "1Z2345"),
    ]
    assert record.platform_status == "failure"


def test_fulfillment_shipment_status_wins_over_status() -> None:
    payload = json.loads(raw("fulfillments/update"))
    payload.update(status="success", shipment_status="in_transit")
    record = decode_one("fulfillments/update", json.dumps(payload).encode())
    assert record.platform_status == "in_transit"


def test_several_tracking_numbers_of_one_fulfillment_all_link_to_the_order() -> None:
    payload = json.loads(raw("fulfillments/create"))
    payload["tracking_numbers"] = ["1Z999AA10123456784", "1Z999AA10123456785"]
    payload["tracking_number"] = "1Z999AA10123456784"

    record = decode_one("fulfillments/create", json.dumps(payload).encode())

    tracking = [key for key in record.keys if key.kind == conventions.TRACKING_NUMBER]
    assert tracking == [
        Key("tracking_number", "1Z999AA10123456784", fanout=False),
        Key("tracking_number", "1Z999AA10123456785", fanout=False),
    ]


def test_refunds_create() -> None:
    record = decode_one("refunds/create")
    assert record.keys == [
        Key("shopify_order_id", "450789469"),
        Key("refund_id", "509562969"),
    ]
    assert record.platform_status == "refunds/create"
    assert record.attributes["shopify.refund_line_item_count"] == 2
    # A refund's money is what its refund transactions paid back, not the order's value.
    assert (record.amount, record.currency) == (Decimal("209.00"), "USD")


def test_a_refund_sums_its_refund_transactions_that_did_not_fail() -> None:
    payload = json.loads(raw("refunds/create"))
    paid = payload["transactions"][0]
    payload["transactions"] = [
        {**paid, "amount": "20.00"},
        {**paid, "id": 2, "amount": "5.50", "status": "pending"},
        {**paid, "id": 3, "amount": "99.00", "status": "failure"},
        {**paid, "id": 4, "amount": "1.00", "kind": "sale"},
    ]
    record = decode_one("refunds/create", json.dumps(payload).encode())
    assert (record.amount, record.currency) == (Decimal("25.50"), "USD")
    # never summed across currencies; no refund transaction at all: no amount
    payload["transactions"][1]["currency"] = "EUR"
    record = decode_one("refunds/create", json.dumps(payload).encode())
    assert (record.amount, record.currency) == (None, "")
    payload["transactions"] = []
    record = decode_one("refunds/create", json.dumps(payload).encode())
    assert (record.amount, record.currency) == (None, "")


def test_returns_topic() -> None:
    # Shape of a returns/* delivery (return with its order reference), trimmed by hand.
    payload = {
        "id": 945000954,
        "admin_graphql_api_id": "gid://shopify/Return/945000954",
        "order": {"id": 450789469, "admin_graphql_api_id": "gid://shopify/Order/450789469"},
        "status": "requested",
        "name": "#1001-R1",
    }
    record = decode_one("returns/request", json.dumps(payload).encode())
    assert record.keys == [Key("return_id", "945000954"), Key("shopify_order_id", "450789469")]
    assert record.platform_status == "returns/request"
    assert record.attributes["shopify.status"] == "requested"


def test_pos_order_channel_and_store() -> None:
    payload = json.loads(raw("orders/create"))
    payload.update(source_name="pos", location_id=655441491)
    record = decode_one("orders/create", json.dumps(payload).encode())
    assert record.channel == "pos"
    assert record.store_id == "655441491"


def test_graphql_ids_are_reduced_to_their_number() -> None:
    payload = {"id": "gid://shopify/Order/450789469", "name": "#1001"}
    record = decode_one("orders/updated", json.dumps(payload).encode())
    assert Key("shopify_order_id", "450789469") in record.keys


# --- headers, time, errors -----------------------------------------------------------------


def test_event_id_falls_back_to_the_webhook_id() -> None:
    record = decode_one("orders/paid", **{"x-shopify-event-id": None})
    assert record.uid == f"shopify:{SHOP}:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


def test_header_names_in_any_case() -> None:
    body = raw("orders/paid")
    headers = {name.title(): value for name, value in delivery_headers("orders/paid", body).items()}
    [record] = decode(body, headers, RECEIVED).records
    assert record.operation == "orders/paid"


def test_business_time_falls_back_to_updated_at_then_arrival() -> None:
    record = decode_one("orders/cancelled", **{"x-shopify-triggered-at": None})
    assert record.start_time == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)

    record = decode_one(
        "orders/paid",
        json.dumps({"id": 1, "name": "#1"}).encode(),
        **{"x-shopify-triggered-at": None},
    )
    assert record.start_time == RECEIVED


def test_missing_topic_names_the_header() -> None:
    body = raw("orders/create")
    with pytest.raises(DecodeError, match="X-Shopify-Topic"):
        decode(body, delivery_headers("orders/create", body, **{"x-shopify-topic": None}), RECEIVED)


def test_missing_ids_name_both_headers() -> None:
    body = raw("orders/create")
    headers = delivery_headers(
        "orders/create", body, **{"x-shopify-event-id": None, "x-shopify-webhook-id": None}
    )
    with pytest.raises(DecodeError, match="X-Shopify-Event-Id and X-Shopify-Webhook-Id"):
        decode(body, headers, RECEIVED)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"[1, 2]", "must be a JSON object"), (b"{'id': 1}", "not valid JSON"), (b"", "empty")],
)
def test_body_that_is_not_a_json_object(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(body, delivery_headers("orders/create", body), RECEIVED)


# --- privacy -------------------------------------------------------------------------------

#: Subtrees of a payload that describe a person, and the personal fields inside them.
PERSON_SUBTREES = {
    "customer",
    "billing_address",
    "shipping_address",
    "default_address",
    "destination",
    "client_details",
}
PERSON_FIELDS = {
    "email",
    "phone",
    "first_name",
    "last_name",
    "name",
    "address1",
    "address2",
    "city",
    "zip",
    "company",
    "browser_ip",
    "user_agent",
}
#: Top-level order fields that are personal or secret.
ORDER_PRIVATE = {
    "email",
    "contact_email",
    "phone",
    "browser_ip",
    "order_status_url",
    "token",
    "cart_token",
    "checkout_token",
    "landing_site",
    "referring_site",
    "note",
}


def personal_values(node: Any, inside_person: bool = False, top: bool = True) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.items():
            person = inside_person or name in PERSON_SUBTREES
            if isinstance(value, str) and value.strip():
                if (person and name in PERSON_FIELDS) or (top and name in ORDER_PRIVATE):
                    found.add(value)
            else:
                found |= personal_values(value, person, top=False)
    elif isinstance(node, list):
        for item in node:
            found |= personal_values(item, inside_person, top=False)
    return found


@pytest.mark.parametrize(
    "topic", ["orders/create", "orders/paid", "orders/fulfilled", "fulfillments/create"]
)
def test_captured_payloads_do_carry_customer_data(topic: str) -> None:
    # Otherwise the test below would prove nothing.
    secrets = personal_values(json.loads(raw(topic)))
    assert {"jon@example.com", "123 Shipping Street"} <= secrets or "Bob Norman" in secrets


@pytest.mark.parametrize("topic", sorted(FIXTURES))
def test_no_customer_data_reaches_the_record(topic: str) -> None:
    secrets = personal_values(json.loads(raw(topic)))

    record = decode_one(topic)
    stored = orjson.dumps(dataclasses.asdict(record), default=str).decode()

    leaked = sorted(value for value in secrets if value in stored)
    assert leaked == []
    assert "@" not in stored
    assert all(name.startswith("shopify.") for name in record.attributes)
