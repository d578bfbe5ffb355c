"""The simulation model: what happens to each order, return and inventory update, and when.

Pure: a :class:`Simulation` is built from a :class:`Plan` (a seed, a start time, volumes
and a scenario) and hands out :class:`Step` values, each one hop to send, in the order
they reach Observatory. Nothing here does I/O or reads a clock, so the same plan always
yields the same steps (ids, amounts, payload contents, times), and tests need no server.

It is a discrete-event simulation over *simulated* time: a heap of steps and internal
actions (an order arriving, a POS batch closing) keyed by the time they reach
Observatory. An order's whole life is planned when it arrives, with lognormal delays on
business-hours curves; cross-order work (POS batches every 15 minutes, the ERP being
down, ids reused by a faulty ERP) is decided by the simulation's own state, in heap
order, so the result does not depend on how callers slice time.

The flows (``system: what``; ``stage`` where the sender knows it, else the platform's
own status word for the server's status maps):

web order
    shopify: ``orders/create`` and ``orders/paid`` webhooks -> middleware: the Shopify
    bridge receives the webhook and publishes to a queue (the trace breaks) -> middleware:
    validation consumes it (new trace, linked, keys from baggage; ``validated``) -> erp:
    the connector posts the sales order (NetSuite ``Pending Fulfillment``, key
    ``erp_sales_order``; retries on failures) -> wms: ``released``, ``picked`` (pick and
    pack), ``shipped`` per shipment (``shipment_id``, ``tracking_number``; 12 % of
    multi-line orders ship in two shipments a day apart) -> carrier: EasyPost or
    AfterShip status words -> shopify: ``fulfillments/create`` (fulfillment synced),
    ``fulfillments/update``, ``orders/fulfilled`` -> erp: ``Billed`` in the nightly
    billing run (``invoice_id``). 2 % are cancelled after posting (``orders/cancelled``).
return (7 % of delivered web orders)
    shopify ``returns/request`` -> wms ``return_received`` -> shopify ``refunds/create``
    -> erp ``refund_settled``.
POS sale
    pos: the sale (``captured``, ``pos_receipt`` like ``ST12-0042-118``, ``store_id``)
    -> erp: one batch posting per store every 15 minutes carrying the array of receipts
    (a fan-out hop) and a ``batch_id`` (``posted``).
marketplace order
    marketplace: order notification (``captured``) -> middleware import (``validated``)
    -> erp posting -> the same warehouse and carrier flow -> marketplace: shipment
    confirmed -> erp billing.
inventory update
    erp or wms: ``inventory_adjusted`` (``inventory_update_id``, ``sku``, ``location``)
    -> shopify and pos: ``inventory_published`` after a sync lag.

Scenario faults are described in :mod:`observatory.simulator.scenarios`. When each hop
reaches Observatory (``Step.send_at``: relayed, late, retried, buffered) is decided by
:mod:`observatory.simulator.telemetry`; :mod:`observatory.simulator.truth` records what
really happened, for ``simulate --truth``.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from observatory.simulator import catalog as cat
from observatory.simulator.engine import Action, seeded_uuid
from observatory.simulator.entities import (
    CANCEL_RATE,
    CENT,
    CHANNEL_SHARES,
    DAILY_ORDERS,
    ERP_BACKOFF_BASE_S,
    ERP_BACKOFF_CAP_S,
    FAILED_DELIVERY_RATE,
    HISTORY_CHANNEL_WEIGHTS,
    INVENTORY_PER_ORDER,
    INVENTORY_SLA,
    LIVE_FAULT_DELAY_S,
    POS_BATCH_MINUTES,
    POS_STOCK_SYNC_MINUTES,
    REPLAY_SO_OFFSET,
    RETURN_RATE,
    SPLIT_RATE,
    TRANSIENT_ERP_FAILURE,
    WMS_SILENCE_OFFSET,
    Customer,
    Line,
    Order,
    Plan,
    Refund,
    Shipment,
    Step,
    WebhookSpec,
    history_volume,
    money,
)
from observatory.simulator.erp import ErpConnector
from observatory.simulator.fulfilment import Fulfilment
from observatory.simulator.returns import Returns
from observatory.simulator.telemetry import EVENT, SPAN, WEBHOOK, Delivery
from observatory.simulator.timing import (
    POS_CURVE,
    WAREHOUSE_CLOSE_H,
    WAREHOUSE_OPEN_H,
    WEB_CURVE,
    ceil_to,
    curve_weight,
    lognormal,
)

# What other modules and the tests import from here: the simulation, and the records and
# constants of :mod:`.entities` it is made of.
__all__ = [
    "CANCEL_RATE",
    "CENT",
    "CHANNEL_SHARES",
    "DAILY_ORDERS",
    "ERP_BACKOFF_BASE_S",
    "ERP_BACKOFF_CAP_S",
    "EVENT",
    "FAILED_DELIVERY_RATE",
    "HISTORY_CHANNEL_WEIGHTS",
    "INVENTORY_PER_ORDER",
    "INVENTORY_SLA",
    "LIVE_FAULT_DELAY_S",
    "POS_BATCH_MINUTES",
    "POS_STOCK_SYNC_MINUTES",
    "REPLAY_SO_OFFSET",
    "RETURN_RATE",
    "SPAN",
    "SPLIT_RATE",
    "TRANSIENT_ERP_FAILURE",
    "WEBHOOK",
    "WMS_SILENCE_OFFSET",
    "Customer",
    "Line",
    "Order",
    "Plan",
    "Refund",
    "Shipment",
    "Simulation",
    "Step",
    "WebhookSpec",
    "history_volume",
    "money",
]


class Simulation(ErpConnector, Fulfilment, Returns):
    """One run of the model; see the module docstring."""

    def __init__(self, plan: Plan, *, record_truth: bool = False) -> None:
        super().__init__(plan, record_truth=record_truth)
        self.orders_by_channel: Counter[str] = Counter()
        self._arrivals_open = True
        self._live_started = 0
        self._history_done = False
        self.last_arrival: datetime | None = None
        self._order_count = 0
        self._live_web = 0
        self._live_updates = 0
        self._live_channels: list[str] = []
        # POS receipts waiting for their batch, per (live?, store); ticks per (live?, time)
        self._pos_pending: dict[tuple[bool, str], list[Order]] = {}
        self._pos_ticks: set[tuple[bool, datetime]] = set()

        arrivals = random.Random(f"{plan.seed}/arrivals")
        # Every id derives from an entity's position (history: its place in the precomputed
        # list; live: after all of the history), never from processing order, so the two
        # queues may interleave however the wall clock says and a seed still gives the
        # same ids.
        self._history = self._history_arrivals(arrivals, plan.history_orders)
        self._history_web = list(accumulate(int(c == "web") for _, c in self._history))
        updates = round(plan.history_orders * INVENTORY_PER_ORDER)
        self._history_updates = self._history_update_times(arrivals, updates)
        self._live_rng = random.Random(f"{plan.seed}/live")
        self._live_update_rng = random.Random(f"{plan.seed}/live-updates")

        whole_day = plan.history_days >= 1 and bool(self._history)
        begin = plan.start - timedelta(days=plan.history_days)
        self.delivery = Delivery(
            plan.telemetry, plan.seed, plan.start, begin if whole_day else None
        )
        #: per block of orders: where the shipped-unposted one is looked for, which it is
        self._unposted: dict[int, tuple[int, int]] = {}

        self.fault_anchor = self._fault_anchor()
        self.erp_outage = None
        self.wms_silence = None
        if self.fault_anchor is not None:
            if self.scenario.erp_outage_s:
                end = self.fault_anchor + timedelta(seconds=self.scenario.erp_outage_s)
                self.erp_outage = (self.fault_anchor, end)
            if self.scenario.wms_silence_s:
                begin = self.fault_anchor + WMS_SILENCE_OFFSET
                self.wms_silence = (begin, begin + timedelta(seconds=self.scenario.wms_silence_s))

        if self._history:
            self._push(self._history[0][0], self._history_arrival(0))
        if self._history_updates:
            self._push(self._history_updates[0], self._history_update(0))
        if self._live_enabled():
            self._in_live = True
            self._push_next_live(self.start)
            self._push_next_live_update(self.start)
            self._in_live = False

    # --- public interface --------------------------------------------------------------

    @property
    def orders(self) -> int:
        """Orders started so far (all channels)."""
        return self._order_count

    @property
    def live(self) -> bool:
        """Whether this run has a live phase (orders after the start)."""
        return self._live_enabled()

    @property
    def arrivals_done(self) -> bool:
        """No order will start any more (stopped, or every planned one started)."""
        if self._history and not self._history_done:
            return False
        limit = self.plan.live_orders
        return (
            not self._live_enabled()
            or not self._arrivals_open
            or (limit is not None and self._live_started >= limit)
        )

    def expected_orders(self) -> int | None:
        """Orders this run will start in all, if that is known in advance."""
        if not self._live_enabled():
            return len(self._history)
        if self.plan.live_orders is None:
            return None
        return len(self._history) + self.plan.live_orders

    def stop_arrivals(self) -> None:
        """No new live orders or inventory updates from now on; planned hops still come,
        and so does the rest of the history."""
        self._arrivals_open = False

    # --- arrivals ----------------------------------------------------------------------

    def _live_enabled(self) -> bool:
        if self.plan.live_rate <= 0:
            return False
        return self.plan.live_orders is None or self.plan.live_orders > 0

    def _history_slots(self) -> list[tuple[datetime, dict[str, float]]]:
        """Hour slots of the history and each channel's weight in them."""
        begin = self.start - timedelta(days=self.plan.history_days)
        slot = begin.replace(minute=0, second=0, microsecond=0)
        slots: list[tuple[datetime, dict[str, float]]] = []
        while slot < self.start:
            weights = {
                "web": HISTORY_CHANNEL_WEIGHTS["web"]
                * curve_weight("web", slot, cat.SHOP_UTC_OFFSET_H),
                "pos": HISTORY_CHANNEL_WEIGHTS["pos"] * _pos_weight(slot),
                "marketplace": HISTORY_CHANNEL_WEIGHTS["marketplace"]
                * curve_weight("marketplace", slot, cat.SHOP_UTC_OFFSET_H),
            }
            slots.append((slot, weights))
            slot += timedelta(hours=1)
        return slots

    def _history_arrivals(self, rng: random.Random, count: int) -> list[tuple[datetime, str]]:
        if count <= 0 or self.plan.history_days <= 0:
            return []
        begin = self.start - timedelta(days=self.plan.history_days)
        slots = self._history_slots()
        totals = [sum(w.values()) for _, w in slots]
        cumulative = list(accumulate(totals))
        out: list[tuple[datetime, str]] = []
        for _ in range(count):
            i = min(bisect_left(cumulative, rng.random() * cumulative[-1]), len(slots) - 1)
            slot, weights = slots[i]
            low = max(slot, begin)
            high = min(slot + timedelta(hours=1), self.start)
            moment = low + (high - low) * rng.random()
            channel = rng.choices(list(weights), weights=list(weights.values()))[0]
            out.append((moment, channel))
        out.sort(key=lambda item: item[0])
        return out

    def _history_update_times(self, rng: random.Random, count: int) -> list[datetime]:
        if count <= 0 or self.plan.history_days <= 0:
            return []
        begin = self.start - timedelta(days=self.plan.history_days)
        out: list[datetime] = []
        while len(out) < count:
            moment = begin + (self.start - begin) * rng.random()
            # stock moves follow the warehouse shifts
            if rng.random() < 0.9 and not (
                WAREHOUSE_OPEN_H <= (moment + timedelta(hours=-5)).hour < WAREHOUSE_CLOSE_H
            ):
                continue
            out.append(moment)
        out.sort()
        return out

    def _fault_anchor(self) -> datetime | None:
        if self._live_enabled():
            return self.start + timedelta(seconds=self.plan.live_fault_delay_s)
        if self._history:
            return self._history[int(0.4 * len(self._history))][0]
        return None

    def _history_arrival(self, i: int) -> Action:
        def arrive(moment: datetime) -> None:
            self._start_order(moment, self._history[i][1], index=i, live=False)
            if i + 1 < len(self._history):
                self._push(self._history[i + 1][0], self._history_arrival(i + 1))
                return
            self._history_done = True

        return arrive

    def _push_next_live(self, after: datetime) -> None:
        rate = self.plan.live_rate * self.scenario.traffic
        gap = self._live_rng.expovariate(rate)
        self._push(after + timedelta(seconds=gap), self._live_arrival)

    def _live_arrival(self, moment: datetime) -> None:
        limit = self.plan.live_orders
        if not self._arrivals_open or (limit is not None and self._live_started >= limit):
            return
        self._live_started += 1
        shares = CHANNEL_SHARES
        channel = self._live_rng.choices(list(shares), weights=list(shares.values()))[0]
        self._live_channels.append(channel)
        index = len(self._history) + self._live_started - 1
        self._start_order(moment, channel, index=index, live=True)
        if limit is None or self._live_started < limit:
            self._push_next_live(moment)

    def _history_update(self, i: int) -> Action:
        def arrive(moment: datetime) -> None:
            self._start_update(moment, i)
            if i + 1 < len(self._history_updates):
                self._push(self._history_updates[i + 1], self._history_update(i + 1))

        return arrive

    def _push_next_live_update(self, after: datetime) -> None:
        rate = self.plan.live_rate * self.scenario.traffic * INVENTORY_PER_ORDER
        gap = self._live_update_rng.expovariate(rate)
        self._push(after + timedelta(seconds=gap), self._live_update)

    def _live_update(self, moment: datetime) -> None:
        limit = self.plan.live_orders
        if not self._arrivals_open or (limit is not None and self._live_started >= limit):
            return
        self._start_update(moment, len(self._history_updates) + self._live_updates)
        self._live_updates += 1
        self._push_next_live_update(moment)

    # --- building orders ---------------------------------------------------------------

    def _channel_of(self, index: int) -> str:
        if index < len(self._history):
            return self._history[index][1]
        return self._live_channels[index - len(self._history)]

    def _is_lost(self, index: int) -> bool:
        """Whether a web order's queue message is lost (chaos): a function of its index."""
        rate = self.scenario.lost_rate
        if not rate or self._channel_of(index) != "web":
            return False
        return random.Random(f"{self.seed}/lost/{index}").random() < rate

    def _is_unposted(self, index: int) -> bool:
        """Whether a web order is shipped but never posted (chaos): in every block of
        ``unposted_every`` orders, the first web order not lost from a seeded position on.
        Decided from indexes only, like :meth:`_conflict_target`."""
        every = self.scenario.unposted_every
        if not every or self._channel_of(index) != "web" or self._is_lost(index):
            return False
        block = index // every * every
        first, chosen = self._unposted.get(block, (-1, -1))
        if first < 0:
            first = block + random.Random(f"{self.seed}/unposted/{block}").randrange(every)
        elif chosen >= 0:
            return chosen == index
        for j in range(first, index + 1):
            if self._channel_of(j) == "web" and not self._is_lost(j):
                self._unposted[block] = (first, j)
                return j == index
        self._unposted[block] = (first, -1)
        return False

    def _conflict_target(self, index: int) -> str | None:
        """The sales-order number a faulty ERP reuses for this order, if it does (chaos).

        In every block of ``conflict_every`` orders, the first web or marketplace order
        that gets posted is given the number of the nearest earlier order that was posted.
        Decided from indexes only (history channels are known in advance, live ones
        arrive in order), so it does not depend on how the queues interleave.
        """
        every = self.scenario.conflict_every
        if not every:
            return None

        def posted(j: int) -> bool:
            return (
                self._channel_of(j) != "pos" and not self._is_lost(j) and not self._is_unposted(j)
            )

        block = index // every * every
        first = next((j for j in range(max(block, 1), index + 1) if posted(j)), None)
        if first != index:
            return None
        target = next((j for j in range(index - 1, -1, -1) if posted(j)), None)
        return None if target is None else f"SO-{self._so_base + target}"

    def _start_order(self, moment: datetime, channel: str, *, index: int, live: bool) -> None:
        self._order_count += 1
        self.last_arrival = moment
        self.orders_by_channel[channel] += 1
        rng = self._rng("order", index)
        order = self._new_order(index, channel, moment, rng, live=live)
        if self.truth is not None:
            self.truth.order(order)
        if channel == "web":
            steps = self._web_order(order, rng)
        elif channel == "pos":
            steps = self._pos_sale(order, rng)
        else:
            steps = self._marketplace_order(order, rng)
        self._schedule(steps)

    def _new_order(
        self, index: int, channel: str, moment: datetime, rng: random.Random, *, live: bool
    ) -> Order:
        count = rng.choices((1, 2, 3, 4), weights=(50, 30, 15, 5))[0]
        products = rng.choices(cat.PRODUCTS, weights=[p.weight for p in cat.PRODUCTS], k=count)
        merged: dict[str, Line] = {}
        for n, product in enumerate(products):
            quantity = 2 if rng.random() < 0.15 else 1
            if product.sku in merged:
                merged[product.sku].quantity += quantity
            else:
                line_id = 14_000_000_000_000 + (self._shopify_base % 10**9) * 10 + index * 10 + n
                merged[product.sku] = Line(line_id, product, quantity)
        lines = list(merged.values())
        subtotal = sum((line.total for line in lines), Decimal("0"))
        code = ""
        if channel == "web" and self.scenario.sale:
            code, discount = "SALE20", money(subtotal * Decimal("0.20"))
        elif channel == "web" and rng.random() < 0.12:
            code, discount = "WELCOME10", money(subtotal * Decimal("0.10"))
        else:
            discount = Decimal("0.00")
        order = Order(
            index=index,
            channel=channel,
            placed_at=moment,
            lines=lines,
            subtotal=money(subtotal),
            discount=discount,
            shipping=Decimal("0.00"),
            tax=Decimal("0.00"),
            total=Decimal("0.00"),
            correlation_id=str(seeded_uuid(rng)),
            discount_code=code,
        )
        if channel == "web":
            if live:
                self._live_web += 1
                rank = (self._history_web[-1] if self._history_web else 0) + self._live_web
            else:
                rank = self._history_web[index]
            order.number = self._number_base + rank - 1
            order.shopify_id = self._shopify_base + index * 100 + rng.randrange(100)
            order.token = seeded_uuid(rng).hex
            order.confirmation = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=9))
            province, city, tax_rate = rng.choice(cat.REGIONS)
            first, last = rng.choice(cat.FIRST_NAMES), rng.choice(cat.LAST_NAMES)
            order.customer = Customer(
                id=self._customer_base + index * 10 + rng.randrange(10),
                first_name=first,
                last_name=last,
                email=f"{first}.{last}{rng.randrange(10, 99)}@example.com".lower(),
                province=province,
                city=city,
                tax_rate=tax_rate,
            )
            if order.subtotal - discount < Decimal("75"):
                order.shipping = Decimal("6.95")
            order.tax = money((order.subtotal - discount) * tax_rate)
        elif channel == "pos":
            store = self._pick_store(moment, rng, live=live)
            order.store = store
            order.register = rng.choice(store.registers)
            order.receipt = f"{store.store_id}-{order.register}-{self._receipt_base + index}"
            order.tax = money(order.subtotal * store.tax_rate)
        else:
            order.marketplace_id = (
                f"{rng.randrange(111, 115)}-{rng.randrange(10**7):07d}-{rng.randrange(10**7):07d}"
            )
            order.tax = money(order.subtotal * Decimal("0.08"))
        order.total = order.subtotal - order.discount + order.shipping + order.tax
        if channel != "pos":
            order.erp_sales_order = f"SO-{self._so_base + index}"
            order.invoice_id = f"INV-{self._invoice_base + index}"
        return order

    def _pick_store(self, moment: datetime, rng: random.Random, *, live: bool) -> cat.Store:
        weights = [
            s.weight * (1.0 if live else curve_weight("pos", moment, s.utc_offset_h))
            for s in cat.STORES
        ]
        if not any(weights):
            weights = [s.weight for s in cat.STORES]
        return rng.choices(cat.STORES, weights=weights)[0]

    # --- posting orders ----------------------------------------------------------------

    def _consume_and_post(
        self,
        order: Order,
        rng: random.Random,
        at: datetime,
        keys: dict[str, str | list[str]],
        *,
        operation: str,
        service: str,
        context: str,
        duration_median_s: float,
        erp_factor: float,
        attributes: dict[str, Any],
        consume: str | None = None,
        post: bool = True,
    ) -> tuple[list[Step], datetime, bool]:
        """The middleware consumer that validates a web or marketplace order at ``at``
        (saved as ``context``), then its ERP posting: (steps, posted at, conflicted).
        ``post`` False: the posting message is dead-lettered (steps, validated at, False)."""
        duration = lognormal(rng, duration_median_s, 0.5, 0.05, 5).total_seconds()
        intake = self._span(
            order.ref,
            at,
            "middleware",
            operation,
            keys={**keys, "correlation_id": order.correlation_id},
            service=service,
            span_kind="consumer",
            consume=consume,
            save_as=context,
            stage="validated",
            duration_s=duration,
            channel=order.channel,
            amount=order.total,
            currency=order.currency,
            attributes=attributes,
        )
        if not post:
            intake.fault = "shipped_unposted"
            return [intake], at + timedelta(seconds=duration), False
        post_at = (
            at
            + timedelta(seconds=duration)
            + lognormal(rng, erp_factor * self.scenario.erp_latency, 0.7, 0.5, 35)
        )
        posting, posted, conflicted = self._post_order(order, rng, post_at, context, keys)
        return [intake, *posting], posted, conflicted

    def _post_order(
        self, order: Order, rng: random.Random, at: datetime, parent: str, base_keys: dict
    ) -> tuple[list[Step], datetime, bool]:
        """Post one web or marketplace order; returns (steps, posted at, conflicted)."""
        so = order.erp_sales_order
        # A faulty ERP (a number range reused after a failover) may answer with the
        # sales-order number of another order.
        reused = self._conflict_target(order.index)
        conflicted = reused is not None
        if reused is not None:
            so = reused
        steps, posted = self._erp_post(
            rng,
            order.ref,
            at,
            operation="netsuite.salesOrder.create",
            keys=base_keys,
            ok_keys={"erp_sales_order": so},
            parent=parent,
            message=f"q:{order.index}:post",
            platform_status=cat.NETSUITE_PENDING_FULFILLMENT,
            channel=order.channel,
            amount=order.total,
            currency=order.currency,
        )
        if conflicted:
            steps[-1].fault = "conflicting_id"
        replayed = bool(self.scenario.replay_rate) and rng.random() < self.scenario.replay_rate
        # A conflicted order is not replayed: Observatory refused its first posting's link,
        # so a second one could not be told apart from a first (two faults in one order).
        if replayed and not conflicted:
            # The ERP does not recognise the replayed message: it creates a second sales
            # order with a number of its own, so the order is posted twice.
            again = posted + lognormal(rng, 300, 0.6, 60, 1800)
            steps.append(
                self._span(
                    order.ref,
                    again,
                    "erp",
                    "netsuite.salesOrder.create",
                    keys={
                        **base_keys,
                        "erp_sales_order": f"SO-{self._so_base + REPLAY_SO_OFFSET + order.index}",
                    },
                    service=cat.SERVICE_ERP_CONNECTOR,
                    span_kind="client",
                    parent=parent,
                    platform_status=cat.NETSUITE_PENDING_FULFILLMENT,
                    duration_s=lognormal(rng, 1.2, 0.5, 0.2, 12).total_seconds(),
                    replay=True,
                    channel=order.channel,
                    amount=order.total,
                    currency=order.currency,
                    attributes={"messaging.message.redelivered": True},
                    fault="replayed_posting",
                )
            )
        return steps, posted, conflicted

    # --- web orders --------------------------------------------------------------------

    def _web_order(self, order: Order, rng: random.Random) -> list[Step]:
        t0 = order.placed_at
        ref = order.ref
        steps = self._webhooks(rng, order, t0, "orders/create")
        steps += self._webhooks(rng, order, t0 + lognormal(rng, 4, 0.6, 1, 60), "orders/paid")
        order_keys: dict[str, str | list[str]] = {
            "shopify_order_id": str(order.shopify_id),
            "order_number": order.name,
        }
        received = t0 + lognormal(rng, 0.8, 0.5, 0.2, 5)
        message = f"q:{order.index}:validate"
        steps.append(
            self._span(
                ref,
                received,
                "middleware",
                "POST /webhooks/shopify/orders-create",
                keys={**order_keys, "correlation_id": order.correlation_id},
                service=cat.SERVICE_SHOPIFY_BRIDGE,
                span_kind="server",
                publish=message,
                duration_s=lognormal(rng, 0.08, 0.5, 0.01, 1).total_seconds(),
                channel="web",
                amount=order.total,
                currency=order.currency,
                attributes={
                    "http.request.method": "POST",
                    "http.route": "/webhooks/shopify/orders-create",
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": "orders.validate",
                    "messaging.operation.type": "send",
                },
            )
        )
        if self._is_lost(order.index):
            # The message never reaches the validator: the order exists in Shopify only.
            steps[-1].fault = "lost_event"
            return steps
        validated = received + lognormal(rng, 2.5, 0.9, 0.1, 40)
        unposted = self._is_unposted(order.index)
        posting, posted, conflicted = self._consume_and_post(
            order,
            rng,
            validated,
            order_keys,
            operation="process orders.validate",
            service=cat.SERVICE_MIDDLEWARE,
            context=f"ctx:{order.index}:validated",
            consume=message,
            duration_median_s=0.45,
            erp_factor=6,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": "orders.validate",
                "messaging.operation.type": "process",
                "validation.checks": "schema,address,tax,fraud",
            },
            post=not unposted,
        )
        steps += posting
        if unposted:
            # The ERP never hears of it (no sales order, no invoice); a 3PL connector
            # pulls the order from Shopify and ships it all the same.
            order.erp_sales_order = order.invoice_id = ""
            fulfilment, _ = self._fulfil(order, rng, posted)
            return steps + fulfilment
        if conflicted:
            # The ERP holds the order under another order's number: nothing downstream.
            return steps
        if rng.random() < CANCEL_RATE:
            cancelled = posted + lognormal(rng, 480, 0.6, 120, 2400)
            steps += self._webhooks(
                rng, order, cancelled, "orders/cancelled", cancelled_at=cancelled
            )
            steps.append(
                self._event(
                    rng,
                    ref,
                    cancelled + lognormal(rng, 40, 0.6, 5, 600),
                    "erp",
                    "salesOrder.cancelled",
                    source=cat.SOURCE_ERP,
                    event_type="com.netsuite.salesorder.cancelled.v1",
                    keys={"erp_sales_order": order.erp_sales_order, "order_number": order.name},
                    platform_status=cat.NETSUITE_CANCELLED,
                    channel="web",
                )
            )
            self.counts["cancelled"] += 1
            return steps
        fulfilment, delivered = self._fulfil(order, rng, posted)
        steps += fulfilment
        if delivered is not None and rng.random() < RETURN_RATE:
            steps += self._return(order, rng, delivered)
        return steps

    # --- POS ---------------------------------------------------------------------------

    def _pos_sale(self, order: Order, rng: random.Random) -> list[Step]:
        store = order.store
        assert store is not None
        step = self._span(
            order.ref,
            order.placed_at,
            "pos",
            "pos.sale.complete",
            keys={"pos_receipt": order.receipt, "store_id": store.store_id},
            service=cat.SERVICE_POS,
            span_kind="server",
            stage="captured",
            channel="pos",
            store_id=store.store_id,
            amount=order.total,
            currency=order.currency,
            duration_s=lognormal(rng, 1.2, 0.5, 0.2, 15).total_seconds(),
            attributes={
                "retail.location_id": store.store_id,
                "pos.register": order.register,
                "pos.tender": rng.choices(("card", "cash", "wallet"), weights=(70, 12, 18))[0],
            },
        )
        live = self._in_live
        self._pos_pending.setdefault((live, store.store_id), []).append(order)
        boundary = ceil_to(order.placed_at, POS_BATCH_MINUTES)
        if (live, boundary) not in self._pos_ticks:
            self._pos_ticks.add((live, boundary))
            self._push(boundary, self._pos_batch)
        return [step]

    def _pos_batch(self, boundary: datetime) -> None:
        """Every 15 minutes: one ERP posting per store carrying all its new receipts.

        History and live sales are batched apart (a boundary just after the start may
        see two batches of one store), so batches do not depend on how queues interleave.
        """
        live = self._in_live
        self._pos_ticks.discard((live, boundary))
        for store in cat.STORES:
            pending = self._pos_pending.get((live, store.store_id), [])
            batch = [o for o in pending if o.placed_at <= boundary]
            if not batch:
                continue
            self._pos_pending[(live, store.store_id)] = [
                o for o in pending if o.placed_at > boundary
            ]
            stamp = boundary + timedelta(hours=store.utc_offset_h)
            batch_id = f"POSB-{store.store_id}-{stamp:%Y%m%d-%H%M}"
            rng = random.Random(f"{self.seed}/batch/{batch_id}/{int(live)}")
            total = sum((o.total for o in batch), Decimal("0"))
            steps, _ = self._erp_post(
                rng,
                batch_id,
                boundary + lognormal(rng, 70, 0.5, 10, 360),
                operation="netsuite.cashSale.batchCreate",
                keys={
                    "pos_receipt": [o.receipt for o in batch],
                    "batch_id": batch_id,
                    "store_id": store.store_id,
                },
                ok_keys={},
                parent=None,
                message=f"q:{batch_id}:post",
                stage="posted",
                channel="pos",
                store_id=store.store_id,
                amount=total,
                currency=cat.CURRENCY,
            )
            for step in steps:
                step.attributes["batch.size"] = len(batch)
            self.counts["pos_batches"] += 1
            self._schedule(steps)

    # --- marketplace ---------------------------------------------------------------------

    def _marketplace_order(self, order: Order, rng: random.Random) -> list[Step]:
        t0 = order.placed_at
        ref = order.ref
        keys: dict[str, str | list[str]] = {"marketplace_order_id": order.marketplace_id}
        steps = [
            self._event(
                rng,
                ref,
                t0,
                "marketplace",
                "order.created",
                source=cat.SOURCE_MARKETPLACE,
                event_type="com.amazon.sp.order.created.v1",
                keys=dict(keys),
                stage="captured",
                platform_status="Unshipped",
                channel="marketplace",
                amount=order.total,
                currency=order.currency,
            )
        ]
        imported = t0 + lognormal(rng, 5, 0.6, 1, 45)
        posting, posted, conflicted = self._consume_and_post(
            order,
            rng,
            imported,
            keys,
            operation="process marketplace.orders",
            service=cat.SERVICE_MARKETPLACE,
            context=f"ctx:{order.index}:imported",
            duration_median_s=0.5,
            erp_factor=5,
            attributes={
                "messaging.system": "aws_sqs",
                "messaging.destination.name": "sp-api-order-notifications",
                "messaging.operation.type": "process",
            },
        )
        steps += posting
        if conflicted:
            return steps
        fulfilment, _ = self._fulfil(order, rng, posted)
        return steps + fulfilment

    # --- inventory ---------------------------------------------------------------------

    def _inventory_load(self, moment: datetime) -> float:
        """0..1: how loaded the inventory sync is (peak-sale makes its lag grow).

        Live: it fills up over the first ten simulated minutes. History: half loaded all
        the time, fully at the busiest hour of the web curve.
        """
        if moment > self.start:
            return min(1.0, (moment - self.start).total_seconds() / 600)
        busy = curve_weight("web", moment, cat.SHOP_UTC_OFFSET_H) / max(WEB_CURVE)
        return 0.5 + 0.5 * min(1.0, busy)

    def _start_update(self, moment: datetime, index: int) -> None:
        self.counts["inventory_updates"] += 1
        rng = self._rng("update", index)
        update_id = f"IU-{self._update_base + index}"
        if self.truth is not None:
            self.truth.update(update_id)
        product = rng.choices(cat.PRODUCTS, weights=[p.weight for p in cat.PRODUCTS])[0]
        from_wms = rng.random() < 0.6
        if from_wms:
            location = rng.choices(cat.WAREHOUSES, weights=[w.weight for w in cat.WAREHOUSES])[
                0
            ].code
            system, source = "wms", cat.SOURCE_WMS
            reason = rng.choice(("cycle_count", "receipt", "damage", "transfer"))
        else:
            location = rng.choice([*(s.store_id for s in cat.STORES), "DC-NJ1"])
            system, source = "erp", cat.SOURCE_ERP
            reason = rng.choice(("inventory_adjustment", "item_receipt", "transfer_order"))
        delta = rng.choice((-3, -2, -1, 1, 2, 5, 12, 24, 48))
        keys: dict[str, str | list[str]] = {
            "inventory_update_id": update_id,
            "sku": product.sku,
            "location": location,
        }
        attrs = {
            "retail.inventory.sku": product.sku,
            "retail.inventory.location": location,
            "retail.inventory.source_time": moment,
            "inventory.reason": reason,
            "inventory.delta": delta,
        }
        steps = [
            self._event(
                rng,
                update_id,
                moment,
                system,
                f"inventory.{reason}",
                source=source,
                event_type=f"com.northwind.{system}.inventory.adjusted.v1",
                keys=dict(keys),
                stage="inventory_adjusted",
                attributes=dict(attrs),
            )
        ]
        growth = self.scenario.inventory_lag_growth
        factor = 1.0 + (growth - 1.0) * self._inventory_load(moment)
        # One sync service publishes to both channels: its queue delays both alike.
        if growth <= 1:
            queue = lognormal(rng, 30, 0.6, 3, 150)
        else:
            queue = lognormal(rng, 30 * factor, 0.9, 3, 1800)
        to_shopify = queue + lognormal(rng, 4, 0.5, 0.5, 60)
        picked_up = ceil_to(moment + queue + timedelta(seconds=1), POS_STOCK_SYNC_MINUTES)
        to_pos = (picked_up - moment) + lognormal(rng, 10, 0.5, 1, 30)
        for target, lag, operation in (
            ("shopify", to_shopify, "graphql inventorySetQuantities"),
            ("pos", to_pos, "pos.stock.push"),
        ):
            steps.append(
                self._span(
                    update_id,
                    moment + lag,
                    target,
                    operation,
                    keys=dict(keys),
                    service=cat.SERVICE_INVENTORY,
                    span_kind="client",
                    stage="inventory_published",
                    duration_s=lognormal(rng, 0.4, 0.5, 0.05, 5).total_seconds(),
                    attributes=dict(attrs),
                    fault="inventory_lag_over_sla" if growth > 1 and lag > INVENTORY_SLA else None,
                )
            )
        self._schedule(steps)


# --- helpers -----------------------------------------------------------------------------


def _pos_weight(slot: datetime) -> float:
    """Mean POS intensity over the stores at ``slot`` (each in its own time zone)."""
    total = sum(s.weight for s in cat.STORES)
    return (
        sum(s.weight * curve_weight("pos", slot, s.utc_offset_h) for s in cat.STORES)
        / total
        * (max(WEB_CURVE) / max(POS_CURVE))
    )
