"""Reconciliation as data (docs/reconciliation.md; docs/architecture.md, "Reconciliation").

A :class:`Rule` compares what a source system holds with what a target system holds: the
transactions that reached ``source_stage`` in ``source_system`` (Shopify's captured
orders) against those that reached ``target_stage`` in ``target_system`` (the ERP's posted
sales orders), per business day in the shop's or the store's time zone, per currency, and
by channel or store when the rule says so.

Each transaction under a rule is one :class:`Item` (its two sides, their amounts, its
status); each business day's figures are one :class:`Result` per currency (and channel
and store) and are rebuilt from the items of the days a run touched. A batch posting (one
ERP hop naming many POS receipts) carries the batch's total, not a receipt's: it is one
:class:`Batch` row, counted in the day of its earliest receipt. Unmatched items are
``mismatch`` exceptions in triage's queue.

Runs are incremental: the stitcher queues the transactions it touched
(``transactions.Touched``, consumer ``reconciliation``); a run claims them, queues them
per rule (:class:`Queued`), and each rule, when due by its schedule, redoes its items for
the transactions queued for it and the days they were or are in.
"""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from observatory.lib import bulk

#: An item's status. ``matched``: both sides, the same number of documents, the amounts
#: within tolerance; the other four are gaps (a ``mismatch`` exception's ``subkind``).
MATCHED = "matched"
MISSING_IN_TARGET = "missing_in_target"
MISSING_IN_SOURCE = "missing_in_source"
AMOUNT_MISMATCH = "amount_mismatch"
POSTED_TWICE = "posted_twice"
GAPS = (MISSING_IN_TARGET, MISSING_IN_SOURCE, AMOUNT_MISMATCH, POSTED_TWICE)
STATUSES = [
    (MATCHED, "matched"),
    (MISSING_IN_TARGET, "missing in target"),
    (MISSING_IN_SOURCE, "missing in source"),
    (AMOUNT_MISMATCH, "amount mismatch"),
    (POSTED_TWICE, "posted twice"),
]


class Rule(models.Model):
    """One comparison of a source with a target, as data (seeded defaults:
    ``migrations/0002_default_rules``; editable in the admin and the API)."""

    id = models.BigAutoField(primary_key=True)
    name = models.SlugField(max_length=64, unique=True, help_text="how URLs and the API name it")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source_system = models.CharField(max_length=64, blank=True, help_text="blank: any system")
    source_stage = models.CharField(max_length=32)
    #: the key kind naming one document on the source side (a refund's ``refund_id``):
    #: blank, one document per transaction
    source_key = models.CharField(
        max_length=64, blank=True, help_text="key kind naming one source document (blank: one)"
    )
    target_system = models.CharField(max_length=64, blank=True, help_text="blank: any system")
    target_stage = models.CharField(max_length=32)
    target_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="key kind naming one target document (erp_sales_order): more target "
        "documents than source documents is posted twice",
    )
    transaction_kind = models.CharField(
        max_length=20, blank=True, help_text="order, return or inventory_update (blank: any)"
    )
    channels = models.CharField(
        max_length=400, blank=True, help_text="comma-separated channels (blank: every channel)"
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="IANA zone of the business day (blank: RECONCILIATION_TIME_ZONE)",
    )
    store_time_zones = models.BooleanField(
        default=False, help_text="a store's own zone (Store time zones) wins over the rule's"
    )
    group_by_channel = models.BooleanField(default=False)
    group_by_store = models.BooleanField(default=False)
    tolerance_abs = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0.01"),
        help_text="amounts this far apart still match",
    )
    tolerance_rel = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        default=Decimal("0"),
        help_text="or this fraction of the source amount, whichever is larger",
    )
    grace_s = models.PositiveIntegerField(
        default=3600, help_text="seconds a missing side is waited for before it counts"
    )
    every_s = models.PositiveIntegerField(
        default=60, help_text="the schedule: seconds between runs"
    )
    exempt_cancelled = models.BooleanField(
        default=True, help_text="a cancelled transaction missing in the target is no gap"
    )
    active = models.BooleanField(default=True)
    #: scheduling state: when the rule last ran, and the digest of what its items were
    #: judged with (a change of the rule or of a store's zone rebuilds it)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    built_digest = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.time_zone and not valid_zone(self.time_zone):
            errors["time_zone"] = f"not an IANA time zone: {self.time_zone!r}"
        if (self.source_system, self.source_stage) == (self.target_system, self.target_stage):
            errors["target_stage"] = "the target must differ from the source"
        if self.tolerance_abs is not None and self.tolerance_abs < 0:
            errors["tolerance_abs"] = "must be zero or more"
        if self.tolerance_rel is not None and self.tolerance_rel < 0:
            errors["tolerance_rel"] = "must be zero or more"
        if self.every_s is not None and self.every_s < 1:
            errors["every_s"] = "must be at least one second"
        if errors:
            raise ValidationError(errors)

    @property
    def zone(self) -> str:
        """The IANA zone of its business days (a store's own may win: ``StoreZone``)."""
        return self.time_zone or settings.RECONCILIATION_TIME_ZONE

    @property
    def channel_list(self) -> list[str]:
        return [c.strip() for c in self.channels.split(",") if c.strip()]

    def source_label(self) -> str:
        """``captured by shopify``"""
        return _side_label(self.source_stage, self.source_system)

    def target_label(self) -> str:
        """``posted by erp``"""
        return _side_label(self.target_stage, self.target_system)


