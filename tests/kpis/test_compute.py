"""The pure KPI arithmetic: sketches against exact quantiles and ddsketch itself, merging,
encoding, and cutting windows into rollup buckets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from observatory.kpis import compute
from observatory.kpis.compute import DAY, HOUR, MINUTE, Sketch

values = st.lists(
    st.one_of(
        st.just(0.0),
        st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=400,
)
REL = compute.RELATIVE_ACCURACY * (1 + 1e-9)


def close(a: float | None, b: float | None, rel: float = REL) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * abs(b) + 1e-12


@given(values, st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.99, 1.0]))
def test_sketch_quantile_is_within_its_relative_accuracy_of_the_exact_one(
    vs: list[float], q: float
) -> None:
    sk = Sketch.from_values(vs)
    assert sk.count == len(vs)
    assert close(sk.quantile(q), compute.exact_quantile(vs, q))


@given(values, st.sampled_from([0.5, 0.95, 0.99]))
def test_same_answer_as_ddsketch_itself(vs: list[float], q: float) -> None:
    from ddsketch import DDSketch

    theirs = DDSketch(compute.RELATIVE_ACCURACY)
    for v in vs:
        theirs.add(v)
    mine = Sketch.from_values(vs)
    assert mine.quantile(q) == theirs.get_quantile_value(q)
    assert mine.to_ddsketch().get_quantile_value(q) == theirs.get_quantile_value(q)


@given(st.lists(values, min_size=1, max_size=8))
def test_merging_is_exact_whatever_the_grouping(parts: list[list[float]]) -> None:
    everything = [v for p in parts for v in p]
    whole = Sketch.from_values(everything)
    merged = compute.merge(Sketch.from_values(p) for p in parts)
    assert merged.count == whole.count
    assert merged.quantiles((0.5, 0.95, 0.99)) == whole.quantiles((0.5, 0.95, 0.99))
    # merging is associative: pairs first, then the pairs
    pairs = [
        compute.merge(Sketch.from_values(p) for p in parts[i : i + 2])
        for i in range(0, len(parts), 2)
    ]
    assert compute.merge(pairs).quantiles((0.5, 0.95)) == whole.quantiles((0.5, 0.95))
    for q in (0.5, 0.95, 0.99):
        assert close(merged.quantile(q), compute.exact_quantile(everything, q))


@given(values)
def test_encoding_round_trips(vs: list[float]) -> None:
    sk = Sketch.from_values(vs)
    back = Sketch.decode(sk.encode())
    assert back.count == sk.count
    assert back.quantiles() == sk.quantiles()


@given(st.lists(values, min_size=1, max_size=6))
def test_sparse_and_dense_forms_merge_alike(parts: list[list[float]]) -> None:
    stored = [Sketch.decode(Sketch.from_values(p).encode()) for p in parts]
    built = [Sketch.from_values(p) for p in parts]
    assert compute.merge(stored).quantiles() == compute.merge(built).quantiles()
    assert compute.merge(stored).count == sum(len(p) for p in parts)


def test_a_few_values_over_a_wide_span_are_stored_sparse() -> None:
    sk = Sketch.from_values([0.01, 3.0, 900.0, 40_000.0])
    blob = sk.encode()
    back = Sketch.decode(blob)
    assert back.sparse is not None and len(blob) < 60
    assert back.quantiles((0.0, 0.5, 1.0)) == sk.quantiles((0.0, 0.5, 1.0))
    assert back.sparse is None  # made dense when read


def test_encoding_is_compact_and_speaks_protobuf() -> None:
    rng = random.Random(7)
    sk = Sketch.from_values(rng.lognormvariate(3, 1.2) for _ in range(10_000))
    blob = sk.encode()
    assert len(blob) < 2_000  # a day of one lag KPI, ~700 bins spanning 5 decades
    assert len(sk.to_proto_bytes()) > 0


def test_empty_sketches() -> None:
    assert Sketch().quantile(0.5) is None
    assert compute.merge([]).count == 0
    assert Sketch.decode(None).count == 0
    assert Sketch.decode(Sketch().encode()).count == 0
    assert compute.exact_quantile([], 0.5) is None


def test_fraction_at_most() -> None:
    sk = Sketch.from_values([1, 2, 3, 100, 0])
    assert sk.fraction_at_most(5) == 0.8
    assert sk.fraction_at_most(0) == 0.2


T0 = datetime(2025, 3, 1, tzinfo=UTC)
times = st.integers(min_value=0, max_value=10 * 86400 * 1000).map(
    lambda ms: T0 + timedelta(milliseconds=ms)
)


@given(times, times, st.one_of(st.none(), times.map(lambda t: compute.floor_to(t, HOUR))))
@settings(max_examples=300)
def test_a_window_is_cut_into_disjoint_aligned_pieces_covering_it(
    a: datetime, b: datetime, minutes_from: datetime | None
) -> None:
    since, until = min(a, b), max(a, b)
    plan = compute.plan_window(since, until, minutes_from)
    pieces = [(x, y, r) for r, rs in plan.rollups.items() for x, y in rs]
    pieces += [(x, y, "raw") for x, y in plan.raw]
    pieces.sort()
    covered = since
    for x, y, res in pieces:
        assert x == covered, (x, covered)
        assert x < y
        if res != "raw":
            assert compute.floor_to(x, res) == x and compute.floor_to(y, res) == y
        if res == MINUTE:
            assert minutes_from is not None and compute.floor_to(x, HOUR) >= minutes_from
        covered = y
    assert covered == until or since == until
    # raw edges are shorter than a minute, or lie in hours without minute rollups
    for x, y in plan.raw:
        assert (
            y - x < timedelta(minutes=1)
            or minutes_from is None
            or x < minutes_from + timedelta(hours=1)
        )


@given(times, times, times.map(lambda t: compute.floor_to(t, HOUR)))
@settings(max_examples=300)
def test_raw_pieces_are_cut_at_the_hours_and_told_old_from_recent(
    a: datetime, b: datetime, minutes_from: datetime
) -> None:
    from observatory.kpis.queries.totals import split_raw

    since, until = min(a, b), max(a, b)
    plan = compute.plan_window(since, until, minutes_from)
    recent, old = split_raw(plan.raw, minutes_from)
    pieces = sorted([*recent, *(p for ps in old.values() for p in ps)])
    # the same instants as the raw ranges, each piece inside one hour
    assert sum((y - x for x, y in pieces), timedelta()) == sum(
        (y - x for x, y in plan.raw), timedelta()
    )
    for x, y in pieces:
        assert x < y and compute.floor_to(x, HOUR) == compute.floor_to(
            y - timedelta.resolution, HOUR
        )
    for hour, ps in old.items():
        assert hour < minutes_from and all(compute.floor_to(x, HOUR) == hour for x, _ in ps)
    # what is read from the source in hours with minute rollups is two partial minutes at
    # most
    for x, y in recent:
        assert compute.floor_to(x, HOUR) >= minutes_from and y - x < timedelta(minutes=2)


def test_ninety_days_take_few_rollup_rows() -> None:
    since = datetime(2025, 1, 1, 7, 42, 13, tzinfo=UTC)
    until = since + timedelta(days=90)
    plan = compute.plan_window(since, until, compute.floor_to(until, DAY) - timedelta(days=3))
    n = {r: len(compute.buckets_in(rs, r)) for r, rs in plan.rollups.items()}
    assert n[DAY] == 89
    assert n[HOUR] == 16 + 7
    # the first partial hour is older than the minute rollups: read raw, like the seconds
    assert n[MINUTE] == 42
    assert sum((y - x for x, y in plan.raw), timedelta()) == timedelta(minutes=17, seconds=47 + 13)


def test_groupings() -> None:
    assert compute.groupings("web", "") == (("web", ""), ("web", "*"), ("*", ""), ("*", "*"))
