"""Reads behind the KPI pages: the live ops figures, chart series, per-system health.

Charts read day and hour rollups (a fixed number of queries whatever the window); the
live ops figures read the last minutes of hops through their time index, so a hop shows
on the dashboard as soon as it is stored, before any stitching or filling.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Sum
from django.db.models.functions import TruncDay
from django.utils.dateparse import parse_datetime

from observatory.alerts import queries as alert_queries
from observatory.alerts.models import RESOLVED as ALERT_RESOLVED
from observatory.alerts.models import Alert
from observatory.hops.models import Hop
from observatory.kpis import compute, queries
from observatory.kpis.compute import ALL, DAY, HOUR, Sketch
from observatory.kpis.models import AlertSeen, BacklogSample, HopRollup, OrderRollup
from observatory.lib.clock import now as clock_now
from observatory.lib.routers import reads
from observatory.transactions.models import Transaction, TransactionHop
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import RESOLVED, UNRESOLVED, Issue
from tracing.conventions import ERROR

# --- the live ops figures -------------------------------------------------------------------

#: The ops tiles look at this much of the recent past.
TILE_WINDOW = timedelta(minutes=15)
#: A system that sent nothing for this long, while others did, turns amber, then red.
QUIET_AFTER = timedelta(minutes=10)
SILENT_AFTER = timedelta(minutes=30)
#: Failed share of a system's hops (with at least ``_MIN_FAILED`` failures) for amber/red.
AMBER_ERROR_RATE = 0.05
RED_ERROR_RATE = 0.20
_MIN_FAILED = 2
#: Systems drawn on the flow map, in the order an order meets them.
FLOW_SYSTEMS = ("shopify", "pos", "marketplace", "middleware", "erp", "wms", "carrier")


@dataclass
class Tile:
    """One system on the ops dashboard."""

    system: str
    hops: int = 0
    errors: int = 0
    p95_ms: float | None = None
    last_at: datetime | None = None
    age_s: float | None = None
    status: str = "idle"  # ok | amber | red | idle
    reason: str = ""
    window_min: float = TILE_WINDOW.total_seconds() / 60

    @property
    def per_min(self) -> float:
        return self.hops / self.window_min

    @property
    def error_rate(self) -> float | None:
        return compute.rate(self.errors, self.hops)


def _human(seconds: float) -> str:
    s = int(seconds)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def known_systems() -> list[str]:
    """Every system that ever sent a hop: a loose index scan of (system, start_time), one
    index probe per system, however many hops there are."""
    table = Hop._meta.db_table
    sql = (
        f"WITH RECURSIVE s(system) AS (SELECT MIN(system) FROM {table} "
        f"UNION ALL SELECT (SELECT MIN(h.system) FROM {table} h WHERE h.system > s.system) "
        "FROM s WHERE s.system IS NOT NULL) SELECT system FROM s WHERE system IS NOT NULL"
    )
    with reads(Hop).cursor() as cur:
        cur.execute(sql)
        return [r[0] for r in cur.fetchall()]


def last_seen(systems: Sequence[str]) -> dict[str, datetime | None]:
    """The business time of each system's newest hop: one statement, one index probe per
    system on (system, start_time)."""
    if not systems:
        return {}
    table = Hop._meta.db_table
    parts = [f"SELECT %s, (SELECT MAX(start_time) FROM {table} WHERE system = %s)" for _ in systems]
    params: list[Any] = []
    for s in systems:
        params += [s, s]
    out: dict[str, datetime | None] = {}
    with reads(Hop).cursor() as cur:
        cur.execute(" UNION ALL ".join(parts), params)
        for system, at in cur.fetchall():
            out[system] = _as_datetime(at)
    return out


def _as_datetime(value: Any) -> datetime | None:
    """A raw aggregate's datetime (SQLite hands them back as text, in UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def system_tiles(at: datetime | None = None) -> list[Tile]:
    """Every system's last ``TILE_WINDOW``: throughput, failures, p95 duration, last hop,
    and a status. Reads hops as stored (not yet stitched): a hop shows at once."""
    at = at or clock_now()
    since = at - TILE_WINDOW
    durations: dict[str, list[float]] = defaultdict(list)
    tiles: dict[str, Tile] = {}
    for system, outcome, dur in Hop.objects.filter(
        start_time__gte=since, start_time__lte=at
    ).values_list("system", "outcome", "duration_ms"):
        tile = tiles.setdefault(system, Tile(system))
        tile.hops += 1
        tile.errors += outcome == ERROR
        durations[system].append(compute.clamp(float(dur or 0.0)))
    for system in known_systems():
        tiles.setdefault(system, Tile(system))
    seen = last_seen(sorted(tiles))
    busy = any(t.hops for t in tiles.values())
    for tile in tiles.values():
        tile.p95_ms = compute.exact_quantile(durations[tile.system], 0.95)
        tile.last_at = seen.get(tile.system)
        tile.age_s = (at - tile.last_at).total_seconds() if tile.last_at else None
        _judge(tile, busy)
    order = {s: i for i, s in enumerate(FLOW_SYSTEMS)}
    return sorted(tiles.values(), key=lambda t: (order.get(t.system, 99), t.system))


