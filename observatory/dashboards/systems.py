"""``/systems/`` and ``/systems/<name>/``: each system's health (``health.py``), how far
its telemetry has got (watermark, arrival lag), its steps (operations) with their rate,
failures and durations, and its recent failures with their orders."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from observatory.dashboards import health, series
from observatory.dashboards import kpi_figures as figs
from observatory.dashboards.api import summary
from observatory.dashboards.kpi_figures import to_json as figure_json
from observatory.dashboards.templatetags.kpi_tags import system_name
from observatory.hops.queries import stream_lags
from observatory.lib.clock import now
from observatory.lib.timerange import TimeRange, range_or_default


def _range(request: HttpRequest, at: datetime) -> tuple[TimeRange, str]:
    """The page's time range (``lib/timerange.py``); ``?period=`` (the older links) is
    read as ``?range=``."""
    params: dict[str, str] = request.GET.dict()
    if "range" not in params and "period" in params:
        params["range"] = params["period"]
    return range_or_default(params, at=at, default=DEFAULT_RANGE)


DEFAULT_RANGE = "24h"


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Every system: rate, failed share, typical and slow step times, status now."""
    at = now()
    tr, error = _range(request, at)
    assert tr.since is not None
    rows = series.system_rows(tr.since, tr.until)
    all_tiles = series.system_tiles(at)
    tiles = {t.system: t for t in all_tiles}
    healths = {h.system: h for h in health.systems(at, tiles=all_tiles)}
    return render(
        request,
        "dashboards/systems.html",
        {
            "tr": tr,
            "range_error": error,
            "period_words": tr.words,
            "rows": rows,
            "tiles": tiles,
            "health": healths,
            "idle": sorted((set(tiles) | set(healths)) - {r.system for r in rows}),
            "chart": figure_json(
                figs.systems_bars(rows, [system_name(r.system) for r in rows]),
                {"displayModeBar": False},
            )
            if rows
            else "",
            "at": at,
        },
    )


@require_GET
@login_required
def detail(request: HttpRequest, name: str) -> HttpResponse:
    """One system: its operations, hops per hour, and its newest failures."""
    at = now()
    tr, error = _range(request, at)
    assert tr.since is not None and tr.span is not None
    rows = series.system_rows(tr.since, tr.until, system=name)
    all_tiles = series.system_tiles(at)
    tile = next((t for t in all_tiles if t.system == name), None)
    stream_lag = stream_lags(at, system=name)
    found = health.systems(at, only=name, tiles=all_tiles, lags=stream_lag)
    if not rows and tile is None and not found:
        raise Http404("no hop from this system")
    lags = stream_lag.get((name, ""))
    hourly_span = max(tr.span, timedelta(hours=24))
    hourly = series.hourly_system(name, tr.until - hourly_span, tr.until)
    return render(
        request,
        "dashboards/system.html",
        {
            "name": name,
            "tr": tr,
            "range_error": error,
            "period_words": tr.words,
            "row": rows[0] if rows else None,
            "tile": tile,
            "failures": series.recent_system_failures(name, 25),
            "health": found[0] if found else None,
            "summary": summary(found[0]) if found else "",
            "lags": lags,
            "lag_chart": figure_json(figs.lag_histogram(lags.histogram), {"displayModeBar": False})
            if lags is not None and lags.histogram
            else "",
            "chart": figure_json(figs.hourly_hops(hourly), {"displayModeBar": False}),
            "hourly_words": "last 24 hours" if hourly_span > tr.span else tr.words,
            "at": at,
        },
    )
