"""Evaluation: ``do_evaluate`` judges the active rules, runs the state machine, writes the
alerts and their events, and queues each event's outbox notifications (never sends).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from observatory.alerts import evaluate, history, queries, text
from observatory.alerts.models import (
    EV_ACKNOWLEDGED,
    EV_FIRING,
    FIRING,
    PENDING,
    RESOLVED,
    SYSTEM_KINDS,
    UNRESOLVED,
    Alert,
    AlertEvent,
    Channel,
    Notification,
    Rule,
)
from observatory.alerts.transports import ChannelConfig, Transport, TransportError, transport_for
from observatory.kpis.models import AlertSeen
from observatory.lib import bulk, live
from observatory.lib.clock import Clock, now

log = logging.getLogger(__name__)

LIVE_TOPIC = "alerts.changed"
_LOCK_ID = 0x616C_6572_7473  # "alerts"


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
            event = record_event(alert, ev.kind, at, saved)
            result.notifications += queue(event, alert, rules_by_id[alert.rule_id], channels, at)
        result.events = len(step.events)
        caught_up = catch_up(rules_by_id, channels, at)
        result.notifications += caught_up
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


def record_event(alert: Alert, kind: str, at: datetime, others: Mapping[str, Alert]) -> AlertEvent:
    return AlertEvent.objects.create(
        alert=alert, kind=kind, at=at, snapshot=snapshot(alert, kind, at, others)
    )


def _targets(rule: Rule, channels: Sequence[Channel]) -> list[Channel]:
    """A rule's channels; a rule without channels notifies every active channel."""
    own = [c for c in rule.channels.all() if c.active]
    return own if rule.channels.all() else list(channels)


def catch_up(rules_by_id: Mapping[int, Rule], channels: Sequence[Channel], at: datetime) -> int:
    """Tell the channels that never heard of an alert firing now: a channel added (or
    switched on, or given to the rule) while the alert fires gets its firing message at
    this evaluation, not at the next reminder ``repeat_s`` later. Only alerts that went out
    (announced, not silenced nor held back) are caught up; a few queries in all."""
    firing = list(
        Alert.objects.filter(
            state=FIRING,
            notified_at__isnull=False,
            silenced_by__isnull=True,
            inhibited_by__isnull=True,
            found_in_history=False,
            rule_id__in=list(rules_by_id),
        ).select_related("rule")
    )
    if not firing:
        return 0
    heard = set(
        Notification.objects.filter(alert_id__in=[a.id for a in firing])
        .values_list("alert_id", "channel_id")
        .distinct()
    )
    queued = 0
    for alert in firing:
        rule = rules_by_id[alert.rule_id]
        missing = [c for c in _targets(rule, channels) if (alert.id, c.id) not in heard]
        missing = [c for c in missing if takes(c, EV_FIRING)]
        if not missing:
            continue
        event = record_event(alert, EV_FIRING, at, {})
        event.snapshot["caught_up"] = [c.name for c in missing]
        event.save(update_fields=["snapshot"])
        Notification.objects.bulk_create(
            Notification(event=event, alert=alert, channel=c, next_attempt_at=at, created_at=at)
            for c in missing
        )
        queued += len(missing)
        following = [c for c in missing if takes(c, EV_ACKNOWLEDGED)]
        if alert.acknowledged_at is not None and following:
            # already acknowledged: an incident opened by the catch-up is acknowledged too
            ack = record_event(alert, EV_ACKNOWLEDGED, at, {})
            Notification.objects.bulk_create(
                Notification(event=ack, alert=alert, channel=c, next_attempt_at=at, created_at=at)
                for c in following
            )
            queued += len(following)
        log.info("alert %s: caught up %d new channel(s)", alert.id, len(missing))
    return queued


def queue(
    event: AlertEvent, alert: Alert, rule: Rule, channels: Sequence[Channel], at: datetime
) -> int:
    rows = []
    for channel in _targets(rule, channels):
        if not takes(channel, event.kind):
            continue  # e.g. an acknowledgement, where nothing follows the alert
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


def channel_config(channel: Channel) -> ChannelConfig:
    return ChannelConfig(
        id=channel.id,
        name=channel.name,
        kind=channel.kind,
        webhook_url=channel.webhook_url,
        bot_token=channel.bot_token,
        slack_channel=channel.slack_channel,
        to=tuple(channel.to or ()),
        routing_key=channel.routing_key,
        secret=channel.secret,
    )


def _transport(channel: Channel) -> Transport | None:
    try:
        return transport_for(channel_config(channel))
    except TransportError:
        return None


def edits_in_place(channel: Channel) -> bool:
    """Does the channel edit the message it sent (a Slack bot)?"""
    transport = _transport(channel)
    return transport is not None and transport.updates_in_place()


def takes(channel: Channel, event: str) -> bool:
    """Is ``event`` sent to ``channel``? (an acknowledgement only where the channel follows
    the alert: a message edited in place, a PagerDuty incident)"""
    transport = _transport(channel)
    return transport is None or transport.takes(event)
