"""The identity graph and stage timelines (docs/architecture.md, "The stitcher"; docs/stages.md).

A Transaction is one order, return or inventory update as the business sees it: every
hop whose business keys connect to it. Its keys are TransactionKey rows (each value
belongs to exactly one transaction), its hops are TransactionHop rows (a fan-out hop
belongs to several), and its timeline is the append-only StageReached list. The first
time of each stage is also a column of its own, so "what is stuck" is an index scan.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from observatory.hops.models import Hop

ORDER = "order"
RETURN = "return"
INVENTORY_UPDATE = "inventory_update"
KINDS = [(ORDER, "order"), (RETURN, "return"), (INVENTORY_UPDATE, "inventory update")]

#: Every stage with a first-time column on Transaction, in stage order (docs/stages.md).
#: ``fulfillment_synced`` is not a stage senders name (docs/stages.md): it is the moment a ``shipped`` fact was
#: seen by Shopify (system ``shopify``), the end of the fulfillment-propagation KPI.
STAGE_COLUMNS = (
    "captured",
    "validated",
    "payment_authorized",
    "reserved",
    "posted",
    "released",
    "picked",
    "shipped",
    "delivered",
    "invoiced",
    "cancelled",
    "return_requested",
    "return_received",
    "refunded",
    "refund_settled",
    "inventory_adjusted",
    "inventory_published",
    "fulfillment_synced",
)


def stage_field(stage: str) -> str:
    """The Transaction column holding the first time ``stage`` was reached."""
    return f"{stage}_at"


class Transaction(models.Model):
    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=20, choices=KINDS, default=ORDER)
    channel = models.CharField(max_length=32, blank=True)
    store_id = models.CharField(max_length=64, blank=True)
    current_stage = models.CharField(max_length=32, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    #: business time of the earliest and latest hop
    first_hop_at = models.DateTimeField(null=True, blank=True)
    last_hop_at = models.DateTimeField(null=True, blank=True)
    hop_count = models.IntegerField(default=0)
    failed_hop_count = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    #: set when this transaction was merged into another; it then holds nothing
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    captured_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    payment_authorized_at = models.DateTimeField(null=True, blank=True)
    reserved_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    picked_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    return_requested_at = models.DateTimeField(null=True, blank=True)
    return_received_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    refund_settled_at = models.DateTimeField(null=True, blank=True)
    inventory_adjusted_at = models.DateTimeField(null=True, blank=True)
    inventory_published_at = models.DateTimeField(null=True, blank=True)
    fulfillment_synced_at = models.DateTimeField(null=True, blank=True)
    #: business time the fulfilling location first changed (the stitcher, from the
    #: hops' ``retail.reroute`` and the warehouse's ``retail.location_id``): reroute_rate
    rerouted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="tx_newest"),
            models.Index(fields=["captured_at"], name="tx_captured"),
            models.Index(fields=["updated_at"], name="tx_updated"),
            # the inventory KPIs: adjustments by time
            models.Index(
                fields=["inventory_adjusted_at"],
                name="tx_adjusted",
                condition=Q(inventory_adjusted_at__isnull=False),
            ),
            # the default SLAs' open questions, each a partial index (docs/performance.md)
            models.Index(
                fields=["captured_at"],
                name="tx_unposted",
                condition=Q(posted_at__isnull=True, cancelled_at__isnull=True)
                & Q(captured_at__isnull=False),
            ),
            models.Index(
                fields=["shipped_at"],
                name="tx_unsynced",
                condition=Q(fulfillment_synced_at__isnull=True, shipped_at__isnull=False),
            ),
            models.Index(
                fields=["inventory_adjusted_at"],
                name="tx_unpublished",
                condition=Q(
                    inventory_published_at__isnull=True, inventory_adjusted_at__isnull=False
                ),
            ),
            # cancellation_success: the cancellations of a window
            models.Index(
                fields=["cancelled_at"],
                name="tx_cancelled",
                condition=Q(cancelled_at__isnull=False),
            ),
            # reroute_rate: the shipments of a window
            models.Index(
                fields=["shipped_at"],
                name="tx_shipped",
                condition=Q(shipped_at__isnull=False),
            ),
            # refund_reconciliation: the refunds of a window
            models.Index(
                fields=["refunded_at"],
                name="tx_refunded",
                condition=Q(refunded_at__isnull=False),
            ),
            models.Index(
                fields=["refunded_at"],
                name="tx_unsettled",
                condition=Q(refund_settled_at__isnull=True, refunded_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.current_stage or 'no stage'})"


# Keys, memberships and stage-reached rows are written only by the stitcher, set-based, in
# the transaction that also writes what they point at; they carry no database foreign-key
# constraints (``db_constraint=False``): the deferred check per row cost the stitcher a
# sixth of its time at commit (bench/stitch.py). Nothing here points at a hop with a
# constraint either: hops are pruned sooner than transactions (docs/retention.md).


class TransactionKey(models.Model):
    """A business key value; each (kind, value) belongs to one transaction only."""

    id = models.BigAutoField(primary_key=True)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.CASCADE, related_name="keys", db_constraint=False
    )
    kind = models.CharField(max_length=64)
    value = models.CharField(max_length=256)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="txkey_unique")]
        indexes = [
            models.Index(fields=["value"], name="txkey_value", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


class TransactionHop(models.Model):
    """Membership of a hop in a transaction (a fan-out hop is in several)."""

    id = models.BigAutoField(primary_key=True)
    # no single-column indexes of their own: txhop_unique leads with transaction, and
    # txhop_hop serves hop (each would be one more index write per stitched hop). No
    # database constraints either (see above TransactionKey).
    transaction = models.ForeignKey(
        Transaction,
        on_delete=models.CASCADE,
        related_name="links",
        db_index=False,
        db_constraint=False,
    )
    hop = models.ForeignKey(
        Hop,
        on_delete=models.CASCADE,
        related_name="transaction_links",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["transaction", "hop"], name="txhop_unique"),
        ]
        indexes = [models.Index(fields=["hop"], name="txhop_hop")]

    def __str__(self) -> str:
        return f"hop {self.hop_id} in transaction {self.transaction_id}"


class StageReached(models.Model):
    """One stage-reached event of a transaction's timeline (append-only)."""

    id = models.BigAutoField(primary_key=True)
    # stage_once_per_hop and stage_tx_time both lead with transaction: no index of its own
    transaction = models.ForeignKey(
        Transaction,
        on_delete=models.CASCADE,
        related_name="stages",
        db_index=False,
        db_constraint=False,
    )
    stage = models.CharField(max_length=32)
    at = models.DateTimeField(help_text="business time the stage was reached")
    system = models.CharField(max_length=64)
    platform_status = models.CharField(max_length=128, blank=True)
    #: the hop that brought it: the timeline outlives it (hops are kept a shorter time,
    #: docs/retention.md), so the hop may be gone
    hop = models.ForeignKey(Hop, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    #: the amount and currency the hop carried: what this system said the transaction was
    #: worth when it reached the stage (Shopify's captured total, the ERP's posted total),
    #: kept with the stage so that reconciliation compares them (docs/reconciliation.md)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    #: the hop reached this transaction through a fan-out key only (one batch posting
    #: naming many orders): its amount is the whole batch's, not this transaction's
    fanout = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["transaction", "hop", "stage"], name="stage_once_per_hop"
            ),
        ]
        indexes = [models.Index(fields=["transaction", "at"], name="stage_tx_time")]

    def __str__(self) -> str:
        return f"{self.stage} @ {self.at:%Y-%m-%d %H:%M:%S} by {self.system}"


