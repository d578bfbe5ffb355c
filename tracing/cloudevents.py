"""CloudEvents 1.0 over HTTP (structured, batch and binary mode) -> hop records.

docs/ingest.md. A request is decoded as a whole (its mode, its JSON) and then judged event by
event: a bad event becomes a :class:`~tracing.records.Rejection` naming the field at fault and
never takes the good events of the same batch down with it. Duplicates are not this module's
business: two events with the same ``(source, id)`` of one system (``data.system``) both come
back as records with the same ``uid``, and the server's idempotent insert counts the second as a duplicate delivery.

What an event carries (``data`` is a JSON object)::

    {"specversion": "1.0", "id": "...", "source": "...", "type": "com.acme.erp.order.posted",
     "time": "2024-06-10T12:00:00Z", "subject": "SO-48213",
     "data": {"system": "erp", "keys": {"order_number": "#1001", "erp_sales_order": "SO-48213"},
              "platform_status": "Pending Fulfillment", "outcome": "ok", "duration_ms": 840}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import unquote

import orjson

from tracing import conventions, limits
from tracing.records import DecodeError, DecodeResult, HopRecord, Key, Rejection, SnapshotRecord

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "TimeOutOfRange",
    "UnsupportedMediaType",
    "decode",
    "parse_rfc3339",
]

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
#: the event type of an inventory snapshot (docs/ingest.md, "Inventory snapshots")
INVENTORY_SNAPSHOT: Final = "inventory.snapshot"

#: Context attributes of the spec; every other top-level member is an extension.
_CONTEXT_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
)
_REQUIRED: Final = ("specversion", "id", "source", "type")

_KIND_RE: Final = re.compile(conventions.KEY_KIND_PATTERN)
_SYSTEM_RE: Final = re.compile(conventions.SYSTEM_PATTERN)
_CURRENCY_RE: Final = re.compile(r"^[A-Za-z]{3}$")
_RFC3339_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_STAGES: Final = frozenset(conventions.ALL_STAGES)
#: How CloudEvents name the hop fields, for the reasons of refused events.
_WIRE: Final = limits.Wire(
    system="data.system",
    stage="data.stage",
    channel="data.channel",
    store_id="data.store_id",
    currency="data.currency",
    amount="data.amount",
    retry_attempt="data.retry_attempt",
    start_time="time",
    end_time="data.duration_ms",
    key_prefix="data.keys.",
    attributes="data.attributes",
)


class UnsupportedMediaType(DecodeError):
    """The request is not a CloudEvent in a mode and format we read (the server answers 415)."""

    def __init__(self, content_type: str, detail: str = "") -> None:
        self.content_type = content_type
        shown = content_type or "(none)"
        message = (
            f"unsupported content type {shown!r}: send {STRUCTURED_CONTENT_TYPE}, "
            f"{BATCH_CONTENT_TYPE}, or binary mode with ce-* headers and a JSON body"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class _Reject(Exception):
    """One event is refused; the message names the field at fault."""


class TimeOutOfRange(ValueError):
    """An RFC 3339 time whose offset takes it outside the years a datetime holds."""


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into an aware UTC datetime.

    Fractions finer than a microsecond (Shopify sends nanoseconds) are truncated.
    Raises ValueError for anything else, including a date without a time or an offset,
    and :class:`TimeOutOfRange` (a ValueError) when the offset shifts the time out of
    years 1 to 9999 (``0001-01-01T00:00:00+01:00``).
    """
    match = _RFC3339_RE.match(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    if offset in ("Z", "z"):
        tz: timezone = UTC
    else:
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        tz = timezone(-delta if offset[0] == "-" else delta)
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimeOutOfRange(f"outside the years a time can hold: {value!r}") from None


def decode(
    body: bytes, content_type: str, headers: Mapping[str, str], received_at: datetime
) -> DecodeResult:
    """Decode one HTTP request carrying CloudEvents into hop records.

    The mode follows the HTTP binding: ``application/cloudevents-batch+json`` is a batch (a
    JSON array, possibly empty), ``application/cloudevents+json`` one structured event, and any
    other content type with a ``ce-specversion`` header binary mode (attributes from the
    percent-encoded ``ce-*`` headers, the body is ``data`` as JSON; a missing content type is
    fine, the Python SDK's ``to_binary`` sends none).

    ``headers`` maps header names to values (names are compared lower-cased). ``received_at``
    is the arrival time, the business time of an event without ``time``.

    Raises :class:`UnsupportedMediaType` when the request is no CloudEvent we read, and
    :class:`~tracing.records.DecodeError` when the body is not JSON of the mode's shape. Bad
    events are listed in ``rejected`` with their index in the request.
    """
    received = _aware_utc(received_at)
    lowered = {name.lower(): value for name, value in headers.items()}
    media = content_type.split(";", 1)[0].strip().lower()

    events: list[Any]
    if media == BATCH_CONTENT_TYPE:
        parsed = _load_json(body, "the batch body")
        if not isinstance(parsed, list):
            raise DecodeError(
                f"a {BATCH_CONTENT_TYPE} body must be a JSON array of events, "
                f"got {_json_type(parsed)}"
            )
        events = parsed
    elif media == STRUCTURED_CONTENT_TYPE:
        parsed = _load_json(body, "the structured event")
        if not isinstance(parsed, dict):
            raise DecodeError(
                f"a {STRUCTURED_CONTENT_TYPE} body must be one JSON object, "
                f"got {_json_type(parsed)}"
            )
        events = [parsed]
    elif media.startswith("application/cloudevents"):
        raise UnsupportedMediaType(content_type, "only the JSON event format is supported")
    elif "ce-specversion" in lowered:
        events = [_binary_event(body, content_type, lowered)]
    else:
        raise UnsupportedMediaType(content_type, "and no ce-specversion header for binary mode")

    result = DecodeResult()
    for index, event in enumerate(events):
        try:
            if isinstance(event, dict) and event.get("type") == INVENTORY_SNAPSHOT:
                result.snapshots.append((index, _snapshot(event, received)))
            else:
                result.records.append(_record(event, received))
        except (_Reject, limits.OutOfBounds) as exc:
            ident = event.get("id") if isinstance(event, dict) else None
            result.rejected.append(
                Rejection(
                    index=index,
                    reason=f"event {index}: {exc}",
                    ident=ident[:256] if isinstance(ident, str) else "",
                )
            )
    result.truncated = sum(1 for r in result.records if "truncated" in r.extra)
    return result


# --- request level ------------------------------------------------------------------------


def _load_json(body: bytes, what: str) -> Any:
    if not body.strip():
        raise DecodeError(f"{what} is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}") from exc


def _binary_event(body: bytes, content_type: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Rebuild the structured form of a binary-mode event from its headers and body."""
    event: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith("ce-") and len(name) > 3:
            event[name[3:]] = unquote(value)
    if content_type:
        event["datacontenttype"] = content_type
    if body.strip():
        # The data of a binary-mode event is the whole body: if it is not JSON, nothing in the
        # request can be decoded, so this is the request's error, not one event's.
        event["data"] = _load_json(body, "the binary-mode body (the event data)")
    return event


# --- event level --------------------------------------------------------------------------


def _envelope(event: dict[str, Any]) -> tuple[str, str]:
    """The event's id and source, once its required attributes and ``specversion`` pass
    (a hop's event and an inventory snapshot alike)."""
    for name in _REQUIRED:
        if event.get(name) is None:
            raise _Reject(f"missing required attribute {name!r}")
    if event["specversion"] != "1.0":
        raise _Reject(f"specversion must be '1.0' (got {_show(event['specversion'])})")
    # id and source make the delivery identity: refused, never cut
    event_id = limits.identifier(_attribute(event, "id"), limits.EVENT_ID, "id", in_bytes=True)
    source = limits.identifier(_attribute(event, "source"), limits.SOURCE, "source", in_bytes=True)
    return event_id, source


def _record(event: Any, received: datetime) -> HopRecord:
    if not isinstance(event, dict):
        raise _Reject(f"must be a JSON object, got {_json_type(event)}")
    event_id, source = _envelope(event)
    event_type = _attribute(event, "type")
    subject = event.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise _Reject("subject: must be a string")

    start = received
    raw_time = event.get("time")
    if raw_time is not None:
        if not isinstance(raw_time, str):
            raise _Reject(f"time: not an RFC 3339 timestamp ({_show(raw_time)})")
        try:
            start = parse_rfc3339(raw_time)
        except TimeOutOfRange:
            raise _Reject(f"time: outside years 1970 to 2200 ({_show(raw_time)})") from None
        except ValueError:
            raise _Reject(f"time: not an RFC 3339 timestamp ({_show(raw_time)})") from None

    if "data_base64" in event:
        raise _Reject("data_base64 is not supported: send the hop as a JSON object in 'data'")
    data = event.get("data")
    if not isinstance(data, dict):
        got = "missing" if data is None else f"got {_json_type(data)}"
        raise _Reject(f"data must be a JSON object with system and keys ({got})")

    system = _system(data.get("system"))
    keys = _keys(data.get("keys"))
    operation = _optional_str(data, "operation") or event_type
    outcome = data.get("outcome", conventions.OK)
    if outcome is None:
        outcome = conventions.OK
    if outcome not in conventions.OUTCOMES:
        raise _Reject(
            f"data.outcome: must be one of {', '.join(conventions.OUTCOMES)} (got {_show(outcome)})"
        )
    stage = _optional_str(data, "stage")
    if stage and stage not in _STAGES:
        raise _Reject(f"data.stage: unknown stage {_show(stage)} (see docs/stages.md)")

    attributes = data.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        raise _Reject("data.attributes: must be an object")
    else:
        attributes = dict(attributes)
    if subject:
        attributes.setdefault("subject", subject)

    extra: dict[str, Any] = {"id": event_id, "type": event_type, "subject": subject or ""}
    extensions = {
        name: value
        for name, value in event.items()
        if name not in _CONTEXT_ATTRIBUTES and name not in ("data", "data_base64")
    }
    if extensions:
        extra["extensions"] = extensions

    record = HopRecord(
        # the system is part of the identity: one system's deliveries never collide with
        # another's, so a token limited to a system can neither pre-empt another system's
        # event ids nor learn from a "duplicate" answer that one exists
        uid=f"event:{system}:{source}:{event_id}",
        via=conventions.VIA_EVENT,
        system=system,
        operation=operation,
        start_time=start,
        end_time=_end_time(start, data.get("duration_ms")),
        outcome=outcome,
        status_message=_optional_str(data, "error"),
        retry_attempt=_retry_attempt(data.get("retry_attempt")),
        replay=_replay(data.get("replay")),
        platform_status=_optional_str(data, "platform_status"),
        stage=stage,
        channel=_optional_str(data, "channel").lower(),
        store_id=_store_id(data.get("store_id")),
        amount=_amount(data.get("amount")),
        currency=_currency(data.get("currency")),
        source=source,
        keys=keys,
        attributes=attributes,
        extra=extra,
    )
    limits.enforce(record, _WIRE)
    return record


def _snapshot(event: dict[str, Any], received: datetime) -> SnapshotRecord:
    """An ``inventory.snapshot``: ``data.system``, ``data.sku``, ``data.location`` and
    ``data.quantity`` (a whole number), as of ``data.as_of`` or else ``time``."""
    event_id, source = _envelope(event)
    data = event.get("data")
    if not isinstance(data, dict):
        got = "missing" if data is None else f"got {_json_type(data)}"
        raise _Reject(f"data must be a JSON object with system, sku, location and quantity ({got})")
    system = _system(data.get("system"))
    sku = _key_value(data.get("sku"), "data.sku")
    location = _key_value(data.get("location"), "data.location")
    if not sku or len(sku) > limits.KEY_VALUE:
        raise _Reject(f"data.sku: must be 1 to {limits.KEY_VALUE} characters")
    if not location or len(location) > limits.STORE_ID:
        raise _Reject(f"data.location: must be 1 to {limits.STORE_ID} characters")
    quantity = data.get("quantity")
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or abs(quantity) >= 2**62:
        raise _Reject(f"data.quantity: must be a whole number (got {_show(quantity)})")
    raw = data.get("as_of", event.get("time"))
    as_of = received
    if raw is not None:
        try:
            if not isinstance(raw, str):
                raise ValueError(raw)
            as_of = parse_rfc3339(raw)
        except (ValueError, TimeOutOfRange):
            where = "data.as_of" if "as_of" in data else "time"
            raise _Reject(f"{where}: not an RFC 3339 timestamp ({_show(raw)})") from None
    return SnapshotRecord(
        system=system,
        sku=sku,
        location=location,
        quantity=quantity,
        as_of=as_of,
        source=source,
        extra={"id": event_id, "type": INVENTORY_SNAPSHOT},
    )


def _attribute(event: Mapping[str, Any], name: str) -> str:
    value = event[name]
    if not isinstance(value, str) or not value.strip():
        raise _Reject(f"{name} must be a non-empty string")
    return value.strip()


def _optional_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Reject(f"data.{name}: must be a string")
    return value.strip()


def _system(value: Any) -> str:
    if value is None or value == "":
        raise _Reject("data.system: required (the system of the hop, e.g. 'erp')")
    if not isinstance(value, str):
        raise _Reject("data.system: must be a string")
    system = value.strip().lower()
    if not _SYSTEM_RE.fullmatch(system):
        raise _Reject(
            f"data.system: must be one lower-case word of letters, digits, '_' or '-' "
            f"(got {_show(value)})"
        )
    return system


def _keys(value: Any) -> list[Key]:
    """``data.keys``: kind -> value, or kind -> list of values (the hop fans out to each)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _Reject("data.keys: must be an object of kind -> value")
    keys: list[Key] = []
    seen: set[tuple[str, str]] = set()
    for kind, raw in value.items():
        if not _KIND_RE.fullmatch(kind):
            raise _Reject(f"data.keys.{kind[:64]}: key kind must be lower_snake_case")
        if isinstance(raw, list):
            for position, item in enumerate(raw):
                text = _key_value(item, f"data.keys.{kind}[{position}]")
                if text and (kind, text) not in seen:
                    seen.add((kind, text))
                    keys.append(Key(kind, text, fanout=True))
        else:
            text = _key_value(raw, f"data.keys.{kind}")
            if text and (kind, text) not in seen:
                seen.add((kind, text))
                keys.append(Key(kind, text))
    return keys


def _key_value(value: Any, field: str) -> str:
    """A key value as stored: stripped text; "" for null or blank (no key)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise _Reject(f"{field}: must be a string or an integer, not a boolean")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise _Reject(f"{field}: must be a string or an integer (got {_json_type(value)})")
    if len(text) > conventions.MAX_KEY_VALUE_LENGTH:
        raise _Reject(f"{field}: value longer than {conventions.MAX_KEY_VALUE_LENGTH} characters")
    if "\x00" in text:
        raise _Reject(f"{field}: must not contain a NUL byte")
    return text


def _end_time(start: datetime, value: Any) -> datetime:
    if value is None:
        return start
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise _Reject(f"data.duration_ms: must be a non-negative number (got {_show(value)})")
    try:
        return start + timedelta(milliseconds=value)
    except OverflowError:
        raise _Reject(f"data.duration_ms: out of range (got {_show(value)})") from None


def _retry_attempt(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Reject(f"data.retry_attempt: must be a non-negative integer (got {_show(value)})")
    return value


def _replay(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Reject(f"data.replay: must be true or false (got {_show(value)})")
    return value


def _store_id(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Reject("data.store_id: must be a string")
    return str(value).strip()


def _amount(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Reject(f"data.amount: must be a decimal number (got {_show(value)})")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Reject(f"data.amount: must be a decimal number (got {_show(value)})") from None
    if not amount.is_finite():
        raise _Reject(f"data.amount: must be a finite decimal number (got {_show(value)})")
    return amount


def _currency(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _CURRENCY_RE.fullmatch(value.strip()):
        raise _Reject(f"data.currency: must be a 3-letter ISO 4217 code (got {_show(value)})")
    return value.strip().upper()


# --- small helpers ------------------------------------------------------------------------


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A value for an error message: repr, cut short so a reason stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
