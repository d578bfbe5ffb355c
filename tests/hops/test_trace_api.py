"""GET /api/v1/traces/{trace_id}: a trace's spans, with keys, in time order."""

from __future__ import annotations

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.ingest.test_otlp_endpoint import TRACE, json_span, otlp_json


@pytest.mark.django_db
def test_trace_spans_with_keys(ingest_client: Client, api_client: Client) -> None:
    spans = [
        json_span(f"{i:016x}", f"#{3000 + i}", startTimeUnixNano=str(1718000000000000000 + i))
        for i in range(1, 6)
    ]
    spans[2]["status"] = {"code": 2, "message": "timeout"}
    body = orjson.dumps(otlp_json(spans))
    assert (
        ingest_client.post("/v1/traces", body, content_type="application/json").status_code == 200
    )

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(f"/api/v1/traces/{TRACE.upper()}")
    assert response.status_code == 200
    # token lookup, spans, keys: constant, never one query per span
    assert len(queries) <= 3
    trace = response.json()
    assert trace["trace_id"] == TRACE
    assert [s["span_id"] for s in trace["spans"]] == [f"{i:016x}" for i in range(1, 6)]
    third = trace["spans"][2]
    assert third["outcome"] == "error" and third["status_message"] == "timeout"
    assert third["system"] == "middleware"
    assert third["keys"] == [{"kind": "order_number", "value": "#3003", "fanout": False}]


@pytest.mark.django_db
def test_trace_not_found_and_bad_id(api_client: Client) -> None:
    assert api_client.get(f"/api/v1/traces/{TRACE}").status_code == 404
    bad = api_client.get("/api/v1/traces/not-a-trace")
    assert bad.status_code == 400
    assert "trace_id" in bad.json()["detail"]
