"""The time range of a page, read from its URL: one parser for every page with the range
picker (``templates/_timerange.html``; docs/architecture.md, "Time ranges").

``?range=24h`` is one of the presets (the last hour, 24 hours, 7, 30 or 90 days, ending
now); ``?range=custom&from=...&to=...`` is any window, each end an ISO 8601 date or time
(a time without an offset is UTC; a date alone is its midnight, UTC). Pages that list
everything by default also take ``?range=all``. A bad range is a ``RangeError`` that
names the parameter: pages show it above the picker and fall back to their default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.utils.dateparse import parse_date, parse_datetime

#: (parameter, words, length), shortest first
PRESETS: tuple[tuple[str, str, timedelta], ...] = (
    ("1h", "last hour", timedelta(hours=1)),
    ("24h", "last 24 hours", timedelta(hours=24)),
    ("7d", "last 7 days", timedelta(days=7)),
    ("30d", "last 30 days", timedelta(days=30)),
    ("90d", "last 90 days", timedelta(days=90)),
)
CUSTOM = "custom"
ALL = "all"
#: The longest custom range: the longest retention of any figure (docs/retention.md).
MAX_SPAN = timedelta(days=400)
_LENGTH = {key: span for key, _, span in PRESETS}
_WORDS = {key: words for key, words, _ in PRESETS}


class RangeError(ValueError):
    """A range the URL asked for that cannot be read: ``field`` is the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class TimeRange:
    """``[since, until)``; for ``all``, ``since`` is None (from the beginning)."""

    key: str
    since: datetime | None
    until: datetime

    @property
    def custom(self) -> bool:
        return self.key == CUSTOM

    @property
    def span(self) -> timedelta | None:
        return None if self.since is None else self.until - self.since

    @property
    def words(self) -> str:
        """``last 24 hours``, ``all time``, ``Dec 1, 2026 10:00 to Dec 2, 2026 12:00 UTC``."""
        if self.key == ALL:
            return "all time"
        if self.key in _WORDS:
            return _WORDS[self.key]
        assert self.since is not None
        return f"{self.since:%b %-d, %Y %H:%M} to {self.until:%b %-d, %Y %H:%M} UTC"

    def params(self) -> dict[str, str]:
        """The URL parameters that give this range back."""
        if self.key != CUSTOM:
            return {"range": self.key}
        assert self.since is not None
        return {"range": CUSTOM, "from": _iso(self.since), "to": _iso(self.until)}

    @property
    def query(self) -> str:
        """``range=24h``, or ``range=custom&from=...&to=...``: to carry into links."""
        return urlencode(self.params())


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _moment(field: str, raw: str, *, end: bool) -> datetime:
    text = raw.strip()
    if not text:
        raise RangeError(field, "is required for a custom range (an ISO 8601 date or time)")
    if len(text) > 40:
        raise RangeError(field, "is too long for a date or time")
    parsed: datetime | None = None
    if len(text) > 10:  # a date alone is read as a whole day below
        try:
            parsed = parse_datetime(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            parsed = None
    if parsed is None:
        try:
            day = parse_date(text)
        except ValueError:
            day = None
        if day is None:
            raise RangeError(
                field, f"{text!r} is not an ISO 8601 date or time (2026-12-01T10:00Z)"
            ) from None
        parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if end:  # a date alone as the end means the whole of that day
            parsed += timedelta(days=1)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_range(
    params: Mapping[str, Any],
    *,
    at: datetime,
    default: str = "24h",
    allow_all: bool = False,
) -> TimeRange:
    """The range ``params`` (a request's GET) asks for, as of ``at``; ``default`` when it
    asks for none. Raises ``RangeError`` for one it cannot read."""
    key = str(params.get("range", "") or "").strip() or default
    if key == ALL:
        if not allow_all:
            raise RangeError("range", "this page needs a bounded range, not 'all'")
        return TimeRange(ALL, None, at)
    if key in _LENGTH:
        return TimeRange(key, at - _LENGTH[key], at)
    if key != CUSTOM:
        choices = ", ".join(k for k, _, _ in PRESETS) + (", all" if allow_all else "")
        raise RangeError("range", f"must be one of {choices} or custom, not {key[:20]!r}")
    since = _moment("from", str(params.get("from", "") or ""), end=False)
    until = _moment("to", str(params.get("to", "") or ""), end=True)
    if until <= since:
        raise RangeError("to", "must be after from")
    if until - since > MAX_SPAN:
        raise RangeError("to", f"a range may span at most {MAX_SPAN.days} days")
    return TimeRange(CUSTOM, since, until)


def range_or_default(
    params: Mapping[str, Any], *, at: datetime, default: str = "24h", allow_all: bool = False
) -> tuple[TimeRange, str]:
    """For pages: the range asked for, or the default with the error in words."""
    try:
        return parse_range(params, at=at, default=default, allow_all=allow_all), ""
    except RangeError as exc:
        return parse_range({}, at=at, default=default, allow_all=allow_all), str(exc)
