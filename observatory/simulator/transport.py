"""The senders: how a model :class:`~observatory.simulator.entities.Step` reaches Observatory.

Three ways in, as real integrations use them (CONTRACT 2):

* :class:`SpanSender`: the OpenTelemetry SDK (one ``TracerProvider`` per simulated
  service, a ``BatchSpanProcessor`` and the OTLP/HTTP exporter posting to
  ``{url}/v1/traces`` with the bearer token), driven through ``tracing.instrument``'s
  ``hop()`` / ``consume()`` / ``inject()``. Span times are the model's business times
  (a :class:`ClockTracer` stamps them), trace and span ids come from a seeded generator.
* :class:`WebhookSender`: Shopify deliveries signed with the app secret (base64
  HMAC-SHA256 of the raw body), the token in the URL query, concurrent on keep-alive
  sessions, 429/502/503/504 retried after ``Retry-After``.
* :class:`EventSender`: CloudEvents through ``tracing.instrument.EventEmitter`` (one per
  source), posted in batches from a small thread pool.

The span processor exports, and the event sender flushes, at least every
``Telemetry.export_delay_s`` wall seconds (:mod:`.telemetry`): the export batching of
real integrations.

Failures are counted in :class:`Stats`, never raised: a simulator that dies on the first
503 would be useless for the ``erp-outage`` demo of Observatory's own outage handling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import requests
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
from observatory.simulator.payloads import render
from observatory.simulator.telemetry import DEFAULT_TELEMETRY, EVENT, SPAN, WEBHOOK, Telemetry
from tracing import instrument
from tracing.instrument import EmitError, EventEmitter

log = logging.getLogger(__name__)

Stamp = Callable[[datetime], datetime]

#: Answers worth another try; anything else is final.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: Never wait longer than this for one retry, whatever ``Retry-After`` says.
MAX_RETRY_WAIT_S: Final = 30.0

_KINDS: Final = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


class Stats:
    """Thread-safe tallies of what was sent, per endpoint (``otlp``, ``events``,
    ``webhooks``): hops delivered, hops that could not be, requests made, and what the
    server said about them (duplicates, rejections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, counter: str, endpoint: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, counter)[endpoint] += n

    def error(self, endpoint: str, hops: int, reason: str) -> None:
        with self._lock:
            self.failed[endpoint] += hops
            self.reasons[f"{endpoint}: {reason}"] += hops

    @property
    def hops_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def hops_failed(self) -> int:
        return sum(self.failed.values())


