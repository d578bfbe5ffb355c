"""OTLP/HTTP trace bodies -> hop records, and the bodies OTLP/HTTP answers with (docs/ingest.md).

``decode_protobuf`` and ``decode_json`` turn one ``ExportTraceServiceRequest`` into a
``DecodeResult``: one ``HopRecord`` per valid span, one ``Rejection`` per refused span
(bad ids, end before start, a bad business key), whose count and reasons feed the
``partial_success`` of the answer built by ``encode_response``. A body that does not parse
at all raises ``DecodeError``; the server answers it with ``encode_status`` and a 400.

The protobuf path reads the generated message objects attribute by attribute: no
``json_format`` round trip, which is much slower (docs/performance.md, "Decoding OTLP").
Both paths share ``_hop`` so that the two encodings of the same spans give equal records.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import orjson
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tracing import conventions, limits
from tracing.keys import (
    DEFAULT_RULES,
    KeyRules,
    dedupe,
    merge_keys,
    named_keys,
    prefixed_keys,
    resource_system,
)
from tracing.records import DecodeError, DecodeResult, HopRecord, Key, Rejection

try:  # googleapis-common-protos, a dependency of opentelemetry-exporter-otlp-proto-http
    from google.rpc import status_pb2 as _status_pb2
except ImportError:  # pragma: no cover - encode google.rpc.Status by hand instead
    _status_pb2 = None

__all__ = ["decode_json", "decode_protobuf", "encode_response", "encode_status", "grpc_code"]

STATUS_CODE_ERROR = 2
EXCEPTION_EVENT = conventions.EXCEPTION_EVENT
EXCEPTION_MESSAGE = conventions.EXCEPTION_MESSAGE

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_MAX_UINT64 = (1 << 64) - 1
_HOP_FIELDS = conventions.HOP_FIELDS
_KEY_PREFIX = conventions.KEY_PREFIX
_RETAIL = "retail."
_OK = conventions.OK
_ERROR = conventions.ERROR
_VIA = conventions.VIA_OTLP
_SYSTEM = conventions.SYSTEM
_RETRY_ATTEMPT = conventions.RETRY_ATTEMPT
_REPLAY = conventions.REPLAY
_ORDER_AMOUNT = conventions.ORDER_AMOUNT
_PLATFORM_STATUS = conventions.PLATFORM_STATUS
_STAGE = conventions.STAGE
_CHANNEL = conventions.CHANNEL
_STORE_ID = conventions.STORE_ID
_ORDER_CURRENCY = conventions.ORDER_CURRENCY
_fromtimestamp = datetime.fromtimestamp
_enforce = limits.enforce
#: How OTLP names the hop fields, for the reasons of refused spans.
_WIRE = limits.Wire(
    system=conventions.SYSTEM,
    stage=conventions.STAGE,
    channel=conventions.CHANNEL,
    store_id=conventions.STORE_ID,
    currency=conventions.ORDER_CURRENCY,
    amount=conventions.ORDER_AMOUNT,
    retry_attempt=conventions.RETRY_ATTEMPT,
    start_time="startTimeUnixNano",
    end_time="endTimeUnixNano",
    key_prefix=conventions.KEY_PREFIX,
    free_source=True,  # the resource's service.name
)
#: Stands for "no events" / "no links": most spans have none, and a tuple is not tracked by
#: the garbage collector the way two fresh lists per span would be.
_NONE: tuple[dict[str, Any], ...] = ()

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


class _Resource(NamedTuple):
    """What every span of one ``ResourceSpans`` shares, computed once."""

    attrs: dict[str, Any]
    keys: list[Key]
    key_error: str  # a bad retail.key.* (or attribute) on the resource rejects its spans
    system: str
    service: str
    hop: dict[str, Any]  # hop fields set on the resource: defaults for its spans
    #: the attributes as each span's extra detail shows them: held to the limits once
    #: here rather than once per span (tracing/limits.py), and how many values were cut
    shown: dict[str, Any]
    cut: int


def _resource(attrs: dict[str, Any], rules: KeyRules) -> _Resource:
    try:
        keys = prefixed_keys(attrs)
        shown, cut = limits.clean_json(attrs, "resource attribute")
        key_error = ""
    except ValueError as exc:
        keys, key_error, shown, cut = [], f"resource {exc}", {}, 0
    service = attrs.get(conventions.SERVICE_NAME)
    return _Resource(
        attrs,
        keys,
        key_error,
        resource_system(attrs, rules),
        service.strip() if isinstance(service, str) else "",
        {k: v for k, v in attrs.items() if k in _HOP_FIELDS and k != conventions.SYSTEM},
        shown,
        cut,
    )


def _scoped(
    res: _Resource, attrs: dict[str, Any], scope_attrs: dict[str, Any], rules: KeyRules
) -> _Resource:
    """What the items of one scope share: its attributes over its resource's (docs/ingest.md,
    "Attribute conventions"); the resource itself when the scope has none (the usual case)."""
    return _resource({**attrs, **scope_attrs}, rules) if scope_attrs else res


# --- attribute values --------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: Any) -> int:
    """``retail.retry.attempt`` leniently: an int, an integral double or a numeric string."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    if isinstance(value, str):
        try:
            return max(int(value.strip()), 0)
        except ValueError:
            return 0
    return 0


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, bool | int | float):
        return bool(value)
    return False


