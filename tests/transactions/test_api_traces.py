"""GET /api/v1/traces/{trace_id}: a trace's spans with keys, and their transactions."""

from __future__ import annotations

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.transactions.models import TransactionKey
from tests.ingest.test_otlp_endpoint import TRACE, json_span, otlp_json
from tests.triage.helpers import stitch

pytestmark = pytest.mark.django_db


def post_trace(client: Client, orders: list[str]) -> None:
    spans = [
        json_span(f"{i:016x}", order, startTimeUnixNano=str(1718000000000000000 + i))
        for i, order in enumerate(orders, start=1)
    ]
    spans[2]["status"] = {"code": 2, "message": "timeout"}
    body = orjson.dumps(otlp_json(spans))
    assert client.post("/v1/traces", body, content_type="application/json").status_code == 200


def test_trace_spans_with_keys_and_transactions(ingest_client: Client, api_client: Client) -> None:
    post_trace(ingest_client, ["#3001", "#3002", "#3003", "#3001", "#3002"])
    stitch()

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(f"/api/v1/traces/{TRACE.upper()}")
    assert response.status_code == 200
    # token, spans, keys, memberships, transactions, their keys: never one per span
    assert len(queries) == 6
    trace = response.json()
    assert trace["trace_id"] == TRACE
    assert [s["span_id"] for s in trace["spans"]] == [f"{i:016x}" for i in range(1, 6)]
    third = trace["spans"][2]
    assert third["outcome"] == "error" and third["status_message"] == "timeout"
    assert third["system"] == "middleware"
    assert third["keys"] == [{"kind": "order_number", "value": "#3003", "fanout": False}]

    txs = {t["keys"][0]["value"]: t for t in trace["transactions"]}
    assert set(txs) == {"#3001", "#3002", "#3003"}
    assert txs["#3001"]["span_ids"] == [f"{1:016x}", f"{4:016x}"]
    assert txs["#3001"]["id"] == TransactionKey.objects.get(value="#3001").transaction_id


def test_a_trace_not_stitched_yet_has_spans_and_no_transactions(
    ingest_client: Client, api_client: Client
) -> None:
    post_trace(ingest_client, ["#1", "#2", "#3"])
    trace = api_client.get(f"/api/v1/traces/{TRACE}").json()
    assert len(trace["spans"]) == 3 and trace["transactions"] == []


def test_trace_not_found_and_bad_id(api_client: Client) -> None:
    assert api_client.get(f"/api/v1/traces/{TRACE}").status_code == 404
    bad = api_client.get("/api/v1/traces/not-a-trace")
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["path", "trace_id"]
