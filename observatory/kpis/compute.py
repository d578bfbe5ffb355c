"""KPI arithmetic from plain values: sketches, quantiles, rates, time buckets (no ORM).

Quantiles come from DDSketch (``ddsketch``): a value ``v > 0`` falls in bin
``key = ceil(log_gamma(v))`` of a logarithmic mapping with relative accuracy
``RELATIVE_ACCURACY``; every value of a bin is answered by one representative within
that relative error of it. Two sketches with the same mapping merge by adding bin counts,
exactly, so a quantile over 90 days of merged day rollups is as accurate as one over the
raw values: within ``RELATIVE_ACCURACY`` (0.5 %) of the exact value at the same rank,
which keeps the contract's 1 % with room to spare.

The quantile rule (``ddsketch``'s own, and the brute-force twin's): over ``n`` values
sorted ascending, the q-quantile is the value at index ``floor(q * (n - 1))``.

Sketches are stored compactly (``encode``/``decode``): a small header and the bin counts
as a dense run of unsigned 32-bit integers from the lowest bin, zlib-compressed. Decoding
and merging stay in C loops (``array``, ``map``), which keeps a 90-day answer in
milliseconds without numpy. ``to_ddsketch`` gives the same sketch as a ``DDSketch``,
and ``to_proto_bytes`` its standard protobuf form, for other tools.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise
from operator import add
from typing import Final

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

#: Relative accuracy of every sketch: merged quantiles stay within 0.5 % (contract: 1 %).
RELATIVE_ACCURACY: Final = 0.005
MAPPING: Final = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE: Final = MAPPING.min_possible
_HEADER: Final = struct.Struct("<BiIQ")  # version, lowest key, bins, zero count
_VERSION: Final = 1
_SPARSE: Final = 2
_COUNTS: Final = "I" if array("I").itemsize == 4 else "L"
if array(_COUNTS).itemsize != 4:  # pragma: no cover - every platform we run on has one
    raise ImportError("no 32-bit unsigned array type")

QUANTILES: Final = (0.5, 0.95, 0.99)


def rank_index(q: float, n: int) -> int:
    """The index, in ``n`` sorted values, of the ``q``-quantile (ddsketch's rule)."""
    return math.floor(q * (n - 1))


def exact_quantile(values: Sequence[float], q: float) -> float | None:
    """The exact ``q``-quantile of ``values`` by the same rule the sketches follow."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[rank_index(q, len(ordered))])


def clamp(value: float) -> float:
    """Durations and lags are never negative: a negative one is clock skew, counted 0."""
    return value if value > 0.0 else 0.0


@dataclass
class Sketch:
    """A DDSketch over non-negative values: dense bin counts from ``offset``, plus zeros.

    A sketch read from storage in its sparse form (few values spread over many bins: a
    minute of one operation) keeps ``sparse`` = (keys, counts) until something needs the
    dense bins; ``merge`` adds sparse ones without ever making them dense.
    """

    offset: int = 0
    counts: list[int] = field(default_factory=list)
    zero: int = 0
    sparse: tuple[list[int], list[int]] | None = None

    def dense(self) -> Sketch:
        """Make the bins dense (in place) and return self."""
        if self.sparse is not None:
            keys, counts = self.sparse
            self.sparse = None
            if keys:
                lo = keys[0]
                dense = [0] * (keys[-1] - lo + 1)
                for k, c in zip(keys, counts, strict=True):
                    dense[k - lo] += c
                self.offset, self.counts = lo, dense
        return self

    # --- building ---------------------------------------------------------------------
    @classmethod
    def from_keys(cls, keys: Iterable[int], zero: int = 0) -> Sketch:
        """A sketch from bin keys (``key_of``) already computed, and a count of zeros."""
        tally = Counter(keys)
        if not tally:
            return cls(zero=zero)
        lo, hi = min(tally), max(tally)
        counts = [0] * (hi - lo + 1)
        for k, n in tally.items():
            counts[k - lo] = n
        return cls(lo, counts, zero)

    @classmethod
    def from_values(cls, values: Iterable[float]) -> Sketch:
        keys: list[int] = []
        zero = 0
        for v in values:
            if v > _MIN_POSITIVE:
                keys.append(MAPPING.key(v))
            else:
                zero += 1
        return cls.from_keys(keys, zero)

    # --- reading ----------------------------------------------------------------------
    @property
    def count(self) -> int:
        if self.sparse is not None:
            return self.zero + sum(self.sparse[1])
        return self.zero + sum(self.counts)

    def __bool__(self) -> bool:
        return self.count > 0

    def quantiles(self, qs: Sequence[float] = QUANTILES) -> list[float | None]:
        """Each ``q`` of ``qs`` (ascending or not) in one pass over the bins."""
        self.dense()
        n = self.count
        if n == 0:
            return [None] * len(qs)
        ranks = sorted((q * (n - 1), i) for i, q in enumerate(qs))
        out: list[float | None] = [None] * len(qs)
        j = 0
        while j < len(ranks) and ranks[j][0] < self.zero:
            out[ranks[j][1]] = 0.0
            j += 1
        running = self.zero
        for i, c in enumerate(self.counts):
            if j >= len(ranks):
                break
            running += c
            while j < len(ranks) and running > ranks[j][0]:
                out[ranks[j][1]] = MAPPING.value(self.offset + i)
                j += 1
        return out

    def quantile(self, q: float) -> float | None:
        return self.quantiles((q,))[0]

    def fraction_at_most(self, limit: float) -> float | None:
        """Share of values at most ``limit`` (approximate within the bin of ``limit``)."""
        n = self.dense().count
        if n == 0:
            return None
        if limit <= _MIN_POSITIVE:
            return self.zero / n
        top = MAPPING.key(limit) - self.offset
        inside = sum(self.counts[: max(0, min(len(self.counts), top + 1))])
        return (self.zero + inside) / n

    def histogram(self) -> list[tuple[float, float, int]]:
        """Non-empty bins as (lower bound, upper bound, count), ascending."""
        self.dense()
        out = []
        if self.zero:
            out.append((0.0, 0.0, self.zero))
        for i, c in enumerate(self.counts):
            if c:
                k = self.offset + i
                out.append((MAPPING._pow_gamma(k - 1), MAPPING._pow_gamma(k), c))
        return out

    # --- storage ----------------------------------------------------------------------
    def encode(self) -> bytes:
        """Dense (version 1: the counts from the lowest to the highest non-empty bin) or,
        when few bins of a wide span are used, sparse (version 2: key steps and counts)."""
        counts = self.dense().counts
        lo, hi = 0, len(counts)
        while lo < hi and counts[lo] == 0:
            lo += 1
        while hi > lo and counts[hi - 1] == 0:
            hi -= 1
        used = [(self.offset + i, c) for i in range(lo, hi) if (c := counts[i])]
        if len(used) * 4 < hi - lo:
            keys = [k for k, _ in used]
            steps = array("i", [keys[0]] + [b - a for a, b in pairwise(keys)])
            body = steps.tobytes() + array(_COUNTS, [c for _, c in used]).tobytes()
            head = _HEADER.pack(_SPARSE, keys[0], len(used), self.zero)
            return head + zlib.compress(body, 1)
        body = array(_COUNTS, counts[lo:hi]).tobytes()
        head = _HEADER.pack(_VERSION, self.offset + lo, hi - lo, self.zero)
        return head + zlib.compress(body, 1)

    @classmethod
    def decode(cls, blob: bytes | memoryview | None) -> Sketch:
        if not blob:
            return cls()
        raw = bytes(blob)
        version, offset, n, zero = _HEADER.unpack_from(raw)
        if version not in (_VERSION, _SPARSE):
            raise ValueError(f"unknown sketch encoding version {version}")
        data = zlib.decompress(raw[_HEADER.size :]) if n else b""
        if version == _SPARSE:
            steps, counts = array("i"), array(_COUNTS)
            steps.frombytes(data[: 4 * n])
            counts.frombytes(data[4 * n :])
            if len(steps) != n or len(counts) != n:
                raise ValueError("corrupt sketch: bin count mismatch")
            keys = list(accumulate(steps))
            return cls(zero=zero, sparse=(keys, counts.tolist()))
        dense = array(_COUNTS)
        dense.frombytes(data)
        if len(dense) != n:
            raise ValueError("corrupt sketch: bin count mismatch")
        return cls(offset, dense.tolist(), zero)

    def to_ddsketch(self) -> DDSketch:
        """The same bins as a ``ddsketch.DDSketch`` (for its own API, or its protobuf)."""
        self.dense()
        sk = DDSketch(RELATIVE_ACCURACY)
        for i, c in enumerate(self.counts):
            if c:
                k = self.offset + i
                sk._store.add(k, c)
                sk._count += c
        sk._zero_count = self.zero
        sk._count += self.zero
        return sk

    def to_proto_bytes(self) -> bytes:
        """The standard DDSketch protobuf (``ddsketch.pb``), for tools that speak it."""
        from ddsketch.pb.proto import DDSketchProto

        return bytes(DDSketchProto.to_proto(self.to_ddsketch()).SerializeToString())


def key_of(value: float) -> int | None:
    """The bin of ``value``, or None for a zero."""
    return MAPPING.key(value) if value > _MIN_POSITIVE else None


def _span(s: Sketch) -> tuple[int, int] | None:
    if s.sparse is not None:
        keys = s.sparse[0]
        return (keys[0], keys[-1] + 1) if keys else None
    return (s.offset, s.offset + len(s.counts)) if s.counts else None


def merge(sketches: Iterable[Sketch]) -> Sketch:
    """One sketch holding every value of ``sketches`` (bin counts added, exact). Dense
    bins are added a slice at a time (a C loop); sparse ones bin by bin."""
    parts = [(s, _span(s)) for s in sketches]
    zero = sum(s.zero for s, _ in parts)
    spans = [sp for _, sp in parts if sp is not None]
    if not spans:
        return Sketch(zero=zero)
    lo = min(a for a, _ in spans)
    hi = max(b for _, b in spans)
    acc = [0] * (hi - lo)
    for s, sp in parts:
        if sp is None:
            continue
        if s.sparse is not None:
            for k, c in zip(*s.sparse, strict=True):
                acc[k - lo] += c
        else:
            a = s.offset - lo
            b = a + len(s.counts)
            acc[a:b] = map(add, acc[a:b], s.counts)
    return Sketch(lo, acc, zero)


def merge_encoded(blobs: Iterable[bytes | memoryview | None]) -> Sketch:
    return merge(Sketch.decode(b) for b in blobs if b)


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

    def add(self, f: OrderFact) -> None:
        if f.kind == ORDER_KIND:
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
