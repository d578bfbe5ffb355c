"""The exception queue and owner routing in the Django admin."""

from __future__ import annotations

from django.contrib import admin

from observatory.triage.models import Issue, OwnerRoute


@admin.register(OwnerRoute)
class OwnerRouteAdmin(admin.ModelAdmin[OwnerRoute]):
    list_display = ("system", "team")
    search_fields = ("system", "team")


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin[Issue]):
    list_display = ("id", "kind", "state", "owner", "system", "stage", "opened_at", "summary")
    list_filter = ("state", "kind", "owner", "system")
    search_fields = ("summary", "dedupe_key")
    date_hierarchy = "opened_at"
    raw_id_fields = ("transaction", "hop")
    readonly_fields = ("dedupe_key", "opened_at", "event_at")
    ordering = ("-opened_at",)
