"""KPI arithmetic from plain values: quantiles, rates, time buckets (no ORM).

Quantiles come from the mergeable sketches of :mod:`observatory.lib.sketch` (DDSketch's
logarithmic mapping at 0.5 % relative accuracy, which keeps the 1 % of docs/kpis.md with room
to spare); they are re-exported here for the KPI code.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from observatory.lib.sketch import (
    MAPPING,
    QUANTILES,
    RELATIVE_ACCURACY,
    Sketch,
    clamp,
    exact_quantile,
    key_of,
    merge,
    merge_encoded,
    rank_index,
)

__all__ = [
    "MAPPING",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "Sketch",
    "clamp",
    "exact_quantile",
    "key_of",
    "merge",
    "merge_encoded",
    "rank_index",
]


def rate(part: int | float, whole: int | float) -> float | None:
    """``part / whole`` as 0..1, None when there is nothing to divide by."""
    return (part / whole) if whole else None


def mean(total: float, count: int) -> float | None:
    return (total / count) if count else None


# --- time buckets ---------------------------------------------------------------------------

MINUTE: Final = "minute"
HOUR: Final = "hour"
DAY: Final = "day"
RESOLUTIONS: Final = (MINUTE, HOUR, DAY)
STEP: Final = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}


def floor_to(at: datetime, resolution: str) -> datetime:
    """The start of the bucket holding ``at`` (UTC)."""
    at = at.astimezone(UTC)
    if resolution == MINUTE:
        return at.replace(second=0, microsecond=0)
    if resolution == HOUR:
        return at.replace(minute=0, second=0, microsecond=0)
    if resolution == DAY:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(resolution)


def ceil_to(at: datetime, resolution: str) -> datetime:
    start = floor_to(at, resolution)
    return start if start == at.astimezone(UTC) else start + STEP[resolution]


Range = tuple[datetime, datetime]


@dataclass
class Plan:
    """A window cut into the coarsest aligned rollup buckets, plus raw edges.

    ``rollups[resolution]`` lists bucket ranges answered by rollup rows of that
    resolution; ``raw`` lists the ranges (shorter than the finest usable bucket) answered
    straight from the source rows.
    """

    rollups: dict[str, list[Range]] = field(default_factory=dict)
    raw: list[Range] = field(default_factory=list)


def plan_window(since: datetime, until: datetime, minutes_from: datetime | None) -> Plan:
    """Cut ``[since, until)`` into days, hours, minutes and raw edges.

    Minute rollups are kept only for recent hours: ``minutes_from`` is the first hour that
    has them (None: none at all); partial hours before it are read raw.
    """
    plan = Plan(rollups={DAY: [], HOUR: [], MINUTE: []})
    if until <= since:
        return plan
    _cut(plan, since, until, DAY, minutes_from)
    for res in RESOLUTIONS:
        plan.rollups[res] = _coalesce(plan.rollups[res])
    plan.raw = _coalesce(plan.raw)
    return plan


_FINER: Final = {DAY: HOUR, HOUR: MINUTE}


def _cut(
    plan: Plan, start: datetime, end: datetime, res: str, minutes_from: datetime | None
) -> None:
    if start >= end:
        return
    if res == MINUTE and (minutes_from is None or floor_to(start, HOUR) < minutes_from):
        if minutes_from is not None and start < minutes_from < end:
            # the part from the first hour with minute rollups on is cut by minutes
            plan.raw.append((start, minutes_from))
            _cut(plan, minutes_from, end, MINUTE, minutes_from)
        else:
            plan.raw.append((start, end))
        return
    a, b = ceil_to(start, res), floor_to(end, res)
    if a >= b:
        finer = _FINER.get(res)
        if finer is None:
            plan.raw.append((start, end))
        else:
            _cut(plan, start, end, finer, minutes_from)
        return
    plan.rollups[res].append((a, b))
    finer = _FINER.get(res)
    if finer is None:
        plan.raw.extend(r for r in ((start, a), (b, end)) if r[0] < r[1])
        return
    _cut(plan, start, a, finer, minutes_from)
    _cut(plan, b, end, finer, minutes_from)


def _coalesce(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def buckets_in(ranges: Iterable[Range], resolution: str) -> list[datetime]:
    """Every bucket start of ``resolution`` inside the aligned ``ranges``."""
    step = STEP[resolution]
    out = []
    for a, b in ranges:
        t = a
        while t < b:
            out.append(t)
            t += step
    return out


def minutes_cutoff(now: datetime, retention_days: int) -> datetime:
    """The first hour whose minute rollups are kept (day-aligned, so it only moves on)."""
    return floor_to(now, DAY) - timedelta(days=retention_days)


# --- grouping sets ----------------------------------------------------------------------------

#: The "every value" marker of a dimension in a rollup row.
ALL: Final = "*"


def groupings(channel: str, store: str) -> tuple[tuple[str, str], ...]:
    """The four (channel, store) rows one fact is counted in: itself, all stores of its
    channel, its store in every channel, and everything."""
    return ((channel, store), (channel, ALL), (ALL, store), (ALL, ALL))


__all__ = [
    "ALL",
    "DAY",
    "HOUR",
    "MAPPING",
    "MINUTE",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "Plan",
    "Sketch",
    "buckets_in",
    "ceil_to",
    "clamp",
    "exact_quantile",
    "floor_to",
    "groupings",
    "key_of",
    "mean",
    "merge",
    "merge_encoded",
    "minutes_cutoff",
    "plan_window",
    "rank_index",
    "rate",
]


# --- facts -> rollup aggregates ---------------------------------------------------------------

ORDER_KIND: Final = "order"
INVENTORY_KIND: Final = "inventory_update"


@dataclass(frozen=True, slots=True)
class OrderFact:
    """One live transaction, as the orders rollup sees it (plain values)."""

    kind: str
    channel: str
    store: str
    anchor: datetime
    #: seconds, clamped at 0; None when the end stage has not been reached
    a2p_s: float | None = None
    a2p_deadline_s: float | None = None
    ful_s: float | None = None
    ful_deadline_s: float | None = None
    inv_s: float | None = None
    inv_deadline_s: float | None = None
    with_exception: bool = False
    posted_twice: bool = False
    #: posting completeness (docs/kpis.md): None for a fact it does not count; else whether
    #: the ERP posted the order before ``day_end``, the end of its business day
    posted_in_day: bool | None = None
    day_end: datetime | None = None
    #: the order's amount in whole cents (None: no amount) and its currency
    cents: int | None = None
    currency: str = ""


@dataclass(frozen=True, slots=True)
class HopFact:
    """One stitched hop, as the hops rollup sees it."""

    start: datetime
    channel: str
    store: str
    system: str
    operation: str
    error: bool
    retry: bool
    replay: bool
    duplicates: int
    duration_ms: float


class _Lag:
    """Values of one lag KPI inside one aggregate: a count, a within-deadline count, bin
    keys (zeros apart) and the largest value."""

    __slots__ = ("count", "keys", "maximum", "sketch", "within", "zero")

    def __init__(self) -> None:
        self.count = 0
        self.within = 0
        self.zero = 0
        self.keys: list[int] = []
        self.maximum: float | None = None
        self.sketch: Sketch | None = None

    def add(self, value: float, deadline: float | None) -> None:
        self.count += 1
        if deadline is None or value <= deadline:
            self.within += 1
        k = key_of(value)
        if k is None:
            self.zero += 1
        else:
            self.keys.append(k)
        if self.maximum is None or value > self.maximum:
            self.maximum = value

    def merge_in(self, other: _Lag) -> None:
        self.count += other.count
        self.within += other.within
        self.sketch = merge([self.finish(), other.finish()])
        self.keys, self.zero = [], 0
        if other.maximum is not None and (self.maximum is None or other.maximum > self.maximum):
            self.maximum = other.maximum

    def finish(self) -> Sketch:
        if self.keys or self.zero:
            built = Sketch.from_keys(self.keys, self.zero)
            self.sketch = merge([self.sketch, built]) if self.sketch is not None else built
            self.keys, self.zero = [], 0
        return self.sketch if self.sketch is not None else Sketch()


#: Posting completeness of a bucket (docs/kpis.md), JSON as a rollup row keeps it: orders
#: posted by the end of their business day under ``"p:<currency>"``, the others under
#: ``"u:<end of their day, µs since 1970>:<currency>"`` (a row holds a few business days:
#: one per zone, or two for a zone whose midnight falls inside an hour), each
#: ``[orders, orders with an amount, their amounts in cents]``. An order not posted counts
#: only once its day has ended (``posting_figures``); "" is the currency of no amount.
Posting = dict[str, list[int]]


def count_posting(into: Posting, f: OrderFact) -> None:
    if f.posted_in_day:
        key = f"p:{f.currency}"
    else:
        assert f.day_end is not None
        key = f"u:{_micros(f.day_end)}:{f.currency}"
    figures = into.get(key)
    if figures is None:
        figures = into[key] = [0, 0, 0]
    figures[0] += 1
    if f.cents is not None:
        figures[1] += 1
        figures[2] += f.cents


def merge_posting(into: Posting, other: Posting) -> None:
    for key, (n, priced, cents) in other.items():
        figures = into.get(key)
        if figures is None:
            into[key] = [n, priced, cents]
        else:
            figures[0] += n
            figures[1] += priced
            figures[2] += cents


def posting_figures(posting: Posting, at: datetime) -> dict[str, Any]:
    """``posting_completeness`` at ``at`` from a window's merged figures: the orders
    posted by the end of their business day, and those whose day ended by ``at``."""
    cutoff = _micros(at)
    orders = posted = 0
    values: dict[str, list[int]] = {}
    for key, (n, priced, cents) in posting.items():
        done, rest = key.startswith("p:"), key[2:]
        if not done:
            end, rest = rest.split(":", 1)
            if int(end) > cutoff:
                continue  # its day is still running: not judged yet
        orders += n
        if done:
            posted += n
        if rest and priced:
            value = values.setdefault(rest, [0, 0])
            value[0] += cents
            if done:
                value[1] += cents
    return {
        "orders": orders,
        "posted": posted,
        "rate": rate(posted, orders),
        "by_currency": {
            currency: {"value": total / 100, "value_posted": done_cents / 100}
            for currency, (total, done_cents) in sorted(values.items())
        },
    }


@dataclass
class OrderAgg:
    """The figures of one OrderRollup row."""

    orders: int = 0
    with_exception: int = 0
    posted_twice: int = 0
    inv_updates: int = 0
    a2p: _Lag = field(default_factory=_Lag)
    ful: _Lag = field(default_factory=_Lag)
    inv: _Lag = field(default_factory=_Lag)
    #: the sum of the facts' ``order_fact_digest`` (kept by ``aggregate_orders``)
    digest: int = 0
    posting: Posting = field(default_factory=dict)

    def add(self, f: OrderFact) -> None:
        if f.kind == ORDER_KIND:
            if f.posted_in_day is not None:
                count_posting(self.posting, f)
            self.orders += 1
            self.with_exception += f.with_exception
            self.posted_twice += f.posted_twice
            if f.a2p_s is not None:
                self.a2p.add(f.a2p_s, f.a2p_deadline_s)
            if f.ful_s is not None:
                self.ful.add(f.ful_s, f.ful_deadline_s)
        elif f.kind == INVENTORY_KIND:
            self.inv_updates += 1
            if f.inv_s is not None:
                self.inv.add(f.inv_s, f.inv_deadline_s)

    def merge_in(self, other: OrderAgg) -> None:
        self.orders += other.orders
        self.with_exception += other.with_exception
        self.posted_twice += other.posted_twice
        self.inv_updates += other.inv_updates
        self.digest = (self.digest + other.digest) & DIGEST_MASK
        merge_posting(self.posting, other.posting)
        self.a2p.merge_in(other.a2p)
        self.ful.merge_in(other.ful)
        self.inv.merge_in(other.inv)

    @property
    def empty(self) -> bool:
        return not (self.orders or self.inv_updates)


@dataclass
class HopAgg:
    """The figures of one HopRollup row."""

    hops: int = 0
    errors: int = 0
    retries: int = 0
    replays: int = 0
    duplicates: int = 0
    dur: _Lag = field(default_factory=_Lag)
    #: the sum of the facts' ``hop_fact_digest`` (kept by ``aggregate_hops``)
    digest: int = 0

    def add(self, f: HopFact) -> None:
        self.hops += 1
        self.errors += f.error
        self.retries += f.retry
        self.replays += f.replay
        self.duplicates += f.duplicates
        self.dur.add(f.duration_ms, None)

    def merge_in(self, other: HopAgg) -> None:
        self.hops += other.hops
        self.errors += other.errors
        self.retries += other.retries
        self.replays += other.replays
        self.duplicates += other.duplicates
        self.digest = (self.digest + other.digest) & DIGEST_MASK
        self.dur.merge_in(other.dur)


# --- digests of a bucket's facts ---------------------------------------------------------------

#: Digests are sums of per-fact hashes, kept below 2**63 (a signed 64-bit column).
DIGEST_MASK: Final = (1 << 63) - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ORDER_FACT: Final = struct.Struct("<qB6d2B")
_POSTING_FACT: Final = struct.Struct("<bqq")
_HOP_FACT: Final = struct.Struct("<q3Bqd")
_KINDS: Final = {ORDER_KIND: 1, INVENTORY_KIND: 2}


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _hash(raw: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _n(value: float | None) -> float:
    return -1.0 if value is None else float(value)


def order_fact_digest(f: OrderFact) -> int:
    """A hash of everything a rollup row takes from one transaction, its time included
    (to the microsecond): a row's ``digest`` is the sum of its facts' ones, so two rows
    with the same digest hold the same facts at the same moments (up to a 64-bit hash
    collision), whatever their ids."""
    return _hash(
        _ORDER_FACT.pack(
            _micros(f.anchor),
            _KINDS.get(f.kind, 0),
            _n(f.a2p_s),
            _n(f.a2p_deadline_s),
            _n(f.ful_s),
            _n(f.ful_deadline_s),
            _n(f.inv_s),
            _n(f.inv_deadline_s),
            f.with_exception,
            f.posted_twice,
        )
        + _POSTING_FACT.pack(
            -1 if f.posted_in_day is None else int(f.posted_in_day),
            _micros(f.day_end) if f.day_end is not None else -1,
            -1 if f.cents is None else f.cents,
        )
        + f.currency.encode()
    )


def hop_fact_digest(f: HopFact) -> int:
    """The same for one hop (its system and operation are the row's)."""
    return _hash(
        _HOP_FACT.pack(
            _micros(f.start), f.error, f.retry, f.replay, f.duplicates, _n(f.duration_ms)
        )
    )


OrderKey = tuple[str, datetime, str, str]  # resolution, bucket, channel, store
HopKey = tuple[str, datetime, str, str, str, str]  # + system, operation

#: Operations are stored up to this length (span names can be long).
OPERATION_MAX: Final = 200


def aggregate_orders(
    facts: Iterable[OrderFact], resolutions: Callable[[datetime], Sequence[str]]
) -> dict[OrderKey, OrderAgg]:
    """Facts counted into rollup aggregates: per resolution ``resolutions(anchor)``
    names, per (channel, store) grouping."""
    out: dict[OrderKey, OrderAgg] = {}
    for f in facts:
        digest = order_fact_digest(f)
        for res in resolutions(f.anchor):
            bucket = floor_to(f.anchor, res)
            for ch, st in groupings(f.channel, f.store):
                key = (res, bucket, ch, st)
                agg = out.get(key)
                if agg is None:
                    agg = out[key] = OrderAgg()
                agg.add(f)
                agg.digest = (agg.digest + digest) & DIGEST_MASK
    return out


def aggregate_hops(
    facts: Iterable[HopFact], resolutions: Callable[[datetime], Sequence[str]]
) -> dict[HopKey, HopAgg]:
    out: dict[HopKey, HopAgg] = {}
    for f in facts:
        op = f.operation[:OPERATION_MAX]
        digest = hop_fact_digest(f)
        for res in resolutions(f.start):
            bucket = floor_to(f.start, res)
            for ch, st in groupings(f.channel, f.store):
                key = (res, bucket, ch, st, f.system, op)
                agg = out.get(key)
                if agg is None:
                    agg = out[key] = HopAgg()
                agg.add(f)
                agg.digest = (agg.digest + digest) & DIGEST_MASK
    return out
