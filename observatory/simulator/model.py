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

:class:`Simulation` is composed of one class per concern, each in its module:

``engine``      the queue, handing steps out, the hop builders, the seeded ids
``erp``         the ERP connector's posting, its failures and retries
``orders``      web and marketplace orders: webhooks, middleware, posting, chaos faults
``fulfilment``  warehouse, carriers, the Shopify fulfillment sync, billing
``returns``     the return of a delivered web order
``pos``         POS sales and their 15-minute batch postings
``inventory``   stock moves and their publication to the channels
``entities``    the records and rates all of them use (re-exported here)

This module adds the arrivals and the rest of the public interface. The history's orders
and inventory updates are drawn up front, spread over ``history_days`` on the hourly
curves; live ones arrive one after the other (exponential gaps at ``live_rate`` times the
scenario's traffic) until ``live_orders`` or :meth:`Simulation.stop_arrivals`. Every id
derives from an entity's position (history: its place in the precomputed list; live:
after all of the history), never from processing order. A run's faults start at its
fault anchor: ``live_fault_delay_s`` after the start with live orders, else when 40 % of
the history's orders have arrived.

The flows' hops (``system: what``; ``stage`` where the sender knows it, else the
platform's own status word for the server's status maps) are described in their modules.
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
from observatory.simulator.inventory import Inventory
from observatory.simulator.orders import Orders
from observatory.simulator.pos import PointOfSale
from observatory.simulator.telemetry import EVENT, SPAN, WEBHOOK, Delivery
from observatory.simulator.timing import (
    POS_CURVE,
    WAREHOUSE_CLOSE_H,
    WAREHOUSE_OPEN_H,
    WEB_CURVE,
    curve_weight,
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


class Simulation(Orders, PointOfSale, Inventory):
    """One run of the model: its arrivals, composed with every flow (module docstring)."""

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
        self._live_channels = []

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
        """When and on which channel each order of the history arrives, in time order."""
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
        """When each inventory update of the history happens, mostly in warehouse hours."""
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
        """Where the scenario's fault windows start (None: a run with no orders)."""
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

    def _start_order(self, moment: datetime, channel: str, *, index: int, live: bool) -> None:
        """Build the order at ``index`` and queue its channel's flow."""
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
        """The order as placed: its lines, amounts and its channel's ids and customer."""
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


# --- helpers -----------------------------------------------------------------------------


def _pos_weight(slot: datetime) -> float:
    """Mean POS intensity over the stores at ``slot`` (each in its own time zone)."""
    total = sum(s.weight for s in cat.STORES)
    return (
        sum(s.weight * curve_weight("pos", slot, s.utc_offset_h) for s in cat.STORES)
        / total
        * (max(WEB_CURVE) / max(POS_CURVE))
    )
