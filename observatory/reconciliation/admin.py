"""Reconciliation rules, stores' zones and (read-only) results in the Django admin."""

from __future__ import annotations

from django.contrib import admin

from observatory.reconciliation.models import Result, Rule, StoreZone


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin[Rule]):
    list_display = (
        "name",
        "title",
        "source_system",
        "source_stage",
        "target_system",
        "target_stage",
        "grace_s",
        "every_s",
        "active",
        "last_run_at",
    )
    list_filter = ("active", "source_system", "target_system")
    search_fields = ("name", "title")
    readonly_fields = ("last_run_at",)
    fieldsets = (
        (None, {"fields": ("name", "title", "description", "active")}),
        ("Source", {"fields": ("source_system", "source_stage", "source_key")}),
        ("Target", {"fields": ("target_system", "target_stage", "target_key")}),
        ("Scope", {"fields": ("transaction_kind", "channels", "exempt_cancelled")}),
        (
            "Grouping",
            {"fields": ("time_zone", "store_time_zones", "group_by_channel", "group_by_store")},
        ),
        ("Amounts and time", {"fields": ("tolerance_abs", "tolerance_rel", "grace_s")}),
        ("Schedule", {"fields": ("every_s", "last_run_at")}),
    )


@admin.register(StoreZone)
class StoreZoneAdmin(admin.ModelAdmin[StoreZone]):
    list_display = ("store_id", "time_zone")
    search_fields = ("store_id",)


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin[Result]):
    """Results are rebuilt by every run: read them here, change the rules instead."""

    list_display = (
        "rule",
        "day",
        "currency",
        "store_id",
        "source_count",
        "target_count",
        "matched",
        "missing_in_target",
        "missing_in_source",
        "amount_mismatch",
        "posted_twice",
        "value_at_risk",
    )
    list_filter = ("rule", "currency")
    date_hierarchy = "day"

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
