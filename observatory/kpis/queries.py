"""Reads for KPIs: ``kpi_values`` (CONTRACT 5, the API and the alert rules), chart series,
and the source readers the fill shares.

A window ``[since, until)`` is cut (``compute.plan_window``) into whole days, hours and
minutes answered by rollup rows, and sub-bucket edges: seconds at either end read straight
from the source rows, and edges in hours older than the minute rollups from that hour's
facts, read once per process and kept under the hour rows' ids and digests
(``raw_facts``). So any window gives the same figures as a recount (``bruteforce.py``)
without a scan of 90 days of hops. The snapshot KPIs are small indexed queries that never
look up every transaction: the backlog, now or at the end of a past window, from the late
stages the fill keeps (``OpenStage``); exceptions of a channel or store through the
channel and store the fill keeps with each (``IssueSeen``).
"""

from __future__ import annotations

import threading
import zlib
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Avg,
    BooleanField,
    Case,
    CharField,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)

from observatory.hops.models import DuplicateDelivery, Hop
from observatory.kpis import compute, registry
from observatory.kpis.compute import ALL, HopFact, OrderFact, Sketch
from observatory.kpis.models import AlertSeen, HopRollup, IssueSeen, OpenStage, OrderRollup
from observatory.lib.clock import now as clock_now
from observatory.transactions.models import (
    STAGE_COLUMNS,
    StageReached,
    Transaction,
    TransactionHop,
    stage_field,
)
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import DUPLICATE, REAL, RESOLVED, UNRESOLVED, Issue
from tracing import conventions as c
from tracing.conventions import ERROR

Range = tuple[datetime, datetime]

ORDER = compute.ORDER_KIND
INVENTORY = compute.INVENTORY_KIND
#: Snapshot questions asked at or after this long before "now" read the live state
#: (partial indexes on open stages); earlier ones rebuild the state as it was then.
LIVE_SLACK = timedelta(seconds=5)


def minute_retention_days() -> int:
    return int(settings.RETENTION_DAYS["minute_rollups"])


def minutes_from(at: datetime | None = None) -> datetime:
    """The first hour with minute rollups (older partial hours are read raw)."""
    return compute.minutes_cutoff(at or clock_now(), minute_retention_days())


# --- SLA deadlines ------------------------------------------------------------------------------


class Deadlines:
    """The deadline (seconds) between two stages for a transaction kind and channel, from
    the active SLA policies (a channel's own policy over the every-channel one)."""

    def __init__(self, policies: Sequence[sla.Policy] | None = None) -> None:
        self.policies = list(triage_queries.policies() if policies is None else policies)
        self._cache: dict[tuple[str, str], dict[tuple[str, str], float]] = {}

    def get(self, kind: str, channel: str, from_stage: str, to_stage: str) -> float | None:
        table = self._cache.get((kind, channel))
        if table is None:
            table = {
                (p.from_stage, p.to_stage): float(p.deadline_s)
                for p in sla.applicable(self.policies, kind, channel)
            }
            self._cache[(kind, channel)] = table
        return table.get((from_stage, to_stage))


# --- source readers (shared with the fill) ---------------------------------------------------


def ranges_q(column: str, ranges: Sequence[Range]) -> Q:
    """``column`` inside any of the half-open ``ranges``."""
    q = Q()
    for a, b in ranges:
        q |= Q(**{f"{column}__gte": a, f"{column}__lt": b})
    return q


def _lag(end: datetime | None, start: datetime | None) -> float | None:
    if end is None or start is None:
        return None
    return compute.clamp((end - start).total_seconds())


def order_facts(ranges: Sequence[Range], deadlines: Deadlines | None = None) -> list[OrderFact]:
    """The live orders captured, and inventory updates adjusted, inside ``ranges``.

    One query: exceptions on the order, or on a transaction merged into it, and ERP
    double postings (triage's ``duplicate`` exceptions with ``posted_twice``) are EXISTS
    subqueries.
    """
    if not ranges:
        return []
    deadlines = deadlines or Deadlines()
    # withdrawn exceptions were never a problem
    on_tx = Issue.objects.filter(transaction_id=OuterRef("pk"), state__in=REAL)
    on_loser = Issue.objects.filter(transaction__merged_into_id=OuterRef("pk"), state__in=REAL)
    handed_over = (
        StageReached.objects.filter(
            transaction_id=OuterRef("pk"), stage="shipped", system__in=c.FULFILLMENT_SYSTEMS
        )
        .order_by("at")
        .values("at")[:1]
    )
    twice = Q(kind=DUPLICATE, detail__duplicate="posted_twice")
    qs = (
        Transaction.objects.filter(merged_into__isnull=True)
        .filter(
            (Q(kind=ORDER) & ranges_q("captured_at", ranges))
            | (Q(kind=INVENTORY) & ranges_q("inventory_adjusted_at", ranges))
        )
        .annotate(
            issue_here=Exists(on_tx),
            issue_merged=Exists(on_loser),
            twice_here=Exists(on_tx.filter(twice)),
            twice_merged=Exists(on_loser.filter(twice)),
            handed_over=Subquery(handed_over),
        )
        .values_list(
            "kind",
            "channel",
            "store_id",
            "captured_at",
            "posted_at",
            "handed_over",
            "fulfillment_synced_at",
            "inventory_adjusted_at",
            "inventory_published_at",
            "failed_hop_count",
            "issue_here",
            "issue_merged",
            "twice_here",
            "twice_merged",
        )
    )
    out = []
    for (
        kind,
        channel,
        store,
        captured,
        posted,
        shipped,
        synced,
        adjusted,
        published,
        failed,
        issue_here,
        issue_merged,
        twice_here,
        twice_merged,
    ) in qs.iterator(chunk_size=5000):
        if kind == ORDER:
            out.append(
                OrderFact(
                    kind=kind,
                    channel=channel,
                    store=store,
                    anchor=captured,
                    a2p_s=_lag(posted, captured),
                    a2p_deadline_s=deadlines.get(kind, channel, "captured", "posted"),
                    ful_s=_lag(synced, shipped),
                    ful_deadline_s=deadlines.get(kind, channel, "shipped", "fulfillment_synced"),
                    with_exception=bool(failed) or issue_here or issue_merged,
                    posted_twice=twice_here or twice_merged,
                )
            )
        else:
            out.append(
                OrderFact(
                    kind=kind,
                    channel=channel,
                    store=store,
                    anchor=adjusted,
                    inv_s=_lag(published, adjusted),
                    inv_deadline_s=deadlines.get(
                        kind, channel, "inventory_adjusted", "inventory_published"
                    ),
                )
            )
    return out


