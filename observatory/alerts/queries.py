"""Reads for alerting: what each rule finds true now (``findings``), and the alerts,
rules, channels and silences the API and the pages show.

Each rule kind reads what the stage below wrote, with a fixed number of queries:

* ``stuck``: triage's unresolved ``stuck`` exceptions for the rule's stage (triage's sweep
  judges the SLAs), grouped by the system expected to act; the affected orders' count,
  value per currency and the top 10 by value;
* ``error_rate``: the share of the system's hops in the window that failed;
* ``silence``: the system's latest hop, and whether ``while_system`` sent in the window;
* ``kpi``: ``observatory.kpis.queries.kpi_values`` over the window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Max, Min, Prefetch, Q, QuerySet, Sum

from observatory.alerts import impact, text, validation
from observatory.alerts.evaluate import Finding, compare
from observatory.alerts.models import (
    ERROR_RATE,
    FIRING,
    KPI,
    PENDING,
    RESOLVED,
    SILENCE,
    STUCK,
    Alert,
    AlertEvent,
    Channel,
    DeliveryAttempt,
    Notification,
    Rule,
    Silence,
)
from observatory.hops.models import Hop
from observatory.transactions.models import Transaction, TransactionHop
from observatory.triage import models as triage
from observatory.triage.queries import transaction_labels

log = logging.getLogger(__name__)

TOP_ORDERS = 10


class RuleUnavailable(RuntimeError):
    """The rule cannot be judged now (its KPI source is missing); its alerts keep their
    state rather than resolving."""


# --- findings -------------------------------------------------------------------------------


def findings(rule: Rule, now: datetime, cache: dict[Any, Any] | None = None) -> list[Finding]:
    """What ``rule`` finds true at ``now`` (one finding per set of labels). ``cache`` is
    shared by the rules of one evaluation (KPI rules over the same window compute the
    KPIs once)."""
    if rule.kind == KPI:
        return _kpi(rule, now, {} if cache is None else cache)
    return _FINDERS[rule.kind](rule, now)


def _stuck(rule: Rule, now: datetime) -> list[Finding]:
    qs = triage.Issue.objects.filter(
        kind=triage.STUCK,
        state__in=triage.UNRESOLVED,
        stage=rule.stage,
        transaction__isnull=False,
        transaction__merged_into__isnull=True,
    )
    if rule.channel:
        qs = qs.filter(transaction__channel=rule.channel)
    if rule.system:
        qs = qs.filter(system=rule.system)
    groups = {
        row["system"]: row
        for row in qs.values("system").annotate(
            n=Count("transaction_id", distinct=True), oldest=Min("event_at")
        )
    }
    wanted = max(1, int(rule.threshold or 1))
    groups = {s: g for s, g in groups.items() if g["n"] >= wanted}
    if not groups:
        return []
    sums: dict[str, list[dict[str, str]]] = {}
    for row in (
        qs.filter(system__in=list(groups), transaction__amount__isnull=False)
        .values("system", "transaction__currency")
        .annotate(total=Sum("transaction__amount"))
        .order_by("system", "transaction__currency")
    ):
        sums.setdefault(row["system"], []).append(
            {"currency": row["transaction__currency"], "value": f"{row['total']:.2f}"}
        )
    tops: dict[str, list[dict[str, Any]]] = {}
    for system in groups:
        tops[system] = [
            dict(r)
            for r in qs.filter(system=system)
            .order_by(F("transaction__amount").desc(nulls_last=True), "event_at", "id")
            .values(
                "transaction_id",
                "transaction__amount",
                "transaction__currency",
                "transaction__channel",
                "event_at",
            )[:TOP_ORDERS]
        ]
    labels = transaction_labels(r["transaction_id"] for rows in tops.values() for r in rows)
    out = []
    for system, g in sorted(groups.items()):
        top = [
            {
                "id": r["transaction_id"],
                "label": _short_label(labels.get(r["transaction_id"], ""))
                or f"transaction {r['transaction_id']}",
                "amount": None
                if r["transaction__amount"] is None
                else f"{r['transaction__amount']:.2f}",
                "currency": r["transaction__currency"],
                "channel": r["transaction__channel"],
                "late_since": r["event_at"].isoformat() if r["event_at"] else None,
            }
            for r in tops[system]
        ]
        orders = {"count": g["n"], "totals": sums.get(system, []), "top": top}
        value_text = text.totals(orders["totals"])
        oldest: datetime | None = g["oldest"]
        late = (
            f", the oldest {text.duration((now - oldest).total_seconds())} past its SLA"
            if (oldest)
            else ""
        )
        summary = (
            f"{text.orders_phrase(g['n'], rule.channel)} stuck before {rule.stage}"
            f"{' (' + value_text + ')' if value_text else ''}{late}; waiting on {system or '?'}"
        )
        finding_labels = {"system": system, "stage": rule.stage}
        if rule.channel:
            finding_labels["channel"] = rule.channel
        out.append(
            Finding(
                rule_id=rule.id,
                labels=finding_labels,
                value=float(g["n"]),
                summary=summary,
                detail={
                    "orders": orders,
                    "oldest_late_since": oldest.isoformat() if oldest else None,
                },
            )
        )
    return out


def _short_label(label: str) -> str:
    """``order_number=#1001`` -> ``#1001`` (other kinds keep their name)."""
    return label.split("=", 1)[1] if label.startswith("order_number=") else label


