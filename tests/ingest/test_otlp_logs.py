"""POST /v1/logs through the OpenTelemetry Python SDK's log exporter on a loopback server,
and hand-written OTLP JSON and protobuf through the same view (docs/ingest.md)."""

from __future__ import annotations

import gzip
import http.client
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from django.test import Client
from google.rpc import status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from observatory.access.actions import do_create_ingest_token
from observatory.hops.models import DroppedLogRecords, DuplicateDelivery, Hop
from observatory.transactions.models import TransactionKey
from tests.dashboards.conftest import make_user
from tests.pipeline import tick
from tests.serving import serve_in_thread

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
T = 1718000000_000000000  # 2024-06-10T06:13:20Z


@pytest.fixture
def server(transactional_db: None) -> Iterator[str]:
    """The ASGI application (the ingest gate in front) on loopback, in this process."""
    from observatory.asgi import application

    with serve_in_thread(application) as url:
        yield url


def sdk_logger(url: str, token: str, name: str) -> tuple[logging.Logger, LoggerProvider]:
    """A Python logger whose records go out through the SDK's OTLP/HTTP log exporter."""
    provider = LoggerProvider(
        resource=Resource.create({"service.name": "erp-connector", "retail.system": "erp"})
    )
    exporter = OTLPLogExporter(
        endpoint=f"{url}/v1/logs",
        headers={"Authorization": f"Bearer {token}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(LoggingHandler(logger_provider=provider))
    return logger, provider


# LoggingHandler moves to opentelemetry-instrumentation-logging; the SDK's is the same code
@pytest.mark.filterwarnings("ignore:`LoggingHandler`:DeprecationWarning")
@pytest.mark.django_db(transaction=True)
def test_sdk_log_exporter_keyed_records_join_the_order_of_the_spans(server: str) -> None:
    """The SDK's exporter (protobuf, gzip) through the ASGI gate: keyed records become hops
    in the order the spans made, unkeyed ones are counted and not stored."""
    _, token = do_create_ingest_token("erp-connector")
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "middleware"}))
    span_exporter = OTLPSpanExporter(
        endpoint=f"{server}/v1/traces",
        headers={"Authorization": f"Bearer {token}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("test")
    logger, log_provider = sdk_logger(server, token, "erp.posting")

    with tracer.start_as_current_span(
        "post order", attributes={"retail.key.order_number": "#5001", "retail.stage": "captured"}
    ) as span:
        context = span.get_span_context()
        logger.info("polling the ERP queue")  # no key: counted, not stored
        logger.error(
            "posting failed for jane@example.com: ERP answered 503",
            extra={
                "retail.key.order_number": "#5001",
                "retail.key.erp_sales_order": "SO-5001",
                "customer.email": "jane@example.com",
            },
        )
        logger.info("heartbeat")  # no key
        # the Logs API itself, with an event name: the hop's operation
        log_provider.get_logger("erp.api").emit(
            body="posted",
            severity_number=SeverityNumber.INFO,
            attributes={"retail.key.erp_sales_order": "SO-5001"},
            event_name="erp.order.posted",
        )
    assert log_provider.force_flush(10_000)
    log_provider.shutdown()
    tracer_provider.shutdown()

    logs = Hop.objects.filter(via="log").order_by("start_time", "id")
    assert [h.outcome for h in logs] == ["error", "ok"]
    failed, posted = logs
    assert failed.system == "erp"  # the resource's retail.system, as for spans
    assert failed.operation == "erp.posting"  # the logger's name: the scope
    assert failed.status_message == "posting failed for [masked]: ERP answered 503"
    assert failed.attributes["customer.email"] == "[masked]"
    assert (failed.trace_id, failed.span_id) == (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    assert (failed.extra["severity_number"], failed.extra["severity_text"]) == (17, "ERROR")
    assert (posted.status_message, posted.operation) == ("posted", "erp.order.posted")
    assert (posted.trace_id, posted.span_id) == (failed.trace_id, failed.span_id)
    assert DroppedLogRecords.objects.get(system="erp").count == 2

    tick()
    api = Client()
    from observatory.access.actions import do_create_api_token

    _, reader = do_create_api_token("reader", "read")
    answer = api.get(
        f"/api/v1/orders/{quote('#5001', safe='')}", headers={"Authorization": f"Bearer {reader}"}
    )
    assert answer.status_code == 200, answer.content
    order = answer.json()
    hops = {(h["system"], h["operation"], h["outcome"]) for h in order["hops"]}
    assert hops == {
        ("middleware", "post order", "ok"),
        ("erp", "erp.posting", "error"),
        ("erp", "erp.order.posted", "ok"),
    }
    keys = {(k["kind"], k["value"]) for k in order["keys"]}
    assert ("erp_sales_order", "SO-5001") in keys

    # the order page: the severity beside each body, red only for the failed record (the
    # API record emitted with a number and no text is named by its number)
    page = Client()
    page.force_login(make_user("olivia", "ops"))
    tx = TransactionKey.objects.get(kind="order_number", value="#5001").transaction_id
    html = page.get(f"/orders/{tx}/").content.decode()
    assert re.search(
        r'<p class="error-text" data-testid="hop-status"><span class="badge red"[^>]*>ERROR</span> '
        r"posting failed for \[masked\]: ERP answered 503</p>",
        html,
    ), html
    assert re.search(
        r'<p class="status-text" data-testid="hop-status"><span class="badge outline"[^>]*>INFO'
        r"</span> posted</p>",
        html,
    ), html


@pytest.mark.django_db(transaction=True)
def test_the_gate_refuses_before_the_body(server: str) -> None:
    """Under ASGI: no token is a 401 and a declared size over the limit a 413, each a
    google.rpc.Status with its gRPC code, in the request's encoding."""
    _, token = do_create_ingest_token("gate")
    address = urlsplit(server)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    conn.request("POST", "/v1/logs", b"{}", {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 401
    assert orjson.loads(answer.read())["code"] == 16  # UNAUTHENTICATED
    conn.request(
        "POST",
        "/v1/logs",
        b"",
        {
            "Content-Type": "application/x-protobuf",
            "Authorization": f"Bearer {token}",
            "Content-Length": str(64 * 1024 * 1024),
        },
    )
    answer = conn.getresponse()
    assert answer.status == 413
    status = status_pb2.Status.FromString(answer.read())
    assert status.code == 8 and "over the limit" in status.message
    conn.close()


# --- the same records in both encodings ----------------------------------------------------


def attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def json_body(records: list[dict[str, Any]], service: str = "wms-bridge") -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [attr("service.name", service)]},
                    "scopeLogs": [{"scope": {"name": "wms.events"}, "logRecords": records}],
                }
            ]
        }
    )


