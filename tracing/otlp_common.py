"""What OTLP traces and logs share: resources and scopes, attribute values in both encodings,
and the hop record a span or a log record becomes (docs/ingest.md).

``tracing.otlp`` (spans) and ``tracing.otlp_logs`` (log records) each walk their own
messages and hand every item to ``hop_record``, so the two signals, and the two encodings of
each, read the same attributes the same way. The protobuf readers take the generated
message objects attribute by attribute (no ``json_format`` round trip: docs/performance.md,
"Decoding OTLP"); the JSON readers follow the OTLP JSON rules (hex ids, lowerCamelCase
names, 64-bit integers as strings, unknown fields ignored).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tracing import conventions, limits
from tracing.keys import (
    KeyRules,
    dedupe,
    merge_keys,
    named_keys,
    prefixed_keys,
    resource_system,
)
from tracing.records import DecodeError, HopRecord, Key

__all__ = [
    "MAX_UINT64",
    "NO_ITEMS",
    "STATUS_CODE_ERROR",
    "Resource",
    "as_text",
    "count_truncated",
    "hop_record",
    "j_attrs",
    "j_enum",
    "j_int",
    "j_list",
    "j_object",
    "j_str",
    "j_uint64",
    "j_value",
    "json_items",
    "ns_time",
    "pb_attrs",
    "pb_split",
    "pb_value",
    "read_resource",
    "scope_name",
    "scoped",
    "split_attrs",
]

STATUS_CODE_ERROR = 2
EXCEPTION_EVENT = conventions.EXCEPTION_EVENT
EXCEPTION_MESSAGE = conventions.EXCEPTION_MESSAGE

MAX_UINT64 = (1 << 64) - 1
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
NO_ITEMS: tuple[dict[str, Any], ...] = ()

# Proto3 JSON parsers also accept enum names; OTLP senders should use integers.


class Resource(NamedTuple):
    """What every item (span, log record) of one resource and scope shares, computed once."""

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


def read_resource(attrs: dict[str, Any], rules: KeyRules) -> Resource:
    try:
        keys = prefixed_keys(attrs)
        shown, cut = limits.clean_json(attrs, "resource attribute")
        key_error = ""
    except ValueError as exc:
        keys, key_error, shown, cut = [], f"resource {exc}", {}, 0
    service = attrs.get(conventions.SERVICE_NAME)
    return Resource(
        attrs,
        keys,
        key_error,
        resource_system(attrs, rules),
        service.strip() if isinstance(service, str) else "",
        {k: v for k, v in attrs.items() if k in _HOP_FIELDS and k != conventions.SYSTEM},
        shown,
        cut,
    )


def scoped(
    res: Resource, attrs: dict[str, Any], scope_attrs: dict[str, Any], rules: KeyRules
) -> Resource:
    """What the items of one scope share: its attributes over its resource's (docs/ingest.md,
    "Attribute conventions"); the resource itself when the scope has none (the usual case)."""
    return read_resource({**attrs, **scope_attrs}, rules) if scope_attrs else res


# --- attribute values --------------------------------------------------------------------


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_int(value: Any) -> int:
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


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, bool | int | float):
        return bool(value)
    return False


def as_decimal(value: Any) -> Decimal | None:
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


def ns_time(ns: int) -> datetime:
    # Through whole microseconds: the float then never rounds to a neighbouring one.
    # (Inlined in hop_record.)
    return _fromtimestamp(ns // 1000 / 1e6, UTC)


# --- the record, shared by both encodings ------------------------------------------------


def hop_record(
    res: Resource,
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

    The span's attributes come sorted by ``split_attrs``: ``hop`` holds the hop fields
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
                status_message = as_text(event["attributes"].get(EXCEPTION_MESSAGE))
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
            system = as_text(value).lower() or system
        value = get(_STAGE)
        if value is not None:
            stage = value.strip() if type(value) is str else as_text(value)
        value = get(_PLATFORM_STATUS)
        if value is not None:
            platform_status = value.strip() if type(value) is str else as_text(value)
        value = get(_ORDER_AMOUNT)
        if value is not None:
            if type(value) is float:
                # x - x is 0.0 only for a finite x; repr keeps 0.1 as 0.1, not its binary.
                amount = Decimal(repr(value)) if value - value == 0 else None
            else:
                amount = as_decimal(value)
        value = get(_ORDER_CURRENCY)
        if value is not None:
            currency = as_text(value).upper()
        value = get(_CHANNEL)
        if value is not None:
            channel = as_text(value)
        value = get(_STORE_ID)
        if value is not None:
            store_id = as_text(value)
        value = get(_RETRY_ATTEMPT)
        if value is not None:
            retry_attempt = as_int(value)
        value = get(_REPLAY)
        if value is not None:
            replay = as_bool(value)

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


def scope_name(name: str) -> str:
    if len(name) > limits.TEXT or "\x00" in name:
        return limits.fit(name, limits.TEXT)
    return name


# --- protobuf ----------------------------------------------------------------------------


def pb_value(value: AnyValue) -> Any:
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
        return [pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def pb_attrs(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: pb_value(kv.value) for kv in attributes}


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


def pb_split(
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
            plain = value.int_value or pb_value(value)
        where = filed.get(key)
        if where is None:
            where = _file(key)
        maps[where][key] = plain
    return free, hop, key_attrs


def split_attrs(attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``pb_split`` for attributes already read into a dict (the JSON path)."""
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


