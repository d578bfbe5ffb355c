"""Helpers for integration code that reports hops to Observatory (docs/ingest.md, docs/instrumenting.md).

Built on ``opentelemetry-api`` only: the application brings its own SDK and exporter (or
none, in which case every span call is a no-op). Nothing here imports the SDK, Django or
``observatory``.

Spans
    :func:`hop` starts one span per hop with the ``retail.*`` attributes, inherits business
    keys from W3C baggage and puts its own keys into baggage for the code it wraps.

Message headers (queues, webhooks, file manifests)
    :func:`inject` writes ``traceparent`` + ``baggage`` into a header dict on publish;
    :func:`consume` (or :func:`extract` + :func:`producer_link`) starts the consumer's hop
    in a *new* trace that carries the producer's baggage and links to the producer's span.

Status events, for code without a tracer (batch jobs, ERP callbacks)
    :class:`EventEmitter` buffers CloudEvents 1.0 and posts them in batches to
    ``POST {url}/api/v1/events`` with retries and idempotent, deterministic ids.

Baggage gotcha (docs/instrumenting.md, "Keys travel in baggage"): Python's
``W3CBaggagePropagator`` encodes a space as ``+`` while the W3C grammar (and Java, Go, .NET,
JS) reads ``+`` literally, so a key value with a space reaches a non-Python consumer altered.
:func:`inject` rewrites that ``+`` as ``%20`` (which every decoder, Python's too, reads as a
space), but headers written by other code (HTTP auto-instrumentation calling
``propagate.inject``) still carry ``+``: keep key values free of spaces. ``#``, ``=``, ``/``
and non-ASCII are percent-encoded and survive intact.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final

import requests
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from tracing import conventions as conv

__all__ = [
    "TRACER_NAME",
    "EmitError",
    "EventEmitter",
    "HopSpan",
    "consume",
    "extract",
    "hop",
    "inject",
    "producer_link",
]

_log = logging.getLogger(__name__)

#: Instrumentation scope name of the spans this module starts.
TRACER_NAME: Final = "observatory.tracing"

#: What a caller may pass as a key value: one value, several (fan-out), or None (skipped).
KeyValue = str | int | Sequence[str] | None
Keys = Mapping[str, KeyValue]
Amount = Decimal | int | float | str

_KIND_RE: Final = re.compile(conv.KEY_KIND_PATTERN)
_SYSTEM_RE: Final = re.compile(conv.SYSTEM_PATTERN)
_STAGES: Final = frozenset(conv.ALL_STAGES)


# --- validation and normalisation ----------------------------------------------------------


def _check_system(system: str) -> None:
    if not _SYSTEM_RE.match(system):
        raise ValueError(f"system {system!r} must be a lower-case word (e.g. 'erp', 'wms')")


def _check_stage(stage: str | None) -> None:
    if stage is not None and stage not in _STAGES:
        raise ValueError(f"stage {stage!r} is not a stage (docs/stages.md): {sorted(_STAGES)}")


def _key_text(kind: str, value: object) -> str:
    """One key value as Observatory stores it: stripped text, "" for no key."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"business key {kind!r}: {type(value).__name__} is not a key value")
    text = str(value).strip()
    if len(text) > conv.MAX_KEY_VALUE_LENGTH:
        # Observatory refuses the whole span or event for one over-long value: drop the key,
        # keep the hop.
        _log.warning(
            "business key %r dropped: longer than %d characters",
            kind,
            conv.MAX_KEY_VALUE_LENGTH,
        )
        return ""
    return text


def _normalize_keys(keys: Keys | None) -> dict[str, str | tuple[str, ...]]:
    """Validate kinds and turn values into a string or a tuple of strings (fan-out).

    Values are stripped, as Observatory stores them. ``None`` and blank values are
    skipped so that optional identifiers can be passed as they are
    (``keys={"tracking_number": order.get("tracking")}``); integers become strings; a
    sequence is de-duplicated, order kept. A value longer than ``MAX_KEY_VALUE_LENGTH``
    is dropped with a warning (the server would refuse the whole hop for it).
    """
    out: dict[str, str | tuple[str, ...]] = {}
    for kind, value in (keys or {}).items():
        if not _KIND_RE.match(kind):
            raise ValueError(
                f"business key kind {kind!r} must be lower_snake_case "
                "(pass 'order_number', not 'retail.key.order_number')"
            )
        if isinstance(value, str | bytes | bytearray | int) or value is None:
            text = _key_text(kind, value)
            if text:
                out[kind] = text
            continue
        many = tuple(dict.fromkeys(t for t in (_key_text(kind, v) for v in value) if t))
        if many:
            out[kind] = many
    return out


