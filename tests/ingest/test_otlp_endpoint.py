"""POST /v1/traces through the real OpenTelemetry SDK exporter and hand-written OTLP JSON."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from observatory.access.actions import do_create_api_token, do_revoke_token
from observatory.access.models import IngestToken
from observatory.hops.models import DuplicateDelivery, Hop, HopKey, Receipt, Waiting

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def make_spans() -> list[ReadableSpan]:
    """Three real SDK spans: an ERP batch posting (array key), a failing call, a linked one."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "erp-connector"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "post batch",
        attributes={
            "retail.system": "erp",
            "retail.key.order_number": ["#1001", "#1002", "#1003"],
            "retail.key.batch_id": "B-7",
            "retail.platform_status": "Pending Fulfillment",
            "retail.retry.attempt": 1,
            "customer.email": "jane@example.com",
        },
    ) as parent:
        parent.add_event("posted", {"rows": 3})
        with tracer.start_as_current_span(
            "post order",
            attributes={"retail.system": "erp", "retail.key.order_number": "#1004"},
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "ERP answered 503"))
    with tracer.start_as_current_span(
        "consume order",
        links=[Link(parent.get_span_context(), {"link.reason": "queue"})],
        attributes={"retail.key.shopify_order_id": "820982911946154508"},
    ):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.fixture
def exporter(live_server: Any, ingest_token: str) -> Iterator[OTLPSpanExporter]:
    exp = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {ingest_token}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    yield exp
    exp.shutdown()


@pytest.mark.django_db(transaction=True)
def test_sdk_exporter_stores_every_span_with_keys(exporter: OTLPSpanExporter) -> None:
    spans = make_spans()
    assert exporter.export(spans) == SpanExportResult.SUCCESS

    assert Hop.objects.count() == 3
    batch = Hop.objects.get(operation="post batch")
    assert batch.system == "erp"
    assert batch.via == "otlp"
    assert batch.retry_attempt == 1
    assert batch.platform_status == "Pending Fulfillment"
    assert len(batch.trace_id) == 32 and len(batch.span_id) == 16
    keys = {(k.kind, k.value, k.fanout) for k in batch.keys.all()}
    assert keys == {
        ("order_number", "#1001", True),
        ("order_number", "#1002", True),
        ("order_number", "#1003", True),
        ("batch_id", "B-7", False),
    }
    # customer PII is masked before storage
    assert batch.attributes["customer.email"] == "[masked]"
    assert not HopKey.objects.filter(value__contains="jane@").exists()
    assert not Hop.objects.filter(attributes__icontains="jane@example.com").exists()

    failed = Hop.objects.get(operation="post order")
    assert failed.outcome == "error"
    assert failed.status_message == "ERP answered 503"
    assert failed.parent_span_id == batch.span_id

    linked = Hop.objects.get(operation="consume order")
    assert linked.system == "erp-connector"  # service.name when retail.system is absent
    assert linked.extra["links"][0]["span_id"] == batch.span_id
    assert batch.extra["events"][0]["name"] == "posted"


@pytest.mark.django_db(transaction=True)
def test_resending_the_same_spans_stores_nothing_new(exporter: OTLPSpanExporter) -> None:
    spans = make_spans()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    keys_before = HopKey.objects.count()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert Hop.objects.count() == 3
    assert HopKey.objects.count() == keys_before
    assert DuplicateDelivery.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_batch_partly_stored_before_stores_the_new_spans_once(
    exporter: OTLPSpanExporter,
) -> None:
    # New hops are tried first without ON CONFLICT on PostgreSQL: a batch with one span
    # stored already rolls that back and goes in again, the stored one skipped.
    spans = make_spans()
    assert exporter.export(spans[:1]) == SpanExportResult.SUCCESS
    first = Hop.objects.get()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    hops = dict(Hop.objects.values_list("span_id", "id"))
    assert len(hops) == 3 and hops[first.span_id] == first.id
    assert dict(Receipt.objects.values_list("uid", "hop_id")) == {
        f"otlp:{h.trace_id}:{h.span_id}": h.id for h in Hop.objects.all()
    }
    assert list(DuplicateDelivery.objects.values_list("hop_id", flat=True)) == [first.id]
    # each new hop is queued for the stitcher once, the rolled-back attempt left nothing
    assert sorted(Waiting.objects.values_list("hop_id", flat=True)) == sorted(hops.values())
    assert HopKey.objects.filter(hop_id=first.id).count() == first.keys.count() > 0
    assert HopKey.objects.values("hop_id").distinct().count() == 3


def otlp_json(spans: list[dict[str, Any]], service: str = "middleware") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "handwritten"}, "spans": spans}],
            }
        ]
    }


def json_span(span_id: str, order: str, **extra: Any) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "validate order",
        "kind": 5,
        "startTimeUnixNano": "1718000000000000000",
        "endTimeUnixNano": "1718000000250000000",
        "attributes": [
            {"key": "retail.key.order_number", "value": {"stringValue": order}},
            {"key": "retail.stage", "value": {"stringValue": "validated"}},
            {"key": "retail.retry.attempt", "value": {"intValue": "2"}},
        ],
        "status": {"code": 1},
    }
    span.update(extra)
    return span


