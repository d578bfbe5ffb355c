"""Delivery: ``do_deliver`` claims due notifications under a lease, sends each through its
channel's transport, logs every attempt (a send its killed worker never answered too), and
retries with backoff. ``summarize`` is the command's one line of an evaluation and a pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse

from observatory.alerts.actions.evaluation import EvaluateResult, channel_config, edits_in_place
from observatory.alerts.actions.links import ack_url, alert_url, base_url
from observatory.alerts.models import (
    EV_TEST,
    N_FAILED,
    N_PENDING,
    N_SENT,
    N_SKIPPED,
    Channel,
    DeliveryAttempt,
    Notification,
)
from observatory.alerts.transports import (
    Message,
    Sent,
    TransportError,
    transport_for,
)
from observatory.lib import http
from observatory.lib.clock import Clock, now

log = logging.getLogger(__name__)

#: how long a claimed notification is ours before another pass may take it back, by
#: default (``ALERTS_DELIVERY_LEASE_S``); never shorter than one send can take
LEASE_S = 120


@dataclass
class DeliverResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    #: notifications still waiting (not due yet, or behind an earlier one)
    waiting: int = 0


def backoff_s(attempts: int) -> float:
    """Seconds before try ``attempts + 1``: base * 2^(attempts-1), capped."""
    base = float(settings.ALERTS_RETRY_BASE_S)
    cap = float(settings.ALERTS_RETRY_MAX_S)
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def send_bound_s() -> float:
    """The longest one send may take: the HTTP transports' connect and read timeouts, or
    the mail backend's timeout."""
    mail = float(settings.EMAIL_TIMEOUT)
    return max(float(sum(http.DEFAULT_TIMEOUT)), mail)


def lease_s() -> float:
    """How long a claim holds a notification: ``ALERTS_DELIVERY_LEASE_S``, and at least a
    send's bound with a margin, so that a send in flight never outlives its lease."""
    return max(float(settings.ALERTS_DELIVERY_LEASE_S), send_bound_s() + 5)


def _claim(at: datetime, limit: int, only: Sequence[int] | None = None) -> list[int]:
    lease = at + timedelta(seconds=lease_s())
    due = Notification.objects.filter(status=N_PENDING, next_attempt_at__lte=at).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=at)
    )
    if only is not None:
        due = due.filter(id__in=list(only))
    ordered = due.order_by("next_attempt_at", "id")
    # PostgreSQL: concurrent claims skip each other's rows; SQLite: the transaction holds
    # the write lock from BEGIN, so claims run one after the other
    with transaction.atomic():
        ids = list(ordered.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit])
        Notification.objects.filter(id__in=ids).update(claimed_until=lease)
    return ids


def _previous_ref(notification: Notification) -> dict[str, Any]:
    """The latest message sent about the same alert to the same channel (to update)."""
    if notification.alert_id is None:
        return {}
    row = (
        Notification.objects.filter(
            alert_id=notification.alert_id,
            channel_id=notification.channel_id,
            status=N_SENT,
            id__lt=notification.id,
        )
        .exclude(ref={})
        .order_by("-id")
        .values_list("ref", flat=True)
        .first()
    )
    return dict(row or {})


def _message(notification: Notification) -> Message:
    event = notification.event
    base = base_url()
    alert_id = notification.alert_id
    return Message(
        event=event.kind,
        snapshot=event.snapshot,
        base_url=base,
        alert_url=alert_url(alert_id) if alert_id else base + reverse("alerts:index"),
        ack_url=ack_url(alert_id) if alert_id else "",
        dashboard_url=base + "/",
        previous=_previous_ref(notification) if edits_in_place(notification.channel) else {},
    )


def _finish(
    notification: Notification,
    at: datetime,
    *,
    status: str,
    error: str = "",
    next_at: datetime | None = None,
    ref: Mapping[str, Any] | None = None,
) -> None:
    updates: dict[str, Any] = {"status": status, "claimed_until": None, "last_error": error[:2000]}
    if status == N_SENT:
        updates["sent_at"] = at
        updates["ref"] = dict(ref or {})
    if next_at is not None:
        updates["next_attempt_at"] = next_at
    # only while the claim is still this pass's: never release another pass's claim
    Notification.objects.filter(
        pk=notification.pk, claimed_until=notification.claimed_until
    ).update(**updates)
    for key, value in updates.items():
        setattr(notification, key, value)