def _judge(tile: Tile, busy: bool) -> None:
    rate = tile.error_rate or 0.0
    if tile.errors >= _MIN_FAILED and rate >= RED_ERROR_RATE:
        tile.status, tile.reason = "red", f"{rate:.0%} of its hops failed"
    elif tile.errors and rate >= AMBER_ERROR_RATE:
        tile.status, tile.reason = "amber", f"{rate:.0%} of its hops failed"
    elif tile.hops:
        tile.status, tile.reason = "ok", "sending"
    elif not busy:
        tile.status, tile.reason = "idle", "no traffic anywhere"
    elif tile.age_s is None or tile.age_s >= SILENT_AFTER.total_seconds():
        silent = f" for {_human(tile.age_s)}" if tile.age_s is not None else ""
        tile.status, tile.reason = "red", f"silent{silent} while others send"
    elif tile.age_s >= QUIET_AFTER.total_seconds():
        tile.status, tile.reason = "amber", f"quiet for {_human(tile.age_s)}"
    else:
        tile.status, tile.reason = "ok", "quiet"


@dataclass
class Edge:
    """One arrow of the order flow: how long orders took from one stage to the next."""

    source: str
    target: str
    from_stage: str
    to_stage: str
    words: str
    count: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    deadline_s: float | None = None

    @property
    def status(self) -> str:
        if self.p50_s is None:
            return "idle"
        if self.deadline_s is not None and self.p50_s > self.deadline_s:
            return "red"
        if self.deadline_s is not None and (self.p95_s or 0) > self.deadline_s:
            return "amber"
        return "ok"


#: (from system, to system, from stage, to stage, words)
FLOW_EDGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("shopify", "middleware", "captured", "validated", "accepted → validated"),
    ("marketplace", "middleware", "captured", "validated", "accepted → validated"),
    ("middleware", "erp", "validated", "posted", "validated → in the ERP"),
    ("pos", "erp", "captured", "posted", "sale → in the ERP"),
    ("erp", "wms", "posted", "picked", "in the ERP → picked"),
    ("wms", "carrier", "picked", "shipped", "picked → shipped"),
    ("carrier", "shopify", "shipped", "fulfillment_synced", "shipped → seen by Shopify"),
)
_CHANNEL_OF = {"shopify": "web", "marketplace": "marketplace", "pos": "pos"}


