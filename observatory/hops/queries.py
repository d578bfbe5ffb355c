"""Reads on the hop store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Max, Min, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Abs

from observatory.hops import streams
from observatory.hops.actions import limits, state_of
from observatory.hops.models import Hop, HopKey, InventorySnapshot, Stream, StreamLag, Waiting
from observatory.lib.sketch import Sketch, merge


def hops_with_keys() -> QuerySet[Hop]:
    """Hops with their keys prefetched in one extra query (never one per hop)."""
    return Hop.objects.prefetch_related(
        Prefetch("keys", queryset=HopKey.objects.order_by("kind", "value"))
    )


def trace_spans(trace_id: str) -> list[Hop]:
    """The hops of one trace, in time order."""
    return list(hops_with_keys().filter(trace_id=trace_id).order_by("start_time", "id"))


def stored_traces(trace_ids: set[str]) -> set[str]:
    """Which of these trace ids have a span stored. One query (none for no ids)."""
    if not trace_ids:
        return set()
    rows = Hop.objects.filter(trace_id__in=sorted(trace_ids)).values_list("trace_id", flat=True)
    return set(rows.distinct())


# --- reporting streams ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """One stream as of a wall-clock moment (``streams.py`` defines the figures)."""

    system: str
    store_id: str
    #: business time the stream's telemetry is complete up to (None: nothing yet)
    watermark: datetime | None
    reported_up_to: datetime | None
    last_arrival_at: datetime | None
    max_delay_s: float
    skew_s: float
    catching_up: bool
    silent: bool
    hops: int
    late_hops: int

    def behind_s(self, wall: datetime) -> float | None:
        """How far the watermark is behind ``wall``, seconds."""
        return None if self.watermark is None else (wall - self.watermark).total_seconds()


def stream_marks(wall: datetime, *, system: str | None = None) -> list[Mark]:
    """Every stream (or ``system``'s) as of ``wall``. One query."""
    lim = limits()
    qs = Stream.objects.all() if system is None else Stream.objects.filter(system=system)
    out = []
    for row in qs:
        state = state_of(row)
        out.append(
            Mark(
                system=row.system,
                store_id=row.store_id,
                watermark=streams.watermark(state, wall, lim),
                reported_up_to=row.reported_up_to,
                last_arrival_at=row.last_arrival_at,
                max_delay_s=row.max_delay_s,
                skew_s=row.skew_s,
                catching_up=streams.catching_up(state, wall, lim),
                silent=streams.silent(state, wall),
                hops=row.hops,
                late_hops=row.late_hops,
            )
        )
    return out


def system_marks(wall: datetime, streams: Sequence[Mark] | None = None) -> dict[str, Mark]:
    """Per system, as of ``wall``; a system reporting store by store takes its furthest
    store's figures (each store's own are in ``stream_marks``). Hops the stitcher has not
    taken yet hold a watermark back: they are not visible to anyone judging it. Two
    queries."""
    by_system: dict[str, list[Mark]] = {}
    for m in stream_marks(wall) if streams is None else streams:
        by_system.setdefault(m.system, []).append(m)
    # only hops from the first waiting one on: an index range of the hop table, not a scan
    # of every hop stored (the queue is a few recent hops; GET /metrics reads this)
    first = Waiting.objects.order_by("hop_id").values("hop_id")[:1]
    waiting = dict(
        Hop.objects.filter(id__gte=Subquery(first), waiting__isnull=False)
        .values("system")
        .annotate(oldest=Min("start_time"))
        .values_list("system", "oldest")
    )
    out = {}
    for system, marks in by_system.items():
        best = max(marks, key=lambda m: (m.watermark is not None, m.watermark or wall))
        mark = Mark(
            system=system,
            store_id="",
            watermark=best.watermark,
            reported_up_to=max((m.reported_up_to for m in marks if m.reported_up_to), default=None),
            last_arrival_at=max(
                (m.last_arrival_at for m in marks if m.last_arrival_at), default=None
            ),
            max_delay_s=max(m.max_delay_s for m in marks),
            skew_s=max(m.skew_s for m in marks),
            catching_up=any(m.catching_up for m in marks),
            silent=all(m.silent for m in marks),
            hops=sum(m.hops for m in marks),
            late_hops=sum(m.late_hops for m in marks),
        )
        held = waiting.get(system)
        if held is not None and (mark.watermark is None or held < mark.watermark):
            mark = replace(mark, watermark=held)
        out[system] = mark
    return out


def settled(wall: datetime) -> datetime:
    """A moment after every arrival so far by more than the late window and the longest
    maximum delay: judged then, no stream is still catching up and every system has had
    its delay to report (for judging replayed or backfilled traffic "as of" a business
    time, once it is all in)."""
    agg = Stream.objects.aggregate(last=Max("last_arrival_at"), delay=Max("max_delay_s"))
    latest = wall if agg["last"] is None else max(wall, agg["last"])
    delay = max(agg["delay"] or 0.0, limits().floor_s)
    return latest + timedelta(seconds=delay + limits().late_window_s + 1)


@dataclass(frozen=True)
class Lags:
    """A stream's arrival lags (received minus business time) over recent hours."""

    count: int
    late: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    #: (lower bound s, upper bound s, count) of each non-empty bin, ascending
    histogram: tuple[tuple[float, float, int], ...] = ()


def stream_lags(wall: datetime, *, system: str | None = None) -> dict[tuple[str, str], Lags]:
    """(system, store) -> arrival lags of the hops that arrived in the last
    settings.TELEMETRY_LAG_HOURS (and this hour so far). One query."""
    since = wall.replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=settings.TELEMETRY_LAG_HOURS
    )
    qs = StreamLag.objects.filter(hour__gte=since)
    if system is not None:
        qs = qs.filter(stream__system=system)
    parts: dict[tuple[str, str], list[tuple[int, int, bytes]]] = {}
    for sys_, store, count, late, blob in qs.values_list(
        "stream__system", "stream__store_id", "count", "late", "sketch"
    ):
        parts.setdefault((sys_, store), []).append((count, late, bytes(blob)))
    out = {}
    for key, rows in parts.items():
        sketch = merge(Sketch.decode(b) for _, _, b in rows)
        p50, p95, p99 = sketch.quantiles((0.5, 0.95, 0.99))
        out[key] = Lags(
            count=sum(c for c, _, _ in rows),
            late=sum(n for _, n, _ in rows),
            p50_s=p50,
            p95_s=p95,
            p99_s=p99,
            histogram=tuple(sketch.histogram()) if system is not None else (),
        )
    return out


