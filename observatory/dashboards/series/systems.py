"""Per-system health: rate, failures and durations per system and operation, from the
rollups; one system's hours; its newest failures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Sum

from observatory.dashboards.series.live import FLOW_SYSTEMS, Failure, newest_failures
from observatory.kpis import compute, queries
from observatory.kpis.compute import ALL, HOUR, Sketch
from observatory.kpis.models import HopRollup


@dataclass
class OpRow:
    system: str
    operation: str
    hops: int = 0
    errors: int = 0
    retries: int = 0
    duplicates: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    minutes: float = 1.0

    @property
    def per_min(self) -> float:
        return self.hops / self.minutes if self.minutes else 0.0

    @property
    def error_rate(self) -> float | None:
        return compute.rate(self.errors, self.hops)


@dataclass
class SystemRow(OpRow):
    operations: list[OpRow] = field(default_factory=list)


def system_rows(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> list[SystemRow]:
    """Per system (and its operations): rate, failures, p50/p95 durations, from rollups."""
    minutes = max((until - since).total_seconds() / 60, 1e-9)
    totals = queries.hop_totals(since, until, channel=channel, store=store, system=system)
    systems: dict[str, SystemRow] = {}
    sketches: dict[str, list[Sketch]] = defaultdict(list)
    for (sys_, op), t in sorted(totals.items()):
        if not t.hops:
            continue
        p50, p95 = t.dur.quantiles((0.5, 0.95))
        row = systems.setdefault(sys_, SystemRow(sys_, "", minutes=minutes))
        row.operations.append(
            OpRow(sys_, op, t.hops, t.errors, t.retries, t.duplicates, p50, p95, minutes)
        )
        row.hops += t.hops
        row.errors += t.errors
        row.retries += t.retries
        row.duplicates += t.duplicates
        sketches[sys_].append(t.dur.sketch)
    for sys_, row in systems.items():
        row.p50_ms, row.p95_ms = compute.merge(sketches[sys_]).quantiles((0.5, 0.95))
        row.operations.sort(key=lambda r: (-r.hops, r.operation))
    order = {s: i for i, s in enumerate(FLOW_SYSTEMS)}
    return sorted(systems.values(), key=lambda r: (order.get(r.system, 99), r.system))


def hourly_system(system: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per hour of ``[since, until)``: one system's hops and failures (SQL sums)."""
    start = compute.floor_to(since, HOUR)
    got: dict[datetime, dict[str, Any]] = {
        r["bucket"]: dict(r)
        for r in HopRollup.objects.filter(
            resolution=HOUR,
            channel=ALL,
            store=ALL,
            system=system,
            bucket__gte=start,
            bucket__lt=until,
        )
        .values("bucket")
        .annotate(hops=Sum("hops"), errors=Sum("errors"))
    }
    return [
        {
            "hour": h,
            "hops": int((got.get(h) or {}).get("hops") or 0),
            "errors": int((got.get(h) or {}).get("errors") or 0),
        }
        for h in compute.buckets_in([(start, compute.ceil_to(until, HOUR))], HOUR)
    ]


def recent_system_failures(system: str, limit: int = 25) -> list[Failure]:
    return newest_failures(limit, system=system)
