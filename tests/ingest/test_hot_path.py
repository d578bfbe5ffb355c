"""The ingest hot path's shortcuts keep what they replace: the garbage collector is back on
after every ingest request, and PostgreSQL's one-statement receipts give ids in order,
skip stored uids and queue only the hops that went in."""

from __future__ import annotations

import gc
import threading

import pytest
from django.db import connection
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from observatory.hops.models import Receipt, Waiting
from observatory.hops.store import HOP_TABLE, RECEIPTS, WAITING
from observatory.ingest.views import collector_paused
from observatory.lib import bulk

pytestmark = pytest.mark.django_db


def test_the_collector_is_on_again_after_ingest_requests(ingest_client: Client) -> None:
    assert gc.isenabled()
    empty = ExportTraceServiceRequest(resource_spans=[ResourceSpans()]).SerializeToString()
    good = ingest_client.post("/v1/traces", empty, content_type="application/x-protobuf")
    bad = ingest_client.post("/v1/traces", b"\xff\xff", content_type="application/x-protobuf")
    assert (good.status_code, bad.status_code) == (200, 400)
    assert gc.isenabled()


def test_the_collector_stays_off_when_it_was_off(ingest_client: Client) -> None:
    gc.disable()
    try:
        ingest_client.post("/v1/traces", b"\n\x00", content_type="application/x-protobuf")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_turn_it_on_with_the_last_one_out() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other request is still running
    leave.set()
    thread.join(5)
    assert gc.isenabled()


def test_receipts_in_one_statement_keep_the_order_and_skip_stored_uids() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statement; SQLite keeps the savepoint")
    ids, stored = bulk.insert_new_taking_ids(HOP_TABLE, RECEIPTS, ["a", "b"], queue=WAITING)
    assert stored == 2 and ids == sorted(ids) and len(set(ids)) == 2
    again, stored = bulk.insert_new_taking_ids(HOP_TABLE, RECEIPTS, ["b", "c", "a"], queue=WAITING)
    assert stored == 1 and again == sorted(again) and not set(again) & set(ids)
    assert dict(Receipt.objects.values_list("uid", "hop_id")) == {
        "a": ids[0],
        "b": ids[1],
        "c": again[1],
    }
    assert set(Waiting.objects.values_list("hop_id", flat=True)) == {ids[0], ids[1], again[1]}
