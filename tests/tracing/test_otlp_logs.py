"""tracing.otlp_logs: what a log record becomes, in both encodings (no server, no database)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from tracing import otlp, otlp_logs
from tracing.keys import KeyRules
from tracing.records import DecodeError

T = 1718000000_000000000  # 2024-06-10T06:13:20Z


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def body(
    records: list[dict[str, Any]],
    resource: list[dict[str, Any]] | None = None,
    scope: dict[str, Any] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": resource or [attr("service.name", "Order Svc")]},
                    "scopeLogs": [{"scope": scope or {}, "logRecords": records}],
                }
            ]
        }
    )


KEY = attr("retail.key.order_number", "#1001")


def test_severity_number_and_text_decide_the_outcome() -> None:
    records = [
        {"severityNumber": 17, "attributes": [KEY]},  # ERROR
        {"severityNumber": 16, "severityText": "ERROR", "attributes": [KEY]},  # WARN4 wins
        {"severityText": "fatal", "attributes": [KEY]},  # unspecified number: the text
        {"severityNumber": "SEVERITY_NUMBER_FATAL2", "attributes": [KEY]},  # an enum name
        {"severityText": "notice", "attributes": [KEY]},
    ]
    decoded = otlp_logs.decode_json(body(records))
    assert [r.outcome for r in decoded.records] == ["error", "ok", "error", "error", "ok"]
    assert decoded.records[3].extra["severity_number"] == 22


def test_times_body_and_operation() -> None:
    records = [
        {  # no time: the observed time is the business time
            "observedTimeUnixNano": str(T),
            "body": {"kvlistValue": {"values": [attr("step", "post"), attr("rows", 3)]}},
            "attributes": [KEY, attr("event.name", "erp.batch.posted")],
        },
        {"timeUnixNano": str(T + 10**9), "body": {"intValue": "42"}, "attributes": [KEY]},
        {"eventName": "named", "body": {"stringValue": "  padded  "}, "attributes": [KEY]},
    ]
    first, second, third = otlp_logs.decode_json(
        body(records, scope={"name": "erp.connector"})
    ).records
    assert first.start_time.isoformat() == first.end_time.isoformat() == "2024-06-10T06:13:20+00:00"
    assert orjson.loads(first.status_message) == {"step": "post", "rows": 3}
    assert first.operation == "erp.batch.posted"  # the event.name attribute
    assert second.start_time.isoformat() == "2024-06-10T06:13:21+00:00"
    assert (second.status_message, second.operation) == ("42", "erp.connector")  # scope name
    assert (third.status_message, third.operation) == ("padded", "named")
    assert first.system == "order-svc"  # from service.name, as for spans
    assert first.via == "log"
    # no trace id: led by its time, then 128 bits of digest (two digests, not one twice)
    assert re.fullmatch(rf"log:{T:x}:[0-9a-f]{{32}}", first.uid)
    assert first.uid[-32:-16] != first.uid[-16:]


def test_severity_names() -> None:
    names = [otlp_logs.severity_name(n) for n in (0, 1, 4, 5, 9, 10, 13, 17, 20, 21, 24, 25)]
    assert names == [
        "", "TRACE", "TRACE4", "DEBUG", "INFO", "INFO2", "WARN", "ERROR", "ERROR4", "FATAL",
        "FATAL4", "",
    ]  # fmt: skip


@pytest.mark.parametrize("trace", ["", "0af7651916cd43dd8448eb211c80319c"])
def test_the_identity_is_all_the_record_says(trace: str) -> None:
    """The same record gives the same identity, in a request of its own; a record that
    differs in anything it says (time, body, severity, an attribute, its resource) is
    another delivery, with a trace id or without."""
    log = {"traceId": trace, "timeUnixNano": str(T), "body": {"stringValue": "posted"},
           "severityNumber": 9, "attributes": [KEY, attr("rows", 3)]}  # fmt: skip

    def uid(record: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> str:
        (decoded,) = otlp_logs.decode_json(body([record], resource)).records
        return decoded.uid

    first = uid(log)
    assert uid(dict(log)) == first
    others = [
        uid({**log, "timeUnixNano": str(T + 1)}),
        uid({**log, "body": {"stringValue": "posted again"}}),
        uid({**log, "severityNumber": 13}),
        uid({**log, "attributes": [KEY, attr("rows", 4)]}),
        uid(log, [attr("service.name", "Another Svc")]),
    ]
    assert len({first, *others}) == 1 + len(others)


def test_keys_from_scope_and_resource_and_rules() -> None:
    records = [{"body": {"stringValue": "a"}}, {"body": {"stringValue": "b"}, "attributes": [KEY]}]
    scoped = otlp_logs.decode_json(
        body(records, scope={"name": "s", "attributes": [attr("retail.key.batch_id", "B-7")]})
    )
    assert [[tuple(k)[:2] for k in r.keys] for r in scoped.records] == [
        [("batch_id", "B-7")],
        [("order_number", "#1001"), ("batch_id", "B-7")],
    ]
    assert scoped.dropped == {}
    resource = [attr("service.name", "wms"), attr("retail.key.file", "f.csv")]
    assert len(otlp_logs.decode_json(body(records, resource=resource)).records) == 2

    ruled = [{"body": {"stringValue": "c"}, "attributes": [attr("order_id", "1002")]}]
    rules = KeyRules(attribute_kinds={"order_id": "order_number"})
    assert [r.keys[0].value for r in otlp_logs.decode_json(body(ruled), rules).records] == ["1002"]
    empty = [{"body": {"stringValue": "d"}, "attributes": [attr("order_id", "  ")]}]
    assert otlp_logs.decode_json(body(empty), rules).dropped == {"order-svc": 1}


def test_records_without_keys_are_counted_by_system_and_positions_kept() -> None:
    records = [
        {"body": {"stringValue": "no key"}},
        {"body": {"stringValue": "keyed"}, "attributes": [KEY]},
        {"body": {"stringValue": "erp, no key"}, "attributes": [attr("retail.system", "erp")]},
        {"body": {"stringValue": "bad"}, "attributes": [KEY], "spanId": "xyz"},
        {"body": {"stringValue": "Bad System"}, "attributes": [attr("retail.system", "Not One")]},
        {"body": {"stringValue": "keyed too"}, "attributes": [KEY]},
    ]
    decoded = otlp_logs.decode_json(body(records))
    assert decoded.dropped == {"order-svc": 1, "erp": 1, "unknown": 1}
    assert [r.status_message for r in decoded.records] == ["keyed", "keyed too"]
    assert decoded.positions == [1, 5]
    assert [r.index for r in decoded.rejected] == [3]
    assert decoded.rejected[0].reason.startswith("log record 3: spanId must be 16 hex")


def test_protobuf_twin_gives_the_same_records() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def kv(k: str, v: str) -> KeyValue:
        return KeyValue(key=k, value=AnyValue(string_value=v))

    trace, span = bytes(range(1, 17)), bytes(range(1, 9))
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv("service.name", "Order Svc")]),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=T,
                                severity_number=17,
                                severity_text="ERROR",
                                body=AnyValue(string_value="failed"),
                                trace_id=trace,
                                span_id=span,
                                attributes=[kv("retail.key.order_number", "#1001")],
                            ),
                            LogRecord(trace_id=b"\x01\x02"),
                            # no body (an event), and a body of 0 (set, but all zeros)
                            LogRecord(
                                time_unix_nano=T,
                                attributes=[kv("retail.key.order_number", "#1002")],
                            ),
                            LogRecord(
                                time_unix_nano=T,
                                body=AnyValue(int_value=0),
                                attributes=[kv("retail.key.order_number", "#1003")],
                            ),
                        ]
                    )
                ],
            )
        ]
    )
    pb = otlp_logs.decode_protobuf(request.SerializeToString())
    js = otlp_logs.decode_json(
        body(
            [
                {
                    "timeUnixNano": str(T),
                    "severityNumber": 17,
                    "severityText": "ERROR",
                    "body": {"stringValue": "failed"},
                    "traceId": trace.hex(),
                    "spanId": span.hex(),
                    "attributes": [KEY],
                },
                {"traceId": "0102"},
                {"timeUnixNano": str(T), "attributes": [attr("retail.key.order_number", "#1002")]},
                {
                    "timeUnixNano": str(T),
                    "body": {"intValue": "0"},
                    "attributes": [attr("retail.key.order_number", "#1003")],
                },
            ]
        )
    )
    assert pb.records == js.records
    assert [r.status_message for r in pb.records] == ["failed", "", "0"]
    # led by the trace id, then 64 bits of digest (the time is in the digest)
    assert re.fullmatch(rf"log:{trace.hex()}:[0-9a-f]{{16}}", pb.records[0].uid)
    assert [r.reason for r in pb.rejected] == [
        "log record 1: traceId must be 16 bytes or empty, got 2"
    ]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"[]", "body must be a JSON object (ExportLogsServiceRequest)"),
        (b'{"resourceLogs": [{"scopeLogs": {}}]}', "resourceLogs[0].scopeLogs must be a list"),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": 3}]}]}',
            "resourceLogs[0].scopeLogs[0].logRecords must be a list",
        ),
    ],
)
def test_structure_errors_name_the_place(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        otlp_logs.decode_json(raw)


def test_answers_in_both_encodings() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    assert otlp_logs.encode_response(0, "", json=True) == b"{}"
    assert orjson.loads(otlp_logs.encode_response(2, "why", json=True)) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "why"}
    }
    answer = ExportLogsServiceResponse.FromString(otlp_logs.encode_response(1, "w", json=False))
    assert (answer.partial_success.rejected_log_records, answer.partial_success.error_message) == (
        1,
        "w",
    )
    assert otlp_logs.encode_response(0, "", json=False) == b""
    # error bodies are the traces' own
    assert otlp.encode_status(3, "x", json=True) == b'{"code":3,"message":"x"}'
