from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from observatory.access.actions import do_revoke_token
from observatory.access.models import ApiToken, IngestToken


@admin.action(description="Revoke the selected tokens")
def revoke(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    """The access app's own revocation, token by token: one way to revoke, whatever asks."""
    with transaction.atomic():
        for token in queryset.filter(revoked_at__isnull=True):
            do_revoke_token(token)


@admin.register(IngestToken)
class IngestTokenAdmin(admin.ModelAdmin[IngestToken]):
    list_display = ["name", "prefix", "system", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at"]
    actions = [revoke]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ["name", "prefix", "scope", "user", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at"]
    actions = [revoke]
