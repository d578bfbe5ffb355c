"""``reroute_rate`` (docs/kpis.md): of the orders first shipped in the window, those whose
fulfilling location changed after release.

The stitcher records the fact once per transaction (``Transaction.rerouted_at``, from the
hops' ``retail.reroute`` and the warehouse's ``retail.location_id``), so this is one
statement over the window's shipments (a partial index on ``shipped_at``): no hop and no
JSON is read at query time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from observatory.kpis import compute
from observatory.transactions.models import Transaction


def reroute_rate(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    qs = Transaction.objects.filter(
        kind="order",
        merged_into__isnull=True,
        shipped_at__gte=since,
        shipped_at__lt=until,
    )
    if channel is not None:
        qs = qs.filter(channel=channel)
    if store is not None:
        qs = qs.filter(store_id=store)
    row = qs.aggregate(
        shipments=Count("pk"), rerouted=Count("pk", filter=Q(rerouted_at__isnull=False))
    )
    shipments, rerouted = int(row["shipments"]), int(row["rerouted"])
    return {"shipments": shipments, "rerouted": rerouted, "rate": compute.rate(rerouted, shipments)}