def hop_facts(ranges: Sequence[Range]) -> list[HopFact]:
    """The stitched hops that started inside ``ranges``: three queries (hops, their first
    transaction's channel and store, their duplicate deliveries)."""
    if not ranges:
        return []
    where = ranges_q("start_time", ranges)
    hops = list(
        Hop.objects.filter(where, stitched__isnull=False).values_list(
            "id",
            "start_time",
            "channel",
            "store_id",
            "system",
            "operation",
            "outcome",
            "retry_attempt",
            "replay",
            "duration_ms",
        )
    )
    if not hops:
        return []
    owner: dict[int, tuple[int, str, str]] = {}
    links = TransactionHop.objects.filter(
        ranges_q("hop__start_time", ranges), transaction__merged_into__isnull=True
    ).values_list("hop_id", "transaction_id", "transaction__channel", "transaction__store_id")
    for hop_id, tx_id, channel, store in links:
        held = owner.get(hop_id)
        if held is None or tx_id < held[0]:
            owner[hop_id] = (tx_id, channel, store)
    dups = dict(
        DuplicateDelivery.objects.filter(ranges_q("hop__start_time", ranges))
        .values("hop_id")
        .annotate(n=Count("id"))
        .values_list("hop_id", "n")
    )
    out = []
    for hop_id, start, channel, store, system, operation, outcome, attempt, replay, dur in hops:
        tx = owner.get(hop_id)
        out.append(
            HopFact(
                start=start,
                channel=channel or (tx[1] if tx else ""),
                store=store or (tx[2] if tx else ""),
                system=system,
                operation=operation,
                error=outcome == ERROR,
                retry=attempt > 0,
                replay=bool(replay),
                duplicates=int(dups.get(hop_id, 0)),
                duration_ms=compute.clamp(float(dur or 0.0)),
            )
        )
    return out


# --- totals over a window ---------------------------------------------------------------------


@dataclass
class LagTotal:
    count: int = 0
    within: int = 0
    maximum: float | None = None
    sketches: list[Sketch] = field(default_factory=list)
    _merged: Sketch | None = None

    def add(self, count: int, within: int, sketch: Sketch | None, maximum: float | None) -> None:
        self.count += count
        self.within += within
        if sketch is not None:
            self.sketches.append(sketch)
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = maximum

    @property
    def sketch(self) -> Sketch:
        if self._merged is None:
            self._merged = compute.merge(self.sketches)
        return self._merged

    def quantiles(self, qs: Sequence[float] = compute.QUANTILES) -> list[float | None]:
        return self.sketch.quantiles(qs)


@dataclass
class OrderTotal:
    orders: int = 0
    with_exception: int = 0
    posted_twice: int = 0
    inv_updates: int = 0
    a2p: LagTotal = field(default_factory=LagTotal)
    ful: LagTotal = field(default_factory=LagTotal)
    inv: LagTotal = field(default_factory=LagTotal)

    def add_row(self, row: Any) -> None:
        self.orders += row.orders
        self.with_exception += row.with_exception
        self.posted_twice += row.posted_twice
        self.inv_updates += row.inv_updates
        self.a2p.add(row.a2p_count, row.a2p_within, sketch_of(row.a2p_sketch), None)
        self.ful.add(row.ful_count, row.ful_within, sketch_of(row.ful_sketch), None)
        self.inv.add(row.inv_count, row.inv_within, sketch_of(row.inv_sketch), row.inv_max)

    def add_agg(self, agg: compute.OrderAgg) -> None:
        self.orders += agg.orders
        self.with_exception += agg.with_exception
        self.posted_twice += agg.posted_twice
        self.inv_updates += agg.inv_updates
        for mine, theirs in ((self.a2p, agg.a2p), (self.ful, agg.ful), (self.inv, agg.inv)):
            mine.add(theirs.count, theirs.within, theirs.finish(), theirs.maximum)


