"""tracing.instrument: hop spans, baggage, queue hand-offs, and the CloudEvents emitter.

Spans go to an SDK TracerProvider passed through ``tracer=`` (never the global one) with an
in-memory exporter; the emitter talks to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tracing import conventions as conv
from tracing.instrument import (
    EmitError,
    EventEmitter,
    consume,
    extract,
    hop,
    inject,
    producer_link,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def key_baggage() -> dict[str, object]:
    return {k: v for k, v in baggage.get_all().items() if k.startswith(conv.KEY_PREFIX)}


# --- hop -------------------------------------------------------------------------------------


def test_hop_sets_exactly_the_contract_attributes(provider, exporter):
    with hop(
        "shopify",
        "webhook orders/create",
        {"order_number": "#1001", "shopify_order_id": 820982911946154508},
        stage="captured",
        platform_status="paid",
        channel="web",
        store_id="online-eu",
        amount=Decimal("129.90"),
        currency="EUR",
        retry_attempt=2,
        replay=True,
        kind=SpanKind.SERVER,
        tracer=provider,
    ) as h:
        assert h.trace_id == trace.format_trace_id(h.span.get_span_context().trace_id)

    (span,) = exporter.get_finished_spans()
    assert span.name == "webhook orders/create"
    assert span.kind is SpanKind.SERVER
    assert span.instrumentation_scope.name == "observatory.tracing"
    assert dict(span.attributes) == {
        "retail.system": "shopify",
        "retail.key.order_number": "#1001",
        "retail.key.shopify_order_id": "820982911946154508",
        "retail.stage": "captured",
        "retail.platform_status": "paid",
        "retail.channel": "web",
        "retail.store_id": "online-eu",
        "retail.order.amount": "129.90",
        "retail.order.currency": "EUR",
        "retail.retry.attempt": 2,
        "retail.replay": True,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_hop_minimal_attributes_and_extra_attributes(provider, exporter):
    with hop(
        "erp",
        "post",
        # stripped like the server does; blank, None and over-long values are no key
        {
            "order_number": " #1 ",
            "tracking_number": None,
            "shipment_id": "",
            "correlation_id": "x" * 257,
        },
        attributes={"retail.location_id": "DC1", "retail.system": "ignored"},
        amount=12.5,
        tracer=provider.get_tracer("mine"),
    ):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.instrumentation_scope.name == "mine"
    assert dict(span.attributes) == {
        "retail.location_id": "DC1",
        "retail.system": "erp",
        "retail.key.order_number": "#1",
        "retail.order.amount": 12.5,
        "retail.retry.attempt": 0,
        "retail.replay": False,
    }


def test_sequence_key_is_an_array_attribute_and_stays_out_of_baggage(provider, exporter):
    with (
        hop("erp", "order", {"order_number": "#9"}, tracer=provider),
        hop(
            "erp",
            "post batch",
            {"order_number": ["#1001", "#1002", "#1001"], "batch_id": "B-7"},
            tracer=provider,
        ),
    ):
        # a whole batch is never inherited, nor the outer single order number
        assert key_baggage() == {"retail.key.batch_id": "B-7"}
        with hop("erp", "per order", {"order_number": "#1002"}, tracer=provider):
            pass
    spans = spans_by_name(exporter)
    assert spans["post batch"].attributes["retail.key.order_number"] == ("#1001", "#1002")
    assert spans["per order"].attributes["retail.key.order_number"] == "#1002"
    assert spans["per order"].attributes["retail.key.batch_id"] == "B-7"


def test_keys_travel_in_baggage_to_nested_code(provider, exporter):
    outer_ctx = baggage.set_baggage("retail.key.correlation_id", "c-1")
    outer_ctx = baggage.set_baggage("unrelated", "x", outer_ctx)
    token = context.attach(outer_ctx)
    try:
        with hop("middleware", "receive", {"order_number": "#1001"}, tracer=provider) as outer:
            assert outer.keys == {"correlation_id": "c-1", "order_number": "#1001"}
            assert key_baggage() == {
                "retail.key.correlation_id": "c-1",
                "retail.key.order_number": "#1001",
            }
            with hop("middleware", "validate", tracer=provider):
                pass
            with hop("middleware", "override", {"order_number": "#2002"}, tracer=provider):
                assert baggage.get_baggage("retail.key.order_number") == "#2002"
            assert baggage.get_baggage("retail.key.order_number") == "#1001"
        # the block's baggage is gone, the caller's is back
        assert key_baggage() == {"retail.key.correlation_id": "c-1"}
        assert baggage.get_baggage("unrelated") == "x"
    finally:
        context.detach(token)

    spans = spans_by_name(exporter)
    assert spans["validate"].attributes["retail.key.order_number"] == "#1001"
    assert spans["validate"].attributes["retail.key.correlation_id"] == "c-1"
    assert "retail.key.unrelated" not in spans["validate"].attributes
    assert spans["override"].attributes["retail.key.order_number"] == "#2002"
    assert spans["validate"].parent.span_id == spans["receive"].context.span_id


def test_set_key_and_set_stage(provider, exporter):
    with hop("erp", "post sales order", {"order_number": "#1001"}, tracer=provider) as h:
        h.set_key("erp_sales_order", "SO-48213")
        h.set_stage("posted", platform_status="Pending Fulfillment")
        assert baggage.get_baggage("retail.key.erp_sales_order") == "SO-48213"
        with hop("erp", "child", tracer=provider):
            pass
    assert baggage.get_baggage("retail.key.erp_sales_order") is None
    spans = spans_by_name(exporter)
    attrs = spans["post sales order"].attributes
    assert attrs["retail.key.erp_sales_order"] == "SO-48213"
    assert attrs["retail.stage"] == "posted"
    assert attrs["retail.platform_status"] == "Pending Fulfillment"
    assert spans["child"].attributes["retail.key.erp_sales_order"] == "SO-48213"


def test_escaping_exception_is_recorded_and_reraised(provider, exporter):
    with (
        pytest.raises(ValueError, match="ERP down"),
        hop("erp", "post", {"order_number": "#1001"}, tracer=provider),
    ):
        raise ValueError("ERP down")
    assert key_baggage() == {}
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: ERP down"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.escaped"] == "True"


def test_handled_failure(provider, exporter):
    with hop("erp", "post", {"order_number": "#1001"}, tracer=provider) as h:
        h.fail("ERP rejected: unknown SKU", KeyError("SKU-1"))
        assert h.failed
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ERP rejected: unknown SKU"
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("ERP", "op"), {}),
        (("erp", "op", {"retail.key.order_number": "#1"}), {}),
        (("erp", "op", {"Order": "#1"}), {}),
        (("erp", "op"), {"stage": "shiped"}),
    ],
)
def test_hop_rejects_programming_errors(provider, exporter, args, kwargs):
    with pytest.raises(ValueError), hop(*args, tracer=provider, **kwargs):
        pass
    assert exporter.get_finished_spans() == ()
    assert key_baggage() == {}


def test_hop_without_an_sdk_is_a_no_op():
    with hop("erp", "post", {"order_number": "#1"}) as h:
        assert baggage.get_baggage("retail.key.order_number") == "#1"
        h.fail("nothing recorded, nothing breaks")
        h.set_stage("posted")
    with hop("erp", "post", tracer=trace.NoOpTracerProvider()) as h:
        assert h.span_id == "0" * 16


# --- message headers ------------------------------------------------------------------------


@dataclass
class FakeQueue:
    messages: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, body: str) -> None:
        self.messages.append({"headers": inject({}), "body": body})

    def receive(self) -> dict[str, Any]:
        return self.messages.pop(0)


def test_inject_extract_round_trip_across_a_queue(provider, exporter):
    q = FakeQueue()
    with hop(
        "middleware",
        "publish",
        {"order_number": "#1001", "shopify_order_id": "8209"},
        kind=SpanKind.PRODUCER,
        tracer=provider,
    ) as producer:
        q.publish("{}")
    message = q.receive()
    assert message["headers"]["traceparent"].split("-")[1:3] == [
        producer.trace_id,
        producer.span_id,
    ]
    assert "%231001" in message["headers"]["baggage"]

    # link_only (default): producer baggage, no producer span as parent
    ctx = extract(message["headers"])
    assert not trace.get_current_span(ctx).get_span_context().is_valid
    assert baggage.get_all(ctx) == {
        "retail.key.order_number": "#1001",
        "retail.key.shopify_order_id": "8209",
    }

    # link_only=False: continue the producer's trace
    token = context.attach(extract(message["headers"], link_only=False))
    try:
        with hop("erp", "same trace", tracer=provider) as child:
            pass
    finally:
        context.detach(token)
    assert child.trace_id == producer.trace_id
    span = spans_by_name(exporter)["same trace"]
    assert trace.format_span_id(span.parent.span_id) == producer.span_id
    assert span.attributes["retail.key.order_number"] == "#1001"


def test_consume_starts_a_new_trace_linked_to_the_producer(provider, exporter):
    q = FakeQueue()
    with hop("middleware", "publish", {"order_number": "#1001"}, tracer=provider) as producer:
        q.publish("{}")

    with consume(
        q.receive()["headers"],
        "erp",
        "post sales order",
        {"erp_sales_order": "SO-48213"},
        stage="posted",
        retry_attempt=1,
        tracer=provider,
    ) as consumer:
        assert consumer.keys == {"order_number": "#1001", "erp_sales_order": "SO-48213"}
    assert key_baggage() == {}

    span = spans_by_name(exporter)["post sales order"]
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is None
    assert consumer.trace_id != producer.trace_id
    (link,) = span.links
    assert trace.format_trace_id(link.context.trace_id) == producer.trace_id
    assert trace.format_span_id(link.context.span_id) == producer.span_id
    assert dict(span.attributes) == {
        "retail.system": "erp",
        "retail.key.order_number": "#1001",
        "retail.key.erp_sales_order": "SO-48213",
        "retail.stage": "posted",
        "retail.retry.attempt": 1,
        "retail.replay": False,
    }


def test_consume_ignores_the_consumers_own_span_and_baggage(provider, exporter):
    with hop("worker", "poll", {"batch_id": "B-1"}, tracer=provider) as poll:
        headers = {"baggage": "retail.key.order_number=%231001"}
        assert producer_link(headers) is None
        with consume(headers, "erp", "handle", tracer=provider) as h:
            assert h.keys == {"order_number": "#1001"}
            assert h.trace_id != poll.trace_id
        assert baggage.get_baggage("retail.key.batch_id") == "B-1"
    span = spans_by_name(exporter)["handle"]
    assert span.parent is None
    assert span.links == ()


def test_headers_of_any_case_and_bytes(provider, exporter):
    with hop("middleware", "publish", {"order_number": "#7"}, tracer=provider) as producer:
        headers = inject({})
    kafka_style = {
        "Traceparent": headers["traceparent"].encode(),
        "BAGGAGE": headers["baggage"].encode(),
    }
    link = producer_link(kafka_style)
    assert link is not None
    assert trace.format_span_id(link.context.span_id) == producer.span_id
    assert baggage.get_all(extract(kafka_style)) == {"retail.key.order_number": "#7"}


def test_inject_percent_encodes_spaces_and_keeps_plus_and_hash(provider):
    with hop(
        "pos", "sale", {"pos_receipt": "ST12 0042+118", "order_number": "#1001"}, tracer=provider
    ):
        headers = inject({})
    assert "+" not in headers["baggage"]
    assert "retail.key.pos_receipt=ST12%200042%2B118" in headers["baggage"]
    assert baggage.get_all(extract(headers)) == {
        "retail.key.pos_receipt": "ST12 0042+118",
        "retail.key.order_number": "#1001",
    }


def test_module_imports_no_sdk_and_no_django():
    code = (
        "import sys, tracing.instrument\n"
        "bad = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'django',"
        " 'observatory'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- EventEmitter against a real local HTTP server -----------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class FakeObservatory:
    """POST /api/v1/events on 127.0.0.1: scripted answers first, then 200 + accepted ids."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                )
                if owner.script:
                    status, headers, body = owner.script.pop(0)
                else:
                    events = json.loads(raw)
                    status, headers = 200, {"Content-Type": "application/json"}
                    body = json.dumps(
                        {"accepted": [e["id"] for e in events], "duplicate": [], "rejected": []}
                    ).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.received for e in json.loads(r.body)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def observatory() -> Iterator[FakeObservatory]:
    server = FakeObservatory()
    yield server
    server.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_emitter(url: str, sleeps: list[float], **kw: Any) -> EventEmitter:
    return EventEmitter(url, "tok-123", "urn:acme:wms:nightly", sleep=sleeps.append, **kw)


