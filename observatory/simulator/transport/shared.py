"""What the three senders share: their tallies, the time stamp, attribute values.

:class:`Stats` counts per endpoint (``otlp``, ``events``, ``webhooks``) what was sent,
what could not be and why; senders count failures there and never raise them. A
:data:`Stamp` maps a step's simulated time to the business time written on the hop
(:class:`~observatory.simulator.timing.TimeMap`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from opentelemetry.util.types import AttributeValue

Stamp = Callable[[datetime], datetime]


class Stats:
    """Thread-safe tallies of what was sent, per endpoint (``otlp``, ``events``,
    ``webhooks``): hops delivered, hops that could not be, requests made, and what the
    server said about them (duplicates, rejections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        #: inventory snapshots accepted: deliveries, but no hops (docs/ingest.md)
        self.snapshots: Counter[str] = Counter()

    def add(self, counter: str, endpoint: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[endpoint] += n

    def error(self, endpoint: str, hops: int, reason: str) -> None:
        with self._lock:
            self.failed[endpoint] += hops
            self.reasons[f"{endpoint}: {reason}"] += hops

    @property
    def hops_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def hops_failed(self) -> int:
        return sum(self.failed.values())


def attribute_values(attributes: Mapping[str, Any], stamp: Stamp) -> dict[str, AttributeValue]:
    """Attribute values as OTLP and CloudEvents carry them: times stamped (``stamp``)
    and written in ISO 8601 UTC, amounts as strings, the rest as they are."""
    out: dict[str, AttributeValue] = {}
    for name, value in attributes.items():
        if isinstance(value, datetime):
            out[name] = stamp(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Decimal):
            out[name] = str(value)
        else:
            out[name] = value
    return out