def json_record(body: str, *attrs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "timeUnixNano": str(T),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": body},
        "attributes": list(attrs),
        **fields,
    }


def pb_body(records: list[LogRecord], service: str = "wms-bridge") -> bytes:
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=PbResource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )
    request.resource_logs[0].scope_logs[0].scope.name = "wms.events"
    return request.SerializeToString()


MIXED = [
    json_record("picked", attr("retail.key.order_number", "#7001"), attr("retail.stage", "picked")),
    json_record("disk 81% full"),
    json_record(
        "pick failed: bin empty",
        attr("retail.key.order_number", "#7002"),
        attr("retail.retry.attempt", 2),
        severityNumber=17,
        severityText="ERROR",
        traceId=TRACE,
        spanId=SPAN,
    ),
    json_record("GET /healthz 200", attr("http.response.status_code", 200)),
]


@pytest.mark.django_db
def test_json_keyed_records_stored_unkeyed_counted(ingest_client: Client) -> None:
    response = ingest_client.post("/v1/logs", json_body(MIXED), content_type="application/json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    partial = orjson.loads(response.content)["partialSuccess"]
    assert "rejectedLogRecords" not in partial  # dropped records are no rejection
    assert partial["errorMessage"] == (
        "2 log record(s) without business keys (retail.key.*) were not stored"
    )
    picked, failed = Hop.objects.order_by("id")
    assert (picked.system, picked.stage, picked.outcome) == ("wms-bridge", "picked", "ok")
    assert picked.operation == "wms.events"
    assert picked.start_time == datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)
    assert (picked.trace_id, picked.span_id) == ("", "")
    assert (failed.outcome, failed.status_message) == ("error", "pick failed: bin empty")
    assert (failed.trace_id, failed.span_id, failed.retry_attempt) == (TRACE, SPAN, 2)
    assert DroppedLogRecords.objects.get().count == 2

    again = ingest_client.post("/v1/logs", json_body(MIXED), content_type="application/json")
    assert again.status_code == 200
    assert Hop.objects.count() == 2  # the same records again: duplicates
    assert DuplicateDelivery.objects.count() == 2
    assert DroppedLogRecords.objects.get().count == 4  # deliveries of unkeyed records


