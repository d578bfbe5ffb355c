"""The trace page and span exception events, with spans sent by the real OpenTelemetry SDK
exporter (``span.record_exception``) to ``/v1/traces``, stitched by the ``stitch`` command,
then read through the pages and the API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from observatory.hops.models import Hop
from observatory.transactions.models import Transaction
from tests.dashboards.conftest import make_user
from tests.triage.helpers import stitch


class TaxCodeRejected(Exception):
    pass


def _post_to_erp(order: str) -> None:
    raise TaxCodeRejected(f"ERP refused {order}: tax code TX-9 unknown")


def order_trace() -> tuple[list[ReadableSpan], str, str]:
    """Order #5001 through the middleware: a root span, a child that fails with a recorded
    exception, a grandchild; and a second trace whose span links to the root (a queue)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "middleware"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span(
            "receive order",
            attributes={"retail.system": "middleware", "retail.key.order_number": "#5001"},
        ) as root,
        tracer.start_as_current_span(
            "post order to erp",
            attributes={"retail.system": "erp", "retail.key.order_number": "#5001"},
        ) as child,
    ):
        with tracer.start_as_current_span("http POST /salesorders"):
            pass
        try:
            _post_to_erp("#5001")
        except TaxCodeRejected as exc:
            child.record_exception(exc)
            child.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span(
        "consume order",
        links=[Link(root.get_span_context(), {"link.reason": "queue"})],
        attributes={"retail.system": "wms", "retail.key.order_number": "#5001"},
    ) as consumer:
        pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    other = format(consumer.get_span_context().trace_id, "032x")
    return list(memory.get_finished_spans()), trace_id, other


@pytest.fixture
def exporter(live_server: Any, ingest_token: str) -> Iterator[OTLPSpanExporter]:
    exp = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {ingest_token}"},
        timeout=10,
    )
    yield exp
    exp.shutdown()


@pytest.fixture
def sent(exporter: OTLPSpanExporter) -> tuple[str, str]:
    spans, trace_id, other = order_trace()
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    stitch()
    return trace_id, other


@pytest.fixture
def page_client(transactional_db: None) -> Client:
    client = Client()
    client.force_login(make_user("olivia", "ops"))
    return client


def _json(client: Client, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)


@pytest.mark.django_db(transaction=True)
def test_exception_events_show_on_hop_api_order_page_and_failed_hop_exception(
    sent: tuple[str, str], page_client: Client
) -> None:
    trace_id, _ = sent
    tx = Transaction.objects.get(keys__kind="order_number", keys__value="#5001")

    # the hop in the order API: type, message and the SDK's formatted stack trace
    order = _json(page_client, "/api/v1/orders/order_number=%235001")
    failed = next(h for h in order["hops"] if h["operation"] == "post order to erp")
    assert failed["outcome"] == "error"
    [event] = failed["exceptions"]
    assert event["type"].endswith("TaxCodeRejected")
    assert event["message"] == "ERP refused #5001: tax code TX-9 unknown"
    assert "Traceback (most recent call last)" in event["stacktrace"]
    assert "_post_to_erp" in event["stacktrace"]
    assert failed["trace_url"] == f"/traces/{trace_id}/"
    ok = next(h for h in order["hops"] if h["operation"] == "receive order")
    assert ok["exceptions"] == []

    # the failed-hop exception keeps the event and the trace, in the API ...
    [issue] = [e for e in order["exceptions"] if e["kind"] == "failed_hop"]
    assert issue["exception"]["type"] == event["type"]
    assert issue["exception"]["stacktrace"] == event["stacktrace"]
    assert issue["trace_url"] == f"/traces/{trace_id}/"
    queue = _json(page_client, "/api/v1/exceptions?kind=failed_hop")
    assert queue["items"][0]["exception"]["message"] == event["message"]

    # ... and on the exceptions page, with the stack trace folded and the trace linked
    html = page_client.get("/exceptions/?kind=failed_hop").content.decode()
    assert "TaxCodeRejected" in html and '<details class="stacktrace">' in html
    assert f'href="/traces/{trace_id}/"' in html

    # the order page's hop row: the event, a collapsible stack trace, trace links
    html = page_client.get(f"/orders/{tx.id}/").content.decode()
    assert html.count('data-testid="exception-event"') == 2  # the hop row and its exception
    assert "tax code TX-9 unknown" in html
    assert '<details class="stacktrace">' in html and "_post_to_erp" in html
    assert f'href="/traces/{trace_id}/"' in html