def _baggage_keys(ctx: Context | None = None) -> dict[str, str | tuple[str, ...]]:
    """The ``retail.key.<kind>`` entries of the baggage in ``ctx`` (current by default)."""
    found: dict[str, str | tuple[str, ...]] = {}
    for name, value in baggage.get_all(ctx).items():
        if not name.startswith(conv.KEY_PREFIX) or not isinstance(value, str) or not value:
            continue
        kind = name[len(conv.KEY_PREFIX) :]
        if _KIND_RE.match(kind):
            found[kind] = value
    return found


def _amount_attribute(amount: Amount) -> AttributeValue:
    # A Decimal has no attribute type: send it as its exact string, never as a float.
    if isinstance(amount, Decimal | str):
        return str(amount)
    return amount


def _key_attribute(value: str | tuple[str, ...]) -> AttributeValue:
    return value if isinstance(value, str) else list(value)


def _get_tracer(tracer: Tracer | TracerProvider | None) -> Tracer:
    if tracer is None:
        return trace.get_tracer(TRACER_NAME)
    if isinstance(tracer, TracerProvider):
        return tracer.get_tracer(TRACER_NAME)
    return tracer


# --- spans ---------------------------------------------------------------------------------


class HopSpan:
    """What :func:`hop` yields: the span, the hop's merged keys, and helpers.

    ``keys`` holds every business key on the span (inherited from baggage and explicit),
    kind -> value or tuple of values.
    """

    __slots__ = ("_tokens", "failed", "keys", "span")

    def __init__(self, span: Span, keys: dict[str, str | tuple[str, ...]]) -> None:
        self.span = span
        self.keys = keys
        self.failed = False
        self._tokens: list[Token[Context]] = []

    @property
    def trace_id(self) -> str:
        """The span's trace id as 32 lower-case hex digits (all zeros without an SDK)."""
        return trace.format_trace_id(self.span.get_span_context().trace_id)

    @property
    def span_id(self) -> str:
        """The span's id as 16 lower-case hex digits (all zeros without an SDK)."""
        return trace.format_span_id(self.span.get_span_context().span_id)

    def fail(self, message: str, exception: BaseException | None = None) -> None:
        """Mark a handled failure: status ERROR with ``message`` (and the exception, if given).

        The block goes on; Observatory counts the hop as failed (docs/ingest.md).
        """
        self.failed = True
        if exception is not None:
            self.span.record_exception(exception)
        self.span.set_status(Status(StatusCode.ERROR, message))

    def set_stage(self, stage: str, platform_status: str | None = None) -> None:
        """Record the stage this hop reached once it is known (e.g. after the ERP answered)."""
        _check_stage(stage)
        self.span.set_attribute(conv.STAGE, stage)
        if platform_status is not None:
            self.span.set_attribute(conv.PLATFORM_STATUS, platform_status)

    def set_key(self, kind: str, value: KeyValue) -> None:
        """Add a business key learned during the hop (the ERP's sales-order number...).

        The key is set on the span (linking it to the hop's other keys) and, when it is a
        single value, put into baggage for the code that runs after this call inside the
        same block. Call it at the level of the ``with hop(...)`` block: inside a nested
        ``with`` its baggage effect ends with that nested block.
        """
        normalized = _normalize_keys({kind: value})
        if kind not in normalized:
            return
        new = normalized[kind]
        self.keys[kind] = new
        self.span.set_attribute(conv.KEY_PREFIX + kind, _key_attribute(new))
        name = conv.KEY_PREFIX + kind
        if isinstance(new, str):
            ctx = baggage.set_baggage(name, new)
        else:
            ctx = baggage.remove_baggage(name)
        self._tokens.append(context.attach(ctx))

    def _detach(self) -> None:
        while self._tokens:
            context.detach(self._tokens.pop())