@dataclass
class HopTotal:
    hops: int = 0
    errors: int = 0
    retries: int = 0
    replays: int = 0
    duplicates: int = 0
    dur: LagTotal = field(default_factory=LagTotal)

    def add(self, hops: int, errors: int, retries: int, replays: int, dups: int, sk: Any) -> None:
        self.hops += hops
        self.errors += errors
        self.retries += retries
        self.replays += replays
        self.duplicates += dups
        self.dur.add(hops, 0, sk, None)


#: Merged sketches of closed days, by the rollup rows they merge (ids, and a checksum of
#: each sketch: a day row is replaced whenever its day is recomputed, and ids can come
#: back after a rollback), so an entry never goes stale; it only stops being asked for.
#: Per process, bounded.
_MERGED: OrderedDict[tuple[Any, ...], Sketch] = OrderedDict()
_MERGED_MAX = 4096


def _closed_day(at: datetime) -> Case:
    """True for a day row of a day before ``at``'s (computed in SQL: no datetimes to load)."""
    return Case(
        When(resolution=compute.DAY, bucket__lt=compute.floor_to(at, compute.DAY), then=True),
        default=False,
        output_field=BooleanField(),
    )


def merged_closed_days(key: tuple[Any, ...], blobs: Sequence[Any]) -> Sketch:
    """The merge of ``blobs`` (closed days' sketches), remembered under ``key``."""
    hit = _MERGED.get(key)
    if hit is not None:
        _MERGED.move_to_end(key)
        return hit
    merged = compute.merge(Sketch.decode(b) for b in blobs if b)
    _MERGED[key] = merged
    while len(_MERGED) > _MERGED_MAX:
        _MERGED.popitem(last=False)
    return merged


def sketch_of(blob: bytes | memoryview | None) -> Sketch | None:
    return Sketch.decode(blob) if blob else None


def _rollup_q(plan: compute.Plan) -> Q | None:
    q = Q()
    any_range = False
    for res, ranges in plan.rollups.items():
        for a, b in ranges:
            q |= Q(resolution=res, bucket__gte=a, bucket__lt=b)
            any_range = True
    return q if any_range else None


# --- raw pieces of a window ----------------------------------------------------------------------

HOUR_STEP = timedelta(hours=1)
#: The facts of hours older than the minute rollups that window edges cut, read once from
#: the source rows (the whole hour) and kept per process, per filter, under the ids and
#: digests of the hour's rollup rows of that filter: recomputing the hour replaces those
#: rows (new ids, and a digest of every fact and its time), so an entry is never stale; it
#: only stops being asked for. A window's edge in such an hour is then answered from
#: memory, to the microsecond, without reading an hour of hops again. Bounded.
_EDGES: OrderedDict[tuple[Any, ...], tuple[list[datetime], list[Any]]] = OrderedDict()
_EDGES_MAX = 48
_EDGES_LOCK = threading.Lock()


def split_raw(
    ranges: Sequence[Range], first_minute_hour: datetime
) -> tuple[list[Range], dict[datetime, list[Range]]]:
    """A plan's raw ranges cut at the hours: the pieces in hours with minute rollups
    (seconds: two partial minutes at most) and, by hour, the pieces in older hours."""
    recent: list[Range] = []
    old: dict[datetime, list[Range]] = defaultdict(list)
    for a, b in ranges:
        h = compute.floor_to(a, compute.HOUR)
        while h < b:
            piece = (max(a, h), min(b, h + HOUR_STEP))
            if h < first_minute_hour:
                old[h].append(piece)
            else:
                recent.append(piece)
            h += HOUR_STEP
    return recent, dict(old)


def _with_edges(q: Q | None, old: dict[datetime, list[Range]]) -> Q | None:
    """The rollup rows of a plan, and the hour rows of the older hours its edges cut."""
    if not old:
        return q
    edge = Q(resolution=compute.HOUR, bucket__in=sorted(old))
    return edge if q is None else q | edge


def _edge_hour(old: dict[datetime, list[Range]]) -> Any:
    """The bucket of an hour row of an edge hour (None for every other row)."""
    if not old:
        return Value(None, output_field=DateTimeField())
    return Case(
        When(resolution=compute.HOUR, bucket__in=sorted(old), then=F("bucket")),
        default=Value(None),
        output_field=DateTimeField(),
    )


def raw_facts(
    family: str,
    scope: tuple[Any, ...],
    recent: Sequence[Range],
    old: dict[datetime, list[Range]],
    tokens: dict[datetime, list[tuple[int, int]]],
    read: Any,
    when: Any,
    keep: Any,
) -> list[Any]:
    """The facts (``keep``-ing those of the filter ``scope``) of the raw pieces of a
    window: ``recent`` ones (seconds) read from the source; those in ``old``
    hours from the hour's facts kept in memory, read (with the recent ones, in the same
    statements) when the hour's rollup rows (``tokens``: ids and digests) are new. An old
    hour without rollup rows had nothing to count at the last fill: nothing is read."""
    hits: dict[datetime, tuple[list[datetime], list[Any]]] = {}
    wanted: dict[datetime, tuple[Any, ...]] = {}
    for h in old:
        token = tuple(sorted(tokens.get(h, ())))
        if not token:
            continue
        key = (family, h, *scope, token)
        with _EDGES_LOCK:
            hit = _EDGES.get(key)
            if hit is not None:
                _EDGES.move_to_end(key)
        if hit is None:
            wanted[h] = key
        else:
            hits[h] = hit
    out: list[Any] = []
    ranges = [*recent, *((h, h + HOUR_STEP) for h in wanted)]
    if ranges:
        by_hour: dict[datetime, list[Any]] = defaultdict(list)
        for f in read(ranges):
            if not keep(f):
                continue
            h = compute.floor_to(when(f), compute.HOUR)
            if h in wanted:
                by_hour[h].append(f)
            else:
                out.append(f)
        for h, key in wanted.items():
            facts = sorted(by_hour[h], key=when)
            hits[h] = ([when(f) for f in facts], facts)
            with _EDGES_LOCK:
                _EDGES[key] = hits[h]
                while len(_EDGES) > _EDGES_MAX:
                    _EDGES.popitem(last=False)
    for h, (times, facts) in hits.items():
        for a, b in old[h]:
            out.extend(facts[bisect_left(times, a) : bisect_left(times, b)])
    return out


