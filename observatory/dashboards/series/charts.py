"""The executive chart series: per day (or per backlog sample) over the last days, from
the day rollups: a fixed number of queries whatever the window.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Sum
from django.db.models.functions import TruncDay

from observatory.kpis import compute, queries
from observatory.kpis.compute import ALL, DAY, Sketch
from observatory.kpis.models import AlertSeen, BacklogSample, HopRollup, OrderRollup
from observatory.triage.models import RESOLVED


def day_range(days: int, at: datetime) -> tuple[datetime, datetime]:
    """The last ``days`` calendar days (UTC), today included: aligned day buckets."""
    end = compute.floor_to(at, DAY) + timedelta(days=1)
    return end - timedelta(days=days), end


def _grouping(channel: str | None, store: str | None) -> tuple[str, str]:
    return channel or ALL, store or ALL


def daily_orders(
    days: int, at: datetime, *, channel: str | None = None, store: str | None = None
) -> list[dict[str, Any]]:
    """Per day: orders, with a problem, rate; posted twice (day rollups, one query)."""
    since, until = day_range(days, at)
    ch, st = _grouping(channel, store)
    got = {
        b: (o, w, p)
        for b, o, w, p in OrderRollup.objects.filter(
            resolution=DAY, channel=ch, store=st, bucket__gte=since, bucket__lt=until
        ).values_list("bucket", "orders", "with_exception", "posted_twice")
    }
    out = []
    for day in compute.buckets_in([(since, until)], DAY):
        o, w, p = got.get(day, (0, 0, 0))
        out.append(
            {
                "day": day,
                "orders": o,
                "with_exception": w,
                "rate": compute.rate(w, o),
                "posted_twice": p,
            }
        )
    return out


def daily_a2p_by_channel(
    days: int, at: datetime, *, channel: str | None = None, store: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per channel, per day: p50 and p95 acceptance to posting (one query)."""
    since, until = day_range(days, at)
    qs = OrderRollup.objects.filter(
        resolution=DAY, store=store or ALL, bucket__gte=since, bucket__lt=until, a2p_count__gt=0
    )
    qs = qs.filter(channel=channel) if channel else qs.exclude(channel=ALL)
    per: dict[str, dict[datetime, tuple[int, Sketch]]] = defaultdict(dict)
    for ch, day, n, blob in qs.values_list("channel", "bucket", "a2p_count", "a2p_sketch"):
        per[ch or "(no channel)"][day] = (n, Sketch.decode(blob))
    out: dict[str, list[dict[str, Any]]] = {}
    for ch in sorted(per):
        rows = []
        for day in compute.buckets_in([(since, until)], DAY):
            if day not in per[ch]:
                rows.append({"day": day, "count": 0, "p50_s": None, "p95_s": None})
                continue
            n, sk = per[ch][day]
            p50, p95 = sk.quantiles((0.5, 0.95))
            rows.append({"day": day, "count": n, "p50_s": p50, "p95_s": p95})
        out[ch] = rows
    return out


