"""What storage holds, field by field, and the one rule each field follows at the edge.

Every decoder ends a record with :func:`enforce`, so a value that the hop tables cannot hold
never gets past ``tracing``: not a 500 on PostgreSQL, not an untruncated value on SQLite,
and never a whole batch lost for one bad item. The rules (docs/architecture.md, "Bounds
at the edge"):

* **identifiers** (event ids, sources, shop domains, key values, systems, stages, channels,
  stores, currencies): refused with the item, the field named, when too long or holding a
  NUL byte; systems and key kinds must match their patterns;
* **free text** (operation, status message, platform status, an OTLP ``service.name``,
  every string inside attributes and extra detail, attribute names): a NUL byte becomes
  U+FFFD and a value past its bound is cut, ending in :data:`TRUNCATED`; each cut is
  counted and named in ``extra["truncated"]``;
* **numbers**: an amount must fit ``numeric(14, 2)`` once rounded, a retry attempt the
  ``integer`` column, an integer inside attributes 64 bits;
* **times**: years 1970 through 2200;
* **nesting**: a JSON column nests at most :data:`JSON_DEPTH` levels.

The hop models take their column sizes from here (``tests/hops`` checks they agree). Pure
Python, no Django.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from tracing import conventions
from tracing.records import HopRecord

# --- column sizes (characters) -------------------------------------------------------------
SYSTEM: Final = 64
STAGE: Final = 32
CHANNEL: Final = 32
STORE_ID: Final = 64
CURRENCY: Final = 3
OPERATION: Final = 255
PLATFORM_STATUS: Final = 128
#: A CloudEvents source, a Shopify shop domain, an OTLP ``service.name`` (cut to it).
SOURCE: Final = 512
KEY_KIND: Final = 64
KEY_VALUE: Final = conventions.MAX_KEY_VALUE_LENGTH
#: A CloudEvents id, in UTF-8 bytes: ids and sources make the uid, which a B-tree indexes,
#: and a B-tree entry holds at most 2,704 bytes on PostgreSQL.
EVENT_ID: Final = 1024
SHOP_DOMAIN: Final = 255
SHOPIFY_EVENT_ID: Final = 255
#: ``event:<system>:<source>:<id>`` is the longest uid there is (a system is at most 64
#: ASCII characters: ``SYSTEM_PATTERN``).
UID: Final = len("event:") + SYSTEM + 1 + SOURCE + 1 + EVENT_ID + 92  # 1700, with room to spare
#: The status message, and any one string inside attributes or extra detail.
TEXT: Final = 8192
ATTRIBUTE_NAME: Final = 256
#: Levels of maps and lists in a stored JSON column, the column's own object included
#: (orjson stops at 255; protobuf at about 32 levels of attribute maps).
JSON_DEPTH: Final = 20

# --- numbers and times -----------------------------------------------------------------------
AMOUNT_DIGITS: Final = 14
AMOUNT_PLACES: Final = 2
_AMOUNT_QUANTUM: Final = Decimal(1).scaleb(-AMOUNT_PLACES)
_AMOUNT_LIMIT: Final = Decimal(10) ** (AMOUNT_DIGITS - AMOUNT_PLACES)
_AMOUNT_SAFE: Final = AMOUNT_DIGITS - AMOUNT_PLACES - 1
RETRY_ATTEMPT: Final = 2**31 - 1  # an integer column
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1  # JSON integers: signed or unsigned 64 bits
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Exclusive: times run to the end of 2200.
LATEST: Final = datetime(2201, 1, 1, tzinfo=UTC)

#: Ends a value that was cut.
TRUNCATED: Final = "…[truncated]"
_NUL: Final = "\x00"
_REPLACEMENT: Final = "\ufffd"

_SYSTEM_RE: Final = re.compile(conventions.SYSTEM_PATTERN)
_KIND_RE: Final = re.compile(conventions.KEY_KIND_PATTERN)
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")
#: Systems and key kinds already seen valid, so each pattern runs once per name; bounded
#: against senders of junk.
_valid_systems: set[str] = set()
_valid_kinds: set[str] = set()
_REMEMBERED = 4096


def _remember(seen: set[str], name: str) -> None:
    if len(seen) < _REMEMBERED:
        seen.add(name)


def _valid_system(system: str) -> bool:
    if _SYSTEM_RE.fullmatch(system):
        _remember(_valid_systems, system)
        return True
    return False


class OutOfBounds(ValueError):
    """A value storage cannot hold: the item is refused; the message names the field."""


# --- one value at a time ---------------------------------------------------------------------


def fit(text: str, limit: int) -> str:
    """Free text within ``limit`` characters: NUL bytes become U+FFFD, a longer value is cut
    and ends in :data:`TRUNCATED`."""
    if _NUL in text:
        text = text.replace(_NUL, _REPLACEMENT)
    if len(text) > limit:
        text = text[: limit - len(TRUNCATED)] + TRUNCATED
    return text


def identifier(value: str, limit: int, what: str, *, in_bytes: bool = False) -> str:
    """``value`` unchanged if it is an identifier storage holds, else ``OutOfBounds``."""
    if _NUL in value:
        raise OutOfBounds(f"{what}: must not contain a NUL byte")
    size = len(value.encode("utf-8", "surrogatepass")) if in_bytes else len(value)
    if size > limit:
        unit = "bytes" if in_bytes else "characters"
        raise OutOfBounds(f"{what}: longer than {limit} {unit} ({size})")
    return value


def amount(value: Decimal, what: str) -> Decimal:
    """``value`` if it fits ``numeric(14, 2)`` once rounded to cents, else ``OutOfBounds``."""
    if not value.is_finite() or value.adjusted() >= AMOUNT_DIGITS - AMOUNT_PLACES:
        raise OutOfBounds(f"{what}: out of range (at most 12 digits before the point)")
    if abs(value.quantize(_AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)) >= _AMOUNT_LIMIT:
        raise OutOfBounds(f"{what}: out of range (at most 12 digits before the point)")
    return value


def moment(value: datetime, what: str) -> datetime:
    """``value`` if it lies in years 1970 through 2200, else ``OutOfBounds``."""
    if not EARLIEST <= value < LATEST:
        raise OutOfBounds(f"{what}: outside years 1970 to 2200 ({value.isoformat()})")
    return value


def int64(value: int, what: str) -> int:
    """``value`` if it is a signed 64-bit integer (an OTLP ``intValue``)."""
    if not -(2**63) <= value < 2**63:
        raise OutOfBounds(f"{what}: not a 64-bit integer")
    return value


# --- JSON columns ----------------------------------------------------------------------------


class _Refused(Exception):
    """Inside a JSON walk: why, and the path to the value (built on the way out)."""

    def __init__(self, why: str, where: str = "") -> None:
        self.why = why
        self.path: list[str] = [where] if where else []


def _text(value: str, cut: list[int]) -> str:
    if len(value) > TEXT:
        cut.append(1)
    return fit(value, TEXT)


def _name(name: str, cut: list[int]) -> str:
    if len(name) > ATTRIBUTE_NAME:
        cut.append(1)
    return fit(name, ATTRIBUTE_NAME)


def _map(value: dict[str, Any], depth: int, cut: list[int]) -> dict[str, Any]:
    """``value`` cleaned (see :func:`clean_json`): the same object when nothing changed.

    Scalars are judged inline (this runs for every attribute of every span); only maps
    and lists recurse."""
    if depth >= JSON_DEPTH:
        raise _Refused(f"nested deeper than {JSON_DEPTH} levels")
    out: dict[str, Any] | None = None
    for name, item in value.items():
        kind = type(item)
        new = item
        if kind is str:
            if len(item) > TEXT or _NUL in item:
                new = _text(item, cut)
        elif kind is dict or kind is list or kind is tuple:
            try:
                new = _map(item, depth + 1, cut) if kind is dict else _list(item, depth + 1, cut)
            except _Refused as exc:
                exc.path.append(name)
                raise
        elif kind is int and not INT_MIN <= item <= INT_MAX:
            raise _Refused("integer beyond 64 bits", name)
        new_name = name
        if len(name) > ATTRIBUTE_NAME or _NUL in name:
            new_name = _name(name, cut)
        if out is None and (new is not item or new_name is not name):
            out = {}
            for k, v in value.items():  # what came before, unchanged
                if k == name:
                    break
                out[k] = v
        if out is not None:
            out[new_name] = new
    return value if out is None else out


def _list(value: list[Any] | tuple[Any, ...], depth: int, cut: list[int]) -> list[Any]:
    if depth >= JSON_DEPTH:
        raise _Refused(f"nested deeper than {JSON_DEPTH} levels")
    items: list[Any] | None = None
    for i, item in enumerate(value):
        kind = type(item)
        new = item
        if kind is str:
            if len(item) > TEXT or _NUL in item:
                new = _text(item, cut)
        elif kind is dict or kind is list or kind is tuple:
            try:
                new = _map(item, depth + 1, cut) if kind is dict else _list(item, depth + 1, cut)
            except _Refused as exc:
                exc.path.append(f"[{i}]")
                raise
        elif kind is int and not INT_MIN <= item <= INT_MAX:
            raise _Refused("integer beyond 64 bits", f"[{i}]")
        if items is None and new is not item:
            items = list(value[:i])
        if items is not None:
            items.append(new)
    if items is not None:
        return items
    return value if type(value) is list else list(value)


def clean_json(value: dict[str, Any], what: str = "attribute") -> tuple[dict[str, Any], int]:
    """A JSON column (attributes, extra detail) storage holds, and how many strings were cut.

    Strings and names lose NUL bytes and are cut (:data:`TEXT`, :data:`ATTRIBUTE_NAME`);
    nesting past :data:`JSON_DEPTH` or an integer past 64 bits raises ``OutOfBounds``
    naming the value (``what`` says whose: "attribute", "data.attributes" ...).
    """
    cut: list[int] = []
    try:
        cleaned = _map(value, 1, cut)
    except _Refused as exc:
        where = ".".join(reversed(exc.path))
        raise OutOfBounds(f"{what} {where!r}: {exc.why}".lstrip()) from None
    return cleaned, len(cut)


# --- a whole record --------------------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """How one protocol names the fields of a hop, for the reasons of refused items."""

    system: str
    stage: str
    channel: str
    store_id: str
    currency: str
    amount: str
    retry_attempt: str
    start_time: str
    end_time: str
    key_prefix: str  # + the key kind: "retail.key.", "data.keys."
    attributes: str = "attribute"
    #: the source is the sender's free text (an OTLP service.name): cut, never refused
    free_source: bool = False


def enforce(record: HopRecord, wire: Wire, *, extra_clean: bool = False, extra_cut: int = 0) -> int:
    """Hold ``record`` to what storage holds, in place; returns how many values were cut.

    Raises ``OutOfBounds`` (a ``ValueError``) naming the field for an item to refuse.
    The cut fields are listed in ``record.extra["truncated"]``. ``extra_clean`` says the
    caller held ``record.extra`` to the rules of :func:`clean_json` already (the OTLP
    decoder does, once per resource rather than once per span), having cut ``extra_cut``
    values doing so.
    """
    cut: list[str] = ["extra"] * extra_cut
    if record.system not in _valid_systems and not _valid_system(record.system):
        shown = repr(record.system[:80])
        raise OutOfBounds(
            f"{wire.system}: must be one lower-case word of letters, digits, '_' or '-', "
            f"at most {SYSTEM} characters (got {shown})"
        )
    # identifiers: each check inline on its common path, the call only to say why
    stage, channel, store_id = record.stage, record.channel, record.store_id
    if stage and (len(stage) > STAGE or _NUL in stage):
        identifier(stage, STAGE, wire.stage)
    if channel and (len(channel) > CHANNEL or _NUL in channel):
        identifier(channel, CHANNEL, wire.channel)
    if store_id and (len(store_id) > STORE_ID or _NUL in store_id):
        identifier(store_id, STORE_ID, wire.store_id)
    if record.currency and not _CURRENCY_RE.fullmatch(record.currency):
        raise OutOfBounds(f"{wire.currency}: must be a 3-letter ISO 4217 code")
    value = record.amount
    # below 10^11, rounding to cents cannot reach 10^12: only larger amounts are rounded
    if value is not None and not (value.is_finite() and value.adjusted() < _AMOUNT_SAFE):
        amount(value, wire.amount)
    if not 0 <= record.retry_attempt <= RETRY_ATTEMPT:
        raise OutOfBounds(f"{wire.retry_attempt}: must be between 0 and {RETRY_ATTEMPT}")
    if not EARLIEST <= record.start_time < LATEST:
        moment(record.start_time, wire.start_time)
    if not EARLIEST <= record.end_time < LATEST:
        moment(record.end_time, wire.end_time)
    for kind, key_value, _ in record.keys:  # unpacked: a Key's named fields cost a call each
        if kind not in _valid_kinds or len(key_value) > KEY_VALUE or _NUL in key_value:
            what = wire.key_prefix + kind[:KEY_KIND]
            if not _KIND_RE.fullmatch(kind):
                raise OutOfBounds(f"{what}: key kind must be lower_snake_case")
            identifier(key_value, KEY_VALUE, what)
            _remember(_valid_kinds, kind)

    for name, limit in _FREE_TEXT:
        value = getattr(record, name)
        if value and (len(value) > limit or _NUL in value):
            if len(value) > limit:
                cut.append(name)
            setattr(record, name, fit(value, limit))
    if record.source and (len(record.source) > SOURCE or _NUL in record.source):
        if not wire.free_source:
            identifier(record.source, SOURCE, "source")
        if len(record.source) > SOURCE:
            cut.append("source")
        record.source = fit(record.source, SOURCE)
    uid = record.uid
    # at most 4 bytes a character: a short uid needs no encoding to be measured
    if (len(uid) * 4 > UID and len(uid.encode("utf-8", "surrogatepass")) > UID) or _NUL in uid:
        raise OutOfBounds(f"the delivery identity is longer than {UID} bytes or holds a NUL")

    if record.attributes:
        record.attributes, n = clean_json(record.attributes, wire.attributes)
        cut.extend(["attributes"] * n)
    if record.extra and not extra_clean:
        record.extra, n = clean_json(record.extra, "")
        cut.extend(["extra"] * n)
    if cut:
        record.extra = {**record.extra, "truncated": sorted(set(cut))}
    return len(cut)


#: Free-text columns and their sizes (the status message has no column limit, only TEXT).
_FREE_TEXT: Final = (
    ("operation", OPERATION),
    ("status_message", TEXT),
    ("platform_status", PLATFORM_STATUS),
)


def column_sizes() -> Mapping[str, int]:
    """Hop column -> its size here; the models use these, and a test holds them to it."""
    return {
        "uid": UID,
        "source": SOURCE,
        "system": SYSTEM,
        "operation": OPERATION,
        "platform_status": PLATFORM_STATUS,
        "stage": STAGE,
        "channel": CHANNEL,
        "store_id": STORE_ID,
        "currency": CURRENCY,
    }
