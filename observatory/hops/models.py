"""The hop store: raw, immutable, idempotent (docs/architecture.md, "The hop store").

Every span, status event and Shopify delivery becomes one Hop; its business keys are
separate HopKey rows, searchable by value alone and by kind and value. A re-delivery of
the same hop stores nothing new; it is recorded as a DuplicateDelivery of the first.

Column sizes come from ``tracing.limits``, whose rules hold every decoded value to them
(docs/architecture.md, "Bounds at the edge").
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from observatory.lib.indexes import TimeIndex
from tracing import conventions, limits
from tracing.otlp_logs import severity_name


def exception_events(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenTelemetry ``exception`` events kept in a hop's ``extra`` (docs/ingest.md,
    "Exception events"), each as ``type``, ``message``, ``stacktrace``, ``escaped`` and
    ``time``; empty for a hop without any."""
    out = []
    for event in extra.get("events") or ():
        if not isinstance(event, dict) or event.get("name") != conventions.EXCEPTION_EVENT:
            continue
        attrs = event.get("attributes")
        attrs = attrs if isinstance(attrs, dict) else {}
        out.append(
            {
                "type": str(attrs.get(conventions.EXCEPTION_TYPE) or ""),
                "message": str(attrs.get(conventions.EXCEPTION_MESSAGE) or ""),
                "stacktrace": str(attrs.get(conventions.EXCEPTION_STACKTRACE) or ""),
                "escaped": attrs.get(conventions.EXCEPTION_ESCAPED) in (True, "true", "True"),
                "time": str(event.get("time") or ""),
            }
        )
    return out


class Hop(models.Model):
    #: On PostgreSQL the table is partitioned by day on the id (``lib.partitions``): the
    #: id says which day's partition holds the hop.
    id = models.BigAutoField(primary_key=True)
    #: Delivery identity: ``otlp:<trace>:<span>``, ``event:<source>:<id>``,
    #: ``shopify:<shop>:<event id>``; unique through :class:`Receipt`.
    uid = models.CharField(max_length=limits.UID)
    via = models.CharField(max_length=16, help_text="otlp, log, event or shopify")
    source = models.CharField(max_length=limits.SOURCE, blank=True)
    system = models.CharField(max_length=limits.SYSTEM)
    operation = models.CharField(max_length=limits.OPERATION)
    start_time = models.DateTimeField(help_text="business time of the hop")
    end_time = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    outcome = models.CharField(max_length=8, default="ok")
    status_message = models.TextField(blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    parent_span_id = models.CharField(max_length=16, blank=True)
    retry_attempt = models.IntegerField(default=0)
    replay = models.BooleanField(default=False)
    platform_status = models.CharField(max_length=limits.PLATFORM_STATUS, blank=True)
    stage = models.CharField(max_length=limits.STAGE, blank=True)
    channel = models.CharField(max_length=limits.CHANNEL, blank=True)
    store_id = models.CharField(max_length=limits.STORE_ID, blank=True)
    amount = models.DecimalField(
        max_digits=limits.AMOUNT_DIGITS, decimal_places=limits.AMOUNT_PLACES, null=True, blank=True
    )
    currency = models.CharField(max_length=limits.CURRENCY, blank=True)
    received_at = models.DateTimeField()
    attributes = models.JSONField(default=dict, blank=True)
    #: links, span events, resource attributes: for display, never queried.
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["trace_id"], name="hop_trace", condition=~Q(trace_id="")),
            models.Index(fields=["system", "start_time"], name="hop_system_time"),
            # the KPI fill's reads of an hour of hops by business time
            TimeIndex(fields=["start_time"], name="hop_start", pages_per_range=16),
            # the failed-hop sweep: failed hops past the last one it judged
            models.Index(fields=["id"], name="hop_failed", condition=Q(outcome="error")),
        ]

    def __str__(self) -> str:
        return f"{self.system} {self.operation} @ {self.start_time:%Y-%m-%d %H:%M:%S}"

    def exception_events(self) -> list[dict[str, Any]]:
        """Its OpenTelemetry exception events (``exception_events``)."""
        return exception_events(self.extra)

    def status_beyond_exceptions(self) -> str:
        """The status message, unless an exception event already says it (ingest takes the
        event's message as the status message when the span set none)."""
        said = self.status_message
        if said and any(e["message"] == said for e in self.exception_events()):
            return ""
        return said

    def severity(self) -> str:
        """A log record's severity: its text, else its number's name (docs/ingest.md), or ""."""
        text = self.extra.get("severity_text")
        if text:
            return str(text)
        number = self.extra.get("severity_number")
        return severity_name(number) if type(number) is int else ""