def order_total(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    at: datetime | None = None,
) -> OrderTotal:
    """The orders rollup figures of ``[since, until)`` for one channel/store grouping."""
    at = at or clock_now()
    first = minutes_from(at)
    plan = compute.plan_window(since, until, first)
    recent, old = split_raw(plan.raw, first)
    ch, st = channel or ALL, store or ALL
    total = OrderTotal()
    tokens: dict[datetime, list[tuple[int, int]]] = defaultdict(list)
    q = _with_edges(_rollup_q(plan), old)
    if q is not None:
        closed: list[Any] = []
        for row in (
            OrderRollup.objects.filter(q, channel=ch, store=st)
            .annotate(closed=_closed_day(at), edge=_edge_hour(old))
            .only(
                "orders",
                "with_exception",
                "posted_twice",
                "inv_updates",
                "a2p_count",
                "a2p_within",
                "a2p_sketch",
                "ful_count",
                "ful_within",
                "ful_sketch",
                "inv_count",
                "inv_within",
                "inv_max",
                "inv_sketch",
                "digest",
            )
        ):
            if row.edge is not None:
                tokens[row.edge].append((row.id, row.digest))
            elif row.closed:
                closed.append(row)
            else:
                total.add_row(row)
        if closed:
            for name, lag in (("a2p", total.a2p), ("ful", total.ful), ("inv", total.inv)):
                blobs = [getattr(r, f"{name}_sketch") for r in closed]
                key = tuple(
                    (r.id, zlib.crc32(b) if b else 0) for r, b in zip(closed, blobs, strict=True)
                )
                sketch = merged_closed_days(("orders", name, key), blobs)
                lag.add(
                    sum(getattr(r, f"{name}_count") for r in closed),
                    sum(getattr(r, f"{name}_within") for r in closed),
                    sketch,
                    None,
                )
            for r in closed:
                total.orders += r.orders
                total.with_exception += r.with_exception
                total.posted_twice += r.posted_twice
                total.inv_updates += r.inv_updates
                total.inv.add(0, 0, None, r.inv_max)
    if plan.raw:
        agg = compute.OrderAgg()
        for f in raw_facts(
            "orders",
            (ch, st),
            recent,
            old,
            tokens,
            order_facts,
            _anchor_of,
            lambda f: (
                (channel is None or f.channel == channel) and (store is None or f.store == store)
            ),
        ):
            agg.add(f)
        total.add_agg(agg)
    return total


def _anchor_of(f: OrderFact) -> datetime:
    return f.anchor


def _start_of(f: HopFact) -> datetime:
    return f.start


def _hop_filter(channel: str | None, store: str | None, system: str | None) -> Any:
    def keep(f: HopFact) -> bool:
        return (
            (channel is None or f.channel == channel)
            and (store is None or f.store == store)
            and (not system or f.system == system)
        )

    return keep


def hop_totals(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
) -> dict[tuple[str, str], HopTotal]:
    """The hops rollup figures of ``[since, until)`` per (system, operation)."""
    at = at or clock_now()
    first = minutes_from(at)
    plan = compute.plan_window(since, until, first)
    recent, old = split_raw(plan.raw, first)
    ch, st = channel or ALL, store or ALL
    out: dict[tuple[str, str], HopTotal] = defaultdict(HopTotal)
    tokens: dict[datetime, list[tuple[int, int]]] = defaultdict(list)
    q = _with_edges(_rollup_q(plan), old)
    if q is not None:
        rows = HopRollup.objects.filter(q, channel=ch, store=st)
        if system:
            rows = rows.filter(system=system)
        closed: dict[tuple[str, str], list[tuple[int, Any]]] = defaultdict(list)
        for (
            pk,
            is_closed,
            edge,
            digest,
            sys_,
            op,
            hops,
            errors,
            retries,
            replays,
            dups,
            blob,
        ) in rows.annotate(closed=_closed_day(at), edge=_edge_hour(old)).values_list(
            "id",
            "closed",
            "edge",
            "digest",
            "system",
            "operation",
            "hops",
            "errors",
            "retries",
            "replays",
            "duplicates",
            "dur_sketch",
        ):
            if edge is not None:
                tokens[edge].append((pk, digest))
            elif is_closed:
                closed[(sys_, op)].append((pk, blob))
                out[(sys_, op)].add(hops, errors, retries, replays, dups, None)
            else:
                out[(sys_, op)].add(hops, errors, retries, replays, dups, sketch_of(blob))
        for key, days in closed.items():
            ids = tuple((pk, zlib.crc32(b) if b else 0) for pk, b in days)
            sketch = merged_closed_days(("hops", *key, ids), [b for _, b in days])
            out[key].dur.sketches.append(sketch)
    if plan.raw:
        aggs: dict[tuple[str, str], compute.HopAgg] = defaultdict(compute.HopAgg)
        for f in _raw_hops(channel, store, system, recent, old, tokens):
            aggs[(f.system, f.operation[: compute.OPERATION_MAX])].add(f)
        for key, agg in aggs.items():
            out[key].add(
                agg.hops, agg.errors, agg.retries, agg.replays, agg.duplicates, agg.dur.finish()
            )
    return dict(out)