@pytest.mark.django_db
def test_protobuf_gzip_and_the_same_record_in_json_is_a_duplicate(ingest_client: Client) -> None:
    record = LogRecord(
        time_unix_nano=T,
        severity_number=9,
        severity_text="INFO",
        body=AnyValue(string_value="picked"),
        attributes=[
            KeyValue(key="retail.key.order_number", value=AnyValue(string_value="#7001")),
            KeyValue(key="retail.stage", value=AnyValue(string_value="picked")),
        ],
    )
    response = ingest_client.post(
        "/v1/logs",
        gzip.compress(pb_body([record, LogRecord(body=AnyValue(string_value="no key"))])),
        content_type="application/x-protobuf",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 0
    assert "1 log record(s) without business keys" in answer.partial_success.error_message
    hop = Hop.objects.get()
    assert (hop.via, hop.stage, hop.status_message) == ("log", "picked", "picked")
    # the first record of MIXED is this record in JSON: the same delivery identity
    json_again = ingest_client.post(
        "/v1/logs", json_body(MIXED[:1]), content_type="application/json"
    )
    assert json_again.status_code == 200
    assert Hop.objects.count() == 1
    assert DuplicateDelivery.objects.get().hop_id == hop.id


@pytest.mark.django_db
def test_a_bad_record_is_refused_alone_naming_the_field(ingest_client: Client) -> None:
    records = [
        MIXED[0],
        json_record("x", attr("retail.key.order_number", "#1"), traceId="abc"),
        json_record("y", attr("retail.key.order_number", "#" + "9" * 300)),
        json_record("z", attr("retail.key.order_number", "#2"), timeUnixNano="soon"),
    ]
    response = ingest_client.post("/v1/logs", json_body(records), content_type="application/json")
    assert response.status_code == 200
    partial = orjson.loads(response.content)["partialSuccess"]
    assert partial["rejectedLogRecords"] == "3"
    message = partial["errorMessage"]
    assert "log record 1: traceId must be 32 hex characters" in message
    assert "log record 2: attribute 'retail.key.order_number': key value longer than" in message
    assert "log record 3: timeUnixNano must be an integer" in message
    assert Hop.objects.get().status_message == "picked"


# --- bad input: precise status, nothing stored ------------------------------------------


@pytest.mark.django_db
def test_malformed_bodies_are_400(ingest_client: Client) -> None:
    garbage = ingest_client.post(
        "/v1/logs", b"\xff\xff\xff not protobuf", content_type="application/x-protobuf"
    )
    assert garbage.status_code == 400
    status = status_pb2.Status.FromString(garbage.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "ExportLogsServiceRequest" in status.message
    not_json = ingest_client.post("/v1/logs", b"{nope", content_type="application/json")
    assert not_json.status_code == 400
    assert orjson.loads(not_json.content)["message"].startswith(
        "body does not parse as OTLP application/json: body is not JSON"
    )
    shape = ingest_client.post(
        "/v1/logs", b'{"resourceLogs": {"x": 1}}', content_type="application/json"
    )
    assert shape.status_code == 400
    assert "resourceLogs must be a list" in orjson.loads(shape.content)["message"]
    assert Hop.objects.count() == 0
    assert not DroppedLogRecords.objects.exists()


@pytest.mark.django_db
def test_wrong_content_type_missing_token_and_oversize(
    ingest_client: Client, settings: Any
) -> None:
    wrong = ingest_client.post("/v1/logs", b"hello", content_type="text/plain")
    assert wrong.status_code == 415
    assert "text/plain" in orjson.loads(wrong.content)["message"]
    anonymous = Client().post("/v1/logs", json_body(MIXED), content_type="application/json")
    assert anonymous.status_code == 401
    assert orjson.loads(anonymous.content)["code"] == 16
    settings.INGEST_MAX_BODY_BYTES = 512
    big = ingest_client.post("/v1/logs", json_body(MIXED), content_type="application/json")
    assert big.status_code == 413
    assert orjson.loads(big.content) == {
        "code": 8,
        "message": f"body of {len(json_body(MIXED))} bytes is over the limit of 512 bytes",
    }
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    inflated = ingest_client.post(
        "/v1/logs",
        bomb,
        content_type="application/x-protobuf",
        headers={"Content-Encoding": "gzip"},
    )
    assert inflated.status_code == 413
    assert Hop.objects.count() == 0


@pytest.mark.django_db
def test_a_token_limited_to_a_system(db: None) -> None:
    _, plain = do_create_ingest_token("wms-only", system="wms")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    other = client.post("/v1/logs", json_body(MIXED), content_type="application/json")
    assert other.status_code == 403
    assert "outside the scope" in orjson.loads(other.content)["message"]
    wms = client.post("/v1/logs", json_body(MIXED, service="wms"), content_type="application/json")
    assert wms.status_code == 200
    assert set(Hop.objects.values_list("system", flat=True)) == {"wms"}
    # the records without keys of both requests, counted for the token's system
    assert DroppedLogRecords.objects.get().system == "wms"
    assert DroppedLogRecords.objects.get().count == 2
