from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model

from observatory.transactions.models import (
    Conflict,
    Merge,
    SlaPolicy,
    StageReached,
    StatusMap,
    Transaction,
    TransactionHop,
    TransactionKey,
    UnknownStatus,
)


@admin.register(StatusMap)
class StatusMapAdmin(admin.ModelAdmin[StatusMap]):
    """The status vocabularies, as data: edits apply from the next stitch pass."""

    list_display = ["system", "status", "stage", "transaction_kind", "vendor"]
    list_editable = ["stage", "transaction_kind"]
    list_filter = ["system", "vendor", "stage"]
    search_fields = ["status", "vendor"]


@admin.register(UnknownStatus)
class UnknownStatusAdmin(admin.ModelAdmin[UnknownStatus]):
    """Statuses no map knows, with how often they came: map them in Status maps."""

    list_display = ["system", "status", "count", "first_seen", "last_seen"]
    list_filter = ["system"]
    search_fields = ["status"]
    ordering = ["-count"]
    readonly_fields = ["system", "status", "count", "first_seen", "last_seen"]

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin[SlaPolicy]):
    list_display = [
        "name",
        "transaction_kind",
        "channel",
        "from_stage",
        "to_stage",
        "deadline_s",
        "batch_allowance_s",
        "active",
    ]
    list_editable = ["deadline_s", "batch_allowance_s", "active"]
    list_filter = ["transaction_kind", "active"]


_Row = TypeVar("_Row", bound=Model)


class _ReadOnlyInline(admin.TabularInline[_Row, Transaction]):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class KeyInline(_ReadOnlyInline[TransactionKey]):
    model = TransactionKey
    fields = ["kind", "value"]


class StageInline(_ReadOnlyInline[StageReached]):
    model = StageReached
    fields = ["stage", "at", "system", "platform_status", "hop"]
    raw_id_fields = ["hop"]


class HopLinkInline(_ReadOnlyInline[TransactionHop]):
    model = TransactionHop
    fields = ["hop"]
    raw_id_fields = ["hop"]


class MergeInline(_ReadOnlyInline[Merge]):
    model = Merge
    fk_name = "winner"
    fields = ["loser_id", "hop", "keys", "at"]
    raw_id_fields = ["hop"]


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin[Transaction]):
    """Written by the stitcher only: read here, never edited."""

    list_display = ["id", "kind", "channel", "current_stage", "first_hop_at", "hop_count"]
    list_filter = ["kind", "channel", "current_stage"]
    search_fields = ["=keys__value"]
    inlines = [KeyInline, StageInline, HopLinkInline, MergeInline]
    show_full_result_count = False

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Conflict)
class ConflictAdmin(admin.ModelAdmin[Conflict]):
    list_display = ["at", "kind", "value", "existing_value", "transaction", "other_transaction"]
    list_filter = ["kind"]
    raw_id_fields = ["hop", "transaction", "other_transaction"]

    def has_add_permission(self, request: Any) -> bool:
        return False
