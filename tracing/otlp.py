"""OTLP/HTTP trace bodies -> hop records, and the bodies OTLP/HTTP answers with (docs/ingest.md).

``decode_protobuf`` and ``decode_json`` turn one ``ExportTraceServiceRequest`` into a
``DecodeResult``: one ``HopRecord`` per valid span, one ``Rejection`` per refused span
(bad ids, end before start, a bad business key), whose count and reasons feed the
``partial_success`` of the answer built by ``encode_response``. A body that does not parse
at all raises ``DecodeError``; the server answers it with ``encode_status`` and a 400.

The protobuf path reads the generated message objects attribute by attribute: no
``json_format`` round trip, which is much slower (docs/performance.md, "Decoding OTLP").
Both paths end in ``tracing.otlp_common.hop_record`` (shared with the log records of
``tracing.otlp_logs``), so that the two encodings of the same spans give equal records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import orjson
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracing.keys import DEFAULT_RULES, KeyRules
from tracing.otlp_common import (
    MAX_UINT64,
    NO_ITEMS,
    Resource,
    count_truncated,
    hop_record,
    j_attrs,
    j_enum,
    j_str,
    j_uint64,
    json_items,
    ns_time,
    pb_attrs,
    pb_split,
    read_resource,
    scope_name,
    scoped,
    split_attrs,
)
from tracing.records import DecodeError, DecodeResult, HopRecord, Rejection

try:  # googleapis-common-protos, a dependency of opentelemetry-exporter-otlp-proto-http
    from google.rpc import status_pb2 as _status_pb2
except ImportError:  # pragma: no cover - encode google.rpc.Status by hand instead
    _status_pb2 = None

__all__ = ["decode_json", "decode_protobuf", "encode_response", "encode_status", "grpc_code"]

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# Proto3 JSON parsers also accept enum names; OTLP senders should use integers.
_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _reject(index: int, ident: str, reason: str) -> Rejection:
    return Rejection(index=index, reason=f"span {ident or '?'}: {reason}", ident=ident)


# --- protobuf ----------------------------------------------------------------------------


def _pb_ids_error(trace_id: bytes, span_id: bytes, parent: bytes) -> str:
    if len(trace_id) != 16:
        return f"traceId must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE:
        return "traceId must not be all zeros"
    if len(span_id) != 8:
        return f"spanId must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN:
        return "spanId must not be all zeros"
    if parent and len(parent) != 8:
        return f"parentSpanId must be 8 bytes or empty, got {len(parent)}"
    return ""


def decode_protobuf(
    body: bytes, rules: KeyRules = DEFAULT_RULES, received_at: datetime | None = None
) -> DecodeResult:
    """Decode an ``application/x-protobuf`` ExportTraceServiceRequest.

    ``received_at`` stands in for a span without any time. Raises ``DecodeError`` when the
    body is not a parseable request; refused spans are listed in ``rejected`` with their
    position across the whole request.
    """
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    result = DecodeResult()
    records, rejected = result.records, result.rejected
    index = -1
    for resource_spans in request.resource_spans:
        attrs = pb_attrs(resource_spans.resource.attributes)
        base = read_resource(attrs, rules)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_name(scope_spans.scope.name)
            res = scoped(base, attrs, pb_attrs(scope_spans.scope.attributes), rules)
            for span in scope_spans.spans:
                index += 1
                span_id = span.span_id
                span_hex = span_id.hex()
                trace_id = span.trace_id
                parent = span.parent_span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE
                    or span_id == _ZERO_SPAN
                    or (parent and len(parent) != 8)
                ):
                    error = _pb_ids_error(trace_id, span_id, parent)
                    rejected.append(_reject(index, span_hex[:64], error))
                    continue
                status = span.status
                status_code = status.code
                pb_events = span.events
                events = (
                    [
                        {
                            "name": ev.name,
                            "time": ns_time(ev.time_unix_nano).isoformat(),
                            "attributes": pb_attrs(ev.attributes),
                        }
                        for ev in pb_events
                    ]
                    if pb_events
                    else NO_ITEMS
                )
                pb_links = span.links
                links = (
                    [
                        {
                            "trace_id": link.trace_id.hex(),
                            "span_id": link.span_id.hex(),
                            "attributes": pb_attrs(link.attributes),
                        }
                        for link in pb_links
                    ]
                    if pb_links
                    else NO_ITEMS
                )
                free, hop, key_attrs = pb_split(span.attributes)
                try:
                    records.append(
                        hop_record(
                            res,
                            scope,
                            trace_id.hex(),
                            span_hex,
                            parent.hex() if parent and parent != _ZERO_SPAN else "",
                            span.name,
                            span.kind,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            status_code,
                            # The spec allows a message only with a status (SDKs drop it).
                            status.message if status_code else "",
                            free,
                            hop,
                            key_attrs,
                            events,
                            links,
                            rules,
                            received_at,
                        )
                    )
                except ValueError as exc:
                    rejected.append(_reject(index, span_hex, str(exc)))
    result.truncated = count_truncated(records)
    return result


# --- JSON --------------------------------------------------------------------------------


def _j_id(value: Any, size: int, what: str, *, required: bool = True) -> str:
    """A hex id of ``size`` bytes, lower-cased. Optional (a parent): absent or all zeros
    is ""; required: all zeros is refused."""
    if not value and not required:
        return ""
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)  # also skips spaces: hence the length check below
        except ValueError:
            raw = b""
        if len(raw) == size:
            if raw == bytes(size):
                if required:
                    raise ValueError(f"{what} must not be all zeros")
                return ""
            return raw.hex()
    raise ValueError(f"{what} must be {2 * size} hex characters ({size} bytes)")


def _j_span(
    span: Any, res: Resource, scope: str, rules: KeyRules, received_at: datetime | None
) -> HopRecord:
    if not isinstance(span, dict):
        raise ValueError("span must be an object")
    trace_hex = _j_id(span.get("traceId"), 16, "traceId")
    span_hex = _j_id(span.get("spanId"), 8, "spanId")
    parent_hex = _j_id(span.get("parentSpanId"), 8, "parentSpanId", required=False)
    status = span.get("status") or {}
    if not isinstance(status, dict):
        raise ValueError("status must be an object")
    events = []
    for ev in span.get("events") or ():
        if not isinstance(ev, dict):
            raise ValueError("each event must be an object")
        events.append(
            {
                "name": j_str(ev.get("name"), "event name"),
                "time": ns_time(j_uint64(ev.get("timeUnixNano"), "event timeUnixNano")).isoformat(),
                "attributes": j_attrs(ev.get("attributes")),
            }
        )
    links = []
    for link in span.get("links") or ():
        if not isinstance(link, dict):
            raise ValueError("each link must be an object")
        links.append(
            {
                "trace_id": j_str(link.get("traceId"), "link traceId").lower(),
                "span_id": j_str(link.get("spanId"), "link spanId").lower(),
                "attributes": j_attrs(link.get("attributes")),
            }
        )
    free, hop, key_attrs = split_attrs(j_attrs(span.get("attributes")))
    status_code = j_enum(status.get("code"), _STATUS_CODES, "status code")
    return hop_record(
        res,
        scope,
        trace_hex,
        span_hex,
        parent_hex,
        j_str(span.get("name"), "name"),
        j_enum(span.get("kind"), _SPAN_KINDS, "kind"),
        j_uint64(span.get("startTimeUnixNano"), "startTimeUnixNano"),
        j_uint64(span.get("endTimeUnixNano"), "endTimeUnixNano"),
        status_code,
        j_str(status.get("message"), "status message") if status_code else "",
        free,
        hop,
        key_attrs,
        events,
        links,
        rules,
        received_at,
    )


def _j_ident(span: Any) -> str:
    """The span id as sent, for naming a refused span (valid or not)."""
    if isinstance(span, dict):
        value = span.get("spanId")
        if isinstance(value, str):
            return value.lower()[:64]
    return ""


def decode_json(
    body: bytes, rules: KeyRules = DEFAULT_RULES, received_at: datetime | None = None
) -> DecodeResult:
    """Decode an ``application/json`` ExportTraceServiceRequest (OTLP JSON encoding: hex
    ids, lowerCamelCase names, integer enums, 64-bit integers as strings or numbers,
    unknown fields ignored).

    Raises ``DecodeError`` for a body that is not JSON or whose structure above the spans
    is wrong; a span that is malformed in itself is refused alone.
    """
    result = DecodeResult()
    records, rejected = result.records, result.rejected
    index = -1
    for scope, res, span in json_items(body, "ExportTraceServiceRequest", "Spans", "spans", rules):
        index += 1
        try:
            records.append(_j_span(span, res, scope, rules, received_at))
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            rejected.append(_reject(index, _j_ident(span), str(exc)))
    result.truncated = count_truncated(records)
    return result


# --- answers -----------------------------------------------------------------------------


def encode_response(rejected: int, message: str, *, json: bool) -> bytes:
    """The body of a 200 answer: an ExportTraceServiceResponse in the request's encoding.

    ``partial_success`` is left unset on full success (``{}`` in JSON); ``rejected`` 0 with
    a message is the spec's warning form. JSON writes the int64 as a string.
    """
    if json:
        if not rejected and not message:
            return b"{}"
        partial: dict[str, str] = {}
        if rejected:
            partial["rejectedSpans"] = str(rejected)
        if message:
            partial["errorMessage"] = message
        return orjson.dumps({"partialSuccess": partial})
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _varint(number: int) -> bytes:
    number &= MAX_UINT64  # int32 fields encode negatives as 10-byte two's complement
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


#: The gRPC status code of an OTLP/HTTP error answer, by HTTP status (the OTLP/HTTP spec
#: sends a google.rpc.Status, whose code is a gRPC code, not the HTTP status).
GRPC_CODES: Final = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,  # INVALID_ARGUMENT: a body in no encoding OTLP/HTTP has
    429: 8,  # RESOURCE_EXHAUSTED
    503: 14,  # UNAVAILABLE
}


def grpc_code(http_status: int) -> int:
    """The gRPC code for an HTTP error status: INVALID_ARGUMENT for any other 4xx,
    INTERNAL (13) for any other 5xx."""
    return GRPC_CODES.get(http_status, 3 if 400 <= http_status < 500 else 13)


def encode_status(code: int, message: str, *, json: bool) -> bytes:
    """A ``google.rpc.Status`` body for a 4xx/5xx answer, in the request's encoding.

    ``code`` is the gRPC status code (:func:`grpc_code` of the HTTP status)."""
    if json:
        return orjson.dumps({"code": code, "message": message})
    if _status_pb2 is not None:
        return bytes(_status_pb2.Status(code=code, message=message).SerializeToString())
    text = message.encode()
    body = b""
    if code:
        body += b"\x08" + _varint(code)
    if text:
        body += b"\x12" + _varint(len(text)) + text
    return body
