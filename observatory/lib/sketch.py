"""Mergeable quantile sketches over non-negative values, from plain values (no ORM).

A value ``v > 0`` falls in bin ``key = ceil(log_gamma(v))`` of DDSketch's logarithmic
mapping (``ddsketch``) with relative accuracy ``RELATIVE_ACCURACY``; every value of a bin
is answered by one representative within that relative error of it. Two sketches with the
same mapping merge by adding bin counts, exactly, so a quantile over many merged sketches
is as accurate as one over the raw values: within ``RELATIVE_ACCURACY`` (0.5 %) of the
exact value at the same rank.

The quantile rule (``ddsketch``'s own, and every brute-force twin's): over ``n`` values
sorted ascending, the q-quantile is the value at index ``floor(q * (n - 1))``.

Sketches are stored compactly (``encode``/``decode``): a small header and the bin counts
as a dense run of unsigned 32-bit integers from the lowest bin, zlib-compressed. Decoding
and merging stay in C loops (``array``, ``map``), which keeps a 90-day answer in
milliseconds without numpy. ``to_ddsketch`` gives the same sketch as a ``DDSketch``,
and ``to_proto_bytes`` its standard protobuf form, for other tools.

Used by the KPI rollups and by the hop store's arrival-lag figures.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from operator import add
from typing import Final

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

#: Relative accuracy of every sketch: merged quantiles stay within 0.5 % (docs/kpis.md promises 1 %).
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

    def count_at_most(self, limit: float) -> int:
        """How many values are at most ``limit`` (approximate within the bin of ``limit``)."""
        self.dense()
        if limit <= _MIN_POSITIVE:
            return self.zero
        top = MAPPING.key(limit) - self.offset
        return self.zero + sum(self.counts[: max(0, min(len(self.counts), top + 1))])

    def fraction_at_most(self, limit: float) -> float | None:
        """Share of values at most ``limit`` (approximate within the bin of ``limit``)."""
        n = self.count
        return None if n == 0 else self.count_at_most(limit) / n

    def total(self) -> float:
        """The sum of the values, each bin's counted at its representative value (within
        the relative accuracy)."""
        self.dense()
        return float(
            sum(MAPPING.value(self.offset + i) * n for i, n in enumerate(self.counts) if n)
        )

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

        proto = DDSketchProto.to_proto(self.to_ddsketch())  # type: ignore[no-untyped-call]
        return bytes(proto.SerializeToString())


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