class Merge(models.Model):
    """A record of two transactions found to be one (a late hop linked them)."""

    id = models.BigAutoField(primary_key=True)
    winner = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="merges")
    loser_id = models.BigIntegerField()
    #: the hop that linked them (it may since have been pruned)
    hop = models.ForeignKey(
        Hop, null=True, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    keys = models.JSONField(default=list, help_text="the loser's keys, as [kind, value]")
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"transaction {self.loser_id} merged into {self.winner_id}"


class Conflict(models.Model):
    """A link refused because it would give a transaction two values of a
    one-per-transaction kind (two order numbers). Triage opens a ``conflict`` exception."""

    id = models.BigAutoField(primary_key=True)
    #: the hop refused (it may since have been pruned: the conflict is kept as long as its
    #: transactions)
    hop = models.ForeignKey(Hop, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False)
    kind = models.CharField(max_length=64)
    value = models.CharField(max_length=256, help_text="the value the hop carried")
    existing_value = models.CharField(max_length=256, help_text="the value already held")
    transaction = models.ForeignKey(
        Transaction, null=True, on_delete=models.SET_NULL, related_name="conflicts"
    )
    other_transaction = models.ForeignKey(
        Transaction, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)
    #: set by triage once the exception is opened
    triaged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hop", "kind", "value", "existing_value"], name="conflict_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.existing_value} vs {self.value} (hop {self.hop_id})"


