"""Service-level objectives and error budgets per channel (docs/kpis.md, "SLO attainment and
error budget"), for the executive page, its CSV and the weekly summary e-mail.

An objective is a stage SLA of docs/stages.md kept for at least ``SLO_TARGET`` of the
transactions measured in the period: orders posted to the ERP within their channel's
deadline, shipments shown in Shopify within theirs, stock updates published within theirs.
Attainment is the share kept; the error budget is the share the target allows to miss
(5 % of the measured), and how much of it the misses used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from observatory.kpis import queries
from observatory.triage import queries as triage_queries

#: Share of transactions that should meet their deadline: the service-level objective.
SLO_TARGET = 0.95
#: Past this share of its error budget used, an objective is at risk.
AT_RISK = 0.75

#: objective -> (title, the SLA it keeps: transaction kind, from stage, to stage)
OBJECTIVES: dict[str, tuple[str, tuple[str, str, str]]] = {
    "acceptance_to_posting": ("Order in the ERP", ("order", "captured", "posted")),
    "fulfillment_propagation": (
        "Shipment shown in Shopify",
        ("order", "shipped", "fulfillment_synced"),
    ),
    "inventory_sync_lag": (
        "Stock update published",
        ("inventory_update", "inventory_adjusted", "inventory_published"),
    ),
}

#: (since, until, channel, store) -> the period's totals (memoised by the caller)
Totals = Callable[[datetime, datetime, str | None, str | None], queries.OrderTotal]


@dataclass(frozen=True)
class Objective:
    channel: str
    key: str
    title: str
    #: the SLA's deadline for this channel, seconds (None: no policy applies)
    deadline_s: int | None
    measured: int
    within: int
    target: float = SLO_TARGET

    @property
    def attainment(self) -> float | None:
        """Share of the measured that met the deadline (None: nothing measured)."""
        return self.within / self.measured if self.measured else None

    @property
    def misses(self) -> int:
        return self.measured - self.within

    @property
    def budget(self) -> float:
        """How many misses the target allows in the period (may be fractional)."""
        return (1 - self.target) * self.measured

    @property
    def budget_used(self) -> float | None:
        """Share of the error budget the misses used (over 1: exhausted)."""
        if not self.measured:
            return None
        return self.misses / self.budget if self.budget else float(self.misses > 0)

    @property
    def budget_left(self) -> float | None:
        used = self.budget_used
        return None if used is None else max(0.0, 1 - used)

    @property
    def status(self) -> str:
        """``met``, ``at_risk`` (most of the budget used), ``missed`` or ``no_data``."""
        used = self.budget_used
        if used is None:
            return "no_data"
        if used > 1:
            return "missed"
        return "at_risk" if used > AT_RISK else "met"


def deadlines() -> dict[str, dict[str, int]]:
    """objective -> channel ("" for every other channel) -> its SLA deadline, seconds."""
    out: dict[str, dict[str, int]] = {key: {} for key in OBJECTIVES}
    wanted = {sla: key for key, (_, sla) in OBJECTIVES.items()}
    for p in triage_queries.policies():
        key = wanted.get((p.transaction_kind, p.from_stage, p.to_stage))
        if key is not None:
            out[key][p.channel] = p.deadline_s
    return out


def service_levels(
    since: datetime, until: datetime, channel: str | None, store: str | None, totals: Totals
) -> list[Objective]:
    """Every objective over the period for ``channel``, or for each channel with a posting
    deadline of its own (inventory updates, which belong to no channel, once for all);
    objectives with nothing measured are left out."""
    limits = deadlines()
    channels = [channel] if channel else sorted(c for c in limits["acceptance_to_posting"] if c)
    rows = []
    for channel in channels:
        total = totals(since, until, channel or None, store)
        for key, lag in (
            ("acceptance_to_posting", total.a2p),
            ("fulfillment_propagation", total.ful),
        ):
            if lag.count:
                rows.append(_objective(channel, key, lag, limits))
    inventory = totals(since, until, None, store).inv
    if inventory.count:
        rows.append(_objective("", "inventory_sync_lag", inventory, limits))
    return rows


def _objective(
    channel: str, key: str, lag: queries.LagTotal, limits: dict[str, dict[str, int]]
) -> Objective:
    per_channel = limits[key]
    return Objective(
        channel=channel,
        key=key,
        title=OBJECTIVES[key][0],
        deadline_s=per_channel.get(channel, per_channel.get("")),
        measured=lag.count,
        within=lag.within,
    )


CSV_COLUMNS = (
    "channel",
    "objective",
    "deadline_s",
    "measured",
    "within_deadline",
    "attainment_ratio",
    "target_ratio",
    "error_budget_misses",
    "misses",
    "error_budget_used_ratio",
    "status",
)


def csv_row(o: Objective) -> dict[str, Any]:
    """One objective as a CSV row: numbers only (docs/kpis.md)."""
    return {
        "channel": o.channel or "all",
        "objective": o.key,
        "deadline_s": o.deadline_s,
        "measured": o.measured,
        "within_deadline": o.within,
        "attainment_ratio": _round(o.attainment),
        "target_ratio": o.target,
        "error_budget_misses": round(o.budget, 3),
        "misses": o.misses,
        "error_budget_used_ratio": _round(o.budget_used),
        "status": o.status,
    }


def _round(value: float | None, digits: int = 6) -> float | None:
    """A ratio to six places: 20.0, not the float noise of 0.05's division."""
    return None if value is None else round(value, digits)