@contextmanager
def hop(
    system: str,
    operation: str,
    keys: Keys | None = None,
    *,
    stage: str | None = None,
    platform_status: str | None = None,
    channel: str | None = None,
    store_id: str | None = None,
    amount: Amount | None = None,
    currency: str | None = None,
    retry_attempt: int = 0,
    replay: bool = False,
    links: Sequence[Link] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    tracer: Tracer | TracerProvider | None = None,
) -> Iterator[HopSpan]:
    """Run the block as one hop: a span named ``operation`` in ``system``.

    The span carries the attributes of docs/ingest.md: ``retail.system``, ``retail.key.<kind>``
    for every key (a sequence value becomes an array attribute: the hop fans out to each of
    those transactions without linking them), and, when given, ``retail.stage``,
    ``retail.platform_status``, ``retail.channel``, ``retail.store_id``,
    ``retail.order.amount`` (a Decimal is sent as its exact string),
    ``retail.order.currency``; ``retail.retry.attempt`` and ``retail.replay`` always.
    ``attributes`` are added as they are; the named arguments win over them.

    Keys already in baggage (entries ``retail.key.<kind>``, put there by an enclosing hop
    or by the producer of a message) are copied onto the span; an explicit key of the same
    kind wins. For the duration of the block the hop's single-valued keys are put into
    baggage, so nested hops and :func:`inject` carry them on; a fan-out (sequence) key
    removes that kind from baggage instead, so nested per-item code never inherits a whole
    batch. Baggage travels to every downstream service, third parties included: keep
    secrets and personal data out of keys.

    An exception escaping the block is recorded on the span (status ERROR) and re-raised;
    handled failures use :meth:`HopSpan.fail`. ``tracer`` may be a Tracer or a
    TracerProvider; by default the global provider's ``observatory.tracing`` tracer.

    Raises ValueError at entry for a system that is not a lower-case word, a key kind that
    is not lower_snake_case, or a stage not in docs/stages.md: these are programming errors.
    """
    _check_system(system)
    _check_stage(stage)
    explicit = _normalize_keys(keys)
    outer = context.get_current()
    merged = {**_baggage_keys(outer), **explicit}

    attrs: dict[str, AttributeValue] = dict(attributes or {})
    attrs[conv.SYSTEM] = system
    for key_kind, value in merged.items():
        attrs[conv.KEY_PREFIX + key_kind] = _key_attribute(value)
    optional: dict[str, AttributeValue | None] = {
        conv.STAGE: stage,
        conv.PLATFORM_STATUS: platform_status,
        conv.CHANNEL: channel,
        conv.STORE_ID: store_id,
        conv.ORDER_AMOUNT: None if amount is None else _amount_attribute(amount),
        conv.ORDER_CURRENCY: currency,
    }
    attrs.update({name: value for name, value in optional.items() if value is not None})
    attrs[conv.RETRY_ATTEMPT] = int(retry_attempt)
    attrs[conv.REPLAY] = bool(replay)

    inner = outer
    for key_kind, value in explicit.items():
        name = conv.KEY_PREFIX + key_kind
        if isinstance(value, str):
            inner = baggage.set_baggage(name, value, inner)
        else:
            inner = baggage.remove_baggage(name, inner)

    token = context.attach(inner)
    try:
        with _get_tracer(tracer).start_as_current_span(
            operation,
            kind=kind,
            attributes=attrs,
            links=list(links),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            handle = HopSpan(span, merged)
            try:
                yield handle
            except Exception as exc:
                span.record_exception(exc, escaped=True)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                handle._detach()
    finally:
        context.detach(token)


# --- message headers -----------------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str | bytes]) -> dict[str, str]:
    # Brokers and frameworks change header case (``Traceparent``) and some hand out bytes
    # (Kafka): the W3C propagators look up lower-case names and expect text.
    out: dict[str, str] = {}
    for name, value in headers.items():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out.setdefault(name.lower(), text)
    return out


def inject(
    headers: MutableMapping[str, str], ctx: Context | None = None
) -> MutableMapping[str, str]:
    """Write ``traceparent`` (+ ``tracestate``) and ``baggage`` into ``headers``; return it.

    Uses the global propagator (W3C trace context + baggage unless the application set
    another), from ``ctx`` or the current context. Call it inside the producing hop so the
    consumer can link to it and inherit its business keys. A ``+`` the Python baggage
    propagator wrote for a space is rewritten as ``%20`` (see the module docstring).
    """
    propagate.inject(headers, context=ctx)
    value = headers.get("baggage")
    if value and "+" in value:
        # quote_plus() turned spaces into '+' and literal '+' into '%2B': every '+' left
        # is a space, and '%20' is the spelling all W3C decoders agree on.
        headers["baggage"] = value.replace("+", "%20")
    return headers


def extract(headers: Mapping[str, str | bytes], *, link_only: bool = True) -> Context:
    """The context a consumer should run in for a message with these ``headers``.

    It carries the producer's baggage (its business keys) and only that: baggage of the
    consumer's own current context is dropped, since the message is the unit of work.
    With ``link_only`` (the default) the producer's span is *not* the parent: a span
    started in this context begins a new trace, and should link to the producer with
    :func:`producer_link`. ``link_only=False`` continues the producer's trace instead
    (synchronous hand-offs where one trace is wanted).
    """
    carrier = _lower_headers(headers)
    base = trace.set_span_in_context(trace.INVALID_SPAN, baggage.clear(context.get_current()))
    ctx = propagate.extract(carrier, context=base)
    if link_only:
        ctx = trace.set_span_in_context(trace.INVALID_SPAN, ctx)
    return ctx


def producer_link(headers: Mapping[str, str | bytes]) -> Link | None:
    """A span Link to the producer's span named by ``traceparent``, or None without one."""
    ctx = propagate.extract(_lower_headers(headers), context=Context())
    span_context = trace.get_current_span(ctx).get_span_context()
    return Link(span_context) if span_context.is_valid else None


@contextmanager
def consume(
    headers: Mapping[str, str | bytes],
    system: str,
    operation: str,
    keys: Keys | None = None,
    **kw: Any,
) -> Iterator[HopSpan]:
    """Run a consumer's hop for one message: :func:`extract` + :func:`hop`.

    The hop starts a new trace (a queue is where traces break on purpose), links to the
    producer's span, inherits the producer's business keys from baggage (explicit ``keys``
    win), and defaults to ``kind=SpanKind.CONSUMER``. Other keyword arguments go to
    :func:`hop`; extra ``links`` are kept after the producer link.
    """
    link = producer_link(headers)
    links = [link] if link is not None else []
    links.extend(kw.pop("links", ()))
    kw.setdefault("kind", SpanKind.CONSUMER)
    token = context.attach(extract(headers, link_only=True))
    try:
        with hop(system, operation, keys, links=links, **kw) as handle:
            yield handle
    finally:
        context.detach(token)


# --- status events -------------------------------------------------------------------------

#: uuid5 namespace of derived event ids; never change it, or re-runs stop deduplicating.
EVENT_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:observatory:cloudevents:id")

#: Answers worth another try (OTLP and CloudEvents receivers alike); others are final.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})

BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"


class EmitError(Exception):
    """A batch of status events could not be delivered.

    ``status`` is the last HTTP status (None after a connection error), ``body`` the
    server's answer text, ``events`` the event dicts of the batch: they are no longer
    buffered. Their ids are deterministic, so re-emitting them (or re-running the job) is
    safe: the server counts what it already stored as duplicates.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        events: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.events = list(events)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("event time must be an aware datetime (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_number(value: Amount) -> str | int | float:
    return str(value) if isinstance(value, Decimal | str) else value


class EventEmitter:
    """Send CloudEvents 1.0 status events (docs/ingest.md) for code that has no tracer.

    Events are buffered and posted as one ``application/cloudevents-batch+json`` array to
    ``POST {url}/api/v1/events`` with ``Authorization: Bearer <token>`` once
    ``batch_size`` are waiting, on :meth:`flush`, and when a ``with`` block exits. A
    429/502/503/504 answer or a connection error is retried up to ``max_retries`` times,
    after ``Retry-After`` seconds when the server sends it, else after an exponential
    backoff with jitter; any other non-2xx answer raises :class:`EmitError` at once. Each
    post's parsed JSON answer (accepted / duplicate / rejected events) is returned by
    :meth:`flush` and kept in ``answers``; rejected events are also logged as a warning.

    ``emit`` may post (when the buffer is full), so it may raise :class:`EmitError` too.
    Thread-safe: several threads may emit into one emitter.
    """

    #: Upper bound on one wait, whatever ``Retry-After`` says, in seconds.
    MAX_DELAY: Final = 300.0
    #: Backoff: BACKOFF_BASE * 2**attempt seconds, capped at BACKOFF_CAP, half jittered.
    BACKOFF_BASE: Final = 0.5
    BACKOFF_CAP: Final = 30.0

    def __init__(
        self,
        url: str,
        token: str,
        source: str,
        *,
        batch_size: int = 100,
        max_retries: int = 5,
        timeout: float = 10,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] = _time.sleep,
    ) -> None:
        if not source:
            raise ValueError("source must be a non-empty URI-reference (e.g. 'urn:acme:wms')")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.endpoint = url.rstrip("/") + "/api/v1/events"
        self.source = source
        self.batch_size = batch_size
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.answers: list[Any] = []
        self._token = token
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- building events -----------------------------------------------------------------

    def event_id(
        self,
        type: str,
        system: str,
        keys: Keys,
        *,
        time: datetime | None = None,
        stage: str | None = None,
        platform_status: str | None = None,
        outcome: str = conv.OK,
    ) -> str:
        """The deterministic id :meth:`emit` gives an event when no ``id`` is passed.

        A uuid5 of (source, type, system, the sorted keys, time, stage, platform status,
        outcome): a re-run of the same job yields the same ids, and the server dedupes.
        Without ``time`` two events differing only in when they happened share an id.
        """
        normalized = _normalize_keys(keys)
        canonical = json.dumps(
            [
                self.source,
                type,
                system,
                sorted((k, v if isinstance(v, str) else sorted(v)) for k, v in normalized.items()),
                None if time is None else _rfc3339(time),
                stage,
                platform_status,
                outcome,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, canonical))

    def emit(
        self,
        type: str,
        system: str,
        keys: Keys,
        *,
        time: datetime | None = None,
        stage: str | None = None,
        platform_status: str | None = None,
        outcome: str = conv.OK,
        error: str | None = None,
        duration_ms: float | None = None,
        channel: str | None = None,
        store_id: str | None = None,
        amount: Amount | None = None,
        currency: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        id: str | None = None,
    ) -> str:
        """Buffer one status event (one hop) and return its id.

        ``type`` is a reverse-DNS event type (``com.acme.wms.shipment.v1``), ``keys`` the
        business keys (kind -> value, or a list of values to fan out; at least one).
        ``time`` is the business time of the hop (aware datetime); when omitted the event
        is stamped with the current time but the derived id leaves time out. Pass ``id``
        to use an id of your own (unique per ``source``). Fields left at None are omitted.
        Raises ValueError for an invalid system, key kind, stage or outcome.
        """
        if not type:
            raise ValueError("type must be a non-empty string")
        _check_system(system)
        _check_stage(stage)
        if outcome not in conv.OUTCOMES:
            raise ValueError(f"outcome {outcome!r} must be one of {conv.OUTCOMES}")
        normalized = _normalize_keys(keys)
        if not normalized:
            raise ValueError("an event needs at least one business key")
        event_time = _rfc3339(time if time is not None else datetime.now(UTC))
        event_id = id or self.event_id(
            type,
            system,
            normalized,
            time=time,
            stage=stage,
            platform_status=platform_status,
            outcome=outcome,
        )
        data: dict[str, Any] = {
            "keys": {k: v if isinstance(v, str) else list(v) for k, v in normalized.items()},
            "system": system,
        }
        optional: dict[str, Any] = {
            "stage": stage,
            "platform_status": platform_status,
            "outcome": outcome,
            "error": error,
            "duration_ms": duration_ms,
            "channel": channel,
            "store_id": store_id,
            "amount": None if amount is None else _json_number(amount),
            "currency": currency,
            "attributes": None if attributes is None else dict(attributes),
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": self.source,
            "type": type,
            "time": event_time,
            "datacontenttype": "application/json",
            "data": data,
        }
        # Fail here, at the caller, rather than at flush time with the whole batch.
        json.dumps(event, default=_reject_unserializable)
        self._add(event)
        return event_id

    def snapshot(
        self,
        system: str,
        sku: str,
        location: str,
        quantity: int,
        *,
        as_of: datetime,
        id: str,
    ) -> str:
        """Buffer one ``inventory.snapshot`` event: ``quantity`` of ``sku`` at
        ``location`` in ``system`` as of the business time ``as_of`` (docs/ingest.md,
        "Inventory snapshots"); return its id."""
        _check_system(system)
        event = {
            "specversion": "1.0",
            "id": id,
            "source": self.source,
            "type": "inventory.snapshot",
            "time": _rfc3339(as_of),
            "datacontenttype": "application/json",
            "data": {"system": system, "sku": sku, "location": location, "quantity": quantity},
        }
        self._add(event)
        return id

    def _add(self, event: dict[str, Any]) -> None:
        """Buffer ``event``; send the batch it completes."""
        with self._lock:
            self._buffer.append(event)
            batch = self._take() if len(self._buffer) >= self.batch_size else None
        if batch:
            self._post(batch)

    # -- sending -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many events are buffered and not yet sent."""
        with self._lock:
            return len(self._buffer)

    def flush(self) -> Any:
        """Send the buffered events now; return the server's parsed answer (None if idle)."""
        with self._lock:
            batch = self._take()
        return self._post(batch) if batch else None

    def close(self) -> None:
        """Flush, then close the HTTP session if the emitter created it."""
        try:
            self.flush()
        finally:
            if self._own_session:
                self._session.close()

    def __enter__(self) -> EventEmitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # The events emitted before the failure are real hops: still send them, but never
        # let a delivery error hide the exception that ended the block.
        try:
            self.close()
        except EmitError:
            _log.exception("could not deliver buffered status events to %s", self.endpoint)

    def _take(self) -> list[dict[str, Any]]:
        batch, self._buffer = self._buffer, []
        return batch

    def _backoff(self, attempt: int) -> float:
        delay = min(float(self.BACKOFF_CAP), self.BACKOFF_BASE * 2.0**attempt)
        return delay / 2 + random.uniform(0, delay / 2)

    def _post(self, events: list[dict[str, Any]]) -> Any:
        body = json.dumps(
            events, ensure_ascii=False, separators=(",", ":"), default=_reject_unserializable
        ).encode("utf-8")
        headers = {
            "Content-Type": BATCH_CONTENT_TYPE,
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
        }
        attempt = 0
        while True:
            delay: float | None = None
            status: int | None = None
            text = ""
            try:
                response = self._session.post(
                    self.endpoint, data=body, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status, text = response.status_code, response.text
                if 200 <= status < 300:
                    return self._answer(response)
                reason = f"HTTP {status}: {text[:500]}"
                if status not in RETRY_STATUSES:
                    raise EmitError(
                        f"{self.endpoint} refused {len(events)} events: {reason}",
                        status=status,
                        body=text,
                        events=events,
                    )
                delay = _retry_after(response.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise EmitError(
                    f"gave up sending {len(events)} events to {self.endpoint} after "
                    f"{attempt + 1} attempts: {reason}",
                    status=status,
                    body=text,
                    events=events,
                )
            wait = delay if delay is not None else self._backoff(attempt)
            _log.info("retrying status events in %.1f s (%s)", wait, reason)
            self._sleep(min(wait, self.MAX_DELAY))
            attempt += 1

    def _answer(self, response: requests.Response) -> Any:
        if not response.content:
            answer: Any = None
        else:
            try:
                answer = response.json()
            except ValueError:
                _log.warning("answer of %s is not JSON: %.200s", self.endpoint, response.text)
                answer = None
        self.answers.append(answer)
        if isinstance(answer, dict) and answer.get("rejected"):
            _log.warning("Observatory rejected status events: %s", answer["rejected"])
        return answer


def _reject_unserializable(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable in an event")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