@pytest.mark.django_db(transaction=True)
def test_trace_waterfall_nests_links_and_names_its_transactions(
    sent: tuple[str, str], page_client: Client
) -> None:
    trace_id, other = sent
    tx = Transaction.objects.get(keys__kind="order_number", keys__value="#5001")
    response = page_client.get(f"/traces/{trace_id}/")
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r'data-span="([0-9a-f]{16})" data-depth="(\d+)"', html)
    by_op = {h.operation: h.span_id for h in Hop.objects.filter(trace_id=trace_id)}
    # depth first under the parent: root, child, grandchild
    assert rows == [
        (by_op["receive order"], "0"),
        (by_op["post order to erp"], "1"),
        (by_op["http POST /salesorders"], "2"),
    ]
    assert f'href="/orders/{tx.id}/"' in html
    assert "TaxCodeRejected" in html
    # bars: the root spans the whole trace from offset 0
    assert re.search(r'class="wf-bar" style="left:0\.000%;width:100\.000%"', html)

    # the linked trace's page links back to this one, which is stored
    linked = page_client.get(f"/traces/{other}/").content.decode()
    assert f'href="/traces/{trace_id}/"' in linked
    assert "not stored here" not in linked

    # the JSON twin: spans with their exceptions, transactions with their page
    answer = _json(page_client, f"/api/v1/traces/{trace_id}")
    assert {s["operation"] for s in answer["spans"]} == set(by_op)
    assert answer["transactions"][0]["url"] == f"/orders/{tx.id}/"
    assert sum(len(s["exceptions"]) for s in answer["spans"]) == 1


@pytest.mark.django_db(transaction=True)
def test_unknown_and_malformed_trace_ids_get_a_clear_404(page_client: Client) -> None:
    response = page_client.get("/traces/" + "ab" * 16 + "/")
    assert response.status_code == 404
    assert b"No span of this trace is stored" in response.content
    response = page_client.get("/traces/not-a-trace/")
    assert response.status_code == 404
    assert b"This is not a trace id" in response.content
    assert page_client.get("/api/v1/traces/" + "ab" * 16).status_code == 404


def _big_trace(spans: int) -> str:
    """A trace of ``spans`` spans, a chain of parents ten deep, written straight to the hop
    store's tables (the page reads them; ingest is tested above)."""
    from datetime import UTC, datetime, timedelta

    from observatory.hops.models import HopKey

    trace_id = "c0ffee" + "0" * 26
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    hops = []
    for i in range(spans):
        parent = f"{i - 1:016x}" if i % 10 else ""
        start = t0 + timedelta(milliseconds=7 * i)
        extra: dict[str, Any] = {}
        if i % 50 == 0:
            extra["links"] = [{"trace_id": "d" * 32, "span_id": "e" * 16, "attributes": {}}]
        hops.append(
            Hop(
                uid=f"otlp:{trace_id}:{i:016x}",
                via="otlp",
                system=("middleware", "erp", "wms")[i % 3],
                operation=f"step {i}",
                start_time=start,
                end_time=start + timedelta(milliseconds=20),
                duration_ms=20,
                outcome="error" if i % 40 == 0 else "ok",
                trace_id=trace_id,
                span_id=f"{i:016x}",
                parent_span_id=parent,
                received_at=start,
                extra=extra,
            )
        )
    Hop.objects.bulk_create(hops)
    ids = list(Hop.objects.filter(trace_id=trace_id).values_list("id", flat=True))
    HopKey.objects.bulk_create(
        [HopKey(hop_id=i, kind="order_number", value=f"#9{n % 20}") for n, i in enumerate(ids)]
    )
    return trace_id


@pytest.mark.django_db(transaction=True)
def test_a_trace_of_hundreds_of_spans_is_a_fixed_number_of_queries_and_fast(
    page_client: Client,
) -> None:
    trace_id = _big_trace(300)
    stitch()
    page_client.get(f"/traces/{trace_id}/")  # warm: templates compiled, session read once
    with CaptureQueriesContext(connection) as q:
        started = time.perf_counter()
        response = page_client.get(f"/traces/{trace_id}/")
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="wf-row') == 300
    assert "not stored here" in html  # the linked trace dddd... has no span here
    # session, user, spans, their keys, transaction links, transactions, their keys, links
    assert len(q.captured_queries) <= 8, [x["sql"] for x in q.captured_queries]
    assert elapsed < 1.5, elapsed
