"""KPI rollups and their fill state (docs/architecture.md, "KPIs"; zulip's analytics is the model).

Two rollup families, each a row per (resolution, bucket, channel, store[, system,
operation]) with counts and serialized quantile sketches (``compute.Sketch``):

* ``OrderRollup``: transactions counted at their anchor time (``captured`` for orders,
  ``inventory_adjusted`` for inventory updates);
* ``HopRollup``: hops counted at their business start time, per system and operation.

Each fact is counted in four rows, its (channel, store) and the ``*`` totals over either
or both (``compute.groupings``), so a filtered question reads only matching rows. Minute
rows are kept for recent days; hour and day rows for as long as the KPIs are wanted.

The fill (``actions.do_fill_rollups``) recomputes whole hour buckets from the source rows,
so redoing it changes nothing. What needs recomputing is found from what changed since the
last fill (``FillState``), queued as ``DirtyHour`` rows and worked off in chunks that
each commit: a crash loses nothing and the next fill carries on. ``TxBucket`` remembers
where each transaction was counted, so a transaction whose anchor or channel moves (a
merge, a late capture) leaves its old bucket too; ``IssueSeen`` remembers which
transaction each exception was counted on. ``OpenStage`` holds the stages transactions
were late for, open or since reached: the reconciliation backlog of any moment.

Every row carries a ``digest`` of its facts and their times: a window's edge inside an
hour without minute rows is read from the source once and kept in memory under the
hour rows' ids and digests (``queries.raw_facts``), never reused once they change.
"""

from __future__ import annotations

from django.db import models

MINUTE = "minute"
HOUR = "hour"
DAY = "day"
RESOLUTIONS = [(MINUTE, "minute"), (HOUR, "hour"), (DAY, "day")]

ORDERS = "orders"
HOPS = "hops"
FAMILIES = [(ORDERS, "orders"), (HOPS, "hops")]


class OrderRollup(models.Model):
    """Transactions of one bucket, one (channel, store) grouping."""

    id = models.BigAutoField(primary_key=True)
    resolution = models.CharField(max_length=6, choices=RESOLUTIONS)
    bucket = models.DateTimeField(help_text="start of the bucket (UTC)")
    channel = models.CharField(max_length=32, help_text="a channel, or * for every one")
    store = models.CharField(max_length=64, help_text="a store, or * for every one")
    #: orders captured in the bucket, and those with a failed hop or an exception
    orders = models.BigIntegerField(default=0)
    with_exception = models.BigIntegerField(default=0)
    posted_twice = models.BigIntegerField(default=0)
    #: acceptance to posting (seconds), of the bucket's orders posted since
    a2p_count = models.BigIntegerField(default=0)
    a2p_within = models.BigIntegerField(default=0)
    a2p_sketch = models.BinaryField(null=True)
    #: shipped -> seen by Shopify (seconds)
    ful_count = models.BigIntegerField(default=0)
    ful_within = models.BigIntegerField(default=0)
    ful_sketch = models.BinaryField(null=True)
    #: inventory updates adjusted in the bucket; adjusted -> published (seconds)
    inv_updates = models.BigIntegerField(default=0)
    inv_count = models.BigIntegerField(default=0)
    inv_within = models.BigIntegerField(default=0)
    inv_max = models.FloatField(null=True)
    inv_sketch = models.BinaryField(null=True)
    #: posting completeness: the orders posted by the end of their business day, and the
    #: others by the end of their day, per currency (``compute.Posting``)
    posting = models.JSONField(default=dict)
    #: the sum of the hashes of the row's facts (``compute.order_fact_digest``): changes
    #: whenever what the row counts, or when, does
    digest = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "channel", "store", "bucket"], name="kpi_order_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"orders {self.resolution} {self.bucket:%Y-%m-%d %H:%M} {self.channel}/{self.store}"


class HopRollup(models.Model):
    """Hops of one bucket, one (channel, store) grouping, one system and operation."""

    id = models.BigAutoField(primary_key=True)
    resolution = models.CharField(max_length=6, choices=RESOLUTIONS)
    bucket = models.DateTimeField(help_text="start of the bucket (UTC)")
    channel = models.CharField(max_length=32)
    store = models.CharField(max_length=64)
    system = models.CharField(max_length=64)
    operation = models.CharField(max_length=200)
    hops = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    retries = models.BigIntegerField(default=0)
    replays = models.BigIntegerField(default=0)
    #: re-deliveries of these hops (each hop is one delivery of its own)
    duplicates = models.BigIntegerField(default=0)
    #: hop durations (milliseconds)
    dur_sketch = models.BinaryField(null=True)
    #: ``compute.hop_fact_digest`` summed over the row's hops
    digest = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "channel", "store", "bucket", "system", "operation"],
                name="kpi_hop_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"hops {self.resolution} {self.bucket:%Y-%m-%d %H:%M} {self.system} {self.operation}"


class BacklogSample(models.Model):
    """The reconciliation backlog as it stood at the end of an hour (a gauge, written by
    the fill for recent hours): how many transactions were past a stage deadline."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField()
    channel = models.CharField(max_length=32)
    store = models.CharField(max_length=64)
    stage = models.CharField(max_length=32, help_text="the missing stage, or * for the total")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "store", "stage", "at"], name="kpi_backlog_sample"
            ),
        ]

    def __str__(self) -> str:
        return f"backlog {self.stage} {self.channel}/{self.store} @ {self.at:%Y-%m-%d %H:%M}: {self.count}"


class FillState(models.Model):
    """Where a family's fill stands: changes since ``marker`` (less an overlap) are the
    next fill's to find; ``state`` is ``started`` while a collection runs."""

    STARTED = "started"
    DONE = "done"

    name = models.CharField(max_length=16, primary_key=True)
    marker = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=8, default=DONE)
    #: what the state was built under (the open stages: a digest of the SLA policies)
    fingerprint = models.CharField(max_length=64, blank=True, default="")
    last_modified = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.state} at {self.marker}"


