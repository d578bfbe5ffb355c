"""One place that says what time it is, so pure modules can take an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
