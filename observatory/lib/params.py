"""Types for what the JSON API takes in, so that its OpenAPI document says exactly what is
accepted and anything else is a 422 naming the field (docs/architecture.md, "The JSON
API's edge").

Every string is free of NUL (PostgreSQL text cannot hold one) and bounded; every integer
fits a 64-bit column (SQLite refuses larger ones with ``OverflowError``); every time is
RFC 3339, taken as UTC when it has no offset, with any offset Python can hold (RFC 3339
allows up to ±23:59, PostgreSQL only ±15:59, so times go to the database in UTC), and
held to years 1970 to 2200, like every time the hop store keeps (``tracing/limits.py``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

#: A string without NUL (JSON Schema and pydantic read the same pattern).
NO_NUL = r"^[^\x00]*$"
#: The largest id or count a 64-bit signed column holds.
MAX_INT64 = 2**63 - 1
#: The largest value of a 32-bit ``integer`` column (PositiveIntegerField on PostgreSQL).
MAX_INT32 = 2**31 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def text(max_length: int, pattern: str = NO_NUL, min_length: int = 0) -> StringConstraints:
    """The constraints of a bounded string matching ``pattern`` (by default: any without
    NUL), for ``Annotated[str, text(64)]``."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


#: Free text of the usual sizes (names, systems, channels, stores, cursors).
Text32 = Annotated[str, text(32)]
Text64 = Annotated[str, text(64)]
Text256 = Annotated[str, text(256)]


def one_of(values: list[str] | tuple[str, ...], *, several: bool = False) -> str:
    """A pattern accepting one of ``values`` (or "", or with ``several`` a comma-separated
    list of them, spaces allowed around each)."""
    word = "(?:" + "|".join(re.escape(v) for v in values) + ")"
    if several:
        return rf"^(?:| *{word} *(?:, *{word} *)*)$"
    return rf"^(?:|{word})$"


#: An id of a row (a 64-bit ``bigint``; ids start at 1).
DbId = Annotated[int, Field(ge=1, le=MAX_INT64)]
#: A count of seconds or items stored in a 32-bit column.
Int32 = Annotated[int, Field(ge=0, le=MAX_INT32)]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def parse_instant(value: Any) -> datetime:
    """An RFC 3339 date-time (a ``datetime`` passes too) as an aware UTC datetime within
    years 1970 to 2200 (an earlier or later one is the nearest of those bounds: nothing is
    stored outside them). Raises ``ValueError`` naming what is wrong."""
    if isinstance(value, datetime):
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return _clamp(at)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z")
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        raise ValueError("must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7) or ""
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError("time zone offset must be within ±23:59")
        offset = timedelta(hours=off_h, minutes=off_m) * (-1 if m.group(9) == "-" else 1)
    else:
        offset = timedelta(0)
    if second == 60:  # a leap second: the second before it, as Python cannot hold it
        second = 59
    if year < 1970:
        return EARLIEST
    if year >= 2200:
        return LATEST
    try:
        local = datetime(
            year,
            month,
            day,
            hour,
            minute,
            second,
            int((fraction + "000000")[:6]),
            tzinfo=timezone(offset),
        )
    except ValueError as exc:
        raise ValueError(f"not a date-time: {exc}") from None
    return _clamp(local)


def _clamp(at: datetime) -> datetime:
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        return EARLIEST if at.year < 2000 else LATEST
    return min(max(utc, EARLIEST), LATEST)


#: A time the API takes in: RFC 3339, see ``parse_instant``.
Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
