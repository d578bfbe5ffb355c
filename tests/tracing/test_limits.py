"""Bounds at the edge: each field's rule, and, for any input, decoders that give records
storage holds or refusals that name the field (hypothesis, on all three decoders)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tracing import cloudevents, conventions, limits, otlp, shopify
from tracing.records import DecodeError, DecodeResult, HopRecord

RECEIVED = datetime(2024, 6, 11, 12, 0, tzinfo=UTC)


# --- one rule per field ----------------------------------------------------------------------


def test_free_text_loses_nul_bytes_and_is_cut_with_a_marker() -> None:
    assert limits.fit("a\x00b", 10) == "a\ufffdb"
    cut = limits.fit("x" * 100, 40)
    assert len(cut) == 40 and cut.endswith(limits.TRUNCATED)
    assert limits.fit("x" * 40, 40) == "x" * 40


def test_identifiers_are_refused_never_cut() -> None:
    assert limits.identifier("SO-1", 4, "id") == "SO-1"
    with pytest.raises(limits.OutOfBounds, match=r"^id: longer than 4 characters"):
        limits.identifier("SO-12", 4, "id")
    with pytest.raises(limits.OutOfBounds, match=r"^id: must not contain a NUL"):
        limits.identifier("S\x00", 4, "id")
    with pytest.raises(limits.OutOfBounds, match="bytes"):  # é is two bytes
        limits.identifier("é" * 3, 5, "id", in_bytes=True)


@pytest.mark.parametrize(
    "text", ["999999999999.99", "-999999999999.99", "0.001", "1E-1000", "999999999999.994"]
)
def test_amounts_that_fit_numeric_14_2(text: str) -> None:
    assert limits.amount(Decimal(text), "amount") == Decimal(text)


@pytest.mark.parametrize(
    "text", ["1e12", "-1e12", "999999999999.995", "1e15", "-1e20", "1E+1000", "NaN", "Infinity"]
)
def test_amounts_that_do_not(text: str) -> None:
    with pytest.raises(limits.OutOfBounds, match=r"^amount: out of range"):
        limits.amount(Decimal(text), "amount")


def test_times_run_from_1970_to_the_end_of_2200() -> None:
    assert limits.moment(limits.EARLIEST, "t") == limits.EARLIEST
    last = limits.LATEST - timedelta(microseconds=1)
    assert limits.moment(last, "t") == last
    for outside in (limits.EARLIEST - timedelta(microseconds=1), limits.LATEST):
        with pytest.raises(limits.OutOfBounds, match=r"^t: outside years 1970 to 2200"):
            limits.moment(outside, "t")


def test_json_columns_are_cleaned_and_nesting_is_bounded() -> None:
    clean, cut = limits.clean_json({"a\x00": ["b\x00", "x" * (limits.TEXT + 1)], "n": 2**64 - 1})
    cut_text = limits.fit("x" * (limits.TEXT + 1), limits.TEXT)
    assert clean == {"a\ufffd": ["b\ufffd", cut_text], "n": 2**64 - 1}
    assert cut == 1
    same = {"a": {"b": [1, "c"]}}
    assert limits.clean_json(same)[0] is same  # nothing to change: nothing copied
    deep: Any = "x"
    for _ in range(limits.JSON_DEPTH):
        deep = {"k": deep}
    with pytest.raises(limits.OutOfBounds, match=r"attribute 'k\.k.*': nested deeper than 20"):
        limits.clean_json(deep)
    limits.clean_json(deep["k"])  # one level less fits
    with pytest.raises(limits.OutOfBounds, match=r"attribute 'big\.\[1\]': integer beyond 64"):
        limits.clean_json({"big": [1, 2**64]})


def test_the_patterns_agree_with_the_column_sizes() -> None:
    assert re.fullmatch(conventions.SYSTEM_PATTERN, "s" * limits.SYSTEM)
    assert not re.fullmatch(conventions.SYSTEM_PATTERN, "s" * (limits.SYSTEM + 1))
    assert re.fullmatch(conventions.KEY_KIND_PATTERN, "k" * limits.KEY_KIND)
    assert not re.fullmatch(conventions.KEY_KIND_PATTERN, "k" * (limits.KEY_KIND + 1))
    longest = f"event:{'y' * limits.SYSTEM}:{'s' * limits.SOURCE}:{'i' * limits.EVENT_ID}"
    assert len(longest.encode()) <= limits.UID <= 2704  # a B-tree entry on PostgreSQL


# --- what every decoded record must satisfy -------------------------------------------------

_SIZES = limits.column_sizes()


def assert_storable(result: DecodeResult) -> None:
    for record in result.records:
        assert_record_storable(record)
    for rejection in result.rejected:
        assert rejection.reason  # names the item and the field


def assert_record_storable(r: HopRecord) -> None:
    for column, size in _SIZES.items():
        value = getattr(r, column)
        assert len(value) <= size, (column, len(value))
        assert "\x00" not in value, column
    assert len(r.uid.encode()) <= limits.UID
    assert re.fullmatch(conventions.SYSTEM_PATTERN, r.system)
    assert "\x00" not in r.status_message and len(r.status_message) <= limits.TEXT
    for key in r.keys:
        assert re.fullmatch(conventions.KEY_KIND_PATTERN, key.kind)
        assert len(key.value) <= limits.KEY_VALUE and "\x00" not in key.value
    if r.amount is not None:
        assert abs(r.amount.quantize(Decimal("0.01"))) < 10**12
    assert 0 <= r.retry_attempt < 2**31
    assert limits.EARLIEST <= r.start_time < limits.LATEST
    assert limits.EARLIEST <= r.end_time < limits.LATEST
    for column in (r.attributes, r.extra):
        text = orjson.dumps(column).decode()  # orjson refuses what PostgreSQL's jsonb would
        assert "\\u0000" not in text


texts = st.one_of(
    st.text(max_size=12),
    st.text(st.sampled_from("aZ \x00/@.-_é9"), max_size=80),
    st.integers(min_value=60, max_value=400).map(lambda n: "x" * n),
    st.just("x" * 9000),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e15", "-1e20", "1E+1000", "999999999999.99", "12.5", "abc"]),
)
scalars = st.one_of(texts, numbers, st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


# --- OTLP ------------------------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=max(min(value, 2**63 - 1), -(2**63)))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        kvs = [KeyValue(key=k, value=any_value(v)) for k, v in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=kvs))
    return AnyValue(string_value=value)


hop_fields = st.fixed_dictionaries(
    {},
    optional={
        name: scalars
        for name in (
            conventions.SYSTEM,
            conventions.STAGE,
            conventions.PLATFORM_STATUS,
            conventions.CHANNEL,
            conventions.STORE_ID,
            conventions.ORDER_AMOUNT,
            conventions.ORDER_CURRENCY,
            conventions.RETRY_ATTEMPT,
            "retail.key.order_number",
        )
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=texts,
    message=texts,
    service=texts,
    hop=hop_fields,
    free=st.dictionaries(texts, values, max_size=3),
    nesting=st.integers(min_value=0, max_value=28),
    start=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_otlp_gives_storable_records_or_named_refusals(
    name: str,
    message: str,
    service: str,
    hop: dict[str, Any],
    free: dict[str, Any],
    nesting: int,
    start: int,
) -> None:
    attrs = {**free, **hop, "nest": deep(nesting)}
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name=name,
        start_time_unix_nano=start,
        status=Status(code=Status.STATUS_CODE_ERROR, message=message),
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=any_value(service))]
                ),
                scope_spans=[ScopeSpans(spans=[span])],
            )
        ]
    )
    body = request.SerializeToString()
    for result in (otlp.decode_protobuf(body, received_at=RECEIVED), _json_twin(request)):
        assert len(result.records) + len(result.rejected) == 1
        assert_storable(result)
        # the attributes are one level, "nest" adds its maps
        if nesting + 1 >= limits.JSON_DEPTH:
            assert result.rejected


def _json_twin(request: ExportTraceServiceRequest) -> DecodeResult:
    from google.protobuf import json_format

    tree = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in tree["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for name in ("traceId", "spanId"):
                    span[name] = base64.b64decode(span[name]).hex()
    return otlp.decode_json(json.dumps(tree).encode(), received_at=RECEIVED)


@settings(max_examples=60, deadline=None)
@given(number=st.integers(min_value=-(2**80), max_value=2**80))
def test_otlp_json_integers_beyond_64_bits_refuse_the_span_naming_the_attribute(
    number: int,
) -> None:
    span = {
        "traceId": "01" * 16,
        "spanId": "02" * 8,
        "attributes": [{"key": "count", "value": {"intValue": str(number)}}],
    }
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    result = otlp.decode_json(body, received_at=RECEIVED)
    if -(2**63) <= number < 2**63:
        assert result.records[0].attributes["count"] == number
    else:
        assert "attribute 'count'" in result.rejected[0].reason


def test_an_otlp_system_that_is_no_system_name_refuses_the_span() -> None:
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        attributes=[KeyValue(key="retail.system", value=any_value("erp/eu"))],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    result = otlp.decode_protobuf(request.SerializeToString())
    assert result.records == []
    assert result.rejected[0].reason.startswith("span 0202020202020202: retail.system: must be")


def test_cut_values_are_named_in_extra_and_counted() -> None:
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="n" * 300,
        attributes=[KeyValue(key="note", value=any_value("v" * 10_000))],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    result = otlp.decode_protobuf(request.SerializeToString())
    assert result.truncated == 1
    assert result.records[0].extra["truncated"] == ["attributes", "operation"]


# --- CloudEvents -----------------------------------------------------------------------------

rfc3339 = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "1969-12-31T23:59:59Z",
            "2201-01-01T00:00:00Z",
            "2200-12-31T23:59:59.999999Z",
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_id=texts,
    source=texts,
    subject=texts,
    time=rfc3339,
    data=st.fixed_dictionaries(
        {"system": st.one_of(st.just("erp"), texts)},
        optional={
            "operation": texts,
            "error": texts,
            "platform_status": texts,
            "channel": texts,
            "store_id": st.one_of(texts, st.integers(min_value=0, max_value=10**80)),
            "amount": numbers,
            "currency": texts,
            "retry_attempt": st.integers(min_value=0, max_value=2**64 - 1),
            "duration_ms": st.floats(min_value=0, max_value=1e17),
            "keys": st.dictionaries(st.sampled_from(["order_number", "Bad Kind"]), texts),
            "attributes": st.dictionaries(texts, values, max_size=3),
        },
    ),
    nesting=st.integers(min_value=0, max_value=25),
)
def test_cloudevents_give_storable_records_or_named_refusals(
    event_id: str,
    source: str,
    subject: str,
    time: str,
    data: dict[str, Any],
    nesting: int,
) -> None:
    data = {**data, "attributes": {**data.get("attributes", {}), "nest": deep(nesting)}}
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "com.acme.test",
        "time": time,
        "subject": subject,
        "acmeext": subject,
        "data": data,
    }
    body = json.dumps(jsonable([event])).encode()
    result = cloudevents.decode(body, cloudevents.BATCH_CONTENT_TYPE, {}, RECEIVED)
    assert len(result.records) + len(result.rejected) == 1
    assert_storable(result)
    if nesting + 1 >= limits.JSON_DEPTH:
        assert result.rejected


def jsonable(value: Any) -> Any:
    """NaN and infinity as null (JSON has neither); big integers stay, as JSON allows."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def test_a_time_the_offset_takes_out_of_range_is_refused_not_a_crash() -> None:
    with pytest.raises(cloudevents.TimeOutOfRange):
        cloudevents.parse_rfc3339("0001-01-01T00:00:00+01:00")
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    event |= {"time": "9999-12-31T23:59:59-01:00", "data": {"system": "erp"}}
    result = cloudevents.decode(
        orjson.dumps(event), cloudevents.STRUCTURED_CONTENT_TYPE, {}, RECEIVED
    )
    assert result.rejected[0].reason.startswith("event 0: time: outside years 1970 to 2200")