def count_truncated(records: list[HopRecord]) -> int:
    return sum(1 for r in records if "truncated" in r.extra)


# --- JSON --------------------------------------------------------------------------------


def j_int(value: Any, what: str) -> int:
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


def j_uint64(value: Any, what: str) -> int:
    if value is None:
        return 0
    number = j_int(value, what)
    if not 0 <= number <= MAX_UINT64:
        raise ValueError(f"{what} must be an unsigned 64-bit integer")
    return number


def j_enum(value: Any, names: Mapping[str, int], what: str) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if isinstance(value, str) and value in names:
        return names[value]
    raise ValueError(f"{what} must be an integer enum value")


def j_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ValueError(f"{what} must be a string")


def j_value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("attribute value must be an AnyValue object")
    for tag, inner in value.items():
        if tag == "stringValue":
            if isinstance(inner, str):
                return inner
            raise ValueError("stringValue must be a string")
        if tag == "intValue":
            return limits.int64(j_int(inner, "intValue"), "intValue")
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
            return [j_value(v) for v in items]
        if tag == "kvlistValue":
            return j_attrs((inner or {}).get("values"))
        if tag == "bytesValue":
            # Only ids are hex in OTLP JSON; bytes values keep proto3's base64.
            try:
                return base64.b64decode(j_str(inner, "bytesValue"), validate=True).hex()
            except binascii.Error:
                raise ValueError("bytesValue must be base64") from None
        # Unknown fields are ignored, as the OTLP JSON rules require.
    return None


def j_attrs(attributes: Any) -> dict[str, Any]:
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
                out[key] = text if type(text) is str else j_value(value)
            else:
                out[key] = None if value is None else j_value(value)
        except ValueError as exc:  # name the attribute: the reason of the refused span
            raise ValueError(f"attribute {key[: limits.ATTRIBUTE_NAME]!r}: {exc}") from None
    return out


def j_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise DecodeError(f"{what} must be an object")


def j_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise DecodeError(f"{what} must be a list")


def _j_scope(
    parent: dict[str, Any], where: str, base: Resource, attrs: dict[str, Any], rules: KeyRules
) -> tuple[str, Resource]:
    """The scope name of a ``scopeSpans`` (or ``scopeLogs``) object, and what its items share."""
    scope = j_object(parent.get("scope"), f"{where}.scope")
    name = scope.get("name")
    try:
        scope_attrs = j_attrs(scope.get("attributes"))
    except ValueError as exc:
        raise DecodeError(f"{where}.scope: {exc}") from None
    return (
        scope_name(name) if isinstance(name, str) else "",
        scoped(base, attrs, scope_attrs, rules),
    )


def json_items(
    body: bytes, request_name: str, signal: str, items: str, rules: KeyRules
) -> Iterator[tuple[str, Resource, Any]]:
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
    for r, resource_group in enumerate(j_list(request.get(top), top)):
        where = f"{top}[{r}]"
        resource_group = j_object(resource_group, where)
        resource = j_object(resource_group.get("resource"), f"{where}.resource")
        try:
            attrs = j_attrs(resource.get("attributes"))
        except ValueError as exc:
            raise DecodeError(f"{where}.resource: {exc}") from None
        base = read_resource(attrs, rules)
        scopes = j_list(resource_group.get(f"scope{signal}"), f"{where}.scope{signal}")
        for s, scope_group in enumerate(scopes):
            scope_where = f"{where}.scope{signal}[{s}]"
            scope_group = j_object(scope_group, scope_where)
            scope, res = _j_scope(scope_group, scope_where, base, attrs, rules)
            for item in j_list(scope_group.get(items), f"{scope_where}.{items}"):
                yield scope, res, item
