"""Shapes of the KPI API (docs/kpis.md): ``{"since", "until", "kpis": {ID: {FIELD: value}}}``.

Durations are seconds (``hop_health``: milliseconds), rates 0..1; a figure with nothing to
measure (no order posted in the window) is null.
"""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from observatory.lib.params import Instant, Text32, Text64


class KpiFilters(Schema):
    since: Instant | None = Field(
        None,
        description="start of the window (RFC 3339); default: 24 hours before until. "
        "Rollups are kept 400 days: an earlier start is taken as 400 days before until",
    )
    until: Instant | None = Field(
        None, description="end of the window (excluded), after since; default: now"
    )
    channel: Text32 = Field("", description="only this channel (web, pos, marketplace, ...)")
    system: Text64 = Field("", description="only this system, where a system applies")
    store: Text64 = Field("", description="only this store")


class AcceptanceToPostingOut(Schema):
    count: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    within_sla: float | None


class InventorySyncLagOut(Schema):
    count: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None


class FulfillmentPropagationOut(Schema):
    count: int
    p50_s: float | None
    p95_s: float | None


class ExceptionRateOut(Schema):
    orders: int
    with_exception: int
    rate: float | None


class SourceDuplicatesOut(Schema):
    deliveries: int
    duplicates: int
    rate: float | None


class DuplicateRateOut(Schema):
    deliveries: int
    duplicates: int
    rate: float | None
    posted_twice: int
    #: per sending system
    by_source: dict[str, SourceDuplicatesOut]
    #: the highest rate of a system with enough deliveries in the window, and which one
    worst_source_rate: float | None
    worst_source: str


class BacklogOut(Schema):
    total: int
    by_stage: dict[str, int]


class AgingOut(Schema):
    open: int
    under_1h: int
    h1_to_4: int
    h4_to_24: int
    over_24h: int
    oldest_s: float | None


class RefundReconciliationOut(Schema):
    refunds: int
    settled_within_sla: int
    rate: float | None


class CancellationOut(Schema):
    requested: int
    succeeded: int
    rate: float | None


class CurrencyPostingOut(Schema):
    #: the summed amount of the orders judged, and of those posted by their day's end
    value: float
    value_posted: float


class PostingCompletenessOut(Schema):
    orders: int
    posted: int
    rate: float | None
    #: per currency, never summed across currencies
    by_currency: dict[str, CurrencyPostingOut]


class RerouteOut(Schema):
    shipments: int
    rerouted: int
    rate: float | None


class InventoryDriftOut(Schema):
    pairs: int
    off: int
    rate: float | None
    units_off: int


class ValueAtRiskOut(Schema):
    orders: int
    by_currency: dict[str, float]
    by_system: dict[str, dict[str, float]]
    by_stage: dict[str, dict[str, float]]


class RetriesOut(Schema):
    retries: int
    replays: int


class HopHealthRowOut(Schema):
    system: str
    operation: str
    count: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None


class HopHealthOut(Schema):
    rows: list[HopHealthRowOut]


class ResolutionOut(Schema):
    alerts_mean_s: float | None
    exceptions_mean_s: float | None


class KpisOut(Schema):
    acceptance_to_posting: AcceptanceToPostingOut
    inventory_sync_lag: InventorySyncLagOut
    fulfillment_propagation: FulfillmentPropagationOut
    exception_rate: ExceptionRateOut
    duplicate_rate: DuplicateRateOut
    reconciliation_backlog: BacklogOut
    exception_aging: AgingOut
    refund_reconciliation: RefundReconciliationOut
    cancellation_success: CancellationOut
    posting_completeness: PostingCompletenessOut
    reroute_rate: RerouteOut
    inventory_drift: InventoryDriftOut
    value_at_risk: ValueAtRiskOut
    retries: RetriesOut
    hop_health: HopHealthOut
    resolution_time: ResolutionOut


class KpiAnswerOut(Schema):
    since: datetime
    until: datetime
    kpis: KpisOut