# --- Shopify ---------------------------------------------------------------------------------

SECRET = "s"


@settings(max_examples=100, deadline=None)
@given(
    event_id=texts.filter(lambda t: t.strip()),
    shop=texts,
    triggered=rfc3339,
    topic=st.one_of(st.just("orders/create"), texts.map(lambda t: "orders/" + t)),
    payload=st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.integers(min_value=0, max_value=10**30), texts),
            "name": texts,
            "total_price": numbers,
            "currency": texts,
            "source_name": st.sampled_from(["web", "pos"]),
            "location_id": st.one_of(st.integers(min_value=0, max_value=10**80), texts),
            "financial_status": texts,
        },
    ),
)
def test_shopify_gives_a_storable_record_or_a_named_refusal(
    event_id: str, shop: str, triggered: str, topic: str, payload: dict[str, Any]
) -> None:
    raw = json.dumps(jsonable(payload)).encode()
    headers = {
        "x-shopify-topic": topic,
        "x-shopify-event-id": event_id,
        "x-shopify-shop-domain": shop,
        "x-shopify-triggered-at": triggered,
        "x-shopify-hmac-sha256": base64.b64encode(
            hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()
        ).decode(),
    }
    try:
        result = shopify.decode(raw, headers, RECEIVED)
    except DecodeError as exc:
        assert str(exc)
        return
    assert_storable(result)
