"""What the simulation model is made of: its volumes and rates, and its records.

Plain data, no behaviour beyond a few derived names: the constants that size the traffic
and its faults (orders per day, channel mix, return, cancel and split rates, the ERP's
retry backoff...), the records an order is built from (:class:`Customer`, :class:`Line`,
:class:`Shipment`, :class:`Order`, :class:`Refund`), what the model hands out
(:class:`Step`, one hop to send, with the :class:`WebhookSpec` of a Shopify delivery) and
what it is asked to simulate (:class:`Plan`).

The records are filled by :mod:`.model` and its flows; :mod:`.payloads` renders webhook
bodies from them and :mod:`.transport` sends the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

from observatory.simulator import catalog as cat
from observatory.simulator.scenarios import Scenario
from observatory.simulator.telemetry import DEFAULT_TELEMETRY, Telemetry
from observatory.simulator.truth import Mark

#: Orders per day of history at traffic 1 (a mid-sized retailer's web,
#: store and marketplace orders together).
DAILY_ORDERS: Final = 200
#: Channel mix of live traffic (history follows the hourly curves instead).
CHANNEL_SHARES: Final = {"web": 0.55, "pos": 0.33, "marketplace": 0.12}
#: History mix at equal curve weight: the POS curve is zero at night, so its daytime
#: share is larger than its overall one.
HISTORY_CHANNEL_WEIGHTS: Final = {"web": 0.55, "pos": 0.55, "marketplace": 0.12}
INVENTORY_PER_ORDER: Final = 0.35
RETURN_RATE: Final = 0.07
CANCEL_RATE: Final = 0.02
SPLIT_RATE: Final = 0.12
TRANSIENT_ERP_FAILURE: Final = 0.015
FAILED_DELIVERY_RATE: Final = 0.03
POS_BATCH_MINUTES: Final = 15
POS_STOCK_SYNC_MINUTES: Final = 1
#: Where faults start in a live run: this many simulated seconds after the start.
LIVE_FAULT_DELAY_S: Final = 60.0
#: Where the silent-warehouse window starts, after the fault anchor.
WMS_SILENCE_OFFSET: Final = timedelta(minutes=15)
#: The ERP connector's retry backoff: 20 s doubling per attempt, at most 5 minutes.
ERP_BACKOFF_BASE_S: Final = 20.0
ERP_BACKOFF_CAP_S: Final = 300.0
#: Sales orders the ERP creates again for a replayed posting (chaos) are numbered from here
#: on, past the ordinary ones: they never name another order's sales order.
REPLAY_SO_OFFSET: Final = 1_000_000
#: How much higher an ERP that recalculates tax taxes an order (chaos): one point.
TAX_RECALC_POINT: Final = Decimal("0.01")
#: The inventory SLA (five minutes to publish), to count the slow publications injected.
INVENTORY_SLA: Final = timedelta(minutes=5)

CENT: Final = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """``value`` rounded to the cent, half up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def history_volume(days: float, scenario: Scenario) -> int:
    """How many orders ``days`` of history hold at the scenario's traffic."""
    return max(0, round(days * DAILY_ORDERS * scenario.traffic))


# --- what the model hands out --------------------------------------------------------------


@dataclass(slots=True)
class Customer:
    id: int
    first_name: str
    last_name: str
    email: str
    province: str
    city: str
    tax_rate: Decimal


@dataclass(slots=True)
class Line:
    line_id: int
    product: cat.Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.product.price * self.quantity


@dataclass(slots=True)
class Shipment:
    shipment_id: str
    #: 1-based position in the order (Shopify names fulfillments ``#1001.1``)
    number: int
    warehouse: cat.Warehouse
    carrier: cat.Carrier
    tracking_number: str
    fulfillment_id: int
    lines: list[Line]


