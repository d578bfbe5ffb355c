"""Duplicates, conflicts and silence per source, for the ops dashboard: what each system
sent twice, the keys it sent that clash with what the others said, and how long it was
silent while orders waited on it, each as a rate of that source.

* duplicates: ``duplicate_rate.by_source`` of the KPIs (deliveries, duplicates, rate), the
  same figures as ``GET /api/v1/kpis``;
* conflicts: ``conflict`` exceptions (a refused link: keys that clash) opened in the
  window per system, over the hops that system had stored in it;
* silence: the time its ``silence`` exceptions (docs/watermarks.md, "Silence") covered in
  the window, over the window's length; whether it is silent now.

A fixed number of queries, whatever the number of systems.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

from observatory.kpis import compute
from observatory.kpis import queries as kpi_queries
from observatory.triage.models import CONFLICT, SILENCE, UNRESOLVED, WITHDRAWN, Issue


@dataclass
class SourceIntegrity:
    system: str
    deliveries: int = 0
    duplicates: int = 0
    duplicate_rate: float | None = None
    conflicts: int = 0
    conflict_rate: float | None = None
    silences: int = 0
    silent_s: float = 0.0
    silence_rate: float | None = None
    silent_now: bool = False

    @property
    def hops(self) -> int:
        """Hops stored from it (deliveries less the duplicates)."""
        return self.deliveries - self.duplicates

    @property
    def trouble(self) -> bool:
        return bool(self.duplicates or self.conflicts or self.silences)


def source_integrity(since: datetime, until: datetime, *, at: datetime) -> list[SourceIntegrity]:
    """Every source with deliveries, conflicts or silence in ``[since, until)``."""
    hops = kpi_queries.hop_totals(since, until, at=at)
    rows: dict[str, SourceIntegrity] = {}
    for system, v in kpi_queries.duplicates_by_source(hops).items():
        rows[system] = SourceIntegrity(
            system, deliveries=v["deliveries"], duplicates=v["duplicates"], duplicate_rate=v["rate"]
        )
    for system, n in (
        Issue.objects.filter(kind=CONFLICT, opened_at__gte=since, opened_at__lt=until)
        .exclude(state=WITHDRAWN)
        .values_list("system")
        .annotate(n=Count("id"))
    ):
        rows.setdefault(system, SourceIntegrity(system)).conflicts = n
    span = max((until - since).total_seconds(), 1.0)
    silences = (
        Issue.objects.filter(kind=SILENCE, opened_at__lt=until)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gt=since))
        .exclude(state=WITHDRAWN)
        .values_list("system", "opened_at", "resolved_at", "state")
    )
    for system, opened, resolved, state in silences:
        row = rows.setdefault(system, SourceIntegrity(system))
        end = min(resolved or until, until, at)
        row.silences += 1
        row.silent_s += max(0.0, (end - max(opened, since)).total_seconds())
        row.silent_now = row.silent_now or state in UNRESOLVED
    for row in rows.values():
        row.conflict_rate = compute.rate(row.conflicts, row.hops) if row.hops else None
        row.silence_rate = min(1.0, row.silent_s / span)
    return sorted(rows.values(), key=lambda r: (not r.trouble, r.system))