def _renew(notification: Notification, clock: Clock) -> bool:
    """Extend this pass's claim of ``notification`` by a whole lease from now, right
    before its turn; False when the claim is no longer this pass's.

    A pass claims its batch at once and sends one notification after the other: slow
    sends can outlive the claim's lease, and another pass may then have taken the rest
    over (and be sending them). The claim's ``claimed_until`` is the token that says
    whose it is."""
    until = clock() + timedelta(seconds=lease_s())
    renewed = Notification.objects.filter(
        pk=notification.pk, status=N_PENDING, claimed_until=notification.claimed_until
    ).update(claimed_until=until)
    if renewed:
        notification.claimed_until = until
    return bool(renewed)


def _mark_failing(channel: Channel, reason: str, at: datetime) -> None:
    Channel.objects.filter(pk=channel.pk, failing=False).update(
        failing=True, failing_since=at, failing_reason=reason[:255]
    )
    Channel.objects.filter(pk=channel.pk).update(failing_reason=reason[:255])
    log.warning("alert channel %r is failing: %s", channel.name, reason)


def _attempt(
    notification: Notification, at: datetime, *, max_attempts: int, result: DeliverResult
) -> tuple[bool, float | None]:
    """Try one notification; (whether it went, the Retry-After the channel asked for)."""
    channel = notification.channel
    started = time.monotonic()
    attempt = DeliveryAttempt(notification=notification, at=at)
    attempts = notification.attempts + 1
    Notification.objects.filter(pk=notification.pk).update(attempts=attempts)
    notification.attempts = attempts
    try:
        message = _message(notification)
        sent: Sent = transport_for(channel_config(channel)).notify(message)
    except TransportError as exc:
        attempt.duration_ms = (time.monotonic() - started) * 1000
        attempt.error = exc.message[:2000]
        attempt.status_code = exc.status
        attempt.retry_after_s = exc.retry_after
        attempt.permanent = exc.permanent
        attempt.save()
        if exc.permanent:
            _finish(notification, at, status=N_FAILED, error=exc.message)
            if exc.channel_broken:
                _mark_failing(channel, exc.message, at)
            result.failed += 1
        elif attempts >= max_attempts:
            _finish(notification, at, status=N_FAILED, error=f"gave up: {exc.message}")
            result.failed += 1
        else:
            wait = exc.retry_after if exc.retry_after is not None else backoff_s(attempts)
            _finish(
                notification,
                at,
                status=N_PENDING,
                error=exc.message,
                next_at=at + timedelta(seconds=wait),
            )
            result.retrying += 1
        return False, exc.retry_after
    except Exception as exc:  # a bug in a transport must not stop the other deliveries
        log.exception("alert notification %s failed", notification.pk)
        attempt.duration_ms = (time.monotonic() - started) * 1000
        attempt.error = f"{type(exc).__name__}: {exc}"[:2000]
        attempt.save()
        final = attempts >= max_attempts
        _finish(
            notification,
            at,
            status=N_FAILED if final else N_PENDING,
            error=attempt.error,
            next_at=None if final else at + timedelta(seconds=backoff_s(attempts)),
        )
        if final:
            result.failed += 1
        else:
            result.retrying += 1
        return False, None
    attempt.duration_ms = (time.monotonic() - started) * 1000
    attempt.ok = True
    attempt.status_code = sent.status
    attempt.error = sent.detail[:2000]
    attempt.save()
    _finish(notification, at, status=N_SENT, ref=sent.ref)
    Channel.objects.filter(pk=channel.pk).update(last_sent_at=at)
    result.sent += 1
    return True, None


