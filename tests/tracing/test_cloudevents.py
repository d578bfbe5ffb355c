"""CloudEvents decoding: events built with the real ``cloudevents`` SDK, in every HTTP mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent as CoreCloudEvent
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from tracing import conventions
from tracing.cloudevents import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    UnsupportedMediaType,
    decode,
    parse_rfc3339,
)
from tracing.records import DecodeError, HopRecord, Key

DATA = Path(__file__).resolve().parent.parent / "data" / "cloudevents"
RECEIVED = datetime(2024, 6, 11, 12, 0, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


def sdk_event(name: str, **overrides: Any) -> CloudEvent:
    """A fixture rebuilt as an SDK event: context attributes, then ``data``."""
    raw = fixture(name)
    data = raw.pop("data")
    raw.update(overrides)
    return CloudEvent(raw, data)


def structured_body(event: CloudEvent) -> dict[str, Any]:
    """The JSON object the SDK puts on the wire in structured mode."""
    _, body = to_structured(event)
    loaded: dict[str, Any] = json.loads(body)
    return loaded


def decode_structured(event: CloudEvent) -> HopRecord:
    headers, body = to_structured(event)
    result = decode(body, headers["content-type"], headers, RECEIVED)
    assert result.rejected == []
    [record] = result.records
    return record


def decode_batch(events: list[Any]) -> Any:
    body = json.dumps(events).encode()
    return decode(body, BATCH_CONTENT_TYPE, {"content-type": BATCH_CONTENT_TYPE}, RECEIVED)


# --- the captured events, one by one ------------------------------------------------------


def test_structured_erp_posting_maps_every_field() -> None:
    record = decode_structured(sdk_event("erp_order_posted.json"))

    assert (
        record.uid
        == "event:erp:urn:acme:erp-connector:netsuite:7c1d4a7e-2f61-4b0e-9c55-0d8e3a41b2f9"
    )
    assert record.via == conventions.VIA_EVENT
    assert record.system == "erp"
    assert record.operation == "post_sales_order"
    assert record.start_time == datetime(2024, 6, 10, 14, 3, 27, 418000, tzinfo=UTC)
    assert record.end_time - record.start_time == timedelta(milliseconds=842)
    assert record.outcome == conventions.OK
    assert record.platform_status == "Pending Fulfillment"
    assert record.stage == ""
    assert record.channel == "web"
    assert record.amount == Decimal("598.94")
    assert record.currency == "USD"
    assert record.source == "urn:acme:erp-connector:netsuite"
    assert record.keys == [
        Key("order_number", "#1001"),
        Key("shopify_order_id", "450789469"),
        Key("erp_sales_order", "SO-48213"),
    ]
    assert record.attributes["netsuite.order_status"] == "B"
    assert record.attributes["subject"] == "SO-48213"
    assert record.extra["type"] == "com.acme.erp.salesorder.posted"
    assert record.extra["subject"] == "SO-48213"


def test_operation_defaults_to_the_event_type() -> None:
    event = sdk_event("erp_order_posted.json")
    event.data.pop("operation")
    assert decode_structured(event).operation == "com.acme.erp.salesorder.posted"


def test_batch_posting_fans_out_to_each_order_but_not_the_shared_keys() -> None:
    record = decode_structured(sdk_event("erp_batch_posting.json"))

    assert [key for key in record.keys if key.kind == "order_number"] == [
        Key("order_number", number, fanout=True) for number in ("#1002", "#1003", "#1004", "#1005")
    ]
    assert Key("batch_id", "NS-CSVIMPORT-20240610-0400") in record.keys
    assert Key("file", "csv_import_20240610_0400.csv") in record.keys
    assert record.end_time - record.start_time == timedelta(seconds=65.21)


def test_carrier_tracking_update() -> None:
    record = decode_structured(sdk_event("carrier_in_transit.json"))

    assert record.system == "carrier"
    assert record.platform_status == "in_transit"
    assert Key("tracking_number", "EZ2000000002") in record.keys
    assert record.attributes["easypost.status_detail"] == "arrived_at_facility"


def test_inventory_adjustment_time_is_converted_to_utc() -> None:
    record = decode_structured(sdk_event("inventory_adjusted.json"))

    assert record.stage == "inventory_adjusted"
    assert record.start_time == datetime(2024, 6, 10, 13, 20, 0, 250000, tzinfo=UTC)
    assert record.start_time.utcoffset() == timedelta(0)
    assert Key("sku", "IPOD2008GREEN") in record.keys
    assert record.attributes["inventory.quantity_delta"] == -3


def test_failure_retry_and_replay_fields() -> None:
    event = sdk_event("erp_order_posted.json")
    event.data.update(
        outcome="error",
        error="SuiteTalk: INVALID_KEY_OR_REF Invalid item reference key 1187",
        retry_attempt=2,
        replay=True,
        store_id=12,
    )
    record = decode_structured(event)

    assert record.outcome == conventions.ERROR
    assert record.status_message.startswith("SuiteTalk: INVALID_KEY_OR_REF")
    assert record.retry_attempt == 2
    assert record.replay is True
    assert record.store_id == "12"


def test_system_and_key_values_are_normalised() -> None:
    event = sdk_event("erp_order_posted.json")
    event.data["system"] = " ERP "
    event.data["keys"] = {
        "order_number": "  #1001 ",
        "shopify_order_id": 820982911946154508,
        "erp_sales_order": None,
        "correlation_id": "",
    }
    record = decode_structured(event)

    assert record.system == "erp"
    assert record.keys == [
        Key("order_number", "#1001"),
        Key("shopify_order_id", "820982911946154508"),
    ]


# --- modes -------------------------------------------------------------------------------


def test_binary_mode_from_the_sdk_without_content_type() -> None:
    event = sdk_event("carrier_in_transit.json")
    headers, body = to_binary(event)
    assert "content-type" not in {name.lower() for name in headers}

    result = decode(body, "", headers, RECEIVED)

    [record] = result.records
    assert record.uid == "event:carrier:urn:acme:middleware:easypost-relay:evt_6d1f0a9c3b7e11ef8c2b"
    assert record.start_time == datetime(2024, 6, 11, 9, 41, 5, tzinfo=UTC)
    assert record.platform_status == "in_transit"
    assert record.extra["subject"] == "trk_0f7a1c2e9b5d4e3fa8c6d2b1e0f9a7c3"


def test_binary_mode_headers_are_percent_decoded() -> None:
    # The newer SDK API percent-encodes header values as the HTTP binding requires.
    raw = fixture("erp_order_posted.json")
    data = raw.pop("data")
    raw.pop("time")
    raw["subject"] = 'Sales Order #SO-48213 "rush" 100%'
    message = to_binary_event(CoreCloudEvent(attributes=raw, data=data))
    assert "%20" in message.headers["ce-subject"]

    result = decode(
        message.body, message.headers.get("content-type", ""), message.headers, RECEIVED
    )

    [record] = result.records
    assert record.extra["subject"] == 'Sales Order #SO-48213 "rush" 100%'
    assert record.system == "erp"


def test_structured_mode_from_the_newer_sdk_api() -> None:
    raw = fixture("inventory_adjusted.json")
    data = raw.pop("data")
    raw["time"] = parse_rfc3339(raw["time"])
    message = to_structured_event(CoreCloudEvent(attributes=raw, data=data))

    result = decode(message.body, message.headers["content-type"], message.headers, RECEIVED)

    [record] = result.records
    assert record.start_time == datetime(2024, 6, 10, 13, 20, 0, 250000, tzinfo=UTC)
    assert record.stage == "inventory_adjusted"


def test_binary_mode_by_hand_like_curl() -> None:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "CE-SpecVersion": "1.0",
        "CE-ID": "wms-pick-0001",
        "CE-Source": "urn:acme:wms",
        "CE-Type": "com.acme.wms.order.picked",
    }
    body = b'{"system": "wms", "stage": "picked", "keys": {"order_number": "#1001"}}'

    [record] = decode(body, headers["Content-Type"], headers, RECEIVED).records

    assert record.uid == "event:wms:urn:acme:wms:wms-pick-0001"
    assert record.start_time == RECEIVED  # no ce-time: arrival time
    assert record.end_time == RECEIVED
    assert record.stage == "picked"


def test_binary_mode_body_that_is_not_json_is_a_request_error() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}
    with pytest.raises(DecodeError, match=r"binary-mode body .* not valid JSON"):
        decode(b"<order>1001</order>", "application/xml", headers, RECEIVED)


def test_content_type_parameters_and_case_are_ignored() -> None:
    _, body = to_structured(sdk_event("erp_order_posted.json"))
    result = decode(body, "Application/CloudEvents+JSON; charset=UTF-8", {}, RECEIVED)
    assert len(result.records) == 1


def test_not_a_cloudevent_is_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="'text/plain'") as caught:
        decode(b"{}", "text/plain", {"content-type": "text/plain"}, RECEIVED)
    assert isinstance(caught.value, DecodeError)
    assert caught.value.content_type == "text/plain"


def test_other_event_formats_are_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="JSON event format"):
        decode(b"<event/>", "application/cloudevents+xml", {}, RECEIVED)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            BATCH_CONTENT_TYPE,
            b'{"specversion": "1.0"}',
            "must be a JSON array of events, got an object",
        ),
        (STRUCTURED_CONTENT_TYPE, b"[]", "must be one JSON object, got an array"),
        (STRUCTURED_CONTENT_TYPE, b'{"id": ', "not valid JSON"),
        (BATCH_CONTENT_TYPE, b"", "is empty"),
    ],
)
def test_body_of_the_wrong_shape_is_a_decode_error(
    content_type: str, body: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(body, content_type, {}, RECEIVED)


def test_empty_batch() -> None:
    result = decode(b"[]", BATCH_CONTENT_TYPE, {}, RECEIVED)
    assert result.records == []
    assert result.rejected == []


# --- a batch is judged event by event ------------------------------------------------------


def test_batch_keeps_good_and_duplicate_events_and_names_the_field_of_bad_ones() -> None:
    posted = structured_body(sdk_event("erp_order_posted.json"))
    inventory = structured_body(sdk_event("inventory_adjusted.json"))

    def broken(**changes: Any) -> dict[str, Any]:
        event = structured_body(sdk_event("carrier_in_transit.json", id=f"bad-{len(changes)}"))
        for name, value in changes.items():
            if value is ...:
                event.pop(name)
            else:
                event[name] = value
        return event

    def broken_data(**changes: Any) -> dict[str, Any]:
        event = structured_body(sdk_event("carrier_in_transit.json"))
        event["data"].update(changes)
        return event

    batch: list[Any] = [
        posted,  # 0
        dict(posted),  # 1 duplicate (source, id): kept, the server dedupes
        broken(source=...),  # 2
        broken(specversion="0.3"),  # 3
        broken(time="10/06/2024 14:03"),  # 4
        broken_data(keys=["#1001"]),  # 5
        broken_data(keys={"Order": "#1001"}),  # 6
        broken_data(outcome="failed"),  # 7
        broken_data(system=None),  # 8
        broken(data="Pending Fulfillment"),  # 9
        {**broken(data=...), "data_base64": "eyJzeXN0ZW0iOiAiZXJwIn0="},  # 10
        broken_data(keys={"order_number": "x" * 257}),  # 11
        broken_data(amount="12,50"),  # 12
        broken_data(stage="shipped_out"),  # 13
        "not an event",  # 14
        inventory,  # 15
    ]
    result = decode_batch(batch)

    assert [record.uid for record in result.records] == [
        "event:erp:urn:acme:erp-connector:netsuite:7c1d4a7e-2f61-4b0e-9c55-0d8e3a41b2f9",
        "event:erp:urn:acme:erp-connector:netsuite:7c1d4a7e-2f61-4b0e-9c55-0d8e3a41b2f9",
        "event:erp:urn:acme:erp-connector:netsuite/inventory:inv-adj-000731",
    ]
    reasons = {rejection.index: rejection.reason for rejection in result.rejected}
    assert reasons == {
        2: "event 2: missing required attribute 'source'",
        3: "event 3: specversion must be '1.0' (got '0.3')",
        4: "event 4: time: not an RFC 3339 timestamp ('10/06/2024 14:03')",
        5: "event 5: data.keys: must be an object of kind -> value",
        6: "event 6: data.keys.Order: key kind must be lower_snake_case",
        7: "event 7: data.outcome: must be one of ok, error, retry (got 'failed')",
        8: "event 8: data.system: required (the system of the hop, e.g. 'erp')",
        9: "event 9: data must be a JSON object with system and keys (got a string)",
        10: "event 10: data_base64 is not supported: send the hop as a JSON object in 'data'",
        11: "event 11: data.keys.order_number: value longer than 256 characters",
        12: "event 12: data.amount: must be a decimal number (got '12,50')",
        13: "event 13: data.stage: unknown stage 'shipped_out' (see docs/stages.md)",
        14: "event 14: must be a JSON object, got a string",
    }
    idents = {rejection.index: rejection.ident for rejection in result.rejected}
    assert idents[3] == "bad-1"
    assert idents[7] == "evt_6d1f0a9c3b7e11ef8c2b"
    assert idents[14] == ""


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("duration_ms", -5, "data.duration_ms: must be a non-negative number"),
        ("duration_ms", "842", "data.duration_ms: must be a non-negative number"),
        ("retry_attempt", 1.5, "data.retry_attempt: must be a non-negative integer"),
        ("retry_attempt", True, "data.retry_attempt: must be a non-negative integer"),
        ("replay", "yes", "data.replay: must be true or false"),
        ("currency", "dollars", "data.currency: must be a 3-letter ISO 4217 code"),
        ("amount", "NaN", "data.amount: must be a finite decimal number"),
        ("attributes", ["a"], "data.attributes: must be an object"),
        ("system", "ERP system", "data.system: must be one lower-case word"),
        ("platform_status", 3, "data.platform_status: must be a string"),
        ("keys", {"order_number": {"value": "#1001"}}, "data.keys.order_number: must be a string"),
        ("keys", {"order_number": [True]}, "data.keys.order_number[0]: must be a string"),
    ],
)
def test_each_bad_data_field_is_named(field: str, value: Any, reason: str) -> None:
    event = structured_body(sdk_event("erp_order_posted.json"))
    event["data"][field] = value

    result = decode_batch([event])

    assert result.records == []
    [rejection] = result.rejected
    assert rejection.index == 0
    assert rejection.reason.startswith(f"event 0: {reason}"), rejection.reason


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-10T14:03:27Z", datetime(2024, 6, 10, 14, 3, 27, tzinfo=UTC)),
        ("2024-06-10t14:03:27.5z", datetime(2024, 6, 10, 14, 3, 27, 500000, tzinfo=UTC)),
        ("2024-06-26T16:33:21.803357186Z", datetime(2024, 6, 26, 16, 33, 21, 803357, tzinfo=UTC)),
        ("2021-12-31T19:00:00-05:00", datetime(2022, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text", ["2024-06-10", "2024-06-10T14:03:27", "2024-13-10T14:03:27Z", "yesterday", ""]
)
def test_parse_rfc3339_refuses_what_is_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|month|range"):
        parse_rfc3339(text)


# --- properties ----------------------------------------------------------------------------

# JSON as a sender can put it on the wire: finite floats, 64-bit integers, no lone surrogates.
json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "1.0", "0.3"]),
        "id": json_text,
        "source": st.sampled_from(["urn:a", "urn:b"]),
        "type": st.just("com.acme.test"),
    },
    optional={
        "time": st.sampled_from(["2024-06-10T14:03:27Z", "bad"]),
        "data": st.fixed_dictionaries(
            {"system": st.sampled_from(["erp", "WMS", "", "two words"])},
            optional={
                "keys": json_values,
                "outcome": json_values,
                "duration_ms": json_values,
                "amount": json_values,
                "attributes": json_values,
            },
        )
        | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(event_like | json_values, max_size=8))
def test_every_event_is_either_a_record_or_a_rejection(events: list[Any]) -> None:
    result = decode_batch(events)

    assert len(result.records) + len(result.rejected) == len(events)
    rejected = [rejection.index for rejection in result.rejected]
    assert rejected == sorted(set(rejected))
    for rejection in result.rejected:
        assert rejection.reason.startswith(f"event {rejection.index}: ")
    for record in result.records:
        assert record.start_time.tzinfo is not None
        assert record.end_time >= record.start_time
        assert record.outcome in conventions.OUTCOMES
        assert all(len(key.value) <= conventions.MAX_KEY_VALUE_LENGTH for key in record.keys)