@dataclass(slots=True)
class Order:
    index: int
    channel: str
    placed_at: datetime
    lines: list[Line]
    subtotal: Decimal
    discount: Decimal
    shipping: Decimal
    tax: Decimal
    total: Decimal
    currency: str = cat.CURRENCY
    discount_code: str = ""
    shopify_id: int = 0
    number: int = 0
    token: str = ""
    confirmation: str = ""
    customer: Customer | None = None
    store: cat.Store | None = None
    register: str = ""
    receipt: str = ""
    marketplace_id: str = ""
    correlation_id: str = ""
    erp_sales_order: str = ""
    invoice_id: str = ""
    shipments: list[Shipment] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Shopify's display name, the ``order_number`` key (``#1001``)."""
        return f"#{self.number}"

    @property
    def ref(self) -> str:
        """How people name this order: the key its channel gives it."""
        if self.channel == "web":
            return self.name
        if self.channel == "pos":
            return self.receipt
        return self.marketplace_id


@dataclass(slots=True)
class Refund:
    refund_id: int
    return_id: int
    lines: list[Line]
    amount: Decimal
    transaction_id: int


@dataclass(slots=True)
class WebhookSpec:
    """One Shopify webhook delivery, rendered into a body by :mod:`.payloads`."""

    topic: str
    order: Order
    #: ``X-Shopify-Event-Id``: the same on every delivery of one event
    event_id: str
    #: ``X-Shopify-Webhook-Id``: new for each delivery
    webhook_id: str
    financial_status: str = "paid"
    fulfillment_status: str | None = None
    shipment: Shipment | None = None
    shipment_status: str | None = None
    refund: Refund | None = None
    cancelled_at: datetime | None = None


@dataclass(slots=True)
class Step:
    """One hop to send: what it says, when it happened (``at``) and when it arrives.

    ``at`` is the business time (a span's start, an event's ``time``, a webhook's
    ``X-Shopify-Triggered-At``); ``send_at`` >= ``at`` is when the sender delivers it
    (later for late scans and duplicate deliveries). Both are simulated times.

    ``keys`` lists every business key the hop carries (a list value fans the hop out).
    Spans also name their context: ``parent`` continues the trace of an earlier span
    saved under that name with ``save_as``; ``publish`` puts the span's context into the
    headers of a queue message of that name; ``consume`` starts a new trace from such a
    message, linked to its producer (a queue breaks the trace).
    """

    at: datetime
    send_at: datetime
    via: str
    system: str
    operation: str
    keys: dict[str, str | list[str]]
    #: the order, return or update this hop is about (for summaries and tests)
    ref: str
    stage: str | None = None
    platform_status: str | None = None
    outcome: str = "ok"
    error: str | None = None
    duration_s: float = 0.0
    channel: str | None = None
    store_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    retry_attempt: int = 0
    replay: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    # spans
    service: str = ""
    span_kind: str = "internal"
    parent: str | None = None
    save_as: str | None = None
    publish: str | None = None
    consume: str | None = None
    # events
    source: str = ""
    event_type: str = ""
    event_id: str = ""
    # webhooks
    webhook: WebhookSpec | None = None
    #: the scenario fault this hop carries, if any
    fault: str | None = None
    #: whether it belongs to a live order or update (else to the history)
    live: bool = False
    #: planned but never sent (the silent warehouse)
    dropped: bool = False
    #: a notable telemetry delay of its delivery (``shopify_retry``, ``offline_store``)
    delay: str | None = None
    #: what the ground truth remembers of it (only with ``record_truth``)
    mark: Mark | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to simulate.

    ``history_orders`` orders are spread over the ``history_days`` before ``start`` on
    the business-hours curves (their hops due after ``start`` are handed out as live
    ones). After the history, orders keep arriving at ``live_rate`` per simulated second
    (times the scenario's traffic) until ``live_orders`` of them (None: until
    :meth:`.model.Simulation.stop_arrivals`); ``live_rate`` 0 means no live orders.
    ``live_fault_delay_s``: how long after ``start`` the faults of a run with live orders
    begin (simulated seconds); a run without live orders has them in its history.
    ``telemetry``: how hops are delivered (:mod:`.telemetry`; on by default).
    """

    seed: int
    start: datetime
    scenario: Scenario
    history_days: float = 0.0
    history_orders: int = 0
    live_rate: float = 0.0
    live_orders: int | None = None
    live_fault_delay_s: float = LIVE_FAULT_DELAY_S
    telemetry: Telemetry = DEFAULT_TELEMETRY
