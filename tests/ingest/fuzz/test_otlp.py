"""The corpus through ``POST /v1/traces``: OTLP protobuf and OTLP JSON (see the package)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from django.test import Client
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from observatory.hops.models import Hop
from tests.ingest.fuzz.expect import (
    LONG,
    Expect,
    Refuse,
    Reject,
    Store,
    assert_amount,
    assert_short_names,
    assert_stored_rows_fit,
    assert_year,
    check,
    clean_attributes,
    cut,
    equals,
    nested,
    no_nul,
    no_server_error,
    ns,
    system_ok,
    truncated_attribute,
)

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
GOOD_SPAN, BAD_SPAN = 1, 2
T0 = 1_718_000_000_000_000_000  # 2024-06-10T06:13:20Z


# --- OTLP ---------------------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[kv(k, v) for k, v in value.items()]))
    return AnyValue(string_value=value)


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


@dataclass(frozen=True)
class SpanCase:
    name: str
    expect: Expect
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    span_name: str = "bad span"
    status_message: str | None = None
    exception_message: str | None = None
    start: int = T0
    end: int = T0 + 1_000_000
    #: edits the bad span's OTLP JSON (values protobuf cannot carry); JSON only if set
    json_edit: Callable[[dict[str, Any]], None] | None = None
    #: a different expectation for the protobuf encoding
    protobuf: Expect | None = None
    #: an attribute "deep" nested this deep, spliced into the protobuf bytes (the classes
    #: refuse to build what protobuf refuses to parse)
    pb_depth: int = 0
    #: the same for the JSON encoding (where ``json_edit`` put the placeholder)
    json_depth: int = 0


def _span(n: int, case: SpanCase | None) -> Span:
    attrs = {"retail.key.order_number": f"#{n}", "retail.system": "erp"}
    if case is None:
        return Span(
            trace_id=TRACE,
            span_id=n.to_bytes(8, "big"),
            name="good span",
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + 1_000_000,
            attributes=[kv(k, v) for k, v in attrs.items()],
        )
    if "retail.system" in case.resource:
        del attrs["retail.system"]  # the resource names the system of its spans
    attrs.update(case.attributes)
    span = Span(
        trace_id=TRACE,
        span_id=n.to_bytes(8, "big"),
        name=case.span_name,
        start_time_unix_nano=case.start,
        end_time_unix_nano=case.end,
        attributes=[kv(k, v) for k, v in attrs.items()],
    )
    if case.status_message is not None:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=case.status_message))
    if case.exception_message is not None:
        event = span.events.add(name="exception", time_unix_nano=T0)
        event.attributes.append(kv("exception.message", case.exception_message))
    return span


def otlp_request(case: SpanCase) -> ExportTraceServiceRequest:
    """The good span in one resource, the bad one in its own (its resource may be bad)."""
    scope = InstrumentationScope(name="fuzz")
    good = ResourceSpans(
        resource=Resource(attributes=[kv("service.name", "erp-connector")]),
        scope_spans=[ScopeSpans(scope=scope, spans=[_span(GOOD_SPAN, None)])],
    )
    resource = {"service.name": "erp-connector", **case.resource}
    bad = ResourceSpans(
        resource=Resource(attributes=[kv(k, v) for k, v in resource.items()]),
        scope_spans=[ScopeSpans(scope=scope, spans=[_span(BAD_SPAN, case)])],
    )
    return ExportTraceServiceRequest(resource_spans=[good, bad])


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deep_protobuf(request: ExportTraceServiceRequest, depth: int) -> bytes:
    """``request`` with an attribute "deep" of ``depth`` nested maps added to its bad span.

    Messages concatenate: a span's bytes followed by one more field 9 (attributes) is the
    span with one more attribute; the parents are wrapped again around it.
    """
    value = AnyValue(string_value="x").SerializeToString()
    for _ in range(depth):  # AnyValue.kvlist_value(6) -> KeyValueList.values(1) -> KeyValue
        pair = _field(1, b"a") + _field(2, value)
        value = _field(6, _field(1, pair))
    good, bad = request.resource_spans
    scope_spans = bad.scope_spans[0]
    span = scope_spans.spans[0].SerializeToString() + _field(
        9, _field(1, b"deep") + _field(2, value)
    )
    scope = ScopeSpans(scope=scope_spans.scope).SerializeToString() + _field(2, span)
    resource = ResourceSpans(resource=bad.resource).SerializeToString() + _field(2, scope)
    return _field(1, good.SerializeToString()) + _field(1, resource)


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """Proto3 JSON with hex ids: the OTLP JSON encoding."""
    tree = json_format.MessageToDict(request, use_integers_for_enums=True)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for name in ("traceId", "spanId", "parentSpanId"):
                if isinstance(node.get(name), str):
                    node[name] = base64.b64decode(node[name]).hex()
            for child in node.values():
                hexify(child)
        elif isinstance(node, list):
            for child in node:
                hexify(child)

    hexify(tree)
    return tree


def _big_int(span: dict[str, Any]) -> None:
    span["attributes"].append({"key": "big", "value": {"intValue": "1" + "0" * 20}})


def _retry_beyond_64_bits(span: dict[str, Any]) -> None:
    span["attributes"].append(
        {"key": "retail.retry.attempt", "value": {"intValue": str(2**64 + 1)}}
    )


_PLACEHOLDER = "nested-placeholder"


def _deep_json(span: dict[str, Any]) -> None:
    """Marks where ``SpanCase.json_depth`` levels of kvlist go (spliced into the text)."""
    span["attributes"].append({"key": "deep", "value": {"stringValue": _PLACEHOLDER}})


def _nested_json(depth: int) -> bytes:
    text = b'{"stringValue":"x"}'
    opening = b'{"kvlistValue":{"values":[{"key":"a","value":'
    return opening * depth + text + b"}]}}" * depth


def _after_2200() -> int:
    return ns(datetime(2201, 1, 1, tzinfo=UTC))


def _last_second_of_2200() -> int:
    return ns(datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC))


SPAN_CASES = [
    # system names: the pattern CloudEvents uses, on the span and on the resource
    SpanCase("system-65", Reject("retail.system"), {"retail.system": "s" + "x" * 64}),
    SpanCase(
        "system-64", Store(equals("system", "s" + "x" * 63)), {"retail.system": "s" + "x" * 63}
    ),
    SpanCase("system-slash", Reject("retail.system"), {"retail.system": "erp/eu"}),
    SpanCase("system-nul", Reject("retail.system"), {"retail.system": "erp\x00"}),
    SpanCase(
        "resource-system-slash", Reject("retail.system"), resource={"retail.system": "erp/eu"}
    ),
    SpanCase("service-name-long", Store(system_ok), resource={"service.name": "A" * LONG}),
    SpanCase("service-name-nul", Store(system_ok), resource={"service.name": "wms\x00bridge"}),
    SpanCase("service-name-slash", Store(system_ok), resource={"service.name": "wms/eu"}),
    # operation: free text, cut at the column
    SpanCase("name-300", Store(cut("operation")), span_name="n" * 300),
    SpanCase("name-255", Store(equals("operation", "n" * 255)), span_name="n" * 255),
    SpanCase("name-long", Store(cut("operation")), span_name="n" * LONG),
    SpanCase("name-nul", Store(no_nul("operation")), span_name="bad\x00span"),
    # status and exception messages: free text
    SpanCase("status-long", Store(cut("status_message")), status_message="e" * LONG),
    SpanCase("status-nul", Store(no_nul("status_message")), status_message="ERP\x00 503"),
    SpanCase("exception-long", Store(cut("status_message")), exception_message="e" * LONG),
    # free attributes: names and values cleaned and cut, never refused for it
    SpanCase("attribute-name-nul", Store(clean_attributes), {"a\x00b": "x"}),
    SpanCase("attribute-value-nul", Store(clean_attributes), {"note": "a\x00b"}),
    SpanCase("attribute-value-long", Store(truncated_attribute("note")), {"note": "v" * LONG}),
    SpanCase(
        "attribute-name-long",
        Store(lambda hop: assert_short_names(hop.attributes)),
        {"k" * LONG: "x"},
    ),
    SpanCase("attribute-nested-30", Reject("deep"), {"deep": nested(30)}),
    SpanCase("attribute-nested-16", Store(), {"deep": nested(16)}),
    # each level of kvlist is four levels of JSON: orjson reads 1,024, so 250 levels are
    # refused with the span, 300 with the whole body
    SpanCase("attribute-nested-250", Reject("deep"), json_edit=_deep_json, json_depth=250),
    SpanCase("attribute-nested-300", Refuse(400), json_edit=_deep_json, json_depth=300),
    # protobuf stops at about 32 levels of attribute maps (upb): the whole body is refused
    SpanCase("attribute-nested-300-protobuf", Refuse(400), protobuf=Refuse(400), pb_depth=300),
    SpanCase("attribute-int-beyond-64-bits", Reject("big"), json_edit=_big_int),
    # business keys: identifiers, refused whole
    SpanCase("key-nul", Reject("retail.key.order_number"), {"retail.key.order_number": "#1\x00"}),
    SpanCase("key-257", Reject("retail.key.order_number"), {"retail.key.order_number": "k" * 257}),
    SpanCase("key-256", Store(), {"retail.key.order_number": "k" * 256}),
    # hop fields with a column each
    SpanCase("channel-40", Reject("retail.channel"), {"retail.channel": "c" * 40}),
    SpanCase("channel-32", Store(equals("channel", "c" * 32)), {"retail.channel": "c" * 32}),
    SpanCase("channel-nul", Reject("retail.channel"), {"retail.channel": "web\x00"}),
    SpanCase("store-70", Reject("retail.store_id"), {"retail.store_id": "s" * 70}),
    SpanCase("store-64", Store(equals("store_id", "s" * 64)), {"retail.store_id": "s" * 64}),
    SpanCase("store-nul", Reject("retail.store_id"), {"retail.store_id": "ST\x0012"}),
    SpanCase(
        "platform-status-200", Store(cut("platform_status")), {"retail.platform_status": "p" * 200}
    ),
    SpanCase(
        "platform-status-128",
        Store(equals("platform_status", "p" * 128)),
        {"retail.platform_status": "p" * 128},
    ),
    SpanCase("stage-40", Reject("retail.stage"), {"retail.stage": "s" * 40}),
    SpanCase("currency-7", Reject("retail.order.currency"), {"retail.order.currency": "EURO123"}),
    SpanCase("currency-3", Store(equals("currency", "EUR")), {"retail.order.currency": "EUR"}),
    SpanCase("amount-1e15", Reject("retail.order.amount"), {"retail.order.amount": 1e15}),
    SpanCase("amount--1e20", Reject("retail.order.amount"), {"retail.order.amount": "-1e20"}),
    SpanCase("amount-1E+1000", Reject("retail.order.amount"), {"retail.order.amount": "1E+1000"}),
    SpanCase(
        "amount-max",
        Store(lambda hop: assert_amount(hop, "999999999999.99")),
        {"retail.order.amount": "999999999999.99"},
    ),
    SpanCase("retry-2^31", Reject("retail.retry.attempt"), {"retail.retry.attempt": 2**31}),
    SpanCase(
        "retry-2^31-1",
        Store(equals("retry_attempt", 2**31 - 1)),
        {"retail.retry.attempt": 2**31 - 1},
    ),
    SpanCase(
        "retry-beyond-64-bits", Reject("retail.retry.attempt"), json_edit=_retry_beyond_64_bits
    ),
    # times
    SpanCase("start-after-2200", Reject("startTimeUnixNano"), start=_after_2200(), end=0),
    SpanCase(
        "end-after-2200", Reject("endTimeUnixNano"), start=_last_second_of_2200(), end=_after_2200()
    ),
    SpanCase(
        "start-2200",
        Store(lambda hop: assert_year(hop, 2200)),
        start=_last_second_of_2200(),
        end=_last_second_of_2200(),
    ),
]


def _span_cases(encoding: str) -> list[Any]:
    out = []
    for case in SPAN_CASES:
        if encoding == "protobuf" and case.json_edit is not None:
            continue
        if encoding == "json" and case.protobuf is not None:
            continue
        out.append(pytest.param(case, id=case.name))
    return out


def _otlp_uid(n: int) -> str:
    return f"otlp:{TRACE.hex()}:{n:016x}"


def _post_otlp(client: Client, case: SpanCase, encoding: str) -> tuple[int, int, str]:
    """(HTTP status, rejected spans, error message) of posting ``case``."""
    request = otlp_request(case)
    if encoding == "protobuf":
        body = request.SerializeToString()
        if case.pb_depth:
            body = deep_protobuf(request, case.pb_depth)
        response = client.post("/v1/traces", body, content_type="application/x-protobuf")
        no_server_error(response)
        if response.status_code != 200:
            return response.status_code, 0, ""
        answer = ExportTraceServiceResponse.FromString(response.content)
        return 200, answer.partial_success.rejected_spans, answer.partial_success.error_message
    tree = otlp_json(request)
    if case.json_edit is not None:
        bad = tree["resourceSpans"][1]["scopeSpans"][0]["spans"][0]
        case.json_edit(bad)
    body = orjson.dumps(tree)
    if case.json_depth:
        placeholder = orjson.dumps({"stringValue": _PLACEHOLDER})
        body = body.replace(placeholder, _nested_json(case.json_depth))
    response = client.post("/v1/traces", body, content_type="application/json")
    no_server_error(response)
    if response.status_code != 200:
        return response.status_code, 0, ""
    partial = orjson.loads(response.content).get("partialSuccess", {})
    return 200, int(partial.get("rejectedSpans", 0)), partial.get("errorMessage", "")


@pytest.mark.django_db
@pytest.mark.parametrize("case", _span_cases("protobuf"))
def test_otlp_protobuf(client: Client, case: SpanCase) -> None:
    _otlp(client, case, "protobuf")


@pytest.mark.django_db
@pytest.mark.parametrize("case", _span_cases("json"))
def test_otlp_json(client: Client, case: SpanCase) -> None:
    _otlp(client, case, "json")


def _otlp(client: Client, case: SpanCase, encoding: str) -> None:
    expect = case.protobuf if encoding == "protobuf" and case.protobuf else case.expect
    status, rejected, message = _post_otlp(client, case, encoding)
    if isinstance(expect, Refuse):
        assert status == expect.status
    else:
        assert status == 200
        if isinstance(expect, Reject):
            assert rejected == 1, message
            assert expect.word in message, message
        else:
            assert rejected == 0, message
    stored = set(Hop.objects.values_list("uid", flat=True))
    check(expect, stored, _otlp_uid(BAD_SPAN), _otlp_uid(GOOD_SPAN))
    assert_stored_rows_fit()
