"""The hop record: what every decoder (OTLP, CloudEvents, Shopify) produces.

A hop is one step of one business transaction in one system (docs/ingest.md). Decoders are
pure functions from bytes to hop records; the server masks, stores and stitches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple


class Key(NamedTuple):
    """One business key on a hop.

    ``fanout`` is true when the value came from an array (an ERP batch posting that names
    50 orders): the hop then belongs to each of those transactions without linking them.
    """

    kind: str
    value: str
    fanout: bool = False


@dataclass(slots=True)
class HopRecord:
    """One decoded hop, ready to be masked and stored.

    ``uid`` is the delivery identity used for idempotency: ``otlp:<trace>:<span>`` for a
    span, ``event:<source>:<id>`` for a CloudEvent, ``shopify:<shop>:<event id>`` for a
    Shopify delivery. Times are aware UTC datetimes; ``start_time`` is business time.
    """

    uid: str
    via: str
    system: str
    operation: str
    start_time: datetime
    end_time: datetime
    outcome: str = "ok"
    status_message: str = ""
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    retry_attempt: int = 0
    replay: bool = False
    platform_status: str = ""
    stage: str = ""
    channel: str = ""
    store_id: str = ""
    amount: Decimal | None = None
    currency: str = ""
    source: str = ""
    keys: list[Key] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    #: links, span events and resource attributes: kept for display, never queried.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Rejection:
    """An item of a request that was refused, and why (names the field at fault)."""

    index: int
    reason: str
    ident: str = ""


@dataclass(slots=True)
class SnapshotRecord:
    """One ``inventory.snapshot`` event: what ``system`` held of ``sku`` at ``location`` as
    of a business time. Not a hop (it is no step of an order): stored apart, the latest per
    system, sku and location (docs/ingest.md, "Inventory snapshots")."""

    system: str
    sku: str
    location: str
    quantity: int
    as_of: datetime
    source: str = ""
    #: the event's id, for the answer
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DecodeResult:
    """The records decoded from one request body, and the items that were refused."""

    records: list[HopRecord] = field(default_factory=list)
    #: (request position, snapshot) of each inventory snapshot
    snapshots: list[tuple[int, SnapshotRecord]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: how many of the records had a value cut to fit storage (each lists its cut fields in
    #: ``extra["truncated"]``; tracing/limits.py)
    truncated: int = 0
    #: items decoded and deliberately not stored, by system: OTLP log records without
    #: business keys (docs/ingest.md, "OTLP/HTTP logs")
    dropped: dict[str, int] = field(default_factory=dict)
    #: each record's position in the request, when some positions are neither a record nor
    #: a rejection (dropped items); empty when the records fill the gaps between rejections
    positions: list[int] = field(default_factory=list)


class DecodeError(ValueError):
    """The body as a whole cannot be decoded (not one bad item: the whole request)."""