def _raw_hops(
    channel: str | None,
    store: str | None,
    system: str | None,
    recent: Sequence[Range],
    old: dict[datetime, list[Range]],
    tokens: dict[datetime, list[tuple[int, int]]],
) -> list[Any]:
    """The hop facts of a window's raw edges (``raw_facts`` for the hops rollup)."""
    return raw_facts(
        "hops",
        (channel or ALL, store or ALL, system or ""),
        recent,
        old,
        tokens,
        hop_facts,
        _start_of,
        _hop_filter(channel, store, system),
    )


def hop_counts(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
) -> HopTotal:
    """The hops rollup counts of ``[since, until)``, summed in SQL (no sketches): for
    figures that need no quantile (deliveries, repeats, retries, failures)."""
    first = minutes_from(at)
    plan = compute.plan_window(since, until, first)
    recent, old = split_raw(plan.raw, first)
    ch, st = channel or ALL, store or ALL
    total = HopTotal()
    rows = HopRollup.objects.filter(channel=ch, store=st)
    if system:
        rows = rows.filter(system=system)
    q = _rollup_q(plan)
    if q is not None:
        got = rows.filter(q).aggregate(
            hops=Sum("hops"),
            errors=Sum("errors"),
            retries=Sum("retries"),
            replays=Sum("replays"),
            dups=Sum("duplicates"),
        )
        total.add(
            int(got["hops"] or 0),
            int(got["errors"] or 0),
            int(got["retries"] or 0),
            int(got["replays"] or 0),
            int(got["dups"] or 0),
            None,
        )
    if plan.raw:
        tokens: dict[datetime, list[tuple[int, int]]] = defaultdict(list)
        if old:
            for bucket, pk, digest in rows.filter(
                resolution=compute.HOUR, bucket__in=sorted(old)
            ).values_list("bucket", "id", "digest"):
                tokens[bucket].append((pk, digest))
        for f in _raw_hops(channel, store, system, recent, old, tokens):
            total.add(1, int(f.error), int(f.retry), int(f.replay), f.duplicates, None)
    return total


# --- snapshot KPIs ----------------------------------------------------------------------------


def _is_live(until: datetime, at: datetime) -> bool:
    return until >= at - LIVE_SLACK


def _anchor_q(since: datetime | None, until: datetime) -> Q:
    """Transactions counted in the window of their anchor time (CONTRACT 5)."""

    def rng(col: str) -> Q:
        q = Q(**{f"{col}__lt": until})
        if since is not None:
            q &= Q(**{f"{col}__gte": since})
        return q

    return (
        (Q(kind=ORDER) & rng("captured_at"))
        | (Q(kind=INVENTORY) & rng("inventory_adjusted_at"))
        | (Q(kind="return") & rng("return_requested_at"))
    )


def anchor_expr() -> Case:
    """A transaction's anchor time: the window it counts in (CONTRACT 5)."""
    return Case(
        When(kind=ORDER, then=F("captured_at")),
        When(kind=INVENTORY, then=F("inventory_adjusted_at")),
        When(kind="return", then=F("return_requested_at")),
        default=Value(None),
        output_field=DateTimeField(),
    )


def judged_by(
    policies: Sequence[sla.Policy] | None = None, *, system: str | None = None
) -> list[tuple[sla.Policy, Any, list[str]]]:
    """Per SLA policy (with stage columns for both ends; of ``system`` when given): the
    live transactions it judges that reached its ``from_stage`` (a channel's own policy
    over the every-channel one, ``triage.sla.applicable`` set-based), and the columns whose
    time reaches its ``to_stage`` (it, or a later stage of its sequence)."""
    policies = list(triage_queries.policies() if policies is None else policies)
    overrides = getattr(settings, "TRIAGE_STAGE_SYSTEMS", {})
    specific: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for p in policies:
        if p.channel:
            specific[(p.transaction_kind, p.from_stage, p.to_stage)].add(p.channel)
    columns = {f.name for f in Transaction._meta.get_fields()}
    out = []
    for p in policies:
        start = stage_field(p.from_stage)
        if start not in columns or stage_field(p.to_stage) not in columns:
            continue
        if system and sla.stage_system(p.to_stage, overrides) != system:
            continue
        qs = Transaction.objects.filter(
            merged_into__isnull=True, kind=p.transaction_kind, **{f"{start}__isnull": False}
        )
        if p.channel:
            qs = qs.filter(channel=p.channel)
        elif specific[(p.transaction_kind, p.from_stage, p.to_stage)]:
            qs = qs.exclude(channel__in=specific[(p.transaction_kind, p.from_stage, p.to_stage)])
        reaching = [stage_field(s_) for s_ in sla.satisfying(p) if stage_field(s_) in columns]
        out.append((p, qs, reaching))
    return out