SHIPPED_AT = datetime(2024, 6, 1, 21, 4, tzinfo=UTC)


def test_emitter_retries_503_with_retry_after_then_succeeds(observatory, sleeps):
    observatory.script.append((503, {"Retry-After": "0"}, b"busy"))
    emitter = make_emitter(observatory.url + "/", sleeps)
    event_id = emitter.emit(
        "com.acme.wms.shipment.shipped.v1",
        "wms",
        {"order_number": "#1001", "tracking_number": "1Z999AA10123456784", "file": "x.csv"},
        time=SHIPPED_AT,
        stage="shipped",
        platform_status="Shipped",
        amount=Decimal("129.90"),
        currency="EUR",
        duration_ms=12,
        attributes={"row": 3},
    )
    assert emitter.pending == 1
    answer = emitter.flush()
    assert answer == {"accepted": [event_id], "duplicate": [], "rejected": []}
    assert emitter.answers == [answer]
    assert emitter.pending == 0
    assert emitter.flush() is None
    assert sleeps == [0.0]

    first, second = observatory.received
    assert first.body == second.body
    assert second.path == "/api/v1/events"
    assert second.headers["authorization"] == "Bearer tok-123"
    assert second.headers["content-type"] == "application/cloudevents-batch+json"
    assert json.loads(second.body) == [
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "urn:acme:wms:nightly",
            "type": "com.acme.wms.shipment.shipped.v1",
            "time": "2024-06-01T21:04:00Z",
            "datacontenttype": "application/json",
            "data": {
                "keys": {
                    "order_number": "#1001",
                    "tracking_number": "1Z999AA10123456784",
                    "file": "x.csv",
                },
                "system": "wms",
                "stage": "shipped",
                "platform_status": "Shipped",
                "outcome": "ok",
                "duration_ms": 12,
                "amount": "129.90",
                "currency": "EUR",
                "attributes": {"row": 3},
            },
        }
    ]