def _side_label(stage: str, system: str) -> str:
    return f"{stage.replace('_', ' ')} by {system}" if system else stage.replace("_", " ")


class StoreZone(models.Model):
    """The time zone a store's business day runs in (rules with ``store_time_zones``)."""

    id = models.BigAutoField(primary_key=True)
    store_id = models.CharField(max_length=64, unique=True)
    time_zone = models.CharField(max_length=64, help_text="IANA zone, e.g. America/Chicago")

    class Meta:
        ordering = ["store_id"]

    def __str__(self) -> str:
        return f"{self.store_id}: {self.time_zone}"

    def clean(self) -> None:
        if not valid_zone(self.time_zone):
            raise ValidationError({"time_zone": f"not an IANA time zone: {self.time_zone!r}"})


def valid_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone both Python and the database know (the
    business day is computed in SQL: ``lib.bulk.day_in_zone``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return bulk.database_knows_zone(name)


class Queued(models.Model):
    """A transaction to judge again under a rule: the run fans the stitcher's queue out to
    every active rule, and each rule claims its own rows when it is due."""

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+", db_index=False)
    transaction_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "transaction_id"], name="recon_queued_once")
        ]

    def __str__(self) -> str:
        return f"rule {self.rule_id}: transaction {self.transaction_id}"