def policy_branches(
    *,
    since: datetime | None,
    until: datetime | None,
    live: bool,
    policies: Sequence[sla.Policy] | None = None,
    system: str | None = None,
) -> list[tuple[sla.Policy, Any]]:
    """Per SLA policy, the live transactions it judges that miss its stage (as of
    ``until``, or now when ``live``), of the window when ``since``/``until`` are given,
    past its deadline when ``until`` is given (``triage.sla`` rules, set-based)."""
    out = []
    for p, qs, reaching in judged_by(policies, system=system):
        if until is not None:
            qs = qs.filter(
                _anchor_q(since, until),
                **{f"{stage_field(p.from_stage)}__lt": sla.overdue_threshold(p, until)},
            )
        for col in reaching:
            if live or until is None:
                qs = qs.filter(**{f"{col}__isnull": True})
            else:
                qs = qs.filter(Q(**{f"{col}__isnull": True}) | Q(**{f"{col}__gt": until}))
        if live or until is None:
            qs = qs.filter(cancelled_at__isnull=True)
        else:
            qs = qs.filter(Q(cancelled_at__isnull=True) | Q(cancelled_at__gt=until))
        out.append((p, qs))
    return out


def _backlog_union(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None,
    store: str | None,
    system: str | None,
    at: datetime,
    policies: Sequence[sla.Policy] | None,
) -> Any:
    """The backlog as it stood at a past ``until``, from the stage columns: one UNION ALL
    branch per policy of (transaction, channel, store, missing stage)."""
    branches = []
    for p, qs in policy_branches(
        since=since, until=until, live=_is_live(until, at), policies=policies, system=system
    ):
        if channel is not None:
            qs = qs.filter(channel=channel)
        if store is not None:
            qs = qs.filter(store_id=store)
        branches.append(
            qs.annotate(missing=Value(p.to_stage, output_field=CharField())).values_list(
                "id", "channel", "store_id", "missing"
            )
        )
    if not branches:
        return None
    return branches[0].union(*branches[1:], all=True)


def _open_stages(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None,
    store: str | None,
    system: str | None,
    live: bool = True,
) -> Any:
    """The backlog at ``until`` from ``OpenStage`` (kept by the fill): stages overdue by
    ``until`` of transactions anchored in the window, still missing (``live``: now, one
    partial index), or at a past ``until`` not reached by then (a range of anchors)."""
    qs = OpenStage.objects.filter(overdue_after__lt=until, anchor__lt=until)
    if live:
        qs = qs.filter(closed_at__isnull=True)
    else:
        qs = qs.filter(Q(closed_at__isnull=True) | Q(closed_at__gt=until))
    if since is not None:
        qs = qs.filter(anchor__gte=since)
    if channel is not None:
        qs = qs.filter(channel=channel)
    if store is not None:
        qs = qs.filter(store=store)
    if system:
        qs = qs.filter(stage__in=_system_stages(system))
    return qs


def _system_stages(system: str) -> set[str]:
    """The stages ``system`` is expected to reach (none for a system that reaches none:
    the POS, a marketplace, any unknown name)."""
    overrides = getattr(settings, "TRIAGE_STAGE_SYSTEMS", {})
    return {s for s in STAGE_COLUMNS if sla.stage_system(s, overrides) == system}


def backlog_members(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
    policies: Sequence[sla.Policy] | None = None,
) -> dict[str, set[tuple[int, str, str]]]:
    """Stage -> (transaction, channel, store) of every transaction of the window past the
    deadline for that stage at ``until`` and still missing it (one statement).

    From ``OpenStage`` (``until`` at about now: the stages still open; earlier: those not
    reached by ``until``); with explicit ``policies``, from the stage columns.
    """
    at = at or clock_now()
    out: dict[str, set[tuple[int, str, str]]] = defaultdict(set)
    if policies is None:
        if system and not _system_stages(system):
            return {}
        rows = _open_stages(
            since,
            until,
            channel=channel,
            store=store,
            system=system,
            live=_is_live(until, at),
        )
        for tx_id, tx_channel, tx_store, stage in rows.values_list(
            "transaction_id", "channel", "store", "stage"
        ):
            out[stage].add((tx_id, tx_channel, tx_store))
        return dict(out)
    union = _backlog_union(
        since, until, channel=channel, store=store, system=system, at=at, policies=policies
    )
    if union is not None:
        for tx_id, tx_channel, tx_store, stage in union:
            out[stage].add((tx_id, tx_channel, tx_store))
    return dict(out)


