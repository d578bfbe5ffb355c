"""Totals over a window ``[since, until)``: whole days, hours and minutes from the rollup
rows, sub-bucket edges from the source rows (``raw_facts``), the merged sketches of closed
days remembered per process.
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

from django.db.models import BooleanField, Case, DateTimeField, F, Q, Sum, Value, When

from observatory.kpis import compute
from observatory.kpis.compute import ALL, HopFact, OrderFact, Sketch
from observatory.kpis.models import HopRollup, OrderRollup
from observatory.kpis.queries.readers import Range, hop_facts, minutes_from, order_facts
from observatory.lib import memo
from observatory.lib.clock import now as clock_now


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
    posting: compute.Posting = field(default_factory=dict)

    def add_row(self, row: Any) -> None:
        compute.merge_posting(self.posting, row.posting)
        self.orders += row.orders
        self.with_exception += row.with_exception
        self.posted_twice += row.posted_twice
        self.inv_updates += row.inv_updates
        self.a2p.add(row.a2p_count, row.a2p_within, sketch_of(row.a2p_sketch), None)
        self.ful.add(row.ful_count, row.ful_within, sketch_of(row.ful_sketch), None)
        self.inv.add(row.inv_count, row.inv_within, sketch_of(row.inv_sketch), row.inv_max)

    def add_agg(self, agg: compute.OrderAgg) -> None:
        compute.merge_posting(self.posting, agg.posting)
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
    """The orders rollup figures of ``[since, until)`` for one channel/store grouping
    (read once per answer for the same arguments, ``lib.memo``: callers only read it)."""
    if at is None:
        return _order_total(since, until, channel, store, clock_now())
    key = ("order_total", since, until, channel, store, at)
    return memo.once(key, lambda: _order_total(since, until, channel, store, at))


def _order_total(
    since: datetime, until: datetime, channel: str | None, store: str | None, at: datetime
) -> OrderTotal:
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
                "posting",
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
                compute.merge_posting(total.posting, r.posting)
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