#: above every hop id (they stay below 2**53)
_ABOVE_ALL = 1 << 62


def pruned_below() -> int:
    """Hop ids grow with time and the prune removes the oldest hops, so a hop id below
    the lowest one still stored names a pruned hop (every id does when none is)."""
    low = Hop.objects.aggregate(low=Min("id"))["low"]
    return _ABOVE_ALL if low is None else int(low)


def first_received_since(at: datetime, floor: int = 0) -> int:
    """The id of the first hop at or above ``floor`` received at or after ``at`` (above
    every id when none was): hop ids grow with the time they are received, so the hops
    from ``floor`` below it are the ones received before. Read in id order from
    ``floor`` (one partition's index on PostgreSQL), stopping at the first."""
    first = (
        Hop.objects.filter(id__gte=floor, received_at__gte=at)
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )
    return _ABOVE_ALL if first is None else int(first)


def inventory_pairs(
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    location: str | None = None,
    system: str | None = None,
) -> QuerySet[InventorySnapshot]:
    """Each channel's latest snapshot of a sku and location, with the source of truth's
    (``src_quantity``) when that one's business time is within
    ``INVENTORY_DRIFT_WINDOW_S`` of it (comparable), and ``diff``, the absolute difference
    (docs/kpis.md, "inventory_drift"). ``since``/``until`` bound the channel snapshot's
    business time. One statement, read set-based."""
    truth = settings.INVENTORY_SOURCE_OF_TRUTH
    window = timedelta(seconds=settings.INVENTORY_DRIFT_WINDOW_S)
    source = InventorySnapshot.objects.filter(
        system=truth, sku=OuterRef("sku"), location=OuterRef("location")
    )
    qs = InventorySnapshot.objects.exclude(system=truth)
    if since is not None:
        qs = qs.filter(as_of__gte=since)
    if until is not None:
        qs = qs.filter(as_of__lt=until)
    if location is not None:
        qs = qs.filter(location=location)
    if system is not None:
        qs = qs.filter(system=system)
    return (
        qs.annotate(
            src_quantity=Subquery(source.values("quantity")[:1]),
            src_as_of=Subquery(source.values("as_of")[:1]),
        )
        .filter(
            src_as_of__gte=F("as_of") - window,
            src_as_of__lte=F("as_of") + window,
        )
        .annotate(diff=Abs(F("quantity") - F("src_quantity")))
    )
