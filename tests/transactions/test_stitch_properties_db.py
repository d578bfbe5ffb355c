"""Arrival order and chunking do not matter, through the database; two stitchers at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from observatory.hops.models import Waiting
from observatory.hops.store import store_records
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import TransactionKey
from observatory.transactions.stitch import resolve
from tracing.records import HopRecord, Key

from .stitching import assert_consistent, hop_inputs, partition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ["order_number", "shopify_order_id", "erp_sales_order", "tracking_number", "sku"]

key_st = s.builds(Key, s.sampled_from(KINDS), s.sampled_from(["1", "2", "3", "4"]), s.booleans())
record_st = s.tuples(
    s.lists(key_st, max_size=4, unique_by=lambda k: (k.kind, k.value)), s.integers(0, 4)
)
records_st = s.lists(record_st, min_size=1, max_size=12).map(
    lambda specs: [
        HopRecord(
            uid=f"event:prop:{i}",
            via="event",
            system="erp",
            operation="op",
            start_time=T0 + timedelta(seconds=t),
            end_time=T0 + timedelta(seconds=t),
            stage="posted" if i % 3 == 0 else "",
            keys=keys,
        )
        for i, (keys, t) in enumerate(specs)
    ]
)


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records_st, s.data())
def test_any_arrival_and_chunking_through_the_database(
    records: list[HopRecord], data: s.DataObject
) -> None:
    order = data.draw(s.permutations(records))
    cuts = sorted(data.draw(s.sets(s.integers(1, max(1, len(order) - 1)), max_size=4)))
    chunk_size = data.draw(s.integers(1, 6))
    with transaction.atomic():
        start = 0
        for cut in [*cuts, len(order)]:
            if cut > start:
                store_records(order[start:cut], T0)
                do_stitch(limit_chunk=chunk_size)
                start = cut
        assert partition() == resolve(hop_inputs()).partition()
        assert_consistent()
        transaction.set_rollback(True)


def orders(n: int) -> list[HopRecord]:
    out = []
    for i in range(n):
        for j, keys in enumerate(
            [
                [Key("order_number", f"#{i}"), Key("shopify_order_id", f"S{i}")],
                [Key("erp_sales_order", f"SO-{i}")],
                [Key("order_number", f"#{i}"), Key("erp_sales_order", f"SO-{i}")],
                [Key("erp_sales_order", f"SO-{i}"), Key("tracking_number", f"1Z{i}")],
                [Key("tracking_number", f"1Z{i}"), Key("tracking_number", f"1Y{i}")],
            ]
        ):
            t = T0 + timedelta(seconds=i + 60 * j)
            out.append(
                HopRecord(
                    uid=f"event:two:{i}:{j}", via="event", system="erp", operation="op",
                    start_time=t, end_time=t, keys=keys,
                )
            )  # fmt: skip
    batch = [Key("order_number", f"#{i}", fanout=True) for i in range(0, n, 3)]
    out.append(
        HopRecord(
            uid="event:two:batch", via="event", system="erp", operation="batch",
            start_time=T0, end_time=T0, keys=batch,
        )
    )  # fmt: skip
    # interleave so that every chunk holds pieces of many orders
    return sorted(out, key=lambda r: hash(r.uid) % 97)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a second real connection")
@pytest.mark.django_db(transaction=True)
def test_two_stitchers_side_by_side() -> None:
    records = orders(120)
    store_records(records, T0)
    errors: list[BaseException] = []
    done: list[int] = []

    def worker() -> None:
        try:
            for _ in range(50):
                done.append(do_stitch(limit_chunk=37).hops)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(done) == len(records), "every hop stitched exactly once"
    assert not Waiting.objects.exists()
    assert partition() == resolve(hop_inputs()).partition()
    assert TransactionKey.objects.filter(kind="order_number").count() == 120
    assert_consistent()
