"""Telemetry delay: when each hop reaches Observatory, as opposed to when it happened.

A :class:`~observatory.simulator.entities.Step`'s ``at`` is the business time (what
happened, and the time stamped on the hop); ``send_at`` is when its sender hands it to
Observatory. Real integrations deliver late, in batches and out of order across systems,
so a late hop must not be mistaken for a late order. :class:`Delivery` moves ``send_at``
only, never ``at``, and draws its randomness from streams of its own (keyed by the seed
and the hop), so business times and ids are the same with or without it.

What it does, each part tunable (:class:`Telemetry`) and all of it switched off by
``--no-telemetry-delay``:

export batching
    The OTLP ``BatchSpanProcessor`` exports every ``export_delay_s`` wall seconds (and
    when a batch is full); the CloudEvents sender flushes at least that often. Applied by
    the senders (:mod:`.transport`), not here: it is at most that long on top of
    ``send_at``.
carrier relay
    Carrier tracking events reach Observatory through a middleware relay that forwards
    them in batches every ``relay_every_s`` simulated seconds: ``send_at`` is the next relay
    boundary plus that batch's jitter (the same for the whole batch, so the order holds).
ERP and WMS callbacks
    ERP callback events (billing, cancellation, refund settlement, stock adjustments) are
    a few seconds late, warehouse events a few seconds to a minute. The lag drifts
    smoothly with business time (a value every minute, interpolated between), slowly
    enough that a system's own events still arrive in business-time order.
Shopify retries
    A share ``shopify_retry_rate`` of webhook deliveries fails at first (a timeout, a 5xx
    on the way): only Shopify's retry reaches Observatory, minutes to hours later (Shopify
    retries with backoff for up to 48 h). The retry is the same event: the same
    ``X-Shopify-Event-Id``, and ``X-Shopify-Triggered-At`` still the business time.
a POS store offline
    In a history of at least a day, one store's uplink to Observatory is down for
    ``offline_store_hours`` from 11:00 store time on the latest day the window (and an
    hour after it) fits before the end of the history: its POS spans are buffered and
    uploaded at once when the window ends. Its sales still reach the ERP in the 15-minute
    batches on time (the store server's link to the ERP works): the orders are not late,
    only their telemetry. Runs without such a history have no offline store.

Spans of the middleware, the ERP connector, the inventory sync and the marketplace are
sent when they happen (plus the export batching), as are the marketplace's events.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Final

from observatory.simulator import catalog as cat
from observatory.simulator.timing import lognormal

if TYPE_CHECKING:
    from observatory.simulator.entities import Step

#: How a step travels (``Step.via``): an OTLP span, a CloudEvent, a Shopify webhook.
SPAN: Final = "span"
EVENT: Final = "event"
WEBHOOK: Final = "webhook"

#: ``Step.delay`` of the delays worth naming (the ordinary lags are not marked).
SHOPIFY_RETRY: Final = "shopify_retry"
OFFLINE_STORE: Final = "offline_store"

#: The senders' flush intervals with the delay switched off (what they always were).
PLAIN_SPAN_SCHEDULE_S: Final = 1.0
PLAIN_EVENT_LINGER_S: Final = 0.5

#: Callback lags as (median, sigma, low, high) seconds. ``high - low`` stays under the
#: knot interval, so the interpolated lag never falls faster than time runs: a system's
#: events leave in business-time order.
LAG_KNOT_S: Final = 60.0
ERP_LAG: Final = (4.0, 0.6, 1.0, 20.0)
WMS_LAG: Final = (12.0, 0.8, 2.0, 60.0)
#: The carrier relay's per-batch jitter: median 20 s, at most this share of the interval.
RELAY_JITTER_MEDIAN_S: Final = 20.0
RELAY_JITTER_SHARE: Final = 0.4
#: ... and the events of one batch leave in order, this share of their spacing apart.
RELAY_SPREAD: Final = 0.001
#: Shopify's retry: median 20 minutes after the business time, at most 48 hours.
SHOPIFY_RETRY_MEDIAN_S: Final = 1200.0
SHOPIFY_RETRY_MAX_S: Final = 48 * 3600.0
#: The offline window opens at this store-local hour, and ends at least this long
#: before the history does (so its upload is part of the history).
OFFLINE_LOCAL_HOUR: Final = 11
OFFLINE_MARGIN: Final = timedelta(hours=1)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The delivery options of a run (``simulate`` has one option for each)."""

    #: False: every hop is sent when it happens, the senders flush as they always did
    enabled: bool = True
    #: wall seconds between two exports of the span processor (and event flushes)
    export_delay_s: float = 2.0
    #: simulated seconds between two carrier relay batches (0: no relay)
    relay_every_s: float = 300.0
    #: share of Shopify webhook deliveries that only Shopify's retry delivers
    shopify_retry_rate: float = 0.01
    #: how long one store's POS is offline in a history of a day or more (0: never)
    offline_store_hours: float = 3.0

    @classmethod
    def off(cls) -> Telemetry:
        return cls(enabled=False)

    @property
    def span_schedule_s(self) -> float:
        """The ``BatchSpanProcessor``'s schedule delay."""
        return self.export_delay_s if self.enabled else PLAIN_SPAN_SCHEDULE_S

    @property
    def event_linger_s(self) -> float:
        """How long status events wait in the CloudEvents sender before a flush."""
        return self.export_delay_s if self.enabled else PLAIN_EVENT_LINGER_S


