"""Reads on the hop store."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from observatory.hops.models import Hop, HopKey


def hops_with_keys() -> QuerySet[Hop]:
    """Hops with their keys prefetched in one extra query (never one per hop)."""
    return Hop.objects.prefetch_related(
        Prefetch("keys", queryset=HopKey.objects.order_by("kind", "value"))
    )


def trace_spans(trace_id: str) -> list[Hop]:
    """The hops of one trace, in time order."""
    return list(hops_with_keys().filter(trace_id=trace_id).order_by("start_time", "id"))