def backlog(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
    policies: Sequence[sla.Policy] | None = None,
) -> dict[str, Any]:
    """``{"total", "by_stage"}``, counted in the database in one statement over
    ``OpenStage``: about now, one pass over a covering index of the open stages (the
    total counts each transaction's ``lead`` row; with a system filter, distinct
    transactions); at an earlier ``until``, a range of anchors. With explicit
    ``policies``, from the stage columns as they stood at ``until``."""
    at = at or clock_now()
    if policies is None:
        if system and not _system_stages(system):
            return {"total": 0, "by_stage": {}}  # no backlog can wait on it
        live = _is_live(until, at)
        rows = _open_stages(since, until, channel=channel, store=store, system=system, live=live)
        if live and not system:
            by_stage: dict[str, int] = {}
            total = 0
            for stage, n, leads in (
                rows.values("stage")
                # (columns of the covering index only: an index-only scan)
                .annotate(n=Count("stage"), leads=Count("stage", filter=Q(lead=True)))
                .values_list("stage", "n", "leads")
            ):
                if n:
                    by_stage[stage] = int(n)
                total += int(leads)
            return {"total": total, "by_stage": dict(sorted(by_stage.items()))}
        # one row per (transaction, stage): distinct transactions for the total only
        sql, params = rows.values_list("transaction_id", "stage").query.sql_with_params()
        return _stage_counts(
            f"SELECT stage, COUNT(*) FROM ({sql}) u GROUP BY stage "
            f"UNION ALL SELECT NULL, COUNT(DISTINCT transaction_id) FROM ({sql}) v",
            (*params, *params),
        )
    union = _backlog_union(
        since, until, channel=channel, store=store, system=system, at=at, policies=policies
    )
    if union is None:
        return {"total": 0, "by_stage": {}}
    sql, params = union.query.sql_with_params()
    return _stage_counts(
        f"WITH u(id, channel, store, stage) AS ({sql}) "
        "SELECT stage, COUNT(DISTINCT id) FROM u GROUP BY stage "
        "UNION ALL SELECT NULL, COUNT(DISTINCT id) FROM u",
        params,
    )


def _stage_counts(sql: str, params: Sequence[Any]) -> dict[str, Any]:
    """``{"total", "by_stage"}`` from one statement's (stage, count) rows, the total's
    stage NULL."""
    by_stage: dict[str, int] = {}
    total = 0
    with connection.cursor() as cur:
        cur.execute(sql, params)
        for stage, n in cur.fetchall():
            if stage is None:
                total = int(n)
            elif n:
                by_stage[str(stage)] = int(n)
    return {"total": total, "by_stage": dict(sorted(by_stage.items()))}


def issues(channel: str | None, store: str | None, system: str | None) -> Any:
    """The exceptions of one channel / store (their transaction's) or system: for a channel
    or a store, the fill's ``IssueSeen`` rows (the same fields: ``state``, ``system``,
    ``opened_at``, ``resolved_at``; an index on the channel or store and the opening time,
    no lookup of every exception's transaction); otherwise the exceptions themselves, as
    they are this moment."""
    qs: Any
    if channel is not None or store is not None:
        qs = IssueSeen.objects.all()
        if channel is not None:
            qs = qs.filter(channel=channel)
        if store is not None:
            qs = qs.filter(store=store)
    else:
        qs = Issue.objects.all()
    if system:
        qs = qs.filter(system=system)
    return qs


