"""Step 2 of the fill, work off: the queued hours recomputed from the source rows in
chunks (minute rows too, for recent hours), their rows replaced, and the day rows of their
days rebuilt from their hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q

from observatory.kpis import compute, queries
from observatory.kpis.actions.rows import insert_rows
from observatory.kpis.compute import DAY, HOUR, MINUTE
from observatory.kpis.models import HOPS, ORDERS, DirtyHour, HopRollup, OrderRollup
from observatory.lib import bulk

if TYPE_CHECKING:
    from observatory.kpis.actions.fill import FillResult


HOUR_STEP = timedelta(hours=1)


def chunk_hours() -> int:
    return int(settings.KPIS_FILL_CHUNK_HOURS)


def work_chunk(at: datetime, result: FillResult, hours: int | None = None) -> int:
    """Recompute up to ``hours`` queued hour buckets (default ``KPIS_FILL_CHUNK_HOURS``);
    how many it took (0: none were queued)."""
    # concurrent fills skip each other's rows (PostgreSQL; SQLite runs them one at a time)
    claim = DirtyHour.objects.order_by("family", "hour").select_for_update(skip_locked=True)
    rows = list(claim.values_list("id", "family", "hour")[: hours or chunk_hours()])
    if not rows:
        return 0
    by_family: dict[str, list[datetime]] = defaultdict(list)
    for _, family, hour in rows:
        by_family[family].append(hour)
    cutoff = queries.minutes_from(at)
    if by_family[ORDERS]:
        recompute_order_hours(by_family[ORDERS], cutoff)
        result.recomputed[ORDERS] += len(by_family[ORDERS])
    if by_family[HOPS]:
        recompute_hop_hours(by_family[HOPS], cutoff)
        result.recomputed[HOPS] += len(by_family[HOPS])
    DirtyHour.objects.filter(id__in=[r[0] for r in rows]).delete()
    return len(rows)


def _hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for h in sorted(set(hours)):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR_STEP)
        else:
            out.append((h, h + HOUR_STEP))
    return out


def _resolutions(cutoff: datetime) -> Any:
    def pick(t: datetime) -> tuple[str, ...]:
        return (MINUTE, HOUR) if compute.floor_to(t, HOUR) >= cutoff else (HOUR,)

    return pick


def _bucket_q(resolutions: Sequence[str], ranges: Sequence[tuple[datetime, datetime]]) -> Any:
    return queries.ranges_q("bucket", ranges) & Q(resolution__in=list(resolutions))


ORDER_COLUMNS = (
    "resolution",
    "bucket",
    "channel",
    "store",
    "orders",
    "with_exception",
    "posted_twice",
    "a2p_count",
    "a2p_within",
    "a2p_sketch",
    "ful_count",
    "ful_within",
    "ful_sketch",
    "inv_updates",
    "inv_count",
    "inv_within",
    "inv_max",
    "inv_sketch",
    "posting",
    "digest",
)
HOP_COLUMNS = (
    "resolution",
    "bucket",
    "channel",
    "store",
    "system",
    "operation",
    "hops",
    "errors",
    "retries",
    "replays",
    "duplicates",
    "dur_sketch",
    "digest",
)


def _blob(sketch: compute.Sketch) -> bytes | None:
    return sketch.encode() if sketch else None


def _order_tuple(key: compute.OrderKey, agg: compute.OrderAgg) -> tuple[Any, ...]:
    res, bucket, ch, st = key
    return (
        res,
        bucket,
        ch,
        st,
        agg.orders,
        agg.with_exception,
        agg.posted_twice,
        agg.a2p.count,
        agg.a2p.within,
        _blob(agg.a2p.finish()),
        agg.ful.count,
        agg.ful.within,
        _blob(agg.ful.finish()),
        agg.inv_updates,
        agg.inv.count,
        agg.inv.within,
        agg.inv.maximum,
        _blob(agg.inv.finish()),
        bulk.jsonb(agg.posting),
        agg.digest,
    )


def recompute_order_hours(hours: Sequence[datetime], cutoff: datetime) -> None:
    """Replace the minute and hour rows of ``hours`` from the source, then their days."""
    ranges = _hour_ranges(hours)
    aggs = compute.aggregate_orders(queries.order_facts(ranges), _resolutions(cutoff))
    OrderRollup.objects.filter(_bucket_q((MINUTE, HOUR), ranges)).delete()
    insert_rows(OrderRollup, ORDER_COLUMNS, (_order_tuple(k, a) for k, a in aggs.items()))
    _rebuild_order_days({compute.floor_to(h, DAY) for h in hours})


def _rebuild_order_days(days: set[datetime]) -> None:
    ranges = [(d, d + timedelta(days=1)) for d in sorted(days)]
    totals: dict[tuple[datetime, str, str], queries.OrderTotal] = defaultdict(queries.OrderTotal)
    digests: dict[tuple[datetime, str, str], int] = defaultdict(int)
    for row in OrderRollup.objects.filter(_bucket_q((HOUR,), ranges)):
        key = (compute.floor_to(row.bucket, DAY), row.channel, row.store)
        totals[key].add_row(row)
        digests[key] = (digests[key] + row.digest) & compute.DIGEST_MASK
    OrderRollup.objects.filter(_bucket_q((DAY,), ranges)).delete()
    rows = [
        (
            DAY,
            day,
            ch,
            st,
            t.orders,
            t.with_exception,
            t.posted_twice,
            t.a2p.count,
            t.a2p.within,
            _blob(t.a2p.sketch),
            t.ful.count,
            t.ful.within,
            _blob(t.ful.sketch),
            t.inv_updates,
            t.inv.count,
            t.inv.within,
            t.inv.maximum,
            _blob(t.inv.sketch),
            bulk.jsonb(t.posting),
            digests[(day, ch, st)],
        )
        for (day, ch, st), t in totals.items()
    ]
    insert_rows(OrderRollup, ORDER_COLUMNS, rows)


def recompute_hop_hours(hours: Sequence[datetime], cutoff: datetime) -> None:
    ranges = _hour_ranges(hours)
    aggs = compute.aggregate_hops(queries.hop_facts(ranges), _resolutions(cutoff))
    HopRollup.objects.filter(_bucket_q((MINUTE, HOUR), ranges)).delete()
    insert_rows(
        HopRollup,
        HOP_COLUMNS,
        (
            (
                *key,
                a.hops,
                a.errors,
                a.retries,
                a.replays,
                a.duplicates,
                _blob(a.dur.finish()),
                a.digest,
            )
            for key, a in aggs.items()
        ),
    )
    _rebuild_hop_days({compute.floor_to(h, DAY) for h in hours})


def _rebuild_hop_days(days: set[datetime]) -> None:
    ranges = [(d, d + timedelta(days=1)) for d in sorted(days)]
    totals: dict[tuple[datetime, str, str, str, str], queries.HopTotal] = defaultdict(
        queries.HopTotal
    )
    digests: dict[tuple[datetime, str, str, str, str], int] = defaultdict(int)
    for (
        bucket,
        ch,
        st,
        system,
        op,
        n,
        errors,
        retries,
        replays,
        dups,
        blob,
        digest,
    ) in HopRollup.objects.filter(_bucket_q((HOUR,), ranges)).values_list(*HOP_COLUMNS[1:]):
        key = (compute.floor_to(bucket, DAY), ch, st, system, op)
        totals[key].add(n, errors, retries, replays, dups, queries.sketch_of(blob))
        digests[key] = (digests[key] + digest) & compute.DIGEST_MASK
    HopRollup.objects.filter(_bucket_q((DAY,), ranges)).delete()
    insert_rows(
        HopRollup,
        HOP_COLUMNS,
        (
            (DAY, *key, t.hops, t.errors, t.retries, t.replays, t.duplicates,
             _blob(t.dur.sketch), digests[key])
            for key, t in totals.items()
        ),
    )  # fmt: skip
