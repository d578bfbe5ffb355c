"""The senders: how a model :class:`~observatory.simulator.entities.Step` reaches Observatory.

Three ways in, as real integrations use them, one module each:

``spans``     :class:`SpanSender`: the OpenTelemetry SDK (one ``TracerProvider`` per
              simulated service, a ``BatchSpanProcessor`` and the OTLP/HTTP exporter
              posting to ``{url}/v1/traces`` with the bearer token), driven through
              ``tracing.instrument``; business times, seeded trace and span ids.
``webhooks``  :class:`WebhookSender`: Shopify deliveries signed with the app secret
              (base64 HMAC-SHA256 of the raw body), the token in the URL query,
              concurrent on keep-alive sessions, 429/502/503/504 retried after
              ``Retry-After``.
``events``    :class:`EventSender`: CloudEvents through
              ``tracing.instrument.EventEmitter`` (one per source), posted in batches from
              a small thread pool.
``shared``    :class:`Stats`, the tallies all three keep, and the attribute values they
              write.

:class:`Senders` routes each step to its sender by ``Step.via``. The span processor
exports, and the event sender flushes, at least every ``Telemetry.export_delay_s`` wall
seconds (:mod:`observatory.simulator.telemetry`): the export batching of real
integrations.

Failures are counted in :class:`Stats`, never raised: a simulator that dies on the first
503 would be useless for the ``erp-outage`` demo of Observatory's own outage handling.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from observatory.simulator.entities import Step
from observatory.simulator.telemetry import DEFAULT_TELEMETRY, EVENT, SPAN, WEBHOOK, Telemetry
from observatory.simulator.transport.events import EventSender
from observatory.simulator.transport.shared import Stamp, Stats
from observatory.simulator.transport.spans import SpanSender
from observatory.simulator.transport.webhooks import WebhookSender, sign

__all__ = [
    "EventSender",
    "Senders",
    "SpanSender",
    "Stamp",
    "Stats",
    "WebhookSender",
    "random_seed",
    "sign",
    "wait_for_server",
]


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
        """Send what is queued, within ``timeout``: the three senders close side by side, to
        the same deadline, so an interrupted run's close takes ``timeout`` at most, not the
        sum of three (one after the other, each given a second at least, it took up to 4 s
        of honcho's 5 s grace under make run: docs/scaling.md, "Stopping")."""
        senders = (self.events, self.webhooks, self.spans)
        with ThreadPoolExecutor(len(senders), thread_name_prefix="sim-close") as pool:
            closing = [pool.submit(sender.close, timeout) for sender in senders]
        for done in closing:
            done.result()  # a close that failed raises here, in the caller's thread


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
