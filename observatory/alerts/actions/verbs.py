"""People's verbs: acknowledge an alert, create channels, rules and silences, end a
silence, and send a channel's test message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction

from observatory.alerts import queries
from observatory.alerts.actions.delivery import do_deliver
from observatory.alerts.actions.evaluation import LIVE_TOPIC, queue, record_event
from observatory.alerts.models import (
    EV_ACKNOWLEDGED,
    EV_TEST,
    N_SENT,
    RESOLVED,
    UNRESOLVED,
    Alert,
    AlertEvent,
    Channel,
    Notification,
    Rule,
    Silence,
)
from observatory.lib import live
from observatory.lib.clock import Clock, now


class AlertNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    pass


def do_acknowledge(alert_id: int, who: str, *, clock: Clock = now) -> Alert:
    """Acknowledge an unresolved alert: no more reminders (its resolution is still
    announced). Twice is a no-op; a resolved alert raises InvalidTransition."""
    at = clock()
    with transaction.atomic():
        changed = Alert.objects.filter(
            pk=alert_id, state__in=UNRESOLVED, acknowledged_at__isnull=True
        ).update(acknowledged_at=at, acknowledged_by=who[:150])
        alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
        if alert is None:
            raise AlertNotFound(alert_id)
        if not changed and alert.state == RESOLVED:
            raise InvalidTransition(f"alert {alert_id} is already resolved")
        if changed:
            if alert.notified_at is not None:
                event = record_event(alert, EV_ACKNOWLEDGED, at, {})
                queue(event, alert, alert.rule, queries.active_channels(), at)
            live.publish_on_commit(LIVE_TOPIC, queries.counts())
    return alert


def do_create_channel(
    *,
    name: str,
    kind: str,
    who: str,
    webhook_url: str = "",
    bot_token: str = "",
    slack_channel: str = "",
    to: Sequence[str] = (),
    routing_key: str = "",
    secret: str = "",
) -> Channel:
    channel = Channel(
        name=name,
        kind=kind,
        webhook_url=webhook_url,
        bot_token=bot_token,
        slack_channel=slack_channel,
        to=list(to),
        routing_key=routing_key,
        secret=secret,
        created_by=who[:150],
    )
    channel.full_clean()
    channel.save()
    return channel


def do_create_rule(*, who: str, channel_ids: Sequence[int] = (), **fields: Any) -> Rule:
    rule = Rule(created_by=who[:150], **fields)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        if channel_ids:
            rule.channels.set(list(channel_ids))
    return rule


def do_create_silence(
    *,
    matchers: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime,
    comment: str,
    who: str,
) -> Silence:
    silence = Silence(
        matchers=dict(matchers),
        starts_at=starts_at,
        ends_at=ends_at,
        comment=comment,
        created_by=who[:150],
    )
    silence.full_clean()
    silence.save()
    live.publish_on_commit(LIVE_TOPIC, {"silence": silence.id})
    return silence


def do_expire_silence(silence_id: int, *, clock: Clock = now) -> Silence | None:
    """End a silence now (one that has not started yet ends before it starts)."""
    at = clock()
    Silence.objects.filter(pk=silence_id, ends_at__gt=at).update(ends_at=at)
    Silence.objects.filter(pk=silence_id, starts_at__gt=at).update(starts_at=at)
    return Silence.objects.filter(pk=silence_id).first()


def do_send_test(channel_id: int, who: str, *, clock: Clock = now) -> Notification:
    """Send a channel's test message now (one try, no retries); a success clears the
    channel's failing mark. Answers the notification with its outcome."""
    at = clock()
    channel = Channel.objects.get(pk=channel_id)
    with transaction.atomic():
        event = AlertEvent.objects.create(
            alert=None,
            kind=EV_TEST,
            at=at,
            snapshot={"event": EV_TEST, "requested_by": who, "channel": channel.name},
        )
        notification = Notification.objects.create(
            event=event, channel=channel, next_attempt_at=at, created_at=at
        )
    do_deliver(clock=lambda: at, only=[notification.id])
    notification.refresh_from_db()
    if notification.status == N_SENT:
        Channel.objects.filter(pk=channel.pk).update(
            failing=False, failing_reason="", failing_since=None
        )
    return notification
