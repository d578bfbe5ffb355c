"""``GET /api/v1/kpis`` (docs/api.md, docs/kpis.md): every KPI over a window, from the rollups."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from observatory.kpis import queries
from observatory.kpis.schema import KpiAnswerOut, KpiFilters
from observatory.lib import memo
from observatory.lib.answers import answers
from observatory.lib.clock import now
from observatory.triage.queries import BadRequest

router = Router(tags=["kpis"])

DEFAULT_WINDOW = timedelta(hours=24)
#: The longest window answered (rollups are kept about this long).
MAX_WINDOW = timedelta(days=400)


def window(
    since: datetime | None, until: datetime | None, at: datetime
) -> tuple[datetime, datetime]:
    """The window asked for (aware UTC times, ``lib.params.Instant``), with defaults (the
    last 24 hours); a start more than ``MAX_WINDOW`` before the end is taken as that (the
    rollups are kept about that long: nothing is older)."""
    end = until if until is not None else at
    start = since if since is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("since", "must be before until")
    return max(start, end - MAX_WINDOW), end


@router.get(
    "/kpis",
    response=answers({200: KpiAnswerOut}),
    summary="Every KPI over a window, optionally for one channel, system, store",
    description="The answer's since and until are the window used. 422 when since is "
    "not before until.",
)
def kpis(request: HttpRequest, filters: Query[KpiFilters]) -> dict[str, Any]:
    at = now()
    since, until = window(filters.since, filters.until, at)
    with memo.reads_once():
        values = queries.kpi_values(
            since,
            until,
            channel=filters.channel.strip() or None,
            system=filters.system.strip() or None,
            store=filters.store.strip() or None,
            at=at,
        )
    return {"since": since, "until": until, "kpis": values}
