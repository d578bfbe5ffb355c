"""Spans through the OpenTelemetry SDK, as a real service instruments itself.

:class:`SpanSender` keeps one ``TracerProvider`` per simulated service, a
``BatchSpanProcessor`` and the OTLP/HTTP exporter posting to ``{url}/v1/traces`` with the
bearer token, and drives them through ``tracing.instrument``'s ``hop()`` / ``consume()``
/ ``inject()``. Span times are the model's business times (a :class:`ClockTracer` stamps
them), trace and span ids come from a seeded generator (:class:`SeededIds`). A step's
``parent`` continues the trace of an earlier span saved under that name, ``publish``
puts the span's context into the headers of a queue message and ``consume`` starts a
new trace from such a message, linked to its producer. The processor exports at least
every ``schedule_delay_s`` wall seconds (:mod:`observatory.simulator.telemetry`).
Exported and failed spans are counted in :class:`~.shared.Stats` (``otlp``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from observatory.simulator import catalog as cat
from observatory.simulator.entities import Step
from observatory.simulator.telemetry import DEFAULT_TELEMETRY
from observatory.simulator.transport.shared import Stamp, Stats, attribute_values
from tracing import instrument

log = logging.getLogger(__name__)

_KINDS: Final = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


class SimClock:
    """The start and end time of the span being built, set by the sender per step."""

    def __init__(self) -> None:
        self.start_ns = 0
        self.end_ns = 0

    def set(self, start: datetime, end: datetime) -> None:
        self.start_ns = int(start.timestamp() * 1e9)
        self.end_ns = max(self.start_ns, int(end.timestamp() * 1e9))


class ClockTracer(Tracer):
    """A Tracer whose spans start and end at the times of a :class:`SimClock`.

    ``tracing.instrument.hop()`` takes any Tracer; this one lets it write hops with
    business times in the past (backfills) without touching the SDK.
    """

    def __init__(self, inner: Tracer, clock: SimClock) -> None:
        self._inner = inner
        self._clock = clock

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._inner.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time if start_time is not None else self._clock.start_ns,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        try:
            with trace.use_span(
                span,
                end_on_exit=False,
                record_exception=record_exception,
                set_status_on_exception=set_status_on_exception,
            ):
                yield span
        finally:
            if end_on_exit:
                span.end(end_time=self._clock.end_ns)


class SeededIds(IdGenerator):
    """Trace and span ids from a seeded generator: the same seed, the same ids."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


class CountingExporter(SpanExporter):
    """Wraps the OTLP exporter and counts the spans it delivered or gave up on."""

    def __init__(self, inner: SpanExporter, stats: Stats) -> None:
        self._inner = inner
        self._stats = stats
        self.done = 0
        self._shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # the exporter should not raise; count it if it does
            log.warning("span export raised", exc_info=True)
            result = SpanExportResult.FAILURE
            reason = type(exc).__name__
        else:
            reason = "export failed (see the exporter's log)"
        self._stats.add("requests", "otlp")
        if result is SpanExportResult.SUCCESS:
            self._stats.add("sent", "otlp", len(spans))
        else:
            self._stats.error("otlp", len(spans), reason)
        self.done += len(spans)
        return result

    def shutdown(self) -> None:
        # once: the close below stops the exporters at its deadline, then the providers
        # shut them down again
        if not self._shut:
            self._shut = True
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class SimulatedFailure(Exception):
    """What the simulated integration code raised (recorded on failed hops)."""


