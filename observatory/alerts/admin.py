"""Alerting in the Django admin: rules, channels and silences are editable here too."""

from __future__ import annotations

from django.contrib import admin

from observatory.alerts.forms import ChannelForm
from observatory.alerts.models import (
    Alert,
    AlertEvent,
    Channel,
    DeliveryAttempt,
    Notification,
    Rule,
    Silence,
)


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin[Rule]):
    list_display = ("name", "kind", "severity", "active", "for_s", "repeat_s", "system", "stage")
    list_filter = ("kind", "severity", "active")
    search_fields = ("name", "system", "stage", "kpi")
    filter_horizontal = ("channels",)


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin[Channel]):
    """The pages' own channel form: the private-address guard on URLs, one error per
    problem, and secrets (bot token, routing key, signing secret) never shown again,
    left blank to keep them."""

    form = ChannelForm
    fields = (
        "name", "kind", "webhook_url", "bot_token", "slack_channel", "to", "routing_key",
        "secret", "active", "failing", "failing_reason", "failing_since", "last_sent_at",
        "created_at", "updated_at",
    )  # fmt: skip
    list_display = ("name", "kind", "mode", "target", "active", "failing", "last_sent_at")
    list_filter = ("kind", "active", "failing")
    search_fields = ("name",)
    readonly_fields = ("failing_since", "last_sent_at", "created_at", "updated_at")


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin[Silence]):
    list_display = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment")
    search_fields = ("comment", "created_by")
    date_hierarchy = "starts_at"


class NotificationInline(admin.TabularInline[Notification, Alert]):
    model = Notification
    extra = 0
    fields = ("event", "channel", "status", "attempts", "sent_at", "last_error")
    readonly_fields = fields
    can_delete = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin[Alert]):
    list_display = ("id", "rule", "state", "started_at", "fired_at", "resolved_at", "summary")
    list_filter = ("state", "rule")
    search_fields = ("summary", "fingerprint")
    date_hierarchy = "started_at"
    raw_id_fields = ("inhibited_by", "silenced_by")
    readonly_fields = ("fingerprint", "started_at", "fired_at", "resolved_at", "last_true_at")
    inlines = [NotificationInline]


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin[AlertEvent]):
    list_display = ("id", "alert", "kind", "at")
    list_filter = ("kind",)
    raw_id_fields = ("alert",)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin[DeliveryAttempt]):
    list_display = ("id", "notification", "at", "ok", "status_code", "permanent", "error")
    list_filter = ("ok", "permanent")
    raw_id_fields = ("notification",)
