"""The simulation's core: its event queue, and the hop builders every flow plans with.

:class:`Engine` is the base of :class:`~observatory.simulator.model.Simulation` and of the
flows composed into it (:mod:`.erp`, :mod:`.orders`, :mod:`.fulfilment`, :mod:`.returns`,
:mod:`.pos`, :mod:`.inventory`). Pure, like all of the model: no I/O, no clock.

the queue
    Two heaps of steps and internal actions (an order arriving, a POS batch closing),
    keyed by the simulated time they reach Observatory (``Step.send_at``). What live
    orders do goes out first and the history fills the gaps, so a backfill of days never
    holds back the live trickle of a demo. Whatever an entity plans goes to its own
    entity's queue: an action popped from the live heap pushes onto the live heap.
    :meth:`Engine._schedule` queues a flow's steps: :mod:`.telemetry` sets when each one
    arrives, the silent warehouse's are dropped (counted, never handed out), and the
    truth recorder (:mod:`.truth`) is told of each.
handing out
    :meth:`Engine.pop_due`, :meth:`Engine.steps_until`, :meth:`Engine.not_sent`,
    :meth:`Engine.next_time`, :meth:`Engine.history_pending` and :attr:`Engine.pending`:
    the queue's side of the simulation's public interface.
hop builders
    ``_span``, ``_event`` and ``_webhooks`` make a :class:`~.entities.Step` of each way
    in (an OTLP span, a CloudEvent, a Shopify webhook; a chaos run delivers some
    webhooks twice).
ids and random streams
    Where each kind of id starts is drawn once from the seed; every id derives from an
    entity's position, and each entity draws from a stream of its own (:meth:`Engine._rng`),
    so the same plan always gives the same steps however the two queues interleave.

What the simulation decides once it has drawn its history (``delivery``: the telemetry
delay; ``wms_silence``: the silent warehouse's window) is declared here and set by
:class:`~observatory.simulator.model.Simulation`.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from observatory.simulator.cases import Cases
from observatory.simulator.entities import Order, Plan, Step, WebhookSpec
from observatory.simulator.telemetry import EVENT, SPAN, WEBHOOK, Delivery
from observatory.simulator.timing import lognormal
from observatory.simulator.truth import Truth

#: An internal action of the queue, run with the simulated time it was due.
Action = Callable[[datetime], None]


class Engine:
    """The queue, the id bases and the hop builders of one run; see the module docstring."""

    #: how each hop is delivered (set by the simulation once its history is drawn)
    delivery: Delivery
    #: the silent warehouse's business-time window, if the scenario has one (set likewise)
    wms_silence: tuple[datetime, datetime] | None

    def __init__(self, plan: Plan, *, record_truth: bool = False) -> None:
        if plan.start.tzinfo is None:
            raise ValueError("plan.start must be an aware datetime")
        self.plan = plan
        self.scenario = plan.scenario
        self.seed = plan.seed
        self.start = plan.start
        #: faults of the hops handed out (and of the dropped ones, when they were due)
        self.faults: Counter[str] = Counter()
        #: what the flows did (``cancelled``, ``shipments``, ``returns``, ``pos_batches``...)
        self.counts: Counter[str] = Counter()
        #: notable telemetry delays of the hops handed out
        self.delayed: Counter[str] = Counter()
        # Two queues: what live orders do goes out first, the history fills the gaps.
        self._live_heap: list[tuple[datetime, int, Step | Action]] = []
        self._history_heap: list[tuple[datetime, int, Step | Action]] = []
        #: the queue of the entity being processed: its steps and actions go there too
        self._in_live = False
        self._seq = 0
        self._steps_queued = 0
        self.truth = Truth(plan) if record_truth else None
        #: reroutes, cancellations and inventory snapshots (cases.py), for the truth
        self.cases = Cases()
        if self.truth is not None:
            self.truth.sections.append(self.cases.document)

        ids = random.Random(f"{plan.seed}/ids")
        self._number_base = ids.randrange(1_001, 900_000)
        self._shopify_base = 5_600_000_000_000 + ids.randrange(10**11) * 100
        self._customer_base = 7_100_000_000_000 + ids.randrange(10**11) * 100
        self._so_base = ids.randrange(100_000, 800_000)
        self._shipment_base = ids.randrange(100_000, 800_000)
        self._fulfillment_base = 5_200_000_000 + ids.randrange(10**7) * 100
        self._invoice_base = ids.randrange(100_000, 800_000)
        self._return_base = 9_400_000_000 + ids.randrange(10**7) * 100
        self._refund_base = 9_800_000_000 + ids.randrange(10**7) * 100
        self._update_base = ids.randrange(100_000, 800_000)
        self._receipt_base = ids.randrange(100, 900)

    # --- handing out ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Steps planned and not handed out yet."""
        return self._steps_queued

    def next_time(self) -> datetime | None:
        """When the next step or action is due (simulated), None when all is done."""
        heads = [heap[0][0] for heap in (self._live_heap, self._history_heap) if heap]
        return min(heads) if heads else None

    def history_pending(self) -> bool:
        """Whether hops of the history (due before the start) are still to be handed out."""
        return bool(self._history_heap) and self._history_heap[0][0] <= self.start

    def pop_due(self, until: datetime, limit: int = 1_000) -> list[Step]:
        """The steps due at or before ``until`` (simulated), at most ``limit``, in order."""
        out: list[Step] = []
        for live, heap in ((True, self._live_heap), (False, self._history_heap)):
            while heap and heap[0][0] <= until and len(out) < limit:
                moment, _, item = heapq.heappop(heap)
                if isinstance(item, Step):
                    if item.fault:
                        self.faults[item.fault] += 1
                    if item.dropped:
                        continue
                    self._steps_queued -= 1
                    if item.delay:
                        self.delayed[item.delay] += 1
                    if self.truth is not None:
                        self.truth.handed(item)
                    out.append(item)
                else:
                    self._in_live = live
                    item(moment)
        return out

    def not_sent(self, steps: list[Step]) -> None:
        """Steps handed out by :meth:`pop_due` that were not sent after all (a run
        stopped in the middle of a batch): the ground truth must not count them."""
        for step in steps:
            if step.delay:
                self.delayed[step.delay] -= 1
            if self.truth is not None:
                self.truth.not_handed(step)

    def steps_until(self, until: datetime) -> Iterator[Step]:
        """Every step due at or before ``until``, in order (for tests and backfills)."""
        while True:
            batch = self.pop_due(until)
            if not batch:
                return
            yield from batch

    # --- the queue -----------------------------------------------------------------------

    def _push(self, moment: datetime, item: Step | Action) -> None:
        """Queue ``item`` at ``moment`` in the queue of the entity being processed."""
        self._seq += 1
        heap = self._live_heap if self._in_live else self._history_heap
        heapq.heappush(heap, (moment, self._seq, item))

    def _schedule(self, steps: list[Step]) -> None:
        """Queue a flow's steps by the time they reach Observatory (:mod:`.telemetry`
        decides it); the silent warehouse's are queued as dropped, never handed out."""
        truth = self.truth
        for step in steps:
            if self.wms_silence and step.system == "wms":
                begin, end = self.wms_silence
                if begin <= step.at < end:
                    # never sent; counted as a fault when it would have been
                    step.fault, step.dropped = "wms_silent_dropped", True
                    if truth is not None:
                        truth.planned(step)
                    self._push(step.send_at, step)
                    continue
            self.delivery.apply(step)
            if truth is not None:
                truth.planned(step)
            self._steps_queued += 1
            step.live = self._in_live
            self._push(step.send_at, step)

    def _rng(self, kind: str, index: int) -> random.Random:
        """The random stream of one entity (``order``, ``update``) of the run."""
        # One stream per entity: an order's plan never depends on how many random
        # numbers another order drew.
        return random.Random(f"{self.seed}/{kind}/{index}")

    # --- hop builders --------------------------------------------------------------------

    def _span(self, order_ref: str, at: datetime, system: str, operation: str, **kw: Any) -> Step:
        """A span hop; ``kw`` are :class:`~.entities.Step` fields (``keys`` required,
        ``send_at`` defaults to ``at``)."""
        return Step(
            at=at,
            send_at=kw.pop("send_at", at),
            via=SPAN,
            system=system,
            operation=operation,
            keys=kw.pop("keys"),
            ref=order_ref,
            **kw,
        )

    def _event(
        self,
        rng: random.Random,
        order_ref: str,
        at: datetime,
        system: str,
        operation: str,
        *,
        source: str,
        event_type: str,
        **kw: Any,
    ) -> Step:
        """A CloudEvent hop with an id from ``rng``; ``kw`` as for :meth:`_span`."""
        return Step(
            at=at,
            send_at=kw.pop("send_at", at),
            via=EVENT,
            system=system,
            operation=operation,
            keys=kw.pop("keys"),
            ref=order_ref,
            source=source,
            event_type=event_type,
            event_id=str(seeded_uuid(rng)),
            **kw,
        )

    def _webhooks(
        self, rng: random.Random, order: Order, at: datetime, topic: str, **spec: Any
    ) -> list[Step]:
        """One Shopify delivery, and a second one of the same event in chaos runs."""
        event_id = str(seeded_uuid(rng))
        webhook = WebhookSpec(
            topic=topic, order=order, event_id=event_id, webhook_id=str(seeded_uuid(rng)), **spec
        )
        first = Step(
            at=at,
            send_at=at,
            via=WEBHOOK,
            system="shopify",
            operation=topic,
            keys=_shopify_keys(webhook),
            ref=order.ref,
            webhook=webhook,
        )
        steps = [first]
        if self.scenario.duplicate_rate and rng.random() < self.scenario.duplicate_rate:
            again = WebhookSpec(**{**_spec_fields(webhook), "webhook_id": str(seeded_uuid(rng))})
            delay = lognormal(rng, 8, 1.0, 1, 60)
            steps.append(
                Step(
                    at=at,
                    send_at=at + delay,
                    via=WEBHOOK,
                    system="shopify",
                    operation=topic,
                    keys=dict(first.keys),
                    ref=order.ref,
                    webhook=again,
                    fault="duplicate_delivery",
                )
            )
        return steps


# --- helpers -----------------------------------------------------------------------------


def seeded_uuid(rng: random.Random) -> uuid.UUID:
    """A version-4 UUID drawn from ``rng``: the same stream, the same ids."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _shopify_keys(spec: WebhookSpec) -> dict[str, str | list[str]]:
    """The keys Observatory's Shopify decoder reads from this delivery (for summaries)."""
    order = spec.order
    keys: dict[str, str | list[str]] = {"shopify_order_id": str(order.shopify_id)}
    if spec.topic.startswith("orders/"):
        keys["order_number"] = order.name
    if spec.shipment is not None:
        keys["fulfillment_id"] = str(spec.shipment.fulfillment_id)
        keys["tracking_number"] = spec.shipment.tracking_number
    if spec.refund is not None:
        keys["return_id"] = str(spec.refund.return_id)
        if spec.topic.startswith("refunds/"):
            keys["refund_id"] = str(spec.refund.refund_id)
    return keys


def _spec_fields(spec: WebhookSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in WebhookSpec.__dataclass_fields__}