@pytest.mark.django_db
def test_otlp_json_with_gzip(ingest_client: Client) -> None:
    body = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#2001")]))
    response = ingest_client.post(
        "/v1/traces",
        gzip.compress(body),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert orjson.loads(response.content) == {}
    hop = Hop.objects.get()
    assert (hop.trace_id, hop.span_id) == (TRACE, "00f067aa0ba902b7")
    assert hop.stage == "validated"
    assert hop.retry_attempt == 2
    assert hop.duration_ms == pytest.approx(250.0)
    assert hop.start_time.isoformat() == "2024-06-10T06:13:20+00:00"


@pytest.mark.django_db
def test_partial_success_names_the_rejected_span_and_keeps_the_good(
    ingest_client: Client,
) -> None:
    good = json_span("00f067aa0ba902b7", "#2001")
    bad = json_span("0000000000000000", "#2002")
    body = orjson.dumps(otlp_json([good, bad]))
    response = ingest_client.post("/v1/traces", body, content_type="application/json")
    assert response.status_code == 200
    partial = orjson.loads(response.content)["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "spanId" in partial["errorMessage"] or "span id" in partial["errorMessage"]
    assert Hop.objects.get().span_id == "00f067aa0ba902b7"


@pytest.mark.django_db
def test_partial_success_in_protobuf(ingest_client: Client) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = encode_spans(make_spans())
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    response = ingest_client.post(
        "/v1/traces", request.SerializeToString(), content_type="application/x-protobuf"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert Hop.objects.count() == 2


# --- bad input: precise status, nothing stored ------------------------------------------


def post_protobuf(client: Client, body: bytes, **headers: str) -> Any:
    return client.post("/v1/traces", body, content_type="application/x-protobuf", headers=headers)


@pytest.mark.django_db
def test_garbage_protobuf_is_400(ingest_client: Client) -> None:
    response = post_protobuf(ingest_client, b"\xff\xff\xff not protobuf")
    assert response.status_code == 400
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_garbage_json_is_400_with_a_json_status(ingest_client: Client) -> None:
    response = ingest_client.post("/v1/traces", b"{not json", content_type="application/json")
    assert response.status_code == 400
    status = orjson.loads(response.content)
    assert status["code"] == 3 and "OTLP" in status["message"]  # gRPC INVALID_ARGUMENT


@pytest.mark.django_db
def test_wrong_content_type_is_415(ingest_client: Client) -> None:
    response = ingest_client.post("/v1/traces", b"hello", content_type="text/plain")
    assert response.status_code == 415
    assert "text/plain" in orjson.loads(response.content)["message"]


@pytest.mark.django_db
def test_missing_and_unknown_tokens_are_401() -> None:
    body = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")]))
    anonymous = Client().post("/v1/traces", body, content_type="application/json")
    assert anonymous.status_code == 401
    forged = Client(HTTP_AUTHORIZATION="Bearer obs_in_forged").post(
        "/v1/traces", body, content_type="application/json"
    )
    assert forged.status_code == 401
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_revoked_token_and_api_token_are_403(ingest_token: str) -> None:
    body = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")]))
    do_revoke_token(IngestToken.objects.get())
    revoked = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}").post(
        "/v1/traces", body, content_type="application/json"
    )
    assert revoked.status_code == 403
    assert "revoked" in orjson.loads(revoked.content)["message"]
    _, reader = do_create_api_token("reader", "read")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {reader}").post(
        "/v1/traces", body, content_type="application/json"
    )
    assert api.status_code == 403
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_token_limited_to_a_system_rejects_other_systems(db: None) -> None:
    from observatory.access.actions import do_create_ingest_token

    _, plain = do_create_ingest_token("wms-only", system="wms")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    body = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")], service="middleware"))
    response = client.post("/v1/traces", body, content_type="application/json")
    assert response.status_code == 403
    assert "scope" in orjson.loads(response.content)["message"]
    wms = orjson.dumps(otlp_json([json_span("00f067aa0ba902b8", "#1")], service="wms"))
    assert client.post("/v1/traces", wms, content_type="application/json").status_code == 200
    assert Hop.objects.get().system == "wms"


@pytest.mark.django_db
def test_oversized_body_is_413(ingest_client: Client, settings: Any) -> None:
    settings.INGEST_MAX_BODY_BYTES = 1024
    body = orjson.dumps(otlp_json([json_span(f"{i:016x}", "#1") for i in range(1, 40)]))
    response = ingest_client.post("/v1/traces", body, content_type="application/json")
    assert response.status_code == 413
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_gzip_bomb_is_refused_without_inflating_it(ingest_client: Client) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros
    assert len(bomb) < 200_000
    response = ingest_client.post(
        "/v1/traces",
        bomb,
        content_type="application/x-protobuf",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_truncated_gzip_is_400(ingest_client: Client) -> None:
    body = gzip.compress(orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")])))
    response = ingest_client.post(
        "/v1/traces",
        body[:-12],
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_database_down_is_503_with_retry_after(ingest_token: str) -> None:
    body = orjson.dumps(otlp_json([json_span("00f067aa0ba902b7", "#1")]))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    saved = dict(connection.settings_dict)

    def reset() -> None:
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()  # the next connection comes from a pool built anew

    reset()
    if connection.vendor == "postgresql":
        connection.settings_dict["PORT"] = "1"  # nothing listens there
    else:
        connection.settings_dict["NAME"] = "/nonexistent/dir/observatory.sqlite3"
    try:
        response = client.post("/v1/traces", body, content_type="application/json")
    finally:
        reset()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert Hop.objects.count() == 0