def _error_rate(rule: Rule, now: datetime) -> list[Finding]:
    window = int(rule.window_s or 300)
    qs = Hop.objects.filter(
        system=rule.system, start_time__gt=now - timedelta(seconds=window), start_time__lte=now
    )
    if rule.operation:
        qs = qs.filter(operation=rule.operation)
    agg = qs.aggregate(total=Count("id"), failed=Count("id", filter=Q(outcome="error")))
    total, failed = int(agg["total"] or 0), int(agg["failed"] or 0)
    if total == 0 or total < rule.min_count or failed < rule.min_failed:
        return []
    rate = failed / total
    if not rate > float(rule.threshold or 0):
        return []
    last = (
        qs.filter(outcome="error")
        .order_by("-start_time", "-id")
        .values("operation", "status_message", "start_time")
        .first()
    )
    what = f"{rule.system} {rule.operation}" if rule.operation else rule.system
    summary = (
        f"{what} error rate {text.percent(rate)} over the last {text.duration(window)}: "
        f"{failed:,} of {total:,} hops failed (threshold {text.percent(rule.threshold or 0)})"
    )
    detail: dict[str, Any] = {"total": total, "failed": failed, "rate": rate, "window_s": window}
    if last:
        detail["last_error"] = {
            "operation": last["operation"],
            "message": (last["status_message"] or "")[:300],
            "at": last["start_time"].isoformat(),
        }
    orders = impact.orders_of(
        Transaction.objects.filter(
            id__in=TransactionHop.objects.filter(
                hop__in=qs.filter(outcome="error").values("id")
            ).values("transaction_id")
        )
    )
    if orders["count"]:
        detail["orders"] = orders
        summary += "; " + impact.phrase(orders, "behind the failed hops")
    labels = {"system": rule.system}
    if rule.operation:
        labels["operation"] = rule.operation
    return [Finding(rule.id, labels, rate, summary, detail)]


def _silence(rule: Rule, now: datetime) -> list[Finding]:
    """The system sent nothing for the window (while ``while_system`` did); or triage
    holds a ``silence`` exception for it: it stopped reporting while orders wait on it."""
    held = (
        triage.Issue.objects.filter(
            kind=triage.SILENCE, state__in=triage.UNRESOLVED, system=rule.system
        )
        .order_by("id")
        .first()
    )
    if held is not None:
        waiting = float(held.detail.get("waiting") or 0)
        found = {"exception_id": held.id, **held.detail}
        return [Finding(rule.id, {"system": rule.system}, waiting, held.summary, found)]
    window = int(rule.window_s or 600)
    since = now - timedelta(seconds=window)
    last = Hop.objects.filter(system=rule.system, start_time__lte=now).aggregate(
        at=Max("start_time")
    )["at"]
    if last is not None and last > since:
        return []
    detail: dict[str, Any] = {"window_s": window, "last_hop_at": last.isoformat() if last else None}
    tail = ""
    if rule.while_system:
        others = Hop.objects.filter(
            system=rule.while_system, start_time__gt=since, start_time__lte=now
        ).count()
        if not others:
            return []
        detail["while_system"] = rule.while_system
        detail["while_hops"] = others
        tail = f" while {rule.while_system} sent {others:,} hops"
    silent_s = (now - last).total_seconds() if last else None
    if last is not None:
        head = (
            f"no hop from {rule.system} for {text.duration(silent_s or 0)} "
            f"(last at {text.clock_time(last)})"
        )
    else:
        head = f"no hop from {rule.system} yet"
    return [Finding(rule.id, {"system": rule.system}, silent_s, head + tail, detail)]