def flow(at: datetime | None = None, window: timedelta = timedelta(hours=24)) -> list[Edge]:
    """The lag on each edge of the flow map, over orders accepted in the last ``window``
    (one query on the captured-time index)."""
    at = at or clock_now()
    cols = ("captured", "validated", "posted", "picked", "shipped", "fulfillment_synced")
    rows = Transaction.objects.filter(
        merged_into__isnull=True, kind="order", captured_at__gte=at - window, captured_at__lt=at
    ).values_list("channel", *(f"{c}_at" for c in cols))
    lags: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        channel, times = row[0], dict(zip(cols, row[1:], strict=True))
        for i, (src, _dst, a, b, _w) in enumerate(FLOW_EDGES):
            wanted = _CHANNEL_OF.get(src)
            if wanted is not None and channel != wanted:
                continue
            if times[a] is not None and times[b] is not None:
                lags[i].append(compute.clamp((times[b] - times[a]).total_seconds()))
    deadlines = queries.Deadlines()
    out = []
    for i, (src, dst, a, b, words) in enumerate(FLOW_EDGES):
        values = lags[i]
        channel = _CHANNEL_OF.get(src, "web")
        out.append(
            Edge(
                src,
                dst,
                a,
                b,
                words,
                count=len(values),
                p50_s=compute.exact_quantile(values, 0.5),
                p95_s=compute.exact_quantile(values, 0.95),
                deadline_s=deadlines.get("order", channel, a, b),
            )
        )
    return out


@dataclass
class Failure:
    hop_id: int
    at: datetime
    system: str
    operation: str
    message: str
    retry_attempt: int
    tx_id: int | None = None
    label: str = ""


def newest_failures(limit: int = 8, *, system: str | None = None) -> list[Failure]:
    """The newest failed hops, each with the order it belongs to (a fixed number of
    queries: the latest stored failed hops by their partial index on id, their
    memberships, their labels), newest business time first."""
    base = Hop.objects.filter(outcome=ERROR)
    if system:
        base = base.filter(system=system)
    fields = ("id", "start_time", "system", "operation", "status_message", "retry_attempt")
    latest = list(base.order_by("-id").values_list(*fields)[: limit * 2])
    rows = sorted(latest, key=lambda r: (r[1], r[0]), reverse=True)[:limit]
    owner: dict[int, int] = {}
    for hop_id, tx_id in TransactionHop.objects.filter(
        hop_id__in=[r[0] for r in rows], transaction__merged_into__isnull=True
    ).values_list("hop_id", "transaction_id"):
        owner[hop_id] = min(tx_id, owner.get(hop_id, tx_id))
    labels = triage_queries.transaction_labels(owner.values()) if owner else {}
    out = []
    for hop_id, start, sys_, op, message, attempt in rows:
        tx = owner.get(hop_id)
        label = labels.get(tx, "") if tx else ""
        out.append(
            Failure(
                hop_id,
                start,
                sys_,
                op,
                " ".join((message or "").split())[:200],
                attempt,
                tx,
                label.split("=", 1)[-1] if label else "",
            )
        )
    return out


def backlog_now(at: datetime | None = None) -> list[dict[str, Any]]:
    """Transactions past a stage deadline now, by missing stage, with the system that
    should act (partial indexes on open stages: milliseconds)."""
    at = at or clock_now()
    by_stage = queries.backlog(None, at, at=at)["by_stage"]
    order = {s: i for i, s in enumerate(sla.STAGE_SYSTEMS)}
    return [
        {"stage": stage, "count": n, "system": sla.stage_system(stage)}
        for stage, n in sorted(by_stage.items(), key=lambda kv: order.get(kv[0], 99))
    ]


def firing_alerts(limit: int = 8) -> dict[str, Any]:
    """The alerts panel: counts and the unresolved alerts."""
    return dict(alert_queries.panel(limit))


