"""The PII deny-lists: what each one masks, what it spares, and that it runs in linear time."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tracing import limits
from tracing.privacy import MASK, MaskPolicy, luhn
from tracing.records import HopRecord, Key

POLICY = MaskPolicy()
T = datetime(2024, 6, 10, tzinfo=UTC)

# --- linear time -----------------------------------------------------------------------------

MB = 1_000_000
#: Shapes that made the old e-mail pattern backtrack from every start (21 s for 120,000
#: letters), and the worst each newer pattern can be given.
WORST = {
    "letters": "a" * MB,
    "local-part run": "a." * (MB // 2),
    "at signs": "a@" * (MB // 2),
    "domain without a dot": "x@" + "a" * MB,
    "one-letter labels": "x@" + "a." * (MB // 2),
    "digits": "1" * MB,
    "spaced digits": "1 " * (MB // 2),
    "dashed digits": "555-" * (MB // 4),
    "plus and digits": "+1 " * (MB // 3),
    "parenthesised area codes": "(555) " * (MB // 6),
    "capitalised words": "Aa " * (MB // 3),
    "cue words": "customer " * (MB // 9),
    "house numbers": "12 Aa " * (MB // 6),
    "a house number and one long word": "12 A" + "a" * MB,
    "postcode starts": "AB1 " * (MB // 4),
    "state codes": "IL " * (MB // 3),
    "json": "[" + "1," * (MB // 2) + "1]",
}


@pytest.mark.parametrize("shape", list(WORST))
def test_a_megabyte_of_the_worst_shape_masks_in_linear_time(shape: str) -> None:
    # No cap here: the patterns themselves must be linear. Linear is tens of milliseconds
    # a megabyte; the square of a megabyte would be hours. The bound only catches that,
    # in this process's CPU time (a busy machine's wall clock says nothing about it).
    uncapped = MaskPolicy(max_text=None)
    started = time.process_time()
    uncapped.mask_text(WORST[shape])
    assert time.process_time() - started < 2.0


def test_a_megabyte_attribute_name_is_decided_at_once() -> None:
    started = time.process_time()
    assert MaskPolicy().is_pii_key("customer_email" + "k" * MB)
    assert not MaskPolicy().is_pii_key("k" * MB)
    assert time.process_time() - started < 2.0


def test_lengths_are_capped_before_any_pattern_runs() -> None:
    masked = POLICY.mask_text("a" * MB)
    assert len(masked) <= limits.TEXT
    assert masked.endswith(limits.TRUNCATED)


def test_a_value_cut_in_the_middle_of_an_address_loses_the_half() -> None:
    address = " jane.doe@" + "example-" * 10 + "mail.com"
    text = limits.fit("x" * (limits.TEXT - 22) + address, limits.TEXT)
    assert "jane.doe@" in text  # the cut left half an address, which no pattern sees
    masked = POLICY.mask_text(text)
    assert "jane" not in masked and masked.endswith(MASK + limits.TRUNCATED)


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("mail jane.doe@example.com now", "jane.doe@example.com"),
        ("to <jane@mail.example.co.uk>.", "jane@mail.example.co.uk"),
        ("call +44 20 7946 0958", "7946 0958"),
        ("call (555) 867-5309", "867-5309"),
        ("call 555-867-5309", "867-5309"),
        ("call 555.867.5309", "867.5309"),
        ("call 5558675309 today", "5558675309"),
        ("call 1-555-867-5309", "867-5309"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "1111-1111-1111"),
        ("card 5555555555554444", "5555555555554444"),
        ("card 378282246310005 (amex)", "378282246310005"),
        ("ship to 221B Baker Street, London", "Baker Street"),
        ("deliver at 1600 Amphitheatre Parkway", "Amphitheatre"),
        ("10 Downing St. SW1A 2AA", "Downing"),
        ("postcode NW1 6XE", "NW1 6XE"),
        ("postcode M1 1AE", "M1 1AE"),
        ("Springfield, IL 62704", "62704"),
        ("Payment declined for customer Jane Doe", "Jane Doe"),
        ("Ship to: Jane Doe", "Jane Doe"),
        ("Dear Mr O'Brien,", "O'Brien"),
        ('{"note": "recipient Jean-Luc Núñez"}', "Núñez"),
        ("buyer McDonald paid", "McDonald"),
    ],
)
def test_pii_in_free_text_is_masked(text: str, secret: str) -> None:
    masked = POLICY.mask_text(text)
    assert secret not in masked, masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "ERP answered 503 after 3 retries",
        "order #1001 posted as SO-48213",
        "shopify order 820982911946154508",  # 18 digits, not a card (starts with 8)
        "card 4111 1111 1111 1112 is not a valid number",  # fails the Luhn check
        "tracking 1Z999AA10123456784",
        "2024-06-10T06:13:20Z",
        "customer not found",
        "customer ID 42 unknown",
        "batch B-7 of 50 orders",
        "amount 129.95 EUR",
        "https://erp.example.com/api/v2/orders?page=3",
    ],
)
def test_operational_text_is_left_alone(text: str) -> None:
    assert POLICY.mask_text(text) == text


def test_luhn() -> None:
    assert luhn("4111 1111 1111 1111") and luhn("378282246310005")
    assert not luhn("4111111111111112")


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "customer.email",
        "user_email",
        "retail.key.customer_email",
        "customer.phone",
        "shipping_address.city",
        "billing.address",
        # addresses of people stay masked beside the spared host and peer addresses
        "customer.address",
        "shipping.address",
        "shipping.address.line1",
        "client.email",
        "customer.name",
        "client.name",
        "first_name",
        "buyer",
        "order.buyer",
        "recipient",
        "contact",
        "destination",
        "shipping.destination",
        "payment.card",
        "customer",
        "consignee",
        "Customer-Email",
        "http.request.header.x-customer-email",  # only named hosts and peers are spared
        "messaging.message.customer_email",
    ],
)
def test_pii_attribute_names(name: str) -> None:
    assert POLICY.is_pii_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "service.name",
        "server.address",
        "server.port",
        "client.address",
        "client.port",
        "url.full",
        "url.path",
        "network.peer.address",
        "network.local.address",
        "net.peer.name",
        "net.sock.peer.addr",
        "messaging.destination.name",
        "http.request.method",
        "retail.location_id",
        "order.lines",
        "shipping.method",
    ],
)
def test_names_that_are_not_pii(name: str) -> None:
    assert not POLICY.is_pii_key(name)


def test_spared_names_still_have_their_values_masked() -> None:
    masked = POLICY.mask_attributes(
        {
            "server.address": "erp-1.internal.example.com",
            "url.full": "https://shop.example.com/track?email=jane@example.com",
        }
    )
    assert masked["server.address"] == "erp-1.internal.example.com"
    assert masked["url.full"] == f"https://shop.example.com/track?email={MASK}"


def test_nested_maps_and_json_strings_are_masked_by_name() -> None:
    masked = POLICY.mask_attributes(
        {
            "order": {"customer": {"name": "Jane Doe"}, "lines": 2},
            "payload": '{"id": 7, "shipping_address": {"street": "1 Main St"}, "note": "ok"}',
            "customer": '{"name": "Jane Doe"}',
            "list": [{"email": "jane@example.com"}],
        }
    )
    assert masked["order"] == {"customer": MASK, "lines": 2}
    assert masked["payload"] == '{"id":7,"shipping_address":"[masked]","note":"ok"}'
    assert masked["customer"] == MASK
    assert masked["list"] == [{"email": MASK}]


# --- records ---------------------------------------------------------------------------------


def record(**fields: object) -> HopRecord:
    values: dict[str, object] = {
        "uid": "event:erp:urn:erp:e-1",
        "via": "event",
        "system": "erp",
        "operation": "post",
        "start_time": T,
        "end_time": T,
        "source": "urn:erp",
    }
    values.update(fields)
    return HopRecord(**values)  # type: ignore[arg-type]


def test_every_free_text_column_of_a_record_is_masked() -> None:
    r = record(
        operation="send receipt to jane@example.com",
        status_message="card 4111 1111 1111 1111 declined for customer Jane Doe",
        platform_status="Held: call (555) 867-5309",
        store_id="NW1 6XE",
        attributes={"buyer": "Jane Doe", "note": "jane@example.com"},
        extra={"subject": "customer Jane Doe, 221B Baker Street"},
    )
    POLICY.mask_record(r)
    text = repr(r)
    for secret in ("jane@", "4111", "Jane Doe", "867-5309", "NW1 6XE", "Baker"):
        assert secret not in text, secret


def test_a_mask_longer_than_what_it_hid_still_fits_the_column() -> None:
    r = record(platform_status="p" * (limits.PLATFORM_STATUS - 7) + " M1 1AE")
    POLICY.mask_record(r)
    assert len(r.platform_status) <= limits.PLATFORM_STATUS


def test_a_source_with_pii_becomes_a_keyed_digest_in_the_delivery_identity() -> None:
    one = record(uid="event:erp:mailto:jane@example.com:e-1", source="mailto:jane@example.com")
    again = record(uid="event:erp:mailto:jane@example.com:e-1", source="mailto:jane@example.com")
    other = record(uid="event:erp:mailto:john@example.com:e-1", source="mailto:john@example.com")
    for r in (one, again, other):
        POLICY.mask_record(r)
    assert one.source == f"mailto:{MASK}"
    assert "jane" not in one.uid and one.uid.endswith(":e-1")
    assert one.uid == again.uid  # a re-delivery is still the same delivery
    assert one.uid != other.uid
    keyed = MaskPolicy(digest_key=b"another installation")
    elsewhere = record(
        uid="event:erp:mailto:jane@example.com:e-1", source="mailto:jane@example.com"
    )
    keyed.mask_record(elsewhere)
    assert elsewhere.uid != one.uid


def test_a_key_whose_kind_names_pii_is_dropped_and_noted() -> None:
    r = record(keys=[Key("order_number", "#1001"), Key("customer_email", "jane@example.com")])
    POLICY.mask_record(r)
    assert r.keys == [Key("order_number", "#1001")]
    assert r.attributes["retail.key.customer_email"] == MASK