class DirtyHour(models.Model):
    """An hour bucket of a family waiting to be recomputed."""

    id = models.BigAutoField(primary_key=True)
    family = models.CharField(max_length=8, choices=FAMILIES)
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["family", "hour"], name="kpi_dirty_once"),
        ]

    def __str__(self) -> str:
        return f"{self.family} {self.hour:%Y-%m-%d %H:00} to recompute"


class TxBucket(models.Model):
    """Where the fill last counted a live transaction: its anchor hour (None: it has no
    anchor time yet), channel and store (which its hops are counted under too)."""

    transaction_id = models.BigIntegerField(primary_key=True)
    hour = models.DateTimeField(null=True)
    channel = models.CharField(max_length=32)
    store = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"transaction {self.transaction_id} counted at {self.hour}"


class IssueSeen(models.Model):
    """An exception as the fill last saw it: the transaction it was counted on, that
    transaction's channel and store, and the exception's own times, state and system. The
    KPIs of exceptions of a channel or a store (aging, resolution time) read these rows
    alone (an index on the channel or store and the opening time), never every exception's
    transaction."""

    issue_id = models.BigIntegerField(primary_key=True)
    #: 0: the exception belongs to no transaction
    transaction_id = models.BigIntegerField(default=0)
    #: of the transaction (its own, merged away or not); blank without one
    channel = models.CharField(max_length=32, blank=True, default="")
    store = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, blank=True, default="")
    system = models.CharField(max_length=64, blank=True, default="")
    opened_at = models.DateTimeField(null=True)
    resolved_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["transaction_id"], name="kpi_issue_tx"),
            models.Index(fields=["channel", "opened_at"], name="kpi_issue_channel"),
            models.Index(fields=["store", "opened_at"], name="kpi_issue_store"),
        ]

    def __str__(self) -> str:
        return f"exception {self.issue_id} counted on transaction {self.transaction_id}"


class OpenStage(models.Model):
    """A stage a live transaction missed its deadline for, under the SLA policies that
    apply to it: overdue from ``overdue_after`` until ``closed_at`` (the stage, or a later
    one, was reached, or the transaction cancelled), or still (``closed_at`` None). One row
    per transaction and stage (two policies ending at one stage: the earlier deadline).

    The reconciliation backlog "now" is the open rows whose ``overdue_after`` has passed:
    counted per stage in one pass over a covering partial index, however many transactions
    there are, and in total by counting only each transaction's ``lead`` row (its open one
    that fell due first: if any of its stages is overdue, that one is). The backlog as it
    stood at a past moment T is the rows overdue by T and not closed by T (a range of
    ``anchor``, the window's). Transactions that reached the stage in time have no row.
    Kept by the fill for the transactions it sees change, and rebuilt whenever the SLA
    policies change."""

    id = models.BigAutoField(primary_key=True)
    transaction_id = models.BigIntegerField()
    stage = models.CharField(max_length=32, help_text="the stage that was due")
    #: the transaction's anchor time (captured, inventory adjusted, return requested)
    anchor = models.DateTimeField(null=True)
    channel = models.CharField(max_length=32)
    store = models.CharField(max_length=64)
    overdue_after = models.DateTimeField()
    closed_at = models.DateTimeField(
        null=True, help_text="when the stage (or a later one) came, or the order was cancelled"
    )
    #: the transaction's open row that fell due first (ties: by stage)
    lead = models.BooleanField(db_default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transaction_id", "stage"], name="kpi_open_once"),
        ]
        indexes = [
            models.Index(
                fields=["overdue_after", "anchor"],
                name="kpi_open_due",
                condition=models.Q(closed_at__isnull=True),
                include=["channel", "store", "stage", "lead"],
            ),
            models.Index(
                fields=["anchor", "overdue_after"],
                name="kpi_open_anchor",
                include=["closed_at", "channel", "store", "stage", "transaction_id"],
            ),
        ]

    def __str__(self) -> str:
        return f"transaction {self.transaction_id} misses {self.stage} (overdue after {self.overdue_after})"


class AlertSeen(models.Model):
    """An alert that fired, as the alerts stage hands it down (the KPIs sit below alerts
    and never read them): when it fired and resolved, and the labels a KPI filter matches
    it by. ``resolution_time.alerts_mean_s`` reads these rows alone."""

    alert_id = models.BigIntegerField(primary_key=True)
    channel = models.CharField(max_length=32, blank=True, default="")
    store = models.CharField(max_length=64, blank=True, default="")
    system = models.CharField(max_length=64, blank=True, default="")
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["fired_at"], name="kpi_alert_fired")]

    def __str__(self) -> str:
        return f"alert {self.alert_id} fired {self.fired_at:%Y-%m-%d %H:%M:%S}"


class RetiredTotal(models.Model):
    """What the day rollups that retention removed had counted, kept so that totals over
    every day rollup kept plus these never go down (``GET /metrics``' counters and
    histograms: docs/metrics.md). One row per family and key: per system for hops (every
    channel and store), per channel for orders (every store)."""

    id = models.BigAutoField(primary_key=True)
    family = models.CharField(max_length=8, choices=FAMILIES)
    #: the system (hops) or the channel (orders)
    key = models.CharField(max_length=64)
    hops = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    a2p_count = models.BigIntegerField(default=0)
    a2p_sketch = models.BinaryField(null=True)
    inv_count = models.BigIntegerField(default=0)
    inv_sketch = models.BinaryField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["family", "key"], name="kpi_retired_once"),
        ]

    def __str__(self) -> str:
        return f"retired {self.family} {self.key}"
