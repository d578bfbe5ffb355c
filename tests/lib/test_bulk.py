"""The dialect layer: tables read off their models, idempotent inserts on both databases,
and every statement (COPY included) seen by Django's query log."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from observatory.hops.models import Hop, Receipt
from observatory.hops.store import HOPS, RECEIPTS, _hop_row
from observatory.lib import bulk
from observatory.transactions.models import Transaction
from tracing.records import HopRecord

pytestmark = pytest.mark.django_db
T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def row(i: int, uid: str) -> tuple:
    record = HopRecord(
        uid=uid, via="event", system="erp", operation="post", start_time=T, end_time=T,
        amount=Decimal("12.50"), attributes={"a": 1},
    )  # fmt: skip
    return _hop_row(i, record, T)


def test_columns_and_types_come_from_the_model() -> None:
    types = dict(zip(HOPS.names, (c.pg_type for c in HOPS.columns), strict=True))
    assert types["id"] == "int8" and types["start_time"] == "timestamptz"
    assert types["amount"] == "numeric" and types["attributes"] == "jsonb"


def test_insert_then_insert_new_keeps_what_is_new() -> None:
    ids = bulk.take_ids(HOPS.name, 3)
    assert len(set(ids)) == 3
    with CaptureQueriesContext(connection) as seen:
        bulk.insert(HOPS, [row(ids[0], "u1"), row(ids[1], "u2")])
    assert len(seen) == 1  # one COPY, or one executemany
    bulk.insert(RECEIPTS, [(ids[0], "u1"), (ids[1], "u2")])
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert(RECEIPTS, [(ids[2], "u2")])
    assert bulk.insert_new(RECEIPTS, [(ids[2], "u2"), (ids[2], "u3")], "uid") == {"u3"}
    assert dict(Receipt.objects.values_list("uid", "hop_id")) == {
        "u1": ids[0],
        "u2": ids[1],
        "u3": ids[2],
    }
    stored = {h.uid: (h.amount, h.attributes, h.start_time) for h in Hop.objects.all()}
    assert stored == {u: (Decimal("12.50"), {"a": 1}, T) for u in ("u1", "u2")}


def test_reads_bound_on_the_server_are_logged() -> None:
    ids = bulk.take_ids(HOPS.name, 1)
    bulk.insert(HOPS, [row(ids[0], "r1")])
    with CaptureQueriesContext(connection) as seen:
        rows = bulk.select_in(HOPS.name, "uid, amount", "id", ids)
    assert rows == [("r1", Decimal("12.50"))] or rows == [("r1", 12.5)]
    assert len(seen) == 1 and "hops_hop" in seen[0]["sql"]


def test_bound_times_compare_as_stored() -> None:
    table = Transaction._meta.db_table
    late = datetime(2026, 11, 1, 23, 59, 59, 500000, tzinfo=UTC)
    tx = Transaction.objects.create(captured_at=late)
    rows = bulk.run(
        f"SELECT id FROM {table} WHERE captured_at >= %s AND captured_at < %s",
        [
            bulk.bind(datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)),
            bulk.bind(datetime(2026, 11, 2, tzinfo=UTC)),
        ],
    )
    assert rows == [(tx.id,)]
    assert not bulk.run(
        f"SELECT id FROM {table} WHERE captured_at >= %s",
        [bulk.bind(datetime(2026, 11, 2, tzinfo=UTC))],
    )
