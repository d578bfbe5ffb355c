"""docs/instrumenting.md stays true: its ``# runnable`` python blocks run as written.

Each runnable block is executed as ``__main__`` against an in-memory SDK TracerProvider
(installed as the global provider for the duration of the test only, and restored after),
and the file-job example against a local HTTP server standing in for Observatory. Every
python block must at least compile; the Collector YAML must parse and forward to
``/v1/traces`` with a bearer token.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DOC = Path(__file__).resolve().parents[2] / "docs" / "instrumenting.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)
RUNNABLE = re.compile(r"^# runnable(?::\s*(\S+))?", re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def runnable_blocks() -> dict[str, str]:
    found = {}
    for body in blocks("python"):
        match = RUNNABLE.search(body)
        if match:
            found[match.group(1) or f"block{len(found)}"] = body
    return found


class EventsServer:
    """A stand-in for ``POST /api/v1/events`` answering every event as accepted."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], list[dict[str, Any]]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                events = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, dict(self.headers.items()), events))
                body = json.dumps(
                    {"accepted": [e["id"] for e in events], "duplicate": [], "rejected": []}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [event for _, _, events in self.requests for event in events]


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An in-memory SDK provider as the global one, for this test only."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    # trace.set_tracer_provider() may only run once per process: swap the module global
    # and let monkeypatch restore it, so no other test sees this provider.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield spans
    provider.shutdown()


@pytest.fixture
def events_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventsServer]:
    server = EventsServer()
    monkeypatch.setenv("OBSERVATORY_URL", server.url)
    monkeypatch.setenv("OBSERVATORY_INGEST_TOKEN", "docs-token")
    yield server
    server.server.shutdown()
    server.server.server_close()


def run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, str(DOC), "exec"), namespace)
    # A block must leave no baggage behind: every hop cleaned up after itself.
    assert baggage.get_all() == {}
    return namespace


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def check_shopify_webhook(ns: dict[str, Any], spans: tuple[ReadableSpan, ...], _: Any) -> None:
    (webhook,) = named(spans, "webhook orders/create")
    assert webhook.attributes["retail.system"] == "shopify"
    assert webhook.attributes["retail.stage"] == "captured"
    assert webhook.attributes["retail.key.order_number"] == "#1001"
    assert webhook.attributes["retail.key.shopify_order_id"] == "820982911946154508"
    assert webhook.attributes["retail.order.amount"] == "129.90"
    (validate,) = named(spans, "validate order")
    assert validate.attributes["retail.key.order_number"] == "#1001"
    assert validate.parent.span_id == webhook.context.span_id
    headers = ns["outbox"][0]["headers"]
    assert headers["traceparent"].split("-")[1] == trace.format_trace_id(webhook.context.trace_id)
    assert "retail.key.order_number=%231001" in headers["baggage"]


def check_queue(ns: dict[str, Any], spans: tuple[ReadableSpan, ...], _: Any) -> None:
    (producer,) = named(spans, "publish order")
    (consumer,) = named(spans, "post sales order")
    assert consumer.context.trace_id != producer.context.trace_id
    assert consumer.parent is None
    (link,) = consumer.links
    assert link.context.span_id == producer.context.span_id
    assert consumer.attributes["retail.key.order_number"] == "#1001"
    assert consumer.attributes["retail.key.erp_sales_order"] == "SO-48213"
    assert consumer.attributes["retail.stage"] == "posted"


def check_erp_batch(ns: dict[str, Any], spans: tuple[ReadableSpan, ...], _: Any) -> None:
    (batch,) = named(spans, "post sales orders")
    numbers = batch.attributes["retail.key.order_number"]
    assert isinstance(numbers, tuple) and len(numbers) == 50
    assert batch.attributes["retail.stage"] == "posted"
    per_order = named(spans, "sales order created")
    assert len(per_order) == 50
    assert all(s.attributes["retail.key.batch_id"] == "ERP-2024-06-01-0042" for s in per_order)
    assert {s.attributes["retail.key.order_number"] for s in per_order} == set(numbers)


def check_file_job(ns: dict[str, Any], spans: tuple[ReadableSpan, ...], server: Any) -> None:
    assert len(server.requests) == 1
    path, headers, events = server.requests[0]
    assert path == "/api/v1/events"
    assert headers["Authorization"] == "Bearer docs-token"
    assert headers["Content-Type"] == "application/cloudevents-batch+json"
    assert [e["data"]["keys"]["file"] for e in events] == ["shipments-2024-06-01.csv"] * 3
    assert [e["data"]["outcome"] for e in events] == ["ok", "ok", "error"]
    assert events[0]["time"] == "2024-06-01T21:04:00Z"
    assert "tracking_number" not in events[2]["data"]["keys"]


CHECKS: dict[str, Callable[[dict[str, Any], tuple[ReadableSpan, ...], Any], None]] = {
    "shopify-webhook": check_shopify_webhook,
    "queue": check_queue,
    "erp-batch": check_erp_batch,
    "file-job": check_file_job,
}


def test_the_doc_has_the_promised_runnable_examples():
    assert set(runnable_blocks()) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_runnable_example(name, exporter, events_server, capsys):
    ns = run(runnable_blocks()[name])
    CHECKS[name](ns, exporter.get_finished_spans(), events_server)


def test_rerunning_the_file_job_resends_the_same_ids(exporter, events_server, capsys):
    run(runnable_blocks()["file-job"])
    run(runnable_blocks()["file-job"])
    first, second = (events for _, _, events in events_server.requests)
    assert [e["id"] for e in first] == [e["id"] for e in second]


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_python_block_compiles(index):
    compile(blocks("python")[index], f"{DOC}:python[{index}]", "exec")


def test_collector_config_forwards_traces_with_a_bearer_token():
    yaml = pytest.importorskip("yaml")
    (text,) = blocks("yaml")
    config = yaml.safe_load(text)
    (name,) = [n for n in config["exporters"] if n.split("/")[0] == "otlphttp"]
    exporter = config["exporters"][name]
    assert exporter["traces_endpoint"].endswith("/v1/traces")
    assert exporter["headers"]["Authorization"].startswith("Bearer ")
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["exporters"] == [name]
    assert set(pipeline["receivers"]) <= set(config["receivers"])
    assert set(pipeline["processors"]) <= set(config["processors"])
