"""API shapes of the systems' health (``health.py``)."""

from __future__ import annotations

from datetime import datetime

from ninja import Schema


class ReasonOut(Schema):
    status: str
    words: str
    alert_id: int | None = None
    exception_id: int | None = None
    #: the page that shows the cause (the alert, the silence exception, the failed hops)
    url: str = ""


class StoreOut(Schema):
    store_id: str
    watermark: datetime | None
    behind_s: float | None
    last_hop_at: datetime | None
    arrival_lag_p95_s: float | None
    catching_up: bool
    silent: bool


class SystemOut(Schema):
    system: str
    #: ok | degraded | failing | silent
    status: str
    reasons: list[ReasonOut]
    #: business time the system's telemetry is complete up to
    watermark: datetime | None
    #: how far the watermark is behind now, seconds
    behind_s: float | None
    #: how late its hops may arrive before they count as late (configured or measured)
    max_delay_s: float | None
    #: old telemetry still arriving (a backfill, an upload)
    catching_up: bool
    arrival_lag_p50_s: float | None
    arrival_lag_p95_s: float | None
    late_hops: int
    last_hop_at: datetime | None
    #: failed share of its hops over the last 15 minutes
    error_rate: float | None
    #: retried share of its hops over the last 15 minutes
    retry_rate: float | None
    firing_alerts: list[int]
    #: for systems reporting store by store (the POS): each store's stream
    stores: list[StoreOut]
    #: "erp: reported up to 14:02:11, 3 s behind now; arrival lag p95 4 s"
    summary: str


class SystemsOut(Schema):
    at: datetime
    systems: list[SystemOut]