def kpi_source() -> Callable[..., dict[str, dict[str, Any]]]:
    """``observatory.kpis.queries.kpi_values`` (imported late: KPIs may not be installed)."""
    try:
        from observatory.kpis.queries import kpi_values
    except ImportError as exc:
        raise RuleUnavailable(f"KPIs are not available: {exc}") from exc
    return kpi_values


def _kpi(rule: Rule, now: datetime, cache: dict[Any, Any]) -> list[Finding]:
    window = int(rule.window_s or 3600)
    key = ("kpi", window, rule.channel, rule.system)
    if key not in cache:
        cache[key] = kpi_source()(
            now - timedelta(seconds=window),
            now,
            channel=rule.channel or None,
            system=rule.system or None,
            at=now,
        )
    values = cache[key]
    value = validation.kpi_field_value(values, rule.kpi, rule.field)
    if value is None or not isinstance(value, int | float):
        return []
    threshold = float(rule.threshold or 0)
    if not compare(float(value), rule.op, threshold):
        return []
    shown = _kpi_value(rule.field, float(value))
    summary = (
        f"{rule.kpi}.{rule.field} = {shown} over the last {text.duration(window)} "
        f"({rule.op} {_kpi_value(rule.field, threshold)})"
    )
    labels = {"kpi": rule.kpi}
    for name in ("channel", "system"):
        if getattr(rule, name):
            labels[name] = getattr(rule, name)
    detail: dict[str, Any] = {"kpi": values.get(rule.kpi), "window_s": window}
    orders = _kpi_orders(rule, cache)
    if orders["count"]:
        detail["orders"] = orders
        summary += "; " + impact.phrase(orders, "with an open exception")
    return [Finding(rule.id, labels, float(value), summary, _jsonable(detail))]


def _kpi_orders(rule: Rule, cache: dict[Any, Any]) -> dict[str, Any]:
    """The orders behind a KPI alert: those of the rule's channel and system with an
    open exception now (the ``value_at_risk`` set), read once per evaluation and scope."""
    key = ("kpi-orders", rule.channel, rule.system)
    if key not in cache:
        issues = triage.Issue.objects.filter(state__in=triage.UNRESOLVED, transaction__isnull=False)
        if rule.system:
            issues = issues.filter(system=rule.system)
        txs = Transaction.objects.filter(id__in=issues.values("transaction_id"))
        if rule.channel:
            txs = txs.filter(channel=rule.channel)
        cache[key] = impact.orders_of(txs)
    return dict(cache[key])


def _kpi_value(field: str, value: float) -> str:
    if field.endswith("_s"):
        return text.duration(value)
    if field in ("rate", "within_sla"):
        return text.percent(value)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.3f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


_FINDERS: dict[str, Callable[[Rule, datetime], list[Finding]]] = {
    STUCK: _stuck,
    ERROR_RATE: _error_rate,
    SILENCE: _silence,
}


# --- reads for the API and the pages ----------------------------------------------------------


def active_rules() -> list[Rule]:
    return list(Rule.objects.filter(active=True).prefetch_related("channels").order_by("id"))


def known_systems() -> list[str]:
    """The systems a rule may name: the built-in ones, every system with a reporting
    stream, and those rules already name (a short list, three small queries)."""
    from observatory.hops.models import Stream
    from tracing.conventions import BUILTIN_SYSTEMS

    streams = Stream.objects.values_list("system", flat=True).distinct()
    named = Rule.objects.values_list("system", "while_system")
    found = {s for pair in named for s in pair if s}
    return sorted({*BUILTIN_SYSTEMS, *streams, *found})


def active_channels() -> list[Channel]:
    return list(Channel.objects.filter(active=True).order_by("id"))


def live_silences(at: datetime) -> list[Silence]:
    """Silences not yet expired (active now or starting later)."""
    return list(Silence.objects.filter(ends_at__gt=at).order_by("starts_at", "id"))


