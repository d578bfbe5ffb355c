"""The live ops figures: per-system tiles, the order flow, the newest failures, the
backlog now and the firing alerts. They read the last minutes of hops through their time
index, so a hop shows on the dashboard as soon as it is stored, before any stitching or
filling.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from observatory.alerts import queries as alert_queries
from observatory.alerts.models import RESOLVED as ALERT_RESOLVED
from observatory.alerts.models import Alert
from observatory.hops.models import Hop
from observatory.kpis import compute, queries
from observatory.lib.clock import now as clock_now
from observatory.lib.routers import reads
from observatory.transactions.models import Transaction, TransactionHop
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import UNRESOLVED, Issue
from tracing.conventions import ERROR

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
    retries: int = 0
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

    @property
    def retry_rate(self) -> float | None:
        return compute.rate(self.retries, self.hops)


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
    for system, outcome, dur, attempt in Hop.objects.filter(
        start_time__gte=since, start_time__lte=at
    ).values_list("system", "outcome", "duration_ms", "retry_attempt"):
        tile = tiles.setdefault(system, Tile(system))
        tile.hops += 1
        tile.errors += outcome == ERROR
        tile.retries += (attempt or 0) > 0
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
#: the channel each source of the flow map stands for, and the orders the map measures
FLOW_CHANNELS = _CHANNEL_OF
FLOW_WINDOW = timedelta(hours=24)


def flow(at: datetime | None = None, window: timedelta = FLOW_WINDOW) -> list[Edge]:
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
