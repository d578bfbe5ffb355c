"""``cancellation_success`` (docs/kpis.md): of the orders whose cancellation came in the
window, those the ERP and the warehouse cancelled too, and that never shipped.

A small indexed query: the window's cancellations (a partial index on ``cancelled_at``),
each checked against its own timeline (``StageReached``, by transaction) with EXISTS; no
scan of the other orders.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from django.db.models import Count, Exists, OuterRef, Q

from observatory.kpis import compute
from observatory.transactions.models import StageReached, Transaction

#: The systems that must cancel an order they hold for its cancellation to have worked.
DOWNSTREAM: Final = ("erp", "wms")
CANCELLED: Final = "cancelled"


def cancellation_success(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """``requested``: orders first cancelled in ``[since, until)``; ``succeeded``: of
    those, the ones that never shipped and that each of the ERP and the WMS cancelled,
    when it held the order (reported any stage of it)."""
    qs = Transaction.objects.filter(
        kind="order",
        merged_into__isnull=True,
        cancelled_at__gte=since,
        cancelled_at__lt=until,
    )
    if channel is not None:
        qs = qs.filter(channel=channel)
    if store is not None:
        qs = qs.filter(store_id=store)
    worked = Q(shipped_at__isnull=True)
    for system in DOWNSTREAM:
        timeline = StageReached.objects.filter(transaction=OuterRef("pk"), system=system)
        held = Exists(timeline)
        cancelled = Exists(timeline.filter(stage=CANCELLED))
        worked &= ~held | cancelled
    row = qs.aggregate(requested=Count("pk"), succeeded=Count("pk", filter=worked))
    requested, succeeded = int(row["requested"]), int(row["succeeded"])
    return {
        "requested": requested,
        "succeeded": succeeded,
        "rate": compute.rate(succeeded, requested),
    }
