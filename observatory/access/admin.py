from django.contrib import admin

from observatory.access.models import ApiToken, IngestToken
from observatory.lib.clock import now


@admin.action(description="Revoke the selected tokens")
def revoke(modeladmin: admin.ModelAdmin, request: object, queryset: object) -> None:
    queryset.filter(revoked_at__isnull=True).update(revoked_at=now())  # type: ignore[attr-defined]


@admin.register(IngestToken)
class IngestTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "system", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at"]
    actions = [revoke]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scope", "user", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at"]
    actions = [revoke]