def fingerprint() -> tuple[Any, ...]:
    """A cheap summary that changes whenever the ops dashboard would: one statement."""
    hop = Hop._meta.db_table
    tx = Transaction._meta.db_table
    issue = Issue._meta.db_table
    parts = [
        f"(SELECT MAX(id) FROM {hop})",
        f"(SELECT MAX(updated_at) FROM {tx})",
        f"(SELECT MAX(id) FROM {issue})",
        f"(SELECT COUNT(*) FROM {issue} WHERE state IN (%s, %s))",
    ]
    params: list[Any] = list(UNRESOLVED)
    alert = Alert._meta.db_table
    parts.append(f"(SELECT MAX(last_eval_at) FROM {alert} WHERE state <> %s)")
    params.append(ALERT_RESOLVED)
    parts.append(f"(SELECT MAX(resolved_at) FROM {alert})")
    with reads(Hop).cursor() as cur:
        cur.execute("SELECT " + ", ".join(parts), params)
        return tuple(str(v) for v in cur.fetchone())


# --- executive series ----------------------------------------------------------------------


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
    return [{"bin": label, "count": n} for (label, _), n in zip(LAG_BINS, counts, strict=True)]


def inventory_lag(
    since: datetime, until: datetime, *, channel: str | None = None, store: str | None = None
) -> tuple[queries.OrderTotal, list[dict[str, Any]]]:
    total = queries.order_total(since, until, channel=channel, store=store)
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


# --- per system ------------------------------------------------------------------------------


@dataclass
class OpRow:
    system: str
    operation: str
    hops: int = 0
    errors: int = 0
    retries: int = 0
    duplicates: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    minutes: float = 1.0

    @property
    def per_min(self) -> float:
        return self.hops / self.minutes if self.minutes else 0.0

    @property
    def error_rate(self) -> float | None:
        return compute.rate(self.errors, self.hops)


@dataclass
class SystemRow(OpRow):
    operations: list[OpRow] = field(default_factory=list)


def system_rows(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> list[SystemRow]:
    """Per system (and its operations): rate, failures, p50/p95 durations, from rollups."""
    minutes = max((until - since).total_seconds() / 60, 1e-9)
    totals = queries.hop_totals(since, until, channel=channel, store=store, system=system)
    systems: dict[str, SystemRow] = {}
    sketches: dict[str, list[Sketch]] = defaultdict(list)
    for (sys_, op), t in sorted(totals.items()):
        if not t.hops:
            continue
        p50, p95 = t.dur.quantiles((0.5, 0.95))
        row = systems.setdefault(sys_, SystemRow(sys_, "", minutes=minutes))
        row.operations.append(
            OpRow(sys_, op, t.hops, t.errors, t.retries, t.duplicates, p50, p95, minutes)
        )
        row.hops += t.hops
        row.errors += t.errors
        row.retries += t.retries
        row.duplicates += t.duplicates
        sketches[sys_].append(t.dur.sketch)
    for sys_, row in systems.items():
        row.p50_ms, row.p95_ms = compute.merge(sketches[sys_]).quantiles((0.5, 0.95))
        row.operations.sort(key=lambda r: (-r.hops, r.operation))
    order = {s: i for i, s in enumerate(FLOW_SYSTEMS)}
    return sorted(systems.values(), key=lambda r: (order.get(r.system, 99), r.system))


def hourly_system(system: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per hour of ``[since, until)``: one system's hops and failures (SQL sums)."""
    start = compute.floor_to(since, HOUR)
    got = {
        r["bucket"]: r
        for r in HopRollup.objects.filter(
            resolution=HOUR,
            channel=ALL,
            store=ALL,
            system=system,
            bucket__gte=start,
            bucket__lt=until,
        )
        .values("bucket")
        .annotate(hops=Sum("hops"), errors=Sum("errors"))
    }
    return [
        {
            "hour": h,
            "hops": int((got.get(h) or {}).get("hops") or 0),
            "errors": int((got.get(h) or {}).get("errors") or 0),
        }
        for h in compute.buckets_in([(start, compute.ceil_to(until, HOUR))], HOUR)
    ]


def recent_system_failures(system: str, limit: int = 25) -> list[Failure]:
    return newest_failures(limit, system=system)