def daily_deliveries(
    days: int,
    at: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> list[dict[str, Any]]:
    """Per day: deliveries (repeats included), repeats, repeat rate, retries (SQL sums)."""
    since, until = day_range(days, at)
    ch, st = _grouping(channel, store)
    qs = HopRollup.objects.filter(
        resolution=DAY, channel=ch, store=st, bucket__gte=since, bucket__lt=until
    )
    if system:
        qs = qs.filter(system=system)
    got = {
        r["bucket"]: r
        for r in qs.values("bucket").annotate(
            hops=Sum("hops"), dups=Sum("duplicates"), retries=Sum("retries"), errors=Sum("errors")
        )
    }
    out = []
    for day in compute.buckets_in([(since, until)], DAY):
        r = got.get(day) or {"hops": 0, "dups": 0, "retries": 0, "errors": 0}
        deliveries = int(r["hops"] or 0) + int(r["dups"] or 0)
        out.append(
            {
                "day": day,
                "deliveries": deliveries,
                "duplicates": int(r["dups"] or 0),
                "rate": compute.rate(int(r["dups"] or 0), deliveries),
                "retries": int(r["retries"] or 0),
                "errors": int(r["errors"] or 0),
            }
        )
    return out


def backlog_trend(
    since: datetime, until: datetime, *, channel: str | None = None, store: str | None = None
) -> list[dict[str, Any]]:
    """The sampled backlog: per sample, the total and each missing stage (one query)."""
    ch, st = _grouping(channel, store)
    per: dict[datetime, dict[str, int]] = defaultdict(dict)
    for at_, stage, count in BacklogSample.objects.filter(
        channel=ch, store=st, at__gte=since, at__lt=until
    ).values_list("at", "stage", "count"):
        per[at_][stage] = count
    return [
        {
            "at": at_,
            "total": stages.get(ALL, 0),
            "by_stage": {k: v for k, v in stages.items() if k != ALL},
        }
        for at_, stages in sorted(per.items())
    ]


#: Buckets of the stock update delay distribution (upper bounds, seconds).
LAG_BINS: tuple[tuple[str, float], ...] = (
    ("under 30 s", 30),
    ("30 s to 1 min", 60),
    ("1 to 2 min", 120),
    ("2 to 5 min", 300),
    ("5 to 10 min", 600),
    ("10 to 30 min", 1800),
    ("over 30 min", float("inf")),
)


def lag_distribution(sketch: Sketch) -> list[dict[str, Any]]:
    """A merged sketch's values counted into ``LAG_BINS`` (each bin by its representative
    value, so within the sketch's 0.5 % of the bounds)."""
    counts = [0] * len(LAG_BINS)
    sketch.dense()
    counts[0] += sketch.zero
    for i, c in enumerate(sketch.counts):
        if not c:
            continue
        value = compute.MAPPING.value(sketch.offset + i)
        for j, (_, upper) in enumerate(LAG_BINS):
            if value < upper:
                counts[j] += c
                break
    lows = [0.0, *(upper for _, upper in LAG_BINS[:-1])]
    return [
        {
            "bin": label,
            "from_s": low,
            # the last bin has no upper bound: None (an empty CSV cell), never "inf"
            "to_s": upper if upper != float("inf") else None,
            "count": n,
        }
        for (label, upper), low, n in zip(LAG_BINS, lows, counts, strict=True)
    ]


def inventory_lag(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    at: datetime | None = None,
) -> tuple[queries.OrderTotal, list[dict[str, Any]]]:
    total = queries.order_total(since, until, channel=channel, store=store, at=at)
    return total, lag_distribution(total.inv.sketch)


def _mean_s(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # SQLite: microseconds


def daily_resolution(
    days: int,
    at: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
) -> list[dict[str, Any]]:
    """Per day: mean time to resolve exceptions (opened that day) and alerts (fired that
    day), in seconds. Two grouped queries."""
    since, until = day_range(days, at)
    qs = queries.issues(channel or None, store or None, None).filter(
        opened_at__gte=since, opened_at__lt=until, state=RESOLVED, resolved_at__isnull=False
    )
    exc = {
        r["day"]: (r["n"], _mean_s(r["mean"]))
        for r in qs.annotate(day=TruncDay("opened_at", tzinfo=UTC))
        .values("day")
        .annotate(n=Count("pk"), mean=Avg(queries.resolution_time()))
    }
    took = ExpressionWrapper(F("resolved_at") - F("fired_at"), output_field=DurationField())
    aq = AlertSeen.objects.filter(
        fired_at__gte=since, fired_at__lt=until, resolved_at__isnull=False
    )
    if channel:
        aq = aq.filter(channel=channel)
    if store:
        aq = aq.filter(store=store)
    alerts: dict[datetime, tuple[int, float | None]] = {
        r["day"]: (r["n"], _mean_s(r["mean"]))
        for r in aq.annotate(day=TruncDay("fired_at", tzinfo=UTC))
        .values("day")
        .annotate(n=Count("pk"), mean=Avg(took))
    }
    out = []
    for day in compute.buckets_in([(since, until)], DAY):
        en, em = exc.get(day, (0, None))
        an, am = alerts.get(day, (0, None))
        out.append(
            {
                "day": day,
                "exceptions_resolved": en,
                "exceptions_mean_s": em,
                "alerts_resolved": an,
                "alerts_mean_s": am,
            }
        )
    return out


def dimension_values(days: int, at: datetime) -> tuple[list[str], list[str]]:
    """Channels and stores seen in the window's day rollups (for the filters)."""
    since, until = day_range(days, at)
    rows = OrderRollup.objects.filter(resolution=DAY, bucket__gte=since, bucket__lt=until)
    channels = sorted(
        c
        for c in rows.filter(store=ALL)
        .exclude(channel=ALL)
        .values_list("channel", flat=True)
        .distinct()
        if c
    )
    stores = sorted(
        s
        for s in rows.filter(channel=ALL)
        .exclude(store=ALL)
        .values_list("store", flat=True)
        .distinct()
        if s
    )
    return channels, stores
