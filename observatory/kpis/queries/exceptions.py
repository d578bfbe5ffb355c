"""Exception and alert KPIs: the exceptions of a channel, store or system, their aging at
the end of a window, and the mean time to resolve exceptions and alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min, Q

from observatory.kpis.models import AlertSeen, IssueSeen
from observatory.kpis.queries.readers import is_live
from observatory.lib.clock import now as clock_now
from observatory.triage import sla
from observatory.triage.models import RESOLVED, UNRESOLVED, WITHDRAWN, Issue


def issues(channel: str | None, store: str | None, system: str | None) -> Any:
    """The exceptions of one channel / store (their transaction's) or system: for a channel
    or a store, the fill's ``IssueSeen`` rows (the same fields: ``state``, ``system``,
    ``opened_at``, ``resolved_at``; an index on the channel or store and the opening time,
    no lookup of every exception's transaction); otherwise the exceptions themselves, as
    they are this moment."""
    qs: Any
    if channel is not None or store is not None:
        qs = IssueSeen.objects.all()
        if channel is not None:
            qs = qs.filter(channel=channel)
        if store is not None:
            qs = qs.filter(store=store)
    else:
        qs = Issue.objects.all()
    if system:
        qs = qs.filter(system=system)
    return qs


def exception_aging(
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Exceptions unresolved at ``until``, by age then (the ``exception_aging`` KPI)."""
    at = at or clock_now()
    qs = issues(channel, store, system)
    if is_live(until, at):
        qs = qs.filter(state__in=UNRESOLVED, opened_at__lte=until)
    else:
        qs = qs.filter(opened_at__lte=until).filter(
            Q(resolved_at__isnull=True) | Q(resolved_at__gt=until)
        )
    marks = {name: until - timedelta(seconds=upper) for name, upper in sla.AGE_BUCKETS if upper}
    row = qs.aggregate(
        open=Count("pk"),
        under_1h=Count("pk", filter=Q(opened_at__gt=marks["under_1h"])),
        h1_to_4=Count(
            "pk", filter=Q(opened_at__gt=marks["h1_to_4"], opened_at__lte=marks["under_1h"])
        ),
        h4_to_24=Count(
            "pk", filter=Q(opened_at__gt=marks["h4_to_24"], opened_at__lte=marks["h1_to_4"])
        ),
        over_24h=Count("pk", filter=Q(opened_at__lte=marks["h4_to_24"])),
        oldest=Min("opened_at"),
    )
    out: dict[str, Any] = dict(row)
    oldest = out.pop("oldest")
    out["oldest_s"] = (until - oldest).total_seconds() if oldest is not None else None
    return out


def resolution_time() -> ExpressionWrapper[Any]:
    return ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())


def exceptions_resolution(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> tuple[int, float | None]:
    """(count, mean seconds) opened -> resolved, of exceptions opened in the window."""
    qs = issues(channel, store, system).filter(
        opened_at__gte=since, opened_at__lt=until, state=RESOLVED, resolved_at__isnull=False
    )
    row = qs.aggregate(n=Count("pk"), mean=Avg(resolution_time()))
    mean = row["mean"]
    if mean is None:
        return int(row["n"]), None
    if isinstance(mean, timedelta):
        return int(row["n"]), mean.total_seconds()
    return int(row["n"]), float(mean) / 1_000_000  # SQLite: microseconds


def alerts_resolution(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> tuple[int, float | None]:
    """(count, mean seconds) fired -> resolved, of alerts fired in the window: the facts
    the alerts stage hands down (``AlertSeen``), matched to a filter by their labels."""
    qs = AlertSeen.objects.filter(
        fired_at__gte=since, fired_at__lt=until, resolved_at__isnull=False
    )
    for label, value in (("channel", channel), ("store", store), ("system", system)):
        if value:
            qs = qs.filter(**{label: value})
    row = qs.aggregate(
        n=Count("pk"),
        mean=Avg(ExpressionWrapper(F("resolved_at") - F("fired_at"), output_field=DurationField())),
    )
    mean = row["mean"]
    if mean is None:
        return int(row["n"]), None
    if isinstance(mean, timedelta):
        return int(row["n"]), mean.total_seconds()
    return int(row["n"]), float(mean) / 1_000_000


def value_at_risk(
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The summed amount of the transactions with an exception open at ``until`` (the
    ``value_at_risk`` KPI): each transaction once in ``orders`` and ``by_currency``, and
    once under each system and stage it has an open exception for. A withdrawn exception
    never was a problem; a transaction without an amount counts in ``orders`` alone.

    One query over the open exceptions (the queue's partial index), however many
    transactions there are."""
    at = at or clock_now()
    qs = Issue.objects.filter(transaction__isnull=False, opened_at__lte=until).exclude(
        state=WITHDRAWN
    )
    if is_live(until, at):
        qs = qs.filter(state__in=UNRESOLVED)
    else:
        qs = qs.filter(Q(resolved_at__isnull=True) | Q(resolved_at__gt=until))
    if channel is not None:
        qs = qs.filter(transaction__channel=channel)
    if store is not None:
        qs = qs.filter(transaction__store_id=store)
    if system:
        qs = qs.filter(system=system)
    rows = qs.values_list(
        "transaction_id", "system", "stage", "kind", "transaction__currency", "transaction__amount"
    ).distinct()
    return value_at_risk_from(rows)


def value_at_risk_from(
    rows: Iterable[tuple[int, str, str, str, str, Decimal | None]],
) -> dict[str, Any]:
    """``value_at_risk``'s fields from (transaction, system, stage, kind, currency, amount)
    of each open exception: money is summed per currency only, never across currencies."""
    orders: set[int] = set()
    by_currency: dict[str, Decimal] = {}
    by_system: dict[str, dict[str, Decimal]] = {}
    by_stage: dict[str, dict[str, Decimal]] = {}
    counted: set[tuple[str, str, int]] = set()
    for tx_id, system, stage, kind, currency, amount in rows:
        first = tx_id not in orders
        orders.add(tx_id)
        if amount is None or not currency:
            continue
        if first:
            by_currency[currency] = by_currency.get(currency, Decimal(0)) + amount
        for group, name, table in (
            ("system", system or "unknown", by_system),
            ("stage", stage or kind, by_stage),
        ):
            if (group, name, tx_id) in counted:
                continue
            counted.add((group, name, tx_id))
            sums = table.setdefault(name, {})
            sums[currency] = sums.get(currency, Decimal(0)) + amount
    return {
        "orders": len(orders),
        "by_currency": _money(by_currency),
        "by_system": {k: _money(v) for k, v in sorted(by_system.items())},
        "by_stage": {k: _money(v) for k, v in sorted(by_stage.items())},
    }


def _money(sums: dict[str, Decimal]) -> dict[str, float]:
    return {currency: float(total) for currency, total in sorted(sums.items())}