class StatusMap(models.Model):
    """Data, editable in the admin: a system's own status word -> a canonical stage."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(
        max_length=64, help_text="the hop's system, or * for any system (vendor vocabularies)"
    )
    vendor = models.CharField(max_length=64, blank=True, help_text="e.g. netsuite, easypost")
    status = models.CharField(
        max_length=128, help_text="platform status, Shopify topic or event type (any case)"
    )
    stage = models.CharField(max_length=32, blank=True, help_text="blank: known, no stage")
    transaction_kind = models.CharField(max_length=20, choices=KINDS, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "status"], name="statusmap_unique"),
        ]
        ordering = ["system", "status"]

    def __str__(self) -> str:
        return f"{self.system}: {self.status} -> {self.stage or '(no stage)'}"


class UnknownStatus(models.Model):
    """A platform status no map knows: kept and counted, never dropped."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(max_length=64)
    status = models.CharField(max_length=128)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "status"], name="unknownstatus_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.system}: {self.status} ({self.count}x)"


class SlaPolicy(models.Model):
    """A deadline between two stages, as data (the defaults of docs/stages.md, seeded by migration)."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100)
    transaction_kind = models.CharField(max_length=20, choices=KINDS, default=ORDER)
    channel = models.CharField(max_length=32, blank=True, help_text="blank: every channel")
    from_stage = models.CharField(max_length=32)
    to_stage = models.CharField(max_length=32)
    deadline_s = models.PositiveIntegerField()
    #: extra time allowed when the hop that should reach ``to_stage`` comes in batches
    batch_allowance_s = models.PositiveIntegerField(default=0)
    #: whether a later stage of the sequence may stand in for ``to_stage`` (``shipped``
    #: without ``validated`` is fine; ``shipped`` without ``posted`` is not)
    skippable = models.BooleanField(
        default=True,
        help_text="a later stage may satisfy the deadline (off for posted, "
        "fulfillment_synced, invoiced, refunded and refund_settled by default)",
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["transaction_kind", "from_stage", "channel"]

    def __str__(self) -> str:
        scope = f" ({self.channel})" if self.channel else ""
        return f"{self.from_stage} -> {self.to_stage} within {self.deadline_s}s{scope}"


class Touched(models.Model):
    """A transaction the stitcher created or changed (or merged away), queued for each stage
    that follows transactions (``settings.PIPELINE_CONSUMERS``: triage, the KPI fill); that
    stage claims its rows (deletes them) as the stitcher claims hops: the hand-off is the
    same queue everywhere, never a wall-clock mark."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=32)
    transaction_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "transaction_id"], name="touched_once"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}: transaction {self.transaction_id}"