def _decimal(value: Any) -> Decimal | None:
    """``retail.order.amount``: a double (via its shortest repr, so 0.1 stays 0.1), an int
    or a decimal string; anything else, NaN or infinity gives None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)
    elif isinstance(value, str):
        value = value.strip()
    elif not isinstance(value, int):
        return None
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def _time(ns: int) -> datetime:
    # Through whole microseconds: the float then never rounds to a neighbouring one.
    # (Inlined in _hop.)
    return _fromtimestamp(ns // 1000 / 1e6, UTC)


# --- the record, shared by both encodings ------------------------------------------------


def _hop(
    res: _Resource,
    scope: str,
    trace_hex: str,
    span_hex: str,
    parent_hex: str,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    status_code: int,
    status_message: str,
    free: dict[str, Any],
    hop: dict[str, Any],
    key_attrs: dict[str, Any],
    events: Sequence[dict[str, Any]],
    links: Sequence[dict[str, Any]],
    rules: KeyRules,
    received_at: datetime | None,
    uid: str = "",
    via: str = _VIA,
) -> HopRecord:
    """One valid span -> one hop; ``ValueError`` (its message names the field) rejects it.

    A log record comes here too (tracing/otlp_logs.py), with its own ``uid`` and ``via``.

    The span's attributes come sorted by ``_split``: ``hop`` holds the hop fields
    (``conventions.HOP_FIELDS``), ``key_attrs`` the ``retail.key.*`` ones, ``free`` all
    the others (it becomes the record's ``attributes``).
    """
    if res.key_error:
        raise ValueError(res.key_error)
    # A missing time (0) is not "1970": an instant at the other end, else at arrival.
    if start_ns:
        if end_ns and end_ns < start_ns:
            raise ValueError("endTimeUnixNano is before startTimeUnixNano")
        start = _fromtimestamp(start_ns // 1000 / 1e6, UTC)
        end = _fromtimestamp(end_ns // 1000 / 1e6, UTC) if end_ns else start
    elif end_ns:
        start = end = _fromtimestamp(end_ns // 1000 / 1e6, UTC)
    else:
        start = end = received_at or datetime.now(UTC)

    keys = named_keys(key_attrs) if key_attrs else []
    if res.keys or rules.attribute_kinds:
        # the rules read the span's attributes; unless one names a retail.* attribute, all
        # it may read is among the free ones (the three maps share no name)
        span_attrs = {**free, **hop, **key_attrs} if rules.retail_names else free
        keys = merge_keys(keys, span_attrs, res.attrs, res.keys, rules)
    elif len(keys) > 1 and len(set(keys)) != len(keys):
        # One attribute per kind: only array elements can repeat a key here.
        keys = dedupe(keys)

    outcome = _ERROR if status_code == STATUS_CODE_ERROR else _OK
    for event in events:
        if event["name"] == EXCEPTION_EVENT:
            outcome = _ERROR
            if not status_message:
                status_message = _text(event["attributes"].get(EXCEPTION_MESSAGE))
            break

    if res.hop:  # docs/ingest.md: meaning is read from the span, then from the resource
        hop = {**res.hop, **hop}
    system = res.system
    retry_attempt = 0
    replay = False
    platform_status = stage = channel = store_id = currency = ""
    amount = None
    if hop:
        # Hop fields, with the common string case inlined (this runs for every span).
        get = hop.get
        value = get(_SYSTEM)
        if value is not None:
            system = _text(value).lower() or system
        value = get(_STAGE)
        if value is not None:
            stage = value.strip() if type(value) is str else _text(value)
        value = get(_PLATFORM_STATUS)
        if value is not None:
            platform_status = value.strip() if type(value) is str else _text(value)
        value = get(_ORDER_AMOUNT)
        if value is not None:
            if type(value) is float:
                # x - x is 0.0 only for a finite x; repr keeps 0.1 as 0.1, not its binary.
                amount = Decimal(repr(value)) if value - value == 0 else None
            else:
                amount = _decimal(value)
        value = get(_ORDER_CURRENCY)
        if value is not None:
            currency = _text(value).upper()
        value = get(_CHANNEL)
        if value is not None:
            channel = _text(value)
        value = get(_STORE_ID)
        if value is not None:
            store_id = _text(value)
        value = get(_RETRY_ATTEMPT)
        if value is not None:
            retry_attempt = _int(value)
        value = get(_REPLAY)
        if value is not None:
            replay = _bool(value)

    shown = res.shown
    if shown and scope and kind:  # the usual span: one dict display, no stores
        # A copy of the resource per span: the server may mask one record's extra in place.
        extra: dict[str, Any] = {"resource": shown.copy(), "scope": scope, "kind": kind}
    else:
        extra = {}
        if shown:
            extra["resource"] = shown.copy()
        if scope:
            extra["scope"] = scope
        if kind:
            extra["kind"] = kind
    extra_cut = res.cut
    if links or events:  # rare: held to the limits here, the rest of extra already is
        more, n = limits.clean_json({"links": list(links), "events": list(events)}, "")
        extra_cut += n
        if links:
            extra["links"] = more["links"]
        if events:
            extra["events"] = more["events"]

    # Positional: faster than keywords on this path (docs/performance.md); tests pin the order.
    record = HopRecord(
        uid or f"otlp:{trace_hex}:{span_hex}",
        via,
        system,
        name,  # operation
        start,  # start_time
        end,  # end_time
        outcome,
        status_message,
        trace_hex,  # trace_id
        span_hex,  # span_id
        parent_hex,  # parent_span_id
        retry_attempt,
        replay,
        platform_status,
        stage,
        channel,
        store_id,
        amount,
        currency,
        res.service,  # source
        keys,
        free,  # attributes
        extra,
    )
    # OutOfBounds is a ValueError: the span is refused
    _enforce(record, _WIRE, extra_clean=True, extra_cut=extra_cut)
    return record


def _scope_name(name: str) -> str:
    if len(name) > limits.TEXT or "\x00" in name:
        return limits.fit(name, limits.TEXT)
    return name


def _reject(index: int, ident: str, reason: str) -> Rejection:
    return Rejection(index=index, reason=f"span {ident or '?'}: {reason}", ident=ident)


# --- protobuf ----------------------------------------------------------------------------


def _pb_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def _pb_attrs(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in attributes}


#: Attribute name -> which of a span's maps it goes to (0 free, 1 hop field, 2 key), for
#: the names seen so far (at most _FILED_MAX of them): a lookup where the prefix tests of
#: _file cost two method calls an attribute.
_filed: dict[str, int] = {}
_FILED_MAX = 4096


def _file(key: str) -> int:
    if key.startswith(_RETAIL):
        where = 2 if key.startswith(_KEY_PREFIX) else 1 if key in _HOP_FIELDS else 0
    else:
        where = 0
    if len(_filed) < _FILED_MAX:
        _filed[key] = where
    return where


def _pb_split(
    attributes: Iterable[KeyValue],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(free attributes, hop fields, ``retail.key.*`` attributes) of a span, in one pass.

    The hot loop of the decoder: a non-empty ``string_value`` answers without the
    ``WhichOneof`` call, which costs twice a field read under upb.
    """
    free: dict[str, Any] = {}
    hop: dict[str, Any] = {}
    key_attrs: dict[str, Any] = {}
    maps = (free, hop, key_attrs)
    filed = _filed
    for kv in attributes:
        key = kv.key
        value = kv.value
        plain: Any = value.string_value
        if not plain:
            # Oneof: a non-zero int_value is the set field; else ask which one is set.
            plain = value.int_value or _pb_value(value)
        where = filed.get(key)
        if where is None:
            where = _file(key)
        maps[where][key] = plain
    return free, hop, key_attrs


def _split(attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``_pb_split`` for attributes already read into a dict (the JSON path)."""
    free: dict[str, Any] = {}
    hop: dict[str, Any] = {}
    key_attrs: dict[str, Any] = {}
    for key, value in attrs.items():
        if key.startswith(_RETAIL):
            if key.startswith(_KEY_PREFIX):
                key_attrs[key] = value
            elif key in _HOP_FIELDS:
                hop[key] = value
            else:
                free[key] = value
        else:
            free[key] = value
    return free, hop, key_attrs


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
        attrs = _pb_attrs(resource_spans.resource.attributes)
        base = _resource(attrs, rules)
        for scope_spans in resource_spans.scope_spans:
            scope = _scope_name(scope_spans.scope.name)
            res = _scoped(base, attrs, _pb_attrs(scope_spans.scope.attributes), rules)
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
                            "time": _time(ev.time_unix_nano).isoformat(),
                            "attributes": _pb_attrs(ev.attributes),
                        }
                        for ev in pb_events
                    ]
                    if pb_events
                    else _NONE
                )
                pb_links = span.links
                links = (
                    [
                        {
                            "trace_id": link.trace_id.hex(),
                            "span_id": link.span_id.hex(),
                            "attributes": _pb_attrs(link.attributes),
                        }
                        for link in pb_links
                    ]
                    if pb_links
                    else _NONE
                )
                free, hop, key_attrs = _pb_split(span.attributes)
                try:
                    records.append(
                        _hop(
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
    result.truncated = _count_truncated(records)
    return result


def _count_truncated(records: list[HopRecord]) -> int:
    return sum(1 for r in records if "truncated" in r.extra)


# --- JSON --------------------------------------------------------------------------------


def _j_int(value: Any, what: str) -> int:
    """A 64-bit integer, sent as a decimal string (the OTLP rule) or a JSON number."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{what} must be an integer")


def _j_uint64(value: Any, what: str) -> int:
    if value is None:
        return 0
    number = _j_int(value, what)
    if not 0 <= number <= _MAX_UINT64:
        raise ValueError(f"{what} must be an unsigned 64-bit integer")
    return number


def _j_enum(value: Any, names: Mapping[str, int], what: str) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if isinstance(value, str) and value in names:
        return names[value]
    raise ValueError(f"{what} must be an integer enum value")


def _j_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ValueError(f"{what} must be a string")


def _j_value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("attribute value must be an AnyValue object")
    for tag, inner in value.items():
        if tag == "stringValue":
            if isinstance(inner, str):
                return inner
            raise ValueError("stringValue must be a string")
        if tag == "intValue":
            return limits.int64(_j_int(inner, "intValue"), "intValue")
        if tag == "boolValue":
            if isinstance(inner, bool):
                return inner
            raise ValueError("boolValue must be true or false")
        if tag == "doubleValue":
            # Proto3 JSON also allows "NaN", "Infinity", "-Infinity" and numeric strings.
            if isinstance(inner, float | int | str) and not isinstance(inner, bool):
                return float(inner)
            raise ValueError("doubleValue must be a number")
        if tag == "arrayValue":
            items = (inner or {}).get("values") or []
            if not isinstance(items, list):
                raise ValueError("arrayValue.values must be a list")
            return [_j_value(v) for v in items]
        if tag == "kvlistValue":
            return _j_attrs((inner or {}).get("values"))
        if tag == "bytesValue":
            # Only ids are hex in OTLP JSON; bytes values keep proto3's base64.
            try:
                return base64.b64decode(_j_str(inner, "bytesValue"), validate=True).hex()
            except binascii.Error:
                raise ValueError("bytesValue must be base64") from None
        # Unknown fields are ignored, as the OTLP JSON rules require.
    return None


def _j_attrs(attributes: Any) -> dict[str, Any]:
    if not attributes:
        return {}
    if not isinstance(attributes, list):
        raise ValueError("attributes must be a list")
    out: dict[str, Any] = {}
    for kv in attributes:
        # Proto3 JSON leaves out default values: a missing key is "", a missing value unset.
        key = kv.get("key", "") if type(kv) is dict else None
        if type(key) is not str:
            raise ValueError("each attribute must be an object with a string key")
        value = kv.get("value")
        try:
            if type(value) is dict:
                text = value.get("stringValue")  # the common case, without the call below
                out[key] = text if type(text) is str else _j_value(value)
            else:
                out[key] = None if value is None else _j_value(value)
        except ValueError as exc:  # name the attribute: the reason of the refused span
            raise ValueError(f"attribute {key[: limits.ATTRIBUTE_NAME]!r}: {exc}") from None
    return out


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


def _j_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise DecodeError(f"{what} must be an object")


def _j_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise DecodeError(f"{what} must be a list")


def _j_span(
    span: Any, res: _Resource, scope: str, rules: KeyRules, received_at: datetime | None
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
                "name": _j_str(ev.get("name"), "event name"),
                "time": _time(_j_uint64(ev.get("timeUnixNano"), "event timeUnixNano")).isoformat(),
                "attributes": _j_attrs(ev.get("attributes")),
            }
        )
    links = []
    for link in span.get("links") or ():
        if not isinstance(link, dict):
            raise ValueError("each link must be an object")
        links.append(
            {
                "trace_id": _j_str(link.get("traceId"), "link traceId").lower(),
                "span_id": _j_str(link.get("spanId"), "link spanId").lower(),
                "attributes": _j_attrs(link.get("attributes")),
            }
        )
    free, hop, key_attrs = _split(_j_attrs(span.get("attributes")))
    status_code = _j_enum(status.get("code"), _STATUS_CODES, "status code")
    return _hop(
        res,
        scope,
        trace_hex,
        span_hex,
        parent_hex,
        _j_str(span.get("name"), "name"),
        _j_enum(span.get("kind"), _SPAN_KINDS, "kind"),
        _j_uint64(span.get("startTimeUnixNano"), "startTimeUnixNano"),
        _j_uint64(span.get("endTimeUnixNano"), "endTimeUnixNano"),
        status_code,
        _j_str(status.get("message"), "status message") if status_code else "",
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


def _j_scope(
    parent: dict[str, Any], where: str, base: _Resource, attrs: dict[str, Any], rules: KeyRules
) -> tuple[str, _Resource]:
    """The scope name of a ``scopeSpans`` (or ``scopeLogs``) object, and what its items share."""
    scope = _j_object(parent.get("scope"), f"{where}.scope")
    name = scope.get("name")
    try:
        scope_attrs = _j_attrs(scope.get("attributes"))
    except ValueError as exc:
        raise DecodeError(f"{where}.scope: {exc}") from None
    return (
        _scope_name(name) if isinstance(name, str) else "",
        _scoped(base, attrs, scope_attrs, rules),
    )


def json_items(
    body: bytes, request_name: str, signal: str, items: str, rules: KeyRules
) -> Iterator[tuple[str, _Resource, Any]]:
    """(scope name, resource, item) of each item of an OTLP JSON export request of
    ``signal`` (``"Spans"``, ``"Logs"``: ``resourceSpans`` / ``scopeSpans``...) whose items
    are under ``items`` (``"spans"``, ``"logRecords"``); one resource dict per scope, the
    same object for every item of it.

    Raises ``DecodeError`` for a body that is not JSON or whose structure above the items is
    wrong (the position named); an item is handed over as it is, to be judged alone.
    """
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise DecodeError(f"body must be a JSON object ({request_name})")
    top = f"resource{signal}"
    for r, resource_group in enumerate(_j_list(request.get(top), top)):
        where = f"{top}[{r}]"
        resource_group = _j_object(resource_group, where)
        resource = _j_object(resource_group.get("resource"), f"{where}.resource")
        try:
            attrs = _j_attrs(resource.get("attributes"))
        except ValueError as exc:
            raise DecodeError(f"{where}.resource: {exc}") from None
        base = _resource(attrs, rules)
        scopes = _j_list(resource_group.get(f"scope{signal}"), f"{where}.scope{signal}")
        for s, scope_group in enumerate(scopes):
            scope_where = f"{where}.scope{signal}[{s}]"
            scope_group = _j_object(scope_group, scope_where)
            scope, res = _j_scope(scope_group, scope_where, base, attrs, rules)
            for item in _j_list(scope_group.get(items), f"{scope_where}.{items}"):
                yield scope, res, item


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
    result.truncated = _count_truncated(records)
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
    number &= _MAX_UINT64  # int32 fields encode negatives as 10-byte two's complement
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