def exception_aging(
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Exceptions unresolved at ``until``, by age then (CONTRACT 5 ``exception_aging``)."""
    at = at or clock_now()
    qs = issues(channel, store, system)
    if _is_live(until, at):
        qs = qs.filter(state__in=UNRESOLVED, opened_at__lte=until)
    else:
        qs = qs.filter(opened_at__lte=until).filter(
            Q(resolved_at__isnull=True) | Q(resolved_at__gt=until)
        )
    marks = {name: until - timedelta(seconds=upper) for name, upper in sla.AGE_BUCKETS if upper}
    row = qs.aggregate(
        open=Count("pk"),
        under_1h=Count("pk", filter=Q(opened_at__gt=marks["under_1h"])),
        h1_to_4=Count(
            "pk", filter=Q(opened_at__gt=marks["h1_to_4"], opened_at__lte=marks["under_1h"])
        ),
        h4_to_24=Count(
            "pk", filter=Q(opened_at__gt=marks["h4_to_24"], opened_at__lte=marks["h1_to_4"])
        ),
        over_24h=Count("pk", filter=Q(opened_at__lte=marks["h4_to_24"])),
        oldest=Min("opened_at"),
    )
    oldest = row.pop("oldest")
    row["oldest_s"] = (until - oldest).total_seconds() if oldest is not None else None
    return row


def resolution_time() -> ExpressionWrapper:
    return ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())


def exceptions_resolution(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> tuple[int, float | None]:
    """(count, mean seconds) opened -> resolved, of exceptions opened in the window."""
    qs = issues(channel, store, system).filter(
        opened_at__gte=since, opened_at__lt=until, state=RESOLVED, resolved_at__isnull=False
    )
    row = qs.aggregate(n=Count("pk"), mean=Avg(resolution_time()))
    mean = row["mean"]
    if mean is None:
        return int(row["n"]), None
    if isinstance(mean, timedelta):
        return int(row["n"]), mean.total_seconds()
    return int(row["n"]), float(mean) / 1_000_000  # SQLite: microseconds


def alerts_resolution(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
) -> tuple[int, float | None]:
    """(count, mean seconds) fired -> resolved, of alerts fired in the window: the facts
    the alerts stage hands down (``AlertSeen``), matched to a filter by their labels."""
    qs = AlertSeen.objects.filter(
        fired_at__gte=since, fired_at__lt=until, resolved_at__isnull=False
    )
    for label, value in (("channel", channel), ("store", store), ("system", system)):
        if value:
            qs = qs.filter(**{label: value})
    row = qs.aggregate(
        n=Count("pk"),
        mean=Avg(ExpressionWrapper(F("resolved_at") - F("fired_at"), output_field=DurationField())),
    )
    mean = row["mean"]
    if mean is None:
        return int(row["n"]), None
    if isinstance(mean, timedelta):
        return int(row["n"]), mean.total_seconds()
    return int(row["n"]), float(mean) / 1_000_000


# --- the KPI values -----------------------------------------------------------------------------


def _lag_fields(lag: LagTotal, names: Sequence[str]) -> dict[str, Any]:
    p50, p95, p99 = lag.quantiles()
    values = {"count": lag.count, "p50_s": p50, "p95_s": p95, "p99_s": p99}
    return {n: values[n] for n in names if n in values}


def values_from(
    orders: OrderTotal,
    hops: dict[tuple[str, str], HopTotal],
    *,
    backlog_value: dict[str, Any],
    aging: dict[str, Any],
    resolution: dict[str, float | None],
) -> dict[str, dict[str, Any]]:
    """Every KPI of the registry from the window's totals (CONTRACT 5 ids and fields)."""
    deliveries = sum(h.hops + h.duplicates for h in hops.values())
    duplicates = sum(h.duplicates for h in hops.values())
    sources: dict[str, list[int]] = {}
    for (system, _operation), h in hops.items():
        tally = sources.setdefault(system, [0, 0])
        tally[0] += h.hops + h.duplicates
        tally[1] += h.duplicates
    by_source = {
        system: {"deliveries": n, "duplicates": d, "rate": compute.rate(d, n)}
        for system, (n, d) in sorted(sources.items())
        if n
    }
    counted: list[tuple[float, str]] = [
        (compute.rate(d, n) or 0.0, system)
        for system, (n, d) in sources.items()
        if n >= registry.MIN_SOURCE_DELIVERIES
    ]
    worst_rate: float | None = None
    worst = ""
    if counted:
        worst_rate, worst = max(counted)
    rows = []
    for (system, operation), h in sorted(hops.items()):
        if not h.hops:
            continue
        p50, p95 = h.dur.quantiles((0.5, 0.95))
        rows.append(
            {
                "system": system,
                "operation": operation,
                "count": h.hops,
                "error_rate": compute.rate(h.errors, h.hops),
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
    a2p = _lag_fields(orders.a2p, ("count", "p50_s", "p95_s", "p99_s"))
    a2p["within_sla"] = compute.rate(orders.a2p.within, orders.a2p.count)
    inv = _lag_fields(orders.inv, ("count", "p50_s", "p95_s"))
    inv["max_s"] = orders.inv.maximum
    out: dict[str, dict[str, Any]] = {
        "acceptance_to_posting": a2p,
        "inventory_sync_lag": inv,
        "fulfillment_propagation": _lag_fields(orders.ful, ("count", "p50_s", "p95_s")),
        "exception_rate": {
            "orders": orders.orders,
            "with_exception": orders.with_exception,
            "rate": compute.rate(orders.with_exception, orders.orders),
        },
        "duplicate_rate": {
            "deliveries": deliveries,
            "duplicates": duplicates,
            "rate": compute.rate(duplicates, deliveries),
            "posted_twice": orders.posted_twice,
            "by_source": by_source,
            "worst_source_rate": worst_rate,
            "worst_source": worst,
        },
        "reconciliation_backlog": backlog_value,
        "exception_aging": aging,
        "retries": {
            "retries": sum(h.retries for h in hops.values()),
            "replays": sum(h.replays for h in hops.values()),
        },
        "hop_health": {"rows": rows},
        "resolution_time": dict(resolution),
    }
    assert set(out) == set(registry.KPIS)
    return out


def kpi_values(
    since: datetime,
    until: datetime,
    channel: str | None = None,
    system: str | None = None,
    store: str | None = None,
    *,
    at: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Every KPI of CONTRACT 5 over ``[since, until)``: ``{kpi_id: {field: value}}``.

    ``channel`` and ``store`` filter every KPI; ``system`` filters the KPIs where a
    system is part of the fact (see ``registry``). Durations are seconds (``hop_health``:
    milliseconds), rates 0..1, and a figure with nothing to measure is None.
    """
    at = at or clock_now()
    channel = channel or None
    store = store or None
    system = system or None
    orders = order_total(since, until, channel=channel, store=store, at=at)
    hops = hop_totals(since, until, channel=channel, store=store, system=system, at=at)
    _, exc_mean = exceptions_resolution(since, until, channel=channel, store=store, system=system)
    _, alert_mean = alerts_resolution(since, until, channel=channel, store=store, system=system)
    return values_from(
        orders,
        hops,
        backlog_value=backlog(since, until, channel=channel, store=store, system=system, at=at),
        aging=exception_aging(until, channel=channel, store=store, system=system, at=at),
        resolution={"alerts_mean_s": alert_mean, "exceptions_mean_s": exc_mean},
    )


__all__ = [
    "Deadlines",
    "backlog",
    "backlog_members",
    "exception_aging",
    "hop_facts",
    "hop_totals",
    "kpi_values",
    "order_facts",
    "order_total",
]
