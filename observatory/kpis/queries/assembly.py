"""Every KPI of the registry over a window, assembled from the window's totals and
snapshots (``kpi_values``: the API and the alert rules ask it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from observatory.kpis import compute, registry
from observatory.kpis.queries.backlog import backlog
from observatory.kpis.queries.cancellations import cancellation_success
from observatory.kpis.queries.exceptions import (
    alerts_resolution,
    exception_aging,
    exceptions_resolution,
    value_at_risk,
)
from observatory.kpis.queries.inventory import inventory_drift
from observatory.kpis.queries.refunds import refund_reconciliation
from observatory.kpis.queries.shipments import reroute_rate
from observatory.kpis.queries.totals import HopTotal, LagTotal, OrderTotal, hop_totals, order_total
from observatory.lib.clock import now as clock_now


def _lag_fields(lag: LagTotal, names: Sequence[str]) -> dict[str, Any]:
    p50, p95, p99 = lag.quantiles()
    values = {"count": lag.count, "p50_s": p50, "p95_s": p95, "p99_s": p99}
    return {n: values[n] for n in names if n in values}


def duplicates_by_source(hops: dict[tuple[str, str], HopTotal]) -> dict[str, dict[str, Any]]:
    """``duplicate_rate.by_source``: per system, its deliveries, duplicates and their rate."""
    sources: dict[str, list[int]] = {}
    for (system, _operation), h in hops.items():
        tally = sources.setdefault(system, [0, 0])
        tally[0] += h.hops + h.duplicates
        tally[1] += h.duplicates
    return {
        system: {"deliveries": n, "duplicates": d, "rate": compute.rate(d, n)}
        for system, (n, d) in sorted(sources.items())
        if n
    }


def values_from(
    orders: OrderTotal,
    hops: dict[tuple[str, str], HopTotal],
    *,
    backlog_value: dict[str, Any],
    aging: dict[str, Any],
    at_risk: dict[str, Any],
    cancellations: dict[str, Any],
    posting: dict[str, Any],
    reroutes: dict[str, Any],
    drift: dict[str, Any],
    refunds: dict[str, Any],
    resolution: dict[str, float | None],
) -> dict[str, dict[str, Any]]:
    """Every KPI of the registry from the window's totals (their ids and fields)."""
    deliveries = sum(h.hops + h.duplicates for h in hops.values())
    duplicates = sum(h.duplicates for h in hops.values())
    by_source = duplicates_by_source(hops)
    counted: list[tuple[float, str]] = [
        (v["rate"] or 0.0, system)
        for system, v in by_source.items()
        if v["deliveries"] >= registry.MIN_SOURCE_DELIVERIES
    ]
    worst_rate: float | None = None
    worst = ""
    if counted:
        worst_rate, worst = max(counted)
    rows = []
    for (system, operation), h in sorted(hops.items()):
        if not h.hops:
            continue
        p50, p95 = h.dur.quantiles((0.5, 0.95))
        rows.append(
            {
                "system": system,
                "operation": operation,
                "count": h.hops,
                "error_rate": compute.rate(h.errors, h.hops),
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
    a2p = _lag_fields(orders.a2p, ("count", "p50_s", "p95_s", "p99_s"))
    a2p["within_sla"] = compute.rate(orders.a2p.within, orders.a2p.count)
    inv = _lag_fields(orders.inv, ("count", "p50_s", "p95_s"))
    inv["max_s"] = orders.inv.maximum
    out: dict[str, dict[str, Any]] = {
        "acceptance_to_posting": a2p,
        "inventory_sync_lag": inv,
        "fulfillment_propagation": _lag_fields(orders.ful, ("count", "p50_s", "p95_s")),
        "exception_rate": {
            "orders": orders.orders,
            "with_exception": orders.with_exception,
            "rate": compute.rate(orders.with_exception, orders.orders),
        },
        "duplicate_rate": {
            "deliveries": deliveries,
            "duplicates": duplicates,
            "rate": compute.rate(duplicates, deliveries),
            "posted_twice": orders.posted_twice,
            "by_source": by_source,
            "worst_source_rate": worst_rate,
            "worst_source": worst,
        },
        "reconciliation_backlog": backlog_value,
        "exception_aging": aging,
        "refund_reconciliation": refunds,
        "cancellation_success": cancellations,
        "posting_completeness": posting,
        "reroute_rate": reroutes,
        "inventory_drift": drift,
        "value_at_risk": at_risk,
        "retries": {
            "retries": sum(h.retries for h in hops.values()),
            "replays": sum(h.replays for h in hops.values()),
        },
        "hop_health": {"rows": rows},
        "resolution_time": dict(resolution),
    }
    assert set(out) == set(registry.KPIS)
    return out


def kpi_values(
    since: datetime,
    until: datetime,
    channel: str | None = None,
    system: str | None = None,
    store: str | None = None,
    *,
    at: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Every KPI of the registry over ``[since, until)``: ``{kpi_id: {field: value}}``.

    ``channel`` and ``store`` filter every KPI; ``system`` filters the KPIs where a
    system is part of the fact (see ``registry``). Durations are seconds (``hop_health``:
    milliseconds), rates 0..1, and a figure with nothing to measure is None.
    """
    at = at or clock_now()
    channel = channel or None
    store = store or None
    system = system or None
    orders = order_total(since, until, channel=channel, store=store, at=at)
    hops = hop_totals(since, until, channel=channel, store=store, system=system, at=at)
    _, exc_mean = exceptions_resolution(since, until, channel=channel, store=store, system=system)
    _, alert_mean = alerts_resolution(since, until, channel=channel, store=store, system=system)
    return values_from(
        orders,
        hops,
        backlog_value=backlog(since, until, channel=channel, store=store, system=system, at=at),
        aging=exception_aging(until, channel=channel, store=store, system=system, at=at),
        at_risk=value_at_risk(until, channel=channel, store=store, system=system, at=at),
        cancellations=cancellation_success(since, until, channel=channel, store=store),
        posting=compute.posting_figures(orders.posting, at),
        refunds=refund_reconciliation(since, until, channel=channel, store=store, at=at),
        reroutes=reroute_rate(since, until, channel=channel, store=store),
        drift=inventory_drift(since, until, store=store, system=system),
        resolution={"alerts_mean_s": alert_mean, "exceptions_mean_s": exc_mean},
    )
