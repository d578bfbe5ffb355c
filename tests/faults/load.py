"""Ingest load for the fault tests: real OpenTelemetry SDK spans sent with the SDK's own
OTLP/HTTP exporter, which retries a 503 within its timeout; a batch that still fails is
sent again, so every span is eventually acknowledged (a 2xx), and the test knows which
were and when."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# each failed export of an outage would log an error: the test counts them instead
logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.CRITICAL)

#: the systems an order passes through, one span each
SYSTEMS = ("shopify", "middleware", "erp")


def uid(span: ReadableSpan) -> str:
    """The hop store's delivery identity of an OTLP span (tracing/otlp_common.py)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return f"otlp:{ctx.trace_id:032x}:{ctx.span_id:016x}"


class SpanLoad:
    """Orders as spans (one per system, each order keyed by its order number), posted in
    batches by ``senders`` threads until stopped; ``acked`` holds the uids of every span
    the server acknowledged."""

    def __init__(self, base: str, token: str, *, batch_orders: int = 20, prefix: str = "F") -> None:
        self.base = base
        self.token = token
        self.batch_orders = batch_orders
        self.prefix = prefix
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.orders = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "fault-load"}))
        provider.add_span_processor(SimpleSpanProcessor(self._memory))
        self._tracer = provider.get_tracer("tests.faults")
        self._make = threading.Lock()

    def _exporter(self) -> OTLPSpanExporter:
        session = requests.Session()
        session.hooks["response"].append(self._count)
        return OTLPSpanExporter(
            endpoint=self.base + "/v1/traces",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=4,
            session=session,
        )

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.statuses[response.status_code] += 1

    def batch(self) -> list[ReadableSpan]:
        """The next ``batch_orders`` orders' spans."""
        with self._make:
            first = self.orders
            self.orders += self.batch_orders
            for n in range(first, first + self.batch_orders):
                for system in SYSTEMS:
                    span = self._tracer.start_span(
                        f"{system} handles order",
                        attributes={
                            "retail.system": system,
                            "retail.key.order_number": f"#{self.prefix}{n}",
                        },
                    )
                    span.end()
            spans = list(self._memory.get_finished_spans())
            self._memory.clear()
        return spans

    def send(self, exporter: OTLPSpanExporter, spans: list[ReadableSpan], deadline: float) -> bool:
        """Export ``spans`` until acknowledged (True) or past ``deadline``."""
        ids = {uid(s) for s in spans}
        with self._lock:
            self.sent |= ids
        while time.monotonic() < deadline:
            try:
                result = exporter.export(spans)
            except Exception:  # the server gone for a moment: try again
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                with self._lock:
                    self.acked |= ids
                return True
            with self._lock:
                self.errors += 1
            time.sleep(0.2)
        return False

    def _run(self) -> None:
        exporter = self._exporter()
        while not self._stop.is_set():
            # a batch is sent until acknowledged, through an outage too (bounded)
            self.send(exporter, self.batch(), time.monotonic() + 40)
        exporter.shutdown()

    def start(self, senders: int = 2) -> None:
        for _ in range(senders):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 45) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a sender never got its answer"

    def report(self) -> str:
        return (
            f"{len(self.acked)} spans acknowledged of {len(self.sent)} sent, "
            f"{self.errors} failed exports retried, statuses {dict(sorted(self.statuses.items()))}"
        )
