"""The OpenTelemetry JavaScript exporters' own request bodies, captured (tests/data/otlp-js/
README.md), posted to /v1/traces and /v1/logs as they came over the wire."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from django.test import Client

from observatory.hops.models import DroppedLogRecords, DuplicateDelivery, Hop
from tests.pipeline import tick

DATA = Path(__file__).resolve().parents[1] / "data" / "otlp-js"
MANIFEST: list[dict[str, Any]] = json.loads((DATA / "manifest.json").read_text())
CAPTURES = {c["label"]: c for c in MANIFEST}
TRACES = [c["label"] for c in MANIFEST if c["path"] == "/v1/traces"]
LOGS = [c["label"] for c in MANIFEST if c["path"] == "/v1/logs"]
LOG_TRACE = "5b8efff798038103d269b633813fc60c"
LOG_SPAN = "eee19b7ec3c1b174"


def post(client: Client, label: str) -> Any:
    capture = CAPTURES[label]
    headers = {"User-Agent": capture["user_agent"]}
    if capture["content_encoding"]:
        headers["Content-Encoding"] = capture["content_encoding"]
    return client.post(
        capture["path"],
        (DATA / capture["file"]).read_bytes(),
        content_type=capture["content_type"],
        headers=headers,
    )


def test_every_encoding_was_captured() -> None:
    seen = {(c["path"], c["content_type"], c["content_encoding"]) for c in MANIFEST}
    for path in ("/v1/traces", "/v1/logs"):
        for ctype in ("application/x-protobuf", "application/json"):
            assert {(path, ctype, ""), (path, ctype, "gzip")} <= seen
    assert all(c["user_agent"].startswith("OTel-OTLP-Exporter-JavaScript/") for c in MANIFEST)


@pytest.mark.django_db
@pytest.mark.parametrize("label", TRACES)
def test_js_trace_exporter_bodies(ingest_client: Client, label: str) -> None:
    response = post(ingest_client, label)
    assert response.status_code == 200, response.content
    if CAPTURES[label]["content_type"] == "application/json":
        assert orjson.loads(response.content) == {}
    else:
        assert response.content == b""  # an empty ExportTraceServiceResponse: all accepted
    accepted = Hop.objects.get(operation="orders/create")
    assert (accepted.system, accepted.stage, accepted.channel) == ("shopify", "captured", "web")
    assert (accepted.amount, accepted.currency) == (Decimal("129.50"), "USD")
    assert accepted.source == "shopify-bridge"
    post_order = Hop.objects.get(operation="post sales order")
    assert (post_order.system, post_order.outcome) == ("middleware", "error")
    assert post_order.status_message == "ERP answered 503"
    assert post_order.retry_attempt == 1
    assert post_order.trace_id == accepted.trace_id
    assert post_order.parent_span_id == accepted.span_id
    assert post_order.attributes["customer.email"] == "[masked]"
    assert [e["name"] for e in post_order.extra["events"]] == ["exception"]
    keys = set(post_order.keys.values_list("kind", "value"))
    assert keys == {("order_number", "#9001")}


@pytest.mark.django_db
@pytest.mark.parametrize("label", LOGS)
def test_js_log_exporter_bodies(ingest_client: Client, label: str) -> None:
    response = post(ingest_client, label)
    assert response.status_code == 200, response.content
    message = "1 log record(s) without business keys (retail.key.*) were not stored"
    if CAPTURES[label]["content_type"] == "application/json":
        assert orjson.loads(response.content) == {"partialSuccess": {"errorMessage": message}}
    else:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceResponse,
        )

        partial = ExportLogsServiceResponse.FromString(response.content).partial_success
        assert (partial.rejected_log_records, partial.error_message) == (0, message)
    failed, posted = Hop.objects.order_by("start_time")
    assert (failed.via, failed.system, failed.outcome) == ("log", "erp", "error")
    assert failed.operation == "erp.posting"
    assert failed.status_message == "posting #9001 failed: ERP answered 503 (customer [masked])"
    assert (failed.trace_id, failed.span_id, failed.retry_attempt) == (LOG_TRACE, LOG_SPAN, 1)
    assert failed.start_time.isoformat() == "2024-06-10T12:00:04+00:00"
    assert (posted.outcome, posted.stage, posted.operation) == ("ok", "posted", "erp.order.posted")
    assert json.loads(posted.status_message) == {"message": "posted", "sales_order": "SO-9001"}
    keys = set(posted.keys.values_list("kind", "value"))
    assert keys == {("order_number", "#9001"), ("erp_sales_order", "SO-9001")}
    assert DroppedLogRecords.objects.get(system="erp").count == 1


@pytest.mark.django_db
def test_the_four_log_captures_are_one_delivery_and_duplicates(ingest_client: Client) -> None:
    """The same records in protobuf and JSON, plain and gzip: one identity whatever the
    encoding, so three of the four requests are all duplicates."""
    for label in LOGS:
        assert post(ingest_client, label).status_code == 200
    assert Hop.objects.count() == 2
    assert DuplicateDelivery.objects.count() == 2 * (len(LOGS) - 1)


@pytest.mark.django_db(transaction=True)
def test_spans_and_log_records_stitch_into_one_order(
    ingest_client: Client, api_client: Client
) -> None:
    assert post(ingest_client, "traces-proto-gzip").status_code == 200
    assert post(ingest_client, "logs-json-gzip").status_code == 200
    tick()
    answer = api_client.get(f"/api/v1/orders/{quote('#9001', safe='')}")
    assert answer.status_code == 200, answer.content
    order = answer.json()
    assert [(h["system"], h["operation"], h["outcome"]) for h in order["hops"]] == [
        ("shopify", "orders/create", "ok"),
        ("middleware", "post sales order", "error"),
        ("erp", "erp.posting", "error"),
        ("erp", "erp.order.posted", "ok"),
    ]
    keys = {(k["kind"], k["value"]) for k in order["keys"]}
    assert {("order_number", "#9001"), ("erp_sales_order", "SO-9001")} <= keys
    assert {("shopify_order_id", "820982911949001")} <= keys
