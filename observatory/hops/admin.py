from django.contrib import admin

from observatory.hops.models import DroppedLogRecords, DuplicateDelivery, Hop, HopKey


class HopKeyInline(admin.TabularInline[HopKey, Hop]):
    model = HopKey
    extra = 0
    readonly_fields = ["kind", "value", "fanout"]


@admin.register(Hop)
class HopAdmin(admin.ModelAdmin[Hop]):
    list_display = ["start_time", "system", "operation", "outcome", "stage", "trace_id"]
    list_filter = ["system", "outcome", "via"]
    search_fields = ["uid", "trace_id", "keys__value"]
    inlines = [HopKeyInline]
    show_full_result_count = False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False  # hops are immutable records of what was sent


@admin.register(DuplicateDelivery)
class DuplicateDeliveryAdmin(admin.ModelAdmin[DuplicateDelivery]):
    list_display = ["hop", "received_at"]
    raw_id_fields = ["hop"]


@admin.register(DroppedLogRecords)
class DroppedLogRecordsAdmin(admin.ModelAdmin[DroppedLogRecords]):
    list_display = ["system", "count", "last_at"]

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False  # counted by ingest only
