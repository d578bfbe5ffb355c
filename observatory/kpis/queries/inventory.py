"""``inventory_drift`` (docs/kpis.md): of the sku-locations a channel reported in the
window and the source of truth reported at a comparable business time, those whose
quantities differ by more than ``INVENTORY_DRIFT_UNITS``, and by how many units.

One statement over the latest-snapshot table (``hops.queries.inventory_pairs``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum

from observatory.hops.queries import inventory_pairs
from observatory.kpis import compute


def inventory_drift(
    since: datetime,
    until: datetime,
    *,
    store: str | None = None,
    system: str | None = None,
) -> dict[str, Any]:
    """``pairs``: (channel, sku, location) compared; ``off``: of those, the ones beyond the
    threshold; ``units_off``: their summed absolute difference; ``rate``: off / pairs.
    ``store`` is the location, ``system`` the channel's system."""
    off = Q(diff__gt=settings.INVENTORY_DRIFT_UNITS)
    row = inventory_pairs(since, until, location=store, system=system).aggregate(
        pairs=Count("id"), off=Count("id", filter=off), units_off=Sum("diff", filter=off)
    )
    pairs, n_off = int(row["pairs"]), int(row["off"])
    return {
        "pairs": pairs,
        "off": n_off,
        "rate": compute.rate(n_off, pairs),
        "units_off": int(row["units_off"] or 0),
    }
