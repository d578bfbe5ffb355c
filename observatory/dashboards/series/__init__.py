"""Reads behind the KPI pages: the live ops figures, chart series, per-system health.

Charts read day and hour rollups (a fixed number of queries whatever the window); the
live ops figures read the last minutes of hops through their time index, so a hop shows
on the dashboard as soon as it is stored, before any stitching or filling.

The parts: ``live`` (the ops figures), ``charts`` (the executive series) and ``systems``
(per-system health).
"""

from observatory.dashboards.series.charts import (
    LAG_BINS,
    backlog_trend,
    daily_a2p_by_channel,
    daily_deliveries,
    daily_orders,
    daily_resolution,
    dimension_values,
    inventory_lag,
    lag_distribution,
)
from observatory.dashboards.series.live import (
    FLOW_CHANNELS,
    FLOW_SYSTEMS,
    FLOW_WINDOW,
    Edge,
    Tile,
    backlog_now,
    fingerprint,
    firing_alerts,
    flow,
    newest_failures,
    system_tiles,
)
from observatory.dashboards.series.systems import (
    hourly_system,
    recent_system_failures,
    system_rows,
)

__all__ = [
    "FLOW_CHANNELS",
    "FLOW_SYSTEMS",
    "FLOW_WINDOW",
    "LAG_BINS",
    "Edge",
    "Tile",
    "backlog_now",
    "backlog_trend",
    "daily_a2p_by_channel",
    "daily_deliveries",
    "daily_orders",
    "daily_resolution",
    "dimension_values",
    "fingerprint",
    "firing_alerts",
    "flow",
    "hourly_system",
    "inventory_lag",
    "lag_distribution",
    "newest_failures",
    "recent_system_failures",
    "system_rows",
    "system_tiles",
]
