"""The pure resolver: rules, and independence from arrival order and chunking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as s

from observatory.transactions.stitch import (
    Conflict,
    HopIn,
    KeyPair,
    Resolution,
    raw_components,
    resolve,
    restrict,
)
from tracing.conventions import ONE_PER_TRANSACTION_KINDS, SHARED_KINDS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hop(i: int, *keys: tuple[str, str] | tuple[str, str, bool], t: int | None = None) -> HopIn:
    full = tuple((k[0], k[1], k[2] if len(k) == 3 else False) for k in keys)
    when = T0 + timedelta(seconds=i if t is None else t)
    return HopIn(i, f"u{i:04d}", when, "erp", full)


def groups(r: Resolution) -> set[frozenset[KeyPair]]:
    return {g.keys for g in r.groups}


def test_keys_on_one_hop_link_and_late_links_merge() -> None:
    r = resolve(
        [
            hop(1, ("shopify_order_id", "X")),
            hop(2, ("order_number", "#1001")),
            hop(3, ("shopify_order_id", "X"), ("order_number", "#1001")),
        ]
    )
    assert groups(r) == {frozenset({("shopify_order_id", "X"), ("order_number", "#1001")})}
    assert r.groups[0].hops == {1, 2, 3}
    assert r.conflicts == []


def test_split_shipments_join_the_order() -> None:
    r = resolve(
        [
            hop(1, ("order_number", "#1"), ("shipment_id", "S1"), ("tracking_number", "T1")),
            hop(2, ("order_number", "#1"), ("shipment_id", "S2"), ("tracking_number", "T2")),
            hop(3, ("tracking_number", "T1")),
            hop(4, ("tracking_number", "T2")),
        ]
    )
    assert len(r.groups) == 1
    assert r.groups[0].hops == {1, 2, 3, 4}


def test_fanout_joins_each_value_without_linking_them() -> None:
    batch = hop(9, *[("order_number", f"#{n}", True) for n in range(5)], ("batch_id", "B1"))
    r = resolve([hop(1, ("order_number", "#0"), ("erp_sales_order", "SO-0")), batch])
    assert len(r.groups) == 5
    assert all(9 in g.hops for g in r.groups)
    first = r.groups[r.group_of(("order_number", "#0")) or 0]
    assert first.keys == {("order_number", "#0"), ("erp_sales_order", "SO-0")}
    assert first.fanout_hops == {9}
    assert r.group_of(("batch_id", "B1")) is None


def test_shared_kinds_never_link() -> None:
    r = resolve(
        [
            hop(1, ("order_number", "#1"), *[(k, "same") for k in SHARED_KINDS]),
            hop(2, ("order_number", "#2"), *[(k, "same") for k in SHARED_KINDS]),
        ]
    )
    assert groups(r) == {frozenset({("order_number", "#1")}), frozenset({("order_number", "#2")})}


def test_conflicting_link_is_refused_and_names_both_sides() -> None:
    r = resolve(
        [
            hop(1, ("order_number", "#1"), ("erp_sales_order", "SO-1")),
            hop(2, ("order_number", "#2"), ("erp_sales_order", "SO-1")),
        ]
    )
    assert groups(r) == {
        frozenset({("order_number", "#1"), ("erp_sales_order", "SO-1")}),
        frozenset({("order_number", "#2")}),
    }
    assert r.conflicts == [Conflict(2, "order_number", "#2", "#1")]
    # the refused hop is in both transactions: it is evidence for each
    assert all(2 in g.hops for g in r.groups)


def test_conflict_through_two_existing_groups() -> None:
    r = resolve(
        [
            hop(1, ("order_number", "#1"), ("shopify_order_id", "A")),
            hop(2, ("order_number", "#2"), ("erp_sales_order", "SO-2")),
            hop(3, ("shopify_order_id", "A"), ("erp_sales_order", "SO-2")),
        ]
    )
    assert len(r.groups) == 2
    assert [(c.hop, c.kind) for c in r.conflicts] == [(3, "order_number")]
    assert {r.conflicts[0].value, r.conflicts[0].existing_value} == {"#1", "#2"}


# --- properties ---------------------------------------------------------------------------

KINDS = ["order_number", "shopify_order_id", "erp_sales_order", "shipment_id", "batch_id"]
key_st = s.tuples(s.sampled_from(KINDS), s.sampled_from(["1", "2", "3"]), s.booleans())
hops_st = s.lists(
    s.tuples(s.lists(key_st, max_size=4), s.integers(0, 5)), min_size=1, max_size=14
).map(lambda specs: [hop(i, *keys, t=t) for i, (keys, t) in enumerate(specs, start=1)])


def invariants(r: Resolution, hops: list[HopIn]) -> None:
    seen: set[KeyPair] = set()
    for g in r.groups:
        assert not (g.keys & seen), "a key in two transactions"
        seen |= g.keys
        kinds = [k for k, _ in g.keys if k in ONE_PER_TRANSACTION_KINDS]
        assert len(kinds) == len(set(kinds)), "two values of a one-per-transaction kind"
        assert not any(k in SHARED_KINDS for k, _ in g.keys)
    wanted = {(k, v) for h in hops for k, v, _ in h.keys if k not in SHARED_KINDS}
    assert seen == wanted


@settings(max_examples=300, deadline=None)
@given(hops_st, s.randoms(use_true_random=False))
def test_any_permutation_gives_the_same_transactions(hops: list[HopIn], rnd: object) -> None:
    expected = resolve(hops)
    invariants(expected, hops)
    shuffled = list(hops)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = resolve(shuffled)
    assert again.partition() == expected.partition()
    assert again.conflicts == expected.conflicts


def stitch_incrementally(chunks: list[list[HopIn]]) -> tuple[set, set[Conflict]]:
    """A model of the database layer: each chunk re-resolves the whole raw components its
    hops touch, with every hop stored so far, and replaces those transactions."""
    stored: list[HopIn] = []
    state: dict[frozenset[KeyPair], frozenset[int]] = {}
    conflicts: set[Conflict] = set()
    for chunk in chunks:
        stored.extend(chunk)
        seeds = {(k, v) for h in chunk for k, v, _ in h.keys if k not in SHARED_KINDS}
        comps = [c for c in raw_components(stored) if c & seeds]
        touched: set[KeyPair] = set().union(*comps) if comps else set()
        members = [
            restrict(h, touched) for h in stored if any((k, v) in touched for k, v, _ in h.keys)
        ]
        r = resolve(members)
        state = {keys: hops for keys, hops in state.items() if not keys & touched}
        state.update({g.keys: g.hops for g in r.groups})
        conflicts |= set(r.conflicts)
    return {(k, h) for k, h in state.items()}, conflicts


@settings(max_examples=300, deadline=None)
@given(hops_st, s.data())
def test_any_chunking_of_the_arrival_gives_resolve_of_all(
    hops: list[HopIn], data: s.DataObject
) -> None:
    order = data.draw(s.permutations(hops))
    cuts = sorted(data.draw(s.sets(s.integers(1, max(1, len(order) - 1)), max_size=len(order))))
    chunks, start = [], 0
    for cut in [*cuts, len(order)]:
        if cut > start:
            chunks.append(order[start:cut])
            start = cut
    partition, conflicts = stitch_incrementally(chunks)
    expected = resolve(hops)
    assert partition == expected.partition()
    assert set(expected.conflicts) <= conflicts


def test_restricting_to_components_is_resolving_everything() -> None:
    hops = [
        hop(1, ("order_number", "1"), ("erp_sales_order", "1")),
        hop(2, ("order_number", "2"), ("erp_sales_order", "1")),
        hop(3, ("order_number", "1", True), ("order_number", "3", True)),
        hop(4, ("order_number", "3"), ("shipment_id", "9")),
    ]
    whole = resolve(hops).partition()
    parts: set = set()
    for comp in raw_components(hops):
        inside = [restrict(h, comp) for h in hops if any((k, v) in comp for k, v, _ in h.keys)]
        parts |= resolve(inside).partition()
    assert parts == whole