class Item(models.Model):
    """One transaction under one rule: its two sides and how they compare.

    ``day``, ``currency``, ``channel`` and ``store_id`` place it (the day of its source,
    else of its target, in the rule's or its store's zone); an item with a gap counts
    once it is ``counted``: a missing side is waited for ``grace_s`` after
    ``waiting_since``, amount mismatches and double postings count at once.
    """

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+", db_index=False)
    #: no database constraint: transactions are pruned on their own schedule
    transaction_id = models.BigIntegerField()
    day = models.DateField()
    currency = models.CharField(max_length=3, blank=True)
    channel = models.CharField(max_length=32, blank=True)
    store_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, choices=STATUSES)
    #: False while a missing side is still waited for (the rule's grace period)
    counted = models.BooleanField(default=True)
    #: for a missing side: when the other side was reached (its last source document,
    #: or its first target); the gap counts ``grace_s`` after it
    waiting_since = models.DateTimeField(null=True, blank=True)
    #: first time the source stage was reached, and the target stage (first and last)
    source_at = models.DateTimeField(null=True, blank=True)
    source_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    source_docs = models.IntegerField(default=0)
    target_at = models.DateTimeField(null=True, blank=True)
    target_last_at = models.DateTimeField(null=True, blank=True)
    target_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    target_docs = models.IntegerField(default=0)
    #: a batch posting that reached the target (its amount is the batch's: ``Batch``)
    target_batch = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "transaction_id"], name="recon_item_once"),
        ]
        indexes = [
            models.Index(fields=["rule", "day"], name="recon_item_day"),
            # the gaps (a few in a hundred items): their exceptions are synced by them
            models.Index(
                fields=["rule", "transaction_id"],
                name="recon_item_gaps",
                condition=~Q(status=MATCHED),
            ),
            # what the grace period still holds back
            models.Index(
                fields=["rule", "waiting_since"],
                name="recon_item_waiting",
                condition=Q(counted=False),
            ),
        ]

    def __str__(self) -> str:
        return f"rule {self.rule_id}: transaction {self.transaction_id} {self.status}"


class Batch(models.Model):
    """A batch posting under a rule: one hop naming many transactions (an ERP cash-sale
    posting naming a store's receipts), whose amount is the batch's total. It counts once,
    in the group of its earliest item, and is itself compared: its total against the sum
    of its items' source amounts."""

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+", db_index=False)
    hop_id = models.BigIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    #: the items it names: how many, the sum of their source amounts, the first one's
    #: transaction (which an exception about the batch is filed under)
    items = models.IntegerField(default=0)
    source_total = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    transaction_id = models.BigIntegerField()
    status = models.CharField(max_length=20, choices=STATUSES, default=MATCHED)
    day = models.DateField()
    channel = models.CharField(max_length=32, blank=True)
    store_id = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "hop_id"], name="recon_batch_once"),
        ]
        indexes = [models.Index(fields=["rule", "day"], name="recon_batch_day")]

    def __str__(self) -> str:
        return f"rule {self.rule_id}: batch hop {self.hop_id} {self.status}"


class Result(models.Model):
    """One rule's figures for one business day, currency (never summed across
    currencies), and channel and store when the rule groups by them ("" otherwise)."""

    id = models.BigAutoField(primary_key=True)
    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="results")
    day = models.DateField()
    currency = models.CharField(max_length=3, blank=True)
    channel = models.CharField(max_length=32, blank=True)
    store_id = models.CharField(max_length=64, blank=True)
    source_count = models.IntegerField(default=0)
    source_total = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal(0))
    target_count = models.IntegerField(default=0)
    target_total = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal(0))
    matched = models.IntegerField(default=0)
    missing_in_target = models.IntegerField(default=0)
    missing_in_source = models.IntegerField(default=0)
    #: items whose amounts differ, and batch postings whose total differs from its items'
    amount_mismatch = models.IntegerField(default=0)
    posted_twice = models.IntegerField(default=0)
    #: gaps the grace period still holds back
    pending = models.IntegerField(default=0)
    #: the sum of |source - target| over the amount mismatches (a batch posting's: its
    #: total against its items')
    mismatched_amount = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal(0))
    #: the money that does not reconcile: |source - target| summed over every counted gap
    value_at_risk = models.DecimalField(max_digits=18, decimal_places=2, default=Decimal(0))
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "day", "currency", "channel", "store_id"], name="recon_result_once"
            ),
        ]
        ordering = ["rule", "-day", "currency", "channel", "store_id"]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.day} {self.currency}"

    @property
    def gaps(self) -> int:
        return (
            self.missing_in_target
            + self.missing_in_source
            + self.amount_mismatch
            + self.posted_twice
        )

    @property
    def judged(self) -> int:
        return self.matched + self.gaps

    @property
    def rate(self) -> float | None:
        """The share matched of what is judged (None with nothing judged yet)."""
        return self.matched / self.judged if self.judged else None