#: The realistic defaults every run has unless told otherwise.
DEFAULT_TELEMETRY: Final = Telemetry()


@dataclass(frozen=True, slots=True)
class OfflineWindow:
    """One store's POS uplink down from ``begin`` to ``end``; the upload is at ``end``."""

    store_id: str
    begin: datetime
    end: datetime

    @property
    def uploaded_at(self) -> datetime:
        return self.end


class Delivery:
    """Sets each step's ``send_at`` (and ``delay``) as :class:`Telemetry` says."""

    def __init__(
        self,
        telemetry: Telemetry,
        seed: int,
        start: datetime,
        history_begin: datetime | None,
    ) -> None:
        self.telemetry = telemetry
        self.seed = seed
        self._lags: dict[tuple[str, int], float] = {}
        self._relay_jitter: dict[int, timedelta] = {}
        self.offline: OfflineWindow | None = None
        if telemetry.enabled and telemetry.offline_store_hours > 0 and history_begin:
            self.offline = offline_window(seed, start, history_begin, telemetry)

    def apply(self, step: Step) -> None:
        t = self.telemetry
        if not t.enabled:
            return
        if step.via == EVENT:
            if step.system == "carrier" and t.relay_every_s > 0:
                step.send_at = self._relayed(step.send_at)
            elif step.system == "erp":
                step.send_at += self._lag("erp", step.send_at, ERP_LAG)
            elif step.system == "wms":
                step.send_at += self._lag("wms", step.send_at, WMS_LAG)
        elif step.via == WEBHOOK:
            spec = step.webhook
            # a duplicate is Shopify's own second delivery: it went through
            if spec is not None and t.shopify_retry_rate > 0 and step.fault is None:
                key = f"{self.seed}/shopify-retry/{spec.event_id}"
                if _chance(key) < t.shopify_retry_rate:
                    wait = lognormal(
                        random.Random(key), SHOPIFY_RETRY_MEDIAN_S, 1.4, 60, SHOPIFY_RETRY_MAX_S
                    )
                    step.send_at += wait
                    step.delay = SHOPIFY_RETRY
        elif step.via == SPAN and step.system == "pos" and self.offline is not None:
            window = self.offline
            if step.store_id == window.store_id and window.begin <= step.at < window.end:
                step.send_at = max(step.send_at, window.uploaded_at)
                step.delay = OFFLINE_STORE

    def _lag(self, system: str, moment: datetime, shape: tuple[float, ...]) -> timedelta:
        """The callback lag of ``system`` at ``moment``: interpolated between knots."""
        position = (moment - _EPOCH).total_seconds() / LAG_KNOT_S
        knot = math.floor(position)
        share = position - knot
        low = self._knot(system, knot, shape)
        high = self._knot(system, knot + 1, shape)
        return timedelta(seconds=low + (high - low) * share)

    def _knot(self, system: str, knot: int, shape: tuple[float, ...]) -> float:
        value = self._lags.get((system, knot))
        if value is None:
            median, sigma, lo, hi = shape
            rng = random.Random(f"{self.seed}/lag/{system}/{knot}")
            value = lognormal(rng, median, sigma, lo, hi).total_seconds()
            self._lags[(system, knot)] = value
        return value

    def _relayed(self, moment: datetime) -> datetime:
        every = self.telemetry.relay_every_s
        batch = math.ceil((moment - _EPOCH).total_seconds() / every)
        boundary = _EPOCH + timedelta(seconds=batch * every)
        jitter = self._relay_jitter.get(batch)
        if jitter is None:
            rng = random.Random(f"{self.seed}/relay/{batch}")
            jitter = lognormal(rng, RELAY_JITTER_MEDIAN_S, 0.5, 0, RELAY_JITTER_SHARE * every)
            self._relay_jitter[batch] = jitter
        # the relay forwards its batch in the order the events came in
        position = (moment - (boundary - timedelta(seconds=every))) * RELAY_SPREAD
        return boundary + jitter + position


def _chance(key: str) -> float:
    """A uniform number in [0, 1) from ``key`` alone (cheaper than seeding a Random)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def offline_window(
    seed: int, start: datetime, history_begin: datetime, telemetry: Telemetry
) -> OfflineWindow | None:
    """The offline store and its window (see the module docstring), or None when no
    window fits in the history."""
    length = timedelta(hours=telemetry.offline_store_hours)
    store = random.Random(f"{seed}/offline-store").choice(cat.STORES)
    offset = timedelta(hours=store.utc_offset_h)
    day = (start + offset).date()
    while True:
        begin = datetime.combine(day, time(OFFLINE_LOCAL_HOUR), tzinfo=UTC) - offset
        if begin < history_begin:
            return None
        if begin + length + OFFLINE_MARGIN <= start:
            return OfflineWindow(store.store_id, begin, begin + length)
        day -= timedelta(days=1)