class SpanSender:
    """Spans through the OpenTelemetry SDK and ``tracing.instrument``; see the module doc."""

    #: Contexts and queue messages kept for later steps (older ones are forgotten).
    MEMORY: Final = 200_000

    def __init__(
        self,
        url: str,
        token: str,
        stats: Stats,
        *,
        seed: int,
        timeout: float = 30.0,
        exporter_factory: Callable[[str], SpanExporter] | None = None,
        schedule_delay_s: float = DEFAULT_TELEMETRY.span_schedule_s,
    ) -> None:
        self.stats = stats
        self.clock = SimClock()
        self.created = 0
        self.schedule_delay_s = schedule_delay_s
        self._providers: list[TracerProvider] = []
        self._exporters: list[CountingExporter] = []
        self._tracers: dict[str, ClockTracer] = {}
        self._contexts: OrderedDict[str, Context] = OrderedDict()
        self._messages: OrderedDict[str, dict[str, str]] = OrderedDict()
        endpoint = url.rstrip("/") + "/v1/traces"
        for service in cat.SERVICES:
            if exporter_factory is not None:
                inner = exporter_factory(service)
            else:
                inner = OTLPSpanExporter(
                    endpoint=endpoint,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=timeout,
                )
            exporter = CountingExporter(inner, stats)
            provider = TracerProvider(
                resource=Resource.create(
                    {
                        "service.name": service,
                        "service.namespace": "northwind",
                        "deployment.environment.name": "simulation",
                    }
                ),
                id_generator=SeededIds(f"{seed}/{service}"),
            )
            provider.add_span_processor(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=100_000,
                    # the export batching of a real service: a few seconds' worth per
                    # request (or a full batch), fewer and bigger exports for the server
                    schedule_delay_millis=max(1, round(schedule_delay_s * 1000)),
                    max_export_batch_size=512,
                    export_timeout_millis=int(timeout * 1000),
                )
            )
            self._providers.append(provider)
            self._exporters.append(exporter)
            self._tracers[service] = ClockTracer(
                provider.get_tracer(instrument.TRACER_NAME), self.clock
            )

    def backlog(self) -> int:
        """Spans created and not yet delivered or given up on."""
        return self.created - sum(e.done for e in self._exporters)

    def send(self, step: Step, stamp: Stamp) -> None:
        start = stamp(step.at)
        self.clock.set(start, stamp(step.at + timedelta(seconds=step.duration_s)))
        options: dict[str, Any] = {
            "stage": step.stage,
            "platform_status": step.platform_status,
            "channel": step.channel,
            "store_id": step.store_id,
            "amount": step.amount,
            "currency": step.currency,
            "retry_attempt": step.retry_attempt,
            "replay": step.replay,
            "attributes": attribute_values(step.attributes, stamp),
            "kind": _KINDS[step.span_kind],
            "tracer": self._tracers[step.service],
        }
        token = None
        if step.parent is not None and step.parent in self._contexts:
            token = otel_context.attach(self._contexts[step.parent])
        try:
            block: AbstractContextManager[instrument.HopSpan]
            headers = self._messages.pop(step.consume, None) if step.consume else None
            if headers is not None:
                block = instrument.consume(
                    headers, step.system, step.operation, step.keys, **options
                )
            else:
                block = instrument.hop(step.system, step.operation, step.keys, **options)
            with block as handle:
                if step.outcome != "ok":
                    message = step.error or "failed"
                    handle.span.record_exception(
                        SimulatedFailure(message), timestamp=self.clock.end_ns
                    )
                    handle.fail(message)
                if step.publish:
                    self._remember(self._messages, step.publish, dict(instrument.inject({})))
                if step.save_as:
                    self._remember(self._contexts, step.save_as, otel_context.get_current())
        finally:
            if token is not None:
                otel_context.detach(token)
        self.created += 1

    def _remember(self, store: OrderedDict[str, Any], name: str, value: Any) -> None:
        store[name] = value
        while len(store) > self.MEMORY:
            store.popitem(last=False)

    def _stop_exporters(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # an export retrying against a server that stopped too (Ctrl-C under make run)
        # ends at the deadline: the SDK's flush does not keep to its timeout, and an
        # exporter's shutdown cuts its retries short (docs/scaling.md, "Stopping")
        stop = threading.Timer(timeout, self._stop_exporters)
        stop.daemon = True
        stop.start()
        try:
            for provider in self._providers:
                remaining = max(0.1, deadline - time.monotonic())
                provider.force_flush(int(remaining * 1000))
            self._stop_exporters()
            for provider in self._providers:
                provider.shutdown()
        finally:
            stop.cancel()
            self._stop_exporters()  # interrupted too: no flush at exit
        lost = self.backlog()
        if lost > 0:
            self.stats.error("otlp", lost, "spans dropped or not exported before the end")
            self.created -= lost