def alerts(
    *,
    states: Sequence[str] = (),
    acknowledged: bool | None = None,
    rule_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
    with_notifications: bool = True,
) -> list[Alert]:
    """Alerts, newest first (by id), with their rule and notifications (fixed queries)."""
    qs: QuerySet[Alert] = Alert.objects.select_related("rule", "inhibited_by__rule", "silenced_by")
    if states:
        qs = qs.filter(state__in=list(states))
    if acknowledged is not None:
        qs = qs.filter(acknowledged_at__isnull=not acknowledged)
    if rule_id is not None:
        qs = qs.filter(rule_id=rule_id)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    if with_notifications:
        qs = qs.prefetch_related(
            Prefetch(
                "notifications",
                queryset=Notification.objects.select_related("event", "channel").order_by("id"),
            )
        )
    return list(qs.order_by("-id")[:limit])


def alert_with_notifications(pk: int) -> Alert | None:
    return (
        Alert.objects.select_related("rule")
        .prefetch_related(
            Prefetch(
                "notifications",
                queryset=Notification.objects.select_related("event", "channel").order_by("id"),
            )
        )
        .filter(pk=pk)
        .first()
    )


@dataclass
class Board:
    """The /alerts/ page: alerts by what needs doing."""

    firing: list[Alert]
    pending: list[Alert]
    acknowledged: list[Alert]
    resolved: list[Alert]
    failing_channels: list[Channel]
    silences: list[Silence]


def board(at: datetime, *, resolved_limit: int = 30) -> Board:
    unresolved = alerts(states=(PENDING, FIRING), limit=500)
    return Board(
        firing=[a for a in unresolved if a.state == FIRING and not a.acknowledged],
        pending=[a for a in unresolved if a.state == PENDING],
        acknowledged=[a for a in unresolved if a.state == FIRING and a.acknowledged],
        resolved=alerts(states=(RESOLVED,), limit=resolved_limit),
        failing_channels=list(Channel.objects.filter(failing=True, active=True)),
        silences=[s for s in live_silences(at) if s.starts_at <= at],
    )


def counts() -> dict[str, int]:
    """Unresolved alerts by state, for the live dashboard panel."""
    rows = Alert.objects.filter(state__in=(PENDING, FIRING)).values_list("state", "acknowledged_at")
    out = {"firing": 0, "pending": 0, "acknowledged": 0}
    for state, acked in rows:
        if state == PENDING:
            out["pending"] += 1
        elif acked is not None:
            out["acknowledged"] += 1
        else:
            out["firing"] += 1
    return out


def panel(limit: int = 10) -> dict[str, Any]:
    """What the ops dashboard's alert panel shows: counts and the unresolved alerts."""
    rows = alerts(states=(PENDING, FIRING), limit=limit, with_notifications=False)
    return {
        "counts": counts(),
        "alerts": [
            {
                "id": a.id,
                "rule": a.rule.name,
                "severity": a.rule.severity,
                "state": a.state,
                "acknowledged": a.acknowledged,
                "held_back": a.inhibited_by_id is not None,
                "silenced": a.silenced_by_id is not None,
                "summary": a.summary,
                "since": a.since.isoformat() if a.since else None,
            }
            for a in rows
        ],
    }


def alert_detail(pk: int) -> Alert | None:
    return (
        Alert.objects.select_related("rule", "inhibited_by__rule", "silenced_by")
        .prefetch_related(
            Prefetch("events", queryset=AlertEvent.objects.order_by("at", "id")),
            Prefetch(
                "notifications",
                queryset=Notification.objects.select_related("event", "channel")
                .prefetch_related("attempt_log")
                .order_by("id"),
            ),
            Prefetch("holding", queryset=Alert.objects.select_related("rule")),
        )
        .filter(pk=pk)
        .first()
    )


def recent_attempts(channel_id: int, limit: int = 10) -> list[DeliveryAttempt]:
    return list(
        DeliveryAttempt.objects.filter(notification__channel_id=channel_id)
        .select_related("notification__event")
        .order_by("-at", "-id")[:limit]
    )


def held_alerts(fingerprints: Iterable[str]) -> dict[str, Alert]:
    """The latest alert of each fingerprint (a held stuck alert, for a summary)."""
    out: dict[str, Alert] = {}
    for a in (
        Alert.objects.filter(fingerprint__in=list(fingerprints))
        .select_related("rule")
        .order_by("fingerprint", "-id")
    ):
        out.setdefault(a.fingerprint, a)
    return out