def do_deliver(
    *, clock: Clock = now, limit: int = 200, only: Sequence[int] | None = None
) -> DeliverResult:
    """One delivery pass over the due notifications (see the package's docstring).

    Per alert and channel, notifications go out in order (a resolution waits for its
    firing message, so that the Slack bot can edit it). A channel that answered 429 gets
    nothing more this pass. ``only`` limits the pass to some notifications."""
    at = clock()
    result = DeliverResult()
    max_attempts = int(settings.ALERTS_DELIVERY_MAX_ATTEMPTS)
    ids = _claim(at, limit, only)
    if not ids:
        return result
    claimed = list(
        Notification.objects.filter(id__in=ids)
        .select_related("event", "channel")
        .order_by("alert_id", "channel_id", "id")
    )
    _log_interrupted(claimed, at)
    earlier_pending = _earlier_pending(claimed)
    blocked: set[tuple[int | None, int]] = set()
    paused: dict[int, datetime] = {}
    for n in sorted(claimed, key=lambda x: x.id):
        if not _renew(n, clock):
            continue  # another pass took it over once this one's lease ran out
        key = (n.alert_id, n.channel_id)
        if n.id in earlier_pending or key in blocked:
            _finish(n, at, status=N_PENDING, error=n.last_error)  # wait for the earlier one
            blocked.add(key)
            result.waiting += 1
            continue
        channel = n.channel
        if not channel.active:
            _finish(n, at, status=N_SKIPPED, error="the channel is switched off")
            result.skipped += 1
            continue
        if channel.failing and n.event.kind != EV_TEST:
            _finish(n, at, status=N_FAILED, error=f"channel failing: {channel.failing_reason}")
            result.failed += 1
            continue
        if channel.id in paused:
            _finish(n, at, status=N_PENDING, error=n.last_error, next_at=paused[channel.id])
            result.waiting += 1
            continue
        limit_attempts = 1 if n.event.kind == EV_TEST else max_attempts
        ok, retry_after = _attempt(n, at, max_attempts=limit_attempts, result=result)
        if not ok:
            blocked.add(key)
            if retry_after is not None:
                paused[channel.id] = at + timedelta(seconds=retry_after)
            channel.refresh_from_db(fields=["failing", "failing_reason"])
    return result


#: what the delivery log says of a send whose worker stopped before its answer came back
INTERRUPTED = (
    "interrupted: the sending worker stopped before the answer came back (found by a later "
    "pass); the message may have arrived, and is sent again"
)


def _log_interrupted(claimed: Sequence[Notification], at: datetime) -> None:
    """Log each send of ``claimed`` that began (``attempts`` counts it) and never logged
    its outcome: its worker was killed mid-send, the claim ran out, and this pass takes
    the notification back. Such a send is in doubt, so the retry may deliver it twice."""
    tried = [n for n in claimed if n.attempts]
    if not tried:
        return
    logged = dict(
        DeliveryAttempt.objects.filter(notification_id__in=[n.id for n in tried])
        .values("notification_id")
        .annotate(n=Count("id"))
        .values_list("notification_id", "n")
    )
    lost = [n for n in tried if n.attempts > logged.get(n.id, 0)]
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(notification=n, at=at, error=INTERRUPTED) for n in lost
    )
    for n in lost:
        log.warning("alert notification %s: an earlier send was interrupted; retrying", n.pk)


def _earlier_pending(claimed: Sequence[Notification]) -> set[int]:
    """Claimed notifications behind an earlier unsent one for the same alert and channel
    (that one not claimed by this pass: it is not due yet, or another pass holds it)."""
    pairs = {(n.alert_id, n.channel_id) for n in claimed if n.alert_id is not None}
    if not pairs:
        return set()
    first_claimed: dict[tuple[int | None, int], int] = {}
    for n in claimed:
        first_claimed.setdefault((n.alert_id, n.channel_id), n.id)
    claimed_ids = {n.id for n in claimed}
    older: dict[tuple[int | None, int], int] = {}
    for alert_id, channel_id, nid in (
        Notification.objects.filter(
            status=N_PENDING,
            alert_id__in={a for a, _ in pairs},
            channel_id__in={c for _, c in pairs},
        )
        .exclude(id__in=claimed_ids)
        .values_list("alert_id", "channel_id", "id")
    ):
        key = (alert_id, channel_id)
        if key in pairs:
            older[key] = min(nid, older.get(key, nid))
    return {
        n.id
        for n in claimed
        if (n.alert_id, n.channel_id) in older and older[(n.alert_id, n.channel_id)] < n.id
    }


def summarize(evaluated: EvaluateResult, delivered: DeliverResult) -> str:
    """One line for the command: ``5 rules: 1 firing, 0 pending, 1 resolved; 2 sent``."""
    if evaluated.skipped:
        head = "another evaluation was running; skipped"
    else:
        head = (
            f"{evaluated.rules} rule{'s' if evaluated.rules != 1 else ''} evaluated: "
            f"{evaluated.firing} firing, {evaluated.pending} pending, "
            f"{evaluated.resolved} resolved; {evaluated.notifications} notification"
            f"{'s' if evaluated.notifications != 1 else ''} queued"
        )
    tail = f"; delivered {delivered.sent}, retrying {delivered.retrying}, failed {delivered.failed}"
    if evaluated.unavailable:
        tail += f"; not evaluated: {', '.join(evaluated.unavailable)}"
    return head + tail
