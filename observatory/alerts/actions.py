"""Writes for alerting: evaluation, delivery, and people's verbs.

* ``do_evaluate`` judges every active rule (``queries.findings``), runs the pure state
  machine (``evaluate.step``), writes the alerts, and writes each state change as an
  ``AlertEvent`` with one outbox ``Notification`` per channel, all in one transaction. It
  never sends anything: delivery is separate and can be slow or down without holding
  evaluation up.
* ``do_deliver`` is one delivery pass: it claims due notifications with a conditional
  UPDATE (``FOR UPDATE SKIP LOCKED`` first on PostgreSQL), sends each through its
  channel's transport, logs every attempt, retries with exponential backoff (or the
  ``Retry-After`` Slack asked for), and marks a channel failing on a permanent error.
* ``do_acknowledge`` stops an alert's reminders; ``do_create_*`` and ``do_expire_silence``
  edit configuration; ``do_send_test`` sends a channel's test message now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Count, Q
from django.urls import reverse

from observatory.alerts import evaluate, history, queries, text
from observatory.alerts.models import (
    EV_ACKNOWLEDGED,
    EV_TEST,
    FIRING,
    N_FAILED,
    N_PENDING,
    N_SENT,
    N_SKIPPED,
    PENDING,
    RESOLVED,
    SYSTEM_KINDS,
    UNRESOLVED,
    Alert,
    AlertEvent,
    Channel,
    DeliveryAttempt,
    Notification,
    Rule,
    Silence,
)
from observatory.alerts.transports import (
    ChannelConfig,
    Message,
    Sent,
    TransportError,
    transport_for,
)
from observatory.kpis.models import AlertSeen
from observatory.lib import bulk, http, live
from observatory.lib.clock import Clock, now

log = logging.getLogger(__name__)

LIVE_TOPIC = "alerts.changed"
ACK_SALT = "observatory.alerts.ack"
#: how long a signed acknowledge link stays valid
ACK_LINK_MAX_AGE_S = 7 * 86400
#: how long a claimed notification is ours before another pass may take it back, by
#: default (``ALERTS_DELIVERY_LEASE_S``); never shorter than one send can take
LEASE_S = 120
_LOCK_ID = 0x616C_6572_7473  # "alerts"


class AlertNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    pass


# --- evaluation -----------------------------------------------------------------------------


@dataclass
class EvaluateResult:
    rules: int = 0
    firing: int = 0
    pending: int = 0
    started: int = 0
    resolved: int = 0
    events: int = 0
    notifications: int = 0
    #: alerts found in history recorded or extended (never sent)
    history: int = 0
    #: rules that could not be judged (their alerts kept their state)
    unavailable: list[str] = field(default_factory=list)
    skipped: bool = False


def rule_spec(rule: Rule) -> evaluate.RuleSpec:
    return evaluate.RuleSpec(
        id=rule.id,
        name=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        for_s=rule.for_s,
        repeat_s=rule.repeat_s,
        keep_firing_s=rule.keep_firing_s,
        labels=dict(rule.labels or {}),
    )


def _state_of(alert: Alert, fingerprints: Mapping[int, str]) -> evaluate.AlertState:
    return evaluate.AlertState(
        id=alert.id,
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        labels=dict(alert.labels or {}),
        state=alert.state,
        started_at=alert.started_at,
        last_true_at=alert.last_true_at,
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        value=alert.value,
        summary=alert.summary,
        detail=dict(alert.detail or {}),
        notified_at=alert.notified_at,
        last_notified_at=alert.last_notified_at,
        acknowledged_at=alert.acknowledged_at,
        inhibited_by=fingerprints.get(alert.inhibited_by_id) if alert.inhibited_by_id else None,
        held=tuple(alert.held or ()),
        silenced_by=alert.silenced_by_id,
    )


_ALERT_FIELDS = (
    "labels",
    "state",
    "started_at",
    "fired_at",
    "resolved_at",
    "last_true_at",
    "last_eval_at",
    "value",
    "summary",
    "detail",
    "notified_at",
    "last_notified_at",
    "acknowledged_at",
    "held",
    "silenced_by_id",
)


def _write_state(row: Alert, state: evaluate.AlertState, at: datetime) -> None:
    row.labels = dict(state.labels)
    row.state = state.state
    row.started_at = state.started_at
    row.fired_at = state.fired_at
    row.resolved_at = state.resolved_at
    row.last_true_at = state.last_true_at
    row.last_eval_at = at
    row.value = state.value
    row.summary = state.summary
    row.detail = dict(state.detail)
    row.notified_at = state.notified_at
    row.last_notified_at = state.last_notified_at
    row.acknowledged_at = state.acknowledged_at
    row.held = list(state.held)
    row.silenced_by_id = state.silenced_by


def _try_lock() -> bool:
    return bulk.try_lock(_LOCK_ID)


def do_evaluate(*, clock: Clock = now) -> EvaluateResult:
    """One evaluation of every active rule at ``clock()``; writes alerts and the outbox.

    The rules are judged first, with reads only (on SQLite no write lock is held while
    KPIs are computed); then the state machine runs and its result is written in one
    transaction. A rule that cannot be judged (its KPI source missing, a query failing)
    keeps its alerts as they are. Concurrent evaluations do not overlap (advisory lock
    on PostgreSQL; SQLite's write lock is taken at BEGIN)."""
    at = clock()
    result = EvaluateResult()
    rules = queries.active_rules()
    result.rules = len(rules)
    found: list[evaluate.Finding] = []
    judged: list[Rule] = []
    cache: dict[Any, Any] = {}
    # inside a caller's transaction, a savepoint per rule keeps one failing query from
    # breaking the others (outside one, each read commits by itself: no write lock taken)
    guard = transaction.atomic if connection.in_atomic_block else nullcontext
    for rule in rules:
        try:
            with guard():
                found.extend(queries.findings(rule, at, cache))
            judged.append(rule)
        except queries.RuleUnavailable as exc:
            result.unavailable.append(rule.name)
            log.warning("alert rule %r not evaluated: %s", rule.name, exc)
        except Exception:
            result.unavailable.append(rule.name)
            log.exception("alert rule %r failed to evaluate", rule.name)
    with transaction.atomic():
        if not _try_lock():
            result.skipped = True
            return result
        skipped_ids = {r.id for r in rules} - {r.id for r in judged}
        rows = {
            a.fingerprint: a
            for a in Alert.objects.filter(state__in=UNRESOLVED).exclude(rule_id__in=skipped_ids)
        }
        fingerprints = {a.id: a.fingerprint for a in rows.values()}
        silences = [
            evaluate.SilenceSpec(s.id, dict(s.matchers or {}), s.starts_at, s.ends_at)
            for s in queries.live_silences(at)
        ]
        step = evaluate.step(
            at,
            [rule_spec(r) for r in judged],
            found,
            [_state_of(a, fingerprints) for a in rows.values()],
            silences,
        )
        saved = _save_alerts(step, rows, at)
        rules_by_id = {r.id: r for r in rules}
        channels = queries.active_channels()
        for ev in step.events:
            alert = saved[ev.fingerprint]
            event = _record_event(alert, ev.kind, at, saved)
            result.notifications += _queue(event, alert, rules_by_id[alert.rule_id], channels, at)
        result.events = len(step.events)
        result.history = history.record(judged, {r.id: rule_spec(r) for r in judged}, at, now())
        for s in step.alerts:
            if s.state == FIRING:
                result.firing += 1
            elif s.state == PENDING:
                result.pending += 1
            elif s.state == RESOLVED:
                result.resolved += 1
            if s.id is None:
                result.started += 1
        if result.events or result.started or result.resolved or result.history:
            live.publish_on_commit(LIVE_TOPIC, queries.counts())
    return result


def _save_alerts(
    step: evaluate.StepResult, rows: dict[str, Alert], at: datetime
) -> dict[str, Alert]:
    """Write the step's alert states; fingerprint -> row (every touched alert)."""
    changed: list[Alert] = []
    for state in step.alerts:
        row = rows.get(state.fingerprint)
        if row is None:
            row = Alert(rule_id=state.rule_id, fingerprint=state.fingerprint)
            _write_state(row, state, at)
            row.save(force_insert=True)
            rows[state.fingerprint] = row
        else:
            _write_state(row, state, at)
            changed.append(row)
    # resolve first: a new alert of a fingerprint may only exist once the old one resolved
    changed.sort(key=lambda r: r.state != RESOLVED)
    Alert.objects.bulk_update(changed, _ALERT_FIELDS, batch_size=200)
    # inhibition links need every row's id
    relink = []
    for state in step.alerts:
        row = rows[state.fingerprint]
        holder = rows.get(state.inhibited_by) if state.inhibited_by else None
        holder_id = holder.id if holder is not None else None
        if row.inhibited_by_id != holder_id:
            row.inhibited_by_id = holder_id
            relink.append(row)
    Alert.objects.bulk_update(relink, ["inhibited_by_id"], batch_size=200)
    hand_down([rows[s.fingerprint] for s in step.alerts])
    return rows


def hand_down(alerts: Iterable[Alert]) -> None:
    """Give the KPIs the facts they need of alerts that fired (``kpis.AlertSeen``): the
    KPIs sit below alerts and never read them."""
    seen = [
        AlertSeen(
            alert_id=a.id,
            channel=(a.labels or {}).get("channel", ""),
            store=(a.labels or {}).get("store", ""),
            system=(a.labels or {}).get("system", ""),
            fired_at=a.fired_at,
            resolved_at=a.resolved_at,
        )
        for a in alerts
        if a.fired_at is not None and not a.found_in_history
    ]
    AlertSeen.objects.bulk_create(
        seen,
        update_conflicts=True,
        unique_fields=["alert_id"],
        update_fields=["channel", "store", "system", "fired_at", "resolved_at"],
        batch_size=500,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def snapshot(alert: Alert, kind: str, at: datetime, others: Mapping[str, Alert]) -> dict[str, Any]:
    """What a notification says: the alert as it is at ``at`` (JSON-ready). A system-level
    alert carries the stuck alerts it holds back (now, or during the incident once
    resolved), and their orders as its own."""
    rule = alert.rule
    snap: dict[str, Any] = {
        "alert_id": alert.id,
        "rule_id": rule.id,
        "rule": rule.name,
        "kind": rule.kind,
        "severity": rule.severity,
        "event": kind,
        "state": alert.state,
        "labels": dict(alert.labels or {}),
        "fingerprint": alert.fingerprint,
        "summary": alert.summary,
        "value": alert.value,
        "started_at": _iso(alert.started_at),
        "fired_at": _iso(alert.fired_at),
        "resolved_at": _iso(alert.resolved_at),
        "at": _iso(at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "detail": {k: v for k, v in (alert.detail or {}).items() if k != "orders"},
    }
    orders = (alert.detail or {}).get("orders")
    if orders:
        snap["orders"] = orders
    if rule.kind in SYSTEM_KINDS and alert.held:
        held_rows = [others.get(fp) for fp in alert.held]
        missing = [fp for fp, r in zip(alert.held, held_rows, strict=True) if r is None]
        if missing:
            fetched = queries.held_alerts(missing)
            held_rows = [r or fetched.get(fp) for fp, r in zip(alert.held, held_rows, strict=True)]
        held: list[dict[str, Any]] = []
        for row in held_rows:
            if row is None:
                continue
            if row.state == RESOLVED:
                state = "resolved"
            elif row.inhibited_by_id == alert.id and alert.state != RESOLVED:
                state = "held"
            else:
                state = "released"
            held.append(
                {
                    "alert_id": row.id,
                    "rule": row.rule.name,
                    "state": state,
                    "summary": row.summary,
                    "orders": (row.detail or {}).get("orders") or {},
                }
            )
        snap["held"] = held
        live_orders = [h["orders"] for h in held if h["state"] != "resolved"]
        if live_orders and not orders:
            snap["orders"] = text.merge_orders(live_orders)
    return snap


def _record_event(alert: Alert, kind: str, at: datetime, others: Mapping[str, Alert]) -> AlertEvent:
    return AlertEvent.objects.create(
        alert=alert, kind=kind, at=at, snapshot=snapshot(alert, kind, at, others)
    )


def _targets(rule: Rule, channels: Sequence[Channel]) -> list[Channel]:
    """A rule's channels; a rule without channels notifies every active channel."""
    own = [c for c in rule.channels.all() if c.active]
    return own if rule.channels.all() else list(channels)


def _queue(
    event: AlertEvent, alert: Alert, rule: Rule, channels: Sequence[Channel], at: datetime
) -> int:
    rows = []
    for channel in _targets(rule, channels):
        if event.kind == EV_ACKNOWLEDGED and not _edits_in_place(channel):
            continue  # only a message that can be edited shows an acknowledgement
        rows.append(
            Notification(
                event=event,
                alert=alert,
                channel=channel,
                next_attempt_at=at,
                created_at=at,
            )
        )
    Notification.objects.bulk_create(rows)
    return len(rows)


def _edits_in_place(channel: Channel) -> bool:
    return channel.kind == "slack" and bool(channel.bot_token)


# --- people's verbs -------------------------------------------------------------------------


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
                event = _record_event(alert, EV_ACKNOWLEDGED, at, {})
                _queue(event, alert, alert.rule, queries.active_channels(), at)
            live.publish_on_commit(LIVE_TOPIC, queries.counts())
    return alert


def ack_token(alert_id: int) -> str:
    return signing.dumps({"a": alert_id}, salt=ACK_SALT, compress=True)


def ack_token_alert(token: str) -> int | None:
    """The alert a signed acknowledge link is for (None: forged or expired)."""
    try:
        data = signing.loads(token, salt=ACK_SALT, max_age=ACK_LINK_MAX_AGE_S)
    except signing.BadSignature:
        return None
    value = data.get("a") if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


def base_url() -> str:
    return str(settings.OBSERVATORY_BASE_URL).rstrip("/")


def ack_url(alert_id: int) -> str:
    return base_url() + reverse("alerts:ack-link", args=[alert_id, ack_token(alert_id)])


def alert_url(alert_id: int) -> str:
    return base_url() + reverse("alerts:alert", args=[alert_id])


def url_problem(url: str) -> str:
    """Why a webhook URL cannot be used ("" when it can): not http(s), or a private or
    loopback address while ALERTS_ALLOW_PRIVATE_URLS is off (judged without DNS; the
    resolved address is checked again on every delivery)."""
    try:
        http.check_url(url, resolve=False)
    except http.UnsafeURL as exc:
        return str(exc)
    return ""


def do_create_channel(
    *,
    name: str,
    kind: str,
    who: str,
    webhook_url: str = "",
    bot_token: str = "",
    slack_channel: str = "",
    to: Sequence[str] = (),
) -> Channel:
    channel = Channel(
        name=name,
        kind=kind,
        webhook_url=webhook_url,
        bot_token=bot_token,
        slack_channel=slack_channel,
        to=list(to),
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


# --- delivery -----------------------------------------------------------------------------------


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


def channel_config(channel: Channel) -> ChannelConfig:
    return ChannelConfig(
        id=channel.id,
        name=channel.name,
        kind=channel.kind,
        webhook_url=channel.webhook_url,
        bot_token=channel.bot_token,
        slack_channel=channel.slack_channel,
        to=tuple(channel.to or ()),
    )


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
        previous=_previous_ref(notification) if _edits_in_place(notification.channel) else {},
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
    """One delivery pass over the due notifications (see the module docstring).

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
