"""``GET /api/v1/kpis`` (CONTRACT 3 and 5): every KPI over a window, from the rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from observatory.kpis import queries
from observatory.kpis.schema import KpiAnswerOut, KpiFilters
from observatory.lib.clock import now
from observatory.triage.queries import BadRequest

router = Router(tags=["kpis"])

DEFAULT_WINDOW = timedelta(hours=24)
#: The longest window answered (rollups are kept about this long).
MAX_WINDOW = timedelta(days=400)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def window(
    since: datetime | None, until: datetime | None, at: datetime
) -> tuple[datetime, datetime]:
    """The window asked for, with defaults (the last 24 hours), as aware UTC datetimes."""
    end = _aware(until).astimezone(UTC) if until is not None else at
    start = _aware(since).astimezone(UTC) if since is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("since", "must be before until")
    if end - start > MAX_WINDOW:
        raise BadRequest("since", f"the window may be at most {MAX_WINDOW.days} days")
    return start, end


@router.get(
    "/kpis",
    response=KpiAnswerOut,
    summary="Every KPI over a window (CONTRACT 5), optionally for one channel, system, store",
)
def kpis(request: HttpRequest, filters: Query[KpiFilters]) -> dict[str, Any]:
    at = now()
    since, until = window(filters.since, filters.until, at)
    values = queries.kpi_values(
        since,
        until,
        channel=filters.channel.strip() or None,
        system=filters.system.strip() or None,
        store=filters.store.strip() or None,
        at=at,
    )
    return {"since": since, "until": until, "kpis": values}