def _backoff(attempt: int) -> float:
    delay = min(10.0, 0.5 * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# --- spans ---------------------------------------------------------------------------------


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
            "attributes": _span_attributes(step.attributes, stamp),
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

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for provider in self._providers:
            remaining = max(0.1, deadline - time.monotonic())
            provider.force_flush(int(remaining * 1000))
        for provider in self._providers:
            provider.shutdown()
        lost = self.backlog()
        if lost > 0:
            self.stats.error("otlp", lost, "spans dropped or not exported before the end")
            self.created -= lost


def _span_attributes(attributes: Mapping[str, Any], stamp: Stamp) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for name, value in attributes.items():
        if isinstance(value, datetime):
            out[name] = stamp(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Decimal):
            out[name] = str(value)
        else:
            out[name] = value
    return out


# --- Shopify webhooks ------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of the HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class WebhookSender:
    """Signed Shopify deliveries from a thread pool; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: str,
        secret: str,
        stats: Stats,
        *,
        workers: int = 8,
        max_in_flight: int = 64,
        timeout: float = 15.0,
        max_retries: int = 6,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/webhooks/shopify?token=" + quote(token, safe="")
        self.secret = secret
        self.stats = stats
        self.timeout = timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim-webhook")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._in_flight = 0

    def backlog(self) -> int:
        return self._in_flight

    def request(self, step: Step, stamp: Stamp) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers of one delivery (deterministic, for tests too)."""
        spec = step.webhook
        assert spec is not None
        triggered = stamp(step.at)
        body = json.dumps(
            render(spec, triggered, stamp), separators=(",", ":"), ensure_ascii=False
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": spec.topic,
            "X-Shopify-Hmac-Sha256": sign(body, self.secret),
            "X-Shopify-Shop-Domain": cat.SHOP_DOMAIN,
            "X-Shopify-API-Version": cat.SHOPIFY_API_VERSION,
            "X-Shopify-Webhook-Id": spec.webhook_id,
            "X-Shopify-Event-Id": spec.event_id,
            "X-Shopify-Triggered-At": triggered.astimezone(UTC).isoformat(),
            "User-Agent": "Shopify-Captain-Hook",
        }
        return body, headers

    def send(self, step: Step, stamp: Stamp) -> None:
        body, headers = self.request(step, stamp)
        self._slots.acquire()
        with self._count_lock:
            self._in_flight += 1
        future = self._pool.submit(self._deliver, body, headers)
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _deliver(self, body: bytes, headers: dict[str, str]) -> None:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                self.stats.add("requests", "webhooks")
                response = self._session().post(
                    self.endpoint, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self.stats.add("sent", "webhooks")
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {}
                    if isinstance(answer, dict) and answer.get("status") == "duplicate":
                        self.stats.add("duplicates", "webhooks")
                    return
                reason = f"HTTP {status}"
                if status not in RETRY_STATUSES:
                    self.stats.error("webhooks", 1, reason)
                    log.warning("webhook refused: %s %.200s", reason, response.text)
                    return
                wait = _retry_after(response.headers.get("Retry-After"))
                log.info("webhook answered %s, will retry: %.200s", reason, response.text)
            if attempt >= self.max_retries:
                self.stats.error("webhooks", 1, f"{reason} (gave up after {attempt + 1} tries)")
                return
            self._sleep(min(MAX_RETRY_WAIT_S, wait if wait is not None else _backoff(attempt)))
            attempt += 1

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        with self._sessions_lock:
            for session in self._sessions:
                session.close()


# --- CloudEvents -------------------------------------------------------------------------


class EventSender:
    """Status events through ``EventEmitter``s, flushed in batches by a thread pool."""

    def __init__(
        self,
        url: str,
        token: str,
        stats: Stats,
        *,
        batch_size: int = 200,
        workers: int = 3,
        max_in_flight: int = 8,
        linger_s: float = 0.5,
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.token = token
        self.stats = stats
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.timeout = timeout
        self._emitters: dict[str, EventEmitter] = {}
        self._last_flush: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim-events")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._count_lock = threading.Lock()
        self._in_flight = 0

    def _emitter(self, source: str) -> EventEmitter:
        emitter = self._emitters.get(source)
        if emitter is None:
            # batch_size: never post from emit(); this sender decides when to flush
            emitter = EventEmitter(
                self.url, self.token, source, batch_size=10**9, timeout=self.timeout
            )
            self._emitters[source] = emitter
            self._last_flush[source] = time.monotonic()
        return emitter

    def backlog(self) -> int:
        return self._in_flight * self.batch_size + sum(e.pending for e in self._emitters.values())

    def send(self, step: Step, stamp: Stamp) -> None:
        emitter = self._emitter(step.source)
        emitter.emit(
            step.event_type,
            step.system,
            step.keys,
            time=stamp(step.at),
            stage=step.stage,
            platform_status=step.platform_status,
            outcome=step.outcome,
            error=step.error,
            duration_ms=step.duration_s * 1000 if step.duration_s else None,
            channel=step.channel,
            store_id=step.store_id,
            amount=step.amount,
            currency=step.currency,
            attributes=_span_attributes(step.attributes, stamp) or None,
            id=step.event_id,
        )
        if emitter.pending >= self.batch_size:
            self._flush(step.source)

    def tick(self) -> None:
        """Flush what has waited longer than ``linger_s`` (live mode's trickle)."""
        now = time.monotonic()
        for source, emitter in self._emitters.items():
            if emitter.pending and now - self._last_flush[source] >= self.linger_s:
                self._flush(source)

    def _flush(self, source: str) -> None:
        self._last_flush[source] = time.monotonic()
        self._slots.acquire()
        with self._count_lock:
            self._in_flight += 1
        future = self._pool.submit(self._post, self._emitters[source])
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()

    def _post(self, emitter: EventEmitter) -> None:
        try:
            answer = emitter.flush()
        except EmitError as exc:
            self.stats.add("requests", "events")
            status = f"HTTP {exc.status}" if exc.status else "connection error"
            self.stats.error("events", len(exc.events), status)
            log.warning("status events not delivered: %s", exc)
            return
        except Exception as exc:  # never let a worker die silently
            log.exception("status events not delivered")
            self.stats.error("events", 0, type(exc).__name__)
            return
        self.stats.add("requests", "events")
        if not isinstance(answer, dict):
            return
        self.stats.add("sent", "events", len(answer.get("accepted", [])))
        duplicates = len(answer.get("duplicates", []))
        self.stats.add("sent", "events", duplicates)
        self.stats.add("duplicates", "events", duplicates)
        rejected = answer.get("rejected", [])
        if rejected:
            self.stats.add("rejected", "events", len(rejected))
            self.stats.error("events", len(rejected), f"rejected: {rejected[0].get('reason')}")

    def close(self, timeout: float) -> None:
        for source, emitter in self._emitters.items():
            if emitter.pending:
                self._flush(source)
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pool.shutdown(wait=not self._in_flight, cancel_futures=True)
        for emitter in self._emitters.values():
            lost = emitter.pending
            if lost:
                self.stats.error("events", lost, "not sent before the end")
            emitter._session.close()


# --- all together --------------------------------------------------------------------------


class Senders:
    """Routes each step to its sender by ``step.via``."""

    def __init__(
        self, spans: SpanSender, webhooks: WebhookSender, events: EventSender, stats: Stats
    ) -> None:
        self.spans = spans
        self.webhooks = webhooks
        self.events = events
        self.stats = stats

    @classmethod
    def for_server(
        cls,
        url: str,
        token: str,
        shopify_secret: str,
        *,
        seed: int,
        workers: int = 8,
        telemetry: Telemetry = DEFAULT_TELEMETRY,
    ) -> Senders:
        stats = Stats()
        return cls(
            SpanSender(url, token, stats, seed=seed, schedule_delay_s=telemetry.span_schedule_s),
            WebhookSender(url, token, shopify_secret, stats, workers=workers),
            EventSender(url, token, stats, linger_s=telemetry.event_linger_s),
            stats,
        )

    def send(self, step: Step, stamp: Stamp) -> None:
        if step.via == SPAN:
            self.spans.send(step, stamp)
        elif step.via == WEBHOOK:
            self.webhooks.send(step, stamp)
        elif step.via == EVENT:
            self.events.send(step, stamp)
        else:  # pragma: no cover - the model only makes these three
            raise ValueError(f"unknown step kind {step.via!r}")

    def tick(self) -> None:
        self.events.tick()

    def backlog(self) -> int:
        return self.spans.backlog() + self.webhooks.backlog() + self.events.backlog()

    def close(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        self.events.close(max(1.0, deadline - time.monotonic()))
        self.webhooks.close(max(1.0, deadline - time.monotonic()))
        self.spans.close(max(1.0, deadline - time.monotonic()))


def wait_for_server(
    url: str, timeout: float, *, sleep: Callable[[float], object] = time.sleep
) -> bool:
    """Poll ``{url}/healthz`` until it answers 200 (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url.rstrip("/") + "/healthz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        sleep(0.5)


def random_seed() -> int:
    """A fresh seed for runs that did not ask for one (printed, so it can be replayed)."""
    return uuid.uuid4().int % 1_000_000_000