class HopKey(models.Model):
    id = models.BigAutoField(primary_key=True)
    #: No database constraint: key rows are written only by the hop store, in the same
    #: transaction as their hop, and a deferred foreign-key check per key row is pure cost
    #: on the ingest hot path (docs/performance.md, "Storing hops").
    hop = models.ForeignKey(Hop, on_delete=models.CASCADE, related_name="keys", db_constraint=False)
    kind = models.CharField(max_length=limits.KEY_KIND)
    value = models.CharField(max_length=limits.KEY_VALUE)
    #: True when the value came from an array (one batch hop naming many orders).
    fanout = models.BooleanField(default=False)

    class Meta:
        # One index on value serves lookups by value alone, by kind and value (values are
        # near-unique, the kind is a filter on a row or two) and, with varchar_pattern_ops
        # on PostgreSQL, prefix search. Every extra index costs each of the ~4 key rows a
        # span brings on the ingest hot path.
        indexes = [
            models.Index(fields=["value"], name="hopkey_value", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


class Waiting(models.Model):
    """A hop the stitcher has not taken yet: the hop store adds one with every new hop, in
    the same transaction, and the stitcher's claim deletes it.

    A queue of its own rather than a column of the hop: marking a hop row stitched was
    an UPDATE of the whole row, which could not be HOT (its pages are full, and the column
    was indexed), so it wrote a new row version and an entry in every index of the hop
    table; deleting a queue row is far cheaper (docs/performance.md, "Storing hops").
    """

    hop = models.OneToOneField(
        Hop, on_delete=models.CASCADE, primary_key=True, related_name="waiting", db_constraint=False
    )

    def __str__(self) -> str:
        return f"hop {self.hop_id} waiting"


class Stitched(models.Model):
    """When the stitcher took a hop (appended with each claim). The KPI fill and the
    failed-hop sweep read "hops stitched since" by ``at``."""

    hop = models.OneToOneField(
        Hop,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="stitched",
        db_constraint=False,
    )
    at = models.DateTimeField()

    class Meta:
        indexes = [TimeIndex(fields=["at"], name="stitched_at", pages_per_range=16)]

    def __str__(self) -> str:
        return f"hop {self.hop_id} stitched at {self.at:%Y-%m-%d %H:%M:%S}"


class Receipt(models.Model):
    """The delivery identity of every stored hop, unique: what makes the store
    idempotent. A table of its own because a unique index on a partitioned table must
    include the partition key, so the hop table's partitions could not keep a uid unique
    across days; here a span sent again a day later is still known. Written with its hop,
    deleted with it by the prune."""

    hop = models.OneToOneField(
        Hop, on_delete=models.CASCADE, primary_key=True, related_name="receipt", db_constraint=False
    )
    uid = models.CharField(max_length=limits.UID)

    class Meta:
        # a constraint, not ``unique=True``, which on PostgreSQL adds a second, LIKE-only
        # index every insert would maintain
        constraints = [models.UniqueConstraint(fields=["uid"], name="receipt_uid_unique")]

    def __str__(self) -> str:
        return self.uid


class DuplicateDelivery(models.Model):
    """A re-delivery of a hop already stored (the same span, event or webhook again)."""

    id = models.BigAutoField(primary_key=True)
    hop = models.ForeignKey(
        Hop, on_delete=models.CASCADE, related_name="duplicates", db_constraint=False
    )
    received_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"duplicate of hop {self.hop_id} at {self.received_at:%Y-%m-%d %H:%M:%S}"


class Stream(models.Model):
    """One reporting stream (a system; for the POS, each store): how far its telemetry has
    got in business time and how late it arrives (``streams.py`` defines every field).
    Kept by the stitcher as it takes hops, so a watermark only counts hops the sweep can
    see."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(max_length=64)
    store_id = models.CharField(max_length=64, blank=True)
    reported_up_to = models.DateTimeField(null=True)
    on_time_up_to = models.DateTimeField(null=True)
    last_arrival_at = models.DateTimeField(null=True)
    late_arrival_at = models.DateTimeField(null=True)
    late_window_at = models.DateTimeField(null=True)
    late_floor = models.DateTimeField(null=True)
    late_prev_floor = models.DateTimeField(null=True)
    max_delay_s = models.FloatField(default=60.0)
    skew_s = models.FloatField(default=5.0)
    hops = models.BigIntegerField(default=0)
    late_hops = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "store_id"], name="stream_unique"),
        ]
        ordering = ["system", "store_id"]

    def __str__(self) -> str:
        return f"{self.system}/{self.store_id}" if self.store_id else self.system


class StreamLag(models.Model):
    """The arrival lags (received minus business time) of a stream's hops that arrived in
    one hour, as a mergeable sketch (``lib.sketch``)."""

    id = models.BigAutoField(primary_key=True)
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="lags")
    hour = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    late = models.BigIntegerField(default=0)
    #: every hop's lag (what the pages show)
    sketch = models.BinaryField()
    #: the steady lags only (``streams.record``): what the delays are measured on
    steady = models.BinaryField(default=b"")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "hour"], name="streamlag_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id} lags @ {self.hour:%Y-%m-%d %H:00}"


class TouchedHour(models.Model):
    """A business hour some hop of which was stitched, or delivered again, queued for each
    stage that reads hops by hour (``settings.PIPELINE_CONSUMERS``); that stage claims its
    rows (deletes them) as the stitcher claims ``Waiting`` hops: no wall-clock marks."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=32)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "hour"], name="touchedhour_once"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}: {self.hour:%Y-%m-%d %H:00}"


class DroppedLogRecords(models.Model):
    """OTLP log records that carried no business key, so were never stored: a running total
    per system (docs/ingest.md, "OTLP/HTTP logs"), for the operators and their metrics."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(max_length=limits.SYSTEM, unique=True)
    count = models.BigIntegerField(default=0)
    last_at = models.DateTimeField(help_text="when the latest of them arrived")

    class Meta:
        verbose_name_plural = "dropped log records"
        ordering = ["system"]

    def __str__(self) -> str:
        return f"{self.system}: {self.count} log records without keys"


class InventorySnapshot(models.Model):
    """The latest ``inventory.snapshot`` of each system, sku and location, by business time
    (docs/ingest.md, "Inventory snapshots"): what the source of truth and each channel say
    is on hand. Written set-based by ``actions.do_store_snapshots``; an older snapshot
    arriving late changes nothing."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(max_length=limits.SYSTEM)
    sku = models.CharField(max_length=limits.KEY_VALUE)
    location = models.CharField(max_length=limits.STORE_ID)
    quantity = models.BigIntegerField()
    #: business time the quantity held at
    as_of = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["system", "sku", "location"], name="inventory_snapshot_once"
            ),
        ]
        indexes = [models.Index(fields=["sku", "location"], name="inventory_snapshot_pair")]

    def __str__(self) -> str:
        return f"{self.system} {self.sku}@{self.location}: {self.quantity}"