def test_emitter_400_raises_without_retry(observatory, sleeps):
    observatory.script.append((400, {"Content-Type": "application/json"}, b'{"detail":"bad"}'))
    emitter = make_emitter(observatory.url, sleeps)
    emitter.emit("com.acme.erp.callback.v1", "erp", {"erp_sales_order": "SO-1"})
    with pytest.raises(EmitError) as info:
        emitter.flush()
    assert info.value.status == 400
    assert info.value.body == '{"detail":"bad"}'
    assert [e["data"]["keys"] for e in info.value.events] == [{"erp_sales_order": "SO-1"}]
    assert len(observatory.received) == 1
    assert sleeps == []
    assert emitter.pending == 0


def test_emitter_gives_up_after_max_retries(observatory, sleeps):
    observatory.script.extend([(502, {}, b"")] * 3)
    emitter = make_emitter(observatory.url, sleeps, max_retries=2)
    emitter.emit("t.v1", "erp", {"order_number": "#1"})
    with pytest.raises(EmitError, match="after 3 attempts") as info:
        emitter.flush()
    assert info.value.status == 502
    assert len(observatory.received) == 3
    # exponential backoff with jitter: attempt n waits within [base*2^n/2, base*2^n]
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_emitter_retries_connection_errors(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emitter = make_emitter(f"http://127.0.0.1:{port}", sleeps, max_retries=1, timeout=2)
    emitter.emit("t.v1", "erp", {"order_number": "#1"})
    with pytest.raises(EmitError, match="ConnectionError") as info:
        emitter.flush()
    assert info.value.status is None
    assert len(sleeps) == 1


def test_emitter_batches_by_size_and_flushes_on_exit(observatory, sleeps):
    with make_emitter(observatory.url, sleeps, batch_size=3) as emitter:
        ids = [emitter.emit("t.v1", "wms", {"order_number": f"#{n}"}) for n in range(7)]
        assert [len(json.loads(r.body)) for r in observatory.received] == [3, 3]
        assert emitter.pending == 1
    assert [len(json.loads(r.body)) for r in observatory.received] == [3, 3, 1]
    assert [e["id"] for e in observatory.events()] == ids
    assert len(emitter.answers) == 3


def test_emitter_flushes_on_exit_after_an_error_and_keeps_the_error(observatory, sleeps):
    with pytest.raises(RuntimeError, match="bad row"), make_emitter(observatory.url, sleeps) as em:
        em.emit("t.v1", "wms", {"order_number": "#1"})
        raise RuntimeError("bad row")
    assert len(observatory.events()) == 1


def test_event_ids_are_deterministic(observatory, sleeps):
    args = ("com.acme.wms.shipment.shipped.v1", "wms")
    first = make_emitter(observatory.url, sleeps)
    again = make_emitter(observatory.url, sleeps)
    keys = {"order_number": "#1001", "shipment_id": ["SH-2", "SH-1"]}
    same_keys = {"shipment_id": ("SH-1", "SH-2"), "order_number": "#1001"}
    event_id = first.emit(*args, keys, time=SHIPPED_AT, stage="shipped")
    assert uuid.UUID(event_id).version == 5
    assert again.emit(*args, same_keys, time=SHIPPED_AT, stage="shipped") == event_id
    cest = SHIPPED_AT.astimezone(timezone(timedelta(hours=2)))
    assert again.emit(*args, keys, time=cest, stage="shipped") == event_id
    # duration, error and the like do not change the identity of a hop
    assert again.emit(*args, keys, time=SHIPPED_AT, stage="shipped", duration_ms=5) == event_id
    different = [
        again.emit(*args, keys, time=SHIPPED_AT + timedelta(seconds=1), stage="shipped"),
        again.emit(*args, keys, time=SHIPPED_AT, stage="delivered"),
        again.emit(*args, keys, time=SHIPPED_AT, stage="shipped", outcome="error"),
        again.emit(*args, keys, time=SHIPPED_AT, stage="shipped", platform_status="x"),
        again.emit("other.v1", "wms", keys, time=SHIPPED_AT, stage="shipped"),
        again.emit(args[0], "carrier", keys, time=SHIPPED_AT, stage="shipped"),
        again.emit(*args, {"order_number": "#1002"}, time=SHIPPED_AT, stage="shipped"),
        EventEmitter("http://x", "t", "urn:other").event_id(
            *args, keys, time=SHIPPED_AT, stage="shipped"
        ),
    ]
    assert len(set(different)) == len(different)
    assert event_id not in different
    # no time: stamped now, but the id leaves time out, so a re-run re-sends the same id
    assert first.emit(*args, keys) == again.emit(*args, keys)
    assert again.emit(*args, keys, id="my-own-id") == "my-own-id"
    first.flush()
    fanout = observatory.events()[0]
    assert fanout["id"] == event_id
    assert fanout["data"]["keys"] == {"order_number": "#1001", "shipment_id": ["SH-2", "SH-1"]}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("t.v1", "wms", {}), {}),
        (("t.v1", "WMS", {"order_number": "#1"}), {}),
        (("t.v1", "wms", {"bad kind": "#1"}), {}),
        (("t.v1", "wms", {"order_number": "#1"}), {"outcome": "failed"}),
        (("t.v1", "wms", {"order_number": "#1"}), {"stage": "sent"}),
        (("t.v1", "wms", {"order_number": "#1"}), {"time": datetime(2024, 6, 1)}),
        (("", "wms", {"order_number": "#1"}), {}),
    ],
)
def test_emit_rejects_bad_events(sleeps, args, kwargs):
    emitter = make_emitter("http://127.0.0.1:9", sleeps)
    with pytest.raises(ValueError):
        emitter.emit(*args, **kwargs)
    assert emitter.pending == 0
