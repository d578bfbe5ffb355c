"""Micro benchmark: OTLP decode throughput (docs/performance.md, "Decoding OTLP").

Builds one 512-span ExportTraceServiceRequest with 8 attributes per span from the
opentelemetry-proto message classes, plus its OTLP JSON twin, and times
``tracing.otlp.decode_protobuf`` and ``decode_json`` on it. Prints spans/s for each.

    .venv/bin/python bench/decode_otlp.py [--spans 512] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracing.otlp import decode_json, decode_protobuf

START_NS = 1_718_000_000_000_000_000


def _attrs(i: int) -> list[tuple[str, Any]]:
    """Eight attributes of the kinds real retail spans carry."""
    return [
        ("retail.key.order_number", f"#{1000 + i}"),
        ("retail.key.shopify_order_id", 820982911946154508 + i),
        ("retail.stage", "posted"),
        ("retail.platform_status", "Pending Fulfillment"),
        ("retail.order.amount", 129.95 + i),
        ("http.request.method", "POST"),
        ("http.response.status_code", 201),
        ("messaging.destination.name", "shop.orders"),
    ]


def _any(value: Any) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(double_value=value)


def _json_any(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"doubleValue": value}


def build(spans: int) -> tuple[bytes, bytes]:
    resource = [("service.name", "erp-connector"), ("service.version", "1.4.2")]
    pb_spans = []
    json_spans = []
    for i in range(spans):
        trace_id = (i // 8 + 1).to_bytes(16, "big")
        span_id = (i + 1).to_bytes(8, "big")
        parent = (i // 8 * 8 + 1).to_bytes(8, "big") if i % 8 else b""
        start = START_NS + i * 1_000_000
        end = start + 12_345_678
        attrs = _attrs(i)
        pb_spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name="post sales order",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=[KeyValue(key=k, value=_any(v)) for k, v in attrs],
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )
        json_spans.append(
            {
                "traceId": trace_id.hex(),
                "spanId": span_id.hex(),
                "parentSpanId": parent.hex(),
                "name": "post sales order",
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(end),
                "attributes": [{"key": k, "value": _json_any(v)} for k, v in attrs],
                "status": {"code": 1},
            }
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[KeyValue(key=k, value=_any(v)) for k, v in resource]),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="bench"), spans=pb_spans)],
            )
        ]
    )
    json_body = orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": k, "value": _json_any(v)} for k, v in resource]
                    },
                    "scopeSpans": [{"scope": {"name": "bench"}, "spans": json_spans}],
                }
            ]
        }
    )
    return request.SerializeToString(), json_body


def measure(decode: Callable[[bytes], Any], body: bytes, spans: int, seconds: float) -> Rate:
    """Decode ``body`` repeatedly for ``seconds``: (best, median) spans/s."""
    result = decode(body)
    assert len(result.records) == spans and not result.rejected, result.rejected[:3]
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        t0 = time.perf_counter()
        decode(body)
        rates.append(spans / (time.perf_counter() - t0))
    return Rate(max(rates), statistics.median(rates))


class Rate(NamedTuple):
    best: float
    median: float

    def __str__(self) -> str:
        return f"{self.best:>11,.0f} best {self.median:>11,.0f} median spans/s"


class _Parsed:
    """Looks like a DecodeResult to ``measure``, for the parse-only baseline."""

    def __init__(self, spans: int) -> None:
        self.records = [None] * spans
        self.rejected: list[Any] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    pb_body, json_body = build(args.spans)

    def parse_only(body: bytes) -> _Parsed:
        ExportTraceServiceRequest.FromString(body)
        return _Parsed(args.spans)

    print(
        f"{args.spans} spans x 8 attributes per request; protobuf {len(pb_body):,} B, "
        f"JSON {len(json_body):,} B; one core, Python {sys.version.split()[0]}"
    )
    print(f"FromString only  {measure(parse_only, pb_body, args.spans, args.seconds / 3)}")
    print(f"decode_protobuf  {measure(decode_protobuf, pb_body, args.spans, args.seconds)}")
    print(f"decode_json      {measure(decode_json, json_body, args.spans, args.seconds)}")


if __name__ == "__main__":
    main()
