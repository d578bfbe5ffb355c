"""Web and marketplace orders: from the storefront through the middleware to the ERP.

web order
    shopify: ``orders/create`` and ``orders/paid`` webhooks -> middleware: the Shopify
    bridge receives the webhook and publishes to a queue (the trace breaks) -> middleware:
    validation consumes it (new trace, linked, keys from baggage; ``validated``) -> erp:
    the connector posts the sales order (NetSuite ``Pending Fulfillment``, key
    ``erp_sales_order``; retries on failures, :mod:`.erp`) -> warehouse, carriers, the
    Shopify fulfillment webhooks and billing (:mod:`.fulfilment`). A share
    :data:`~.entities.CANCEL_RATE` is cancelled after posting instead (``orders/cancelled``
    and the ERP's cancellation), and :data:`~.entities.RETURN_RATE` of the delivered ones
    is returned (:mod:`.returns`).
marketplace order
    marketplace: order notification (``captured``) -> middleware import (``validated``)
    -> erp posting -> the same warehouse and carrier flow -> marketplace: shipment
    confirmed -> erp billing.

The chaos faults of these orders are decided from an order's index (history channels are
known in advance, live ones arrive in order) or its own random stream, never from the
order in which the queues are processed: a lost validation message (``lost_event``: the order exists in
Shopify only), an order shipped by a 3PL but never posted (``shipped_unposted``), a sales
order number the ERP reuses from another order (``conflicting_id``: nothing happens
downstream), a replayed posting that creates a second sales order
(``replayed_posting``, numbered from :data:`~.entities.REPLAY_SO_OFFSET` on), and a
posting whose total the ERP recalculated (``tax_recalculated``: taxed one point,
:data:`~.entities.TAX_RECALC_POINT`, higher than the channel did).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from observatory.simulator import cases
from observatory.simulator import catalog as cat
from observatory.simulator.entities import (
    CANCEL_RATE,
    REPLAY_SO_OFFSET,
    RETURN_RATE,
    TAX_RECALC_POINT,
    Order,
    Plan,
    Step,
    money,
)
from observatory.simulator.erp import ErpConnector
from observatory.simulator.fulfilment import Fulfilment
from observatory.simulator.returns import Returns
from observatory.simulator.timing import lognormal


class Orders(ErpConnector, Fulfilment, Returns):
    """The web and marketplace order flows; see the module docstring."""

    #: when and on which channel each order of the history arrives (set by the simulation)
    _history: list[tuple[datetime, str]]
    #: the channel of each live order so far, in order of arrival (set likewise)
    _live_channels: list[str]

    def __init__(self, plan: Plan, *, record_truth: bool = False) -> None:
        super().__init__(plan, record_truth=record_truth)
        #: per block of orders: where the shipped-unposted one is looked for, which it is
        self._unposted: dict[int, tuple[int, int]] = {}

    # --- chaos decided by index ----------------------------------------------------------

    def _channel_of(self, index: int) -> str:
        """The channel of the order at ``index`` (history or live), known in advance."""
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

    # --- the flows -----------------------------------------------------------------------

    def _web_order(self, order: Order, rng: random.Random) -> list[Step]:
        """Every hop of a Shopify order, from its webhooks to billing or its return."""
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
            requested, outcome = steps[-1], cases.cancellation(self.seed, order.index)
            held: Step | None = None
            if outcome == cases.SHIPPED_ANYWAY:  # the warehouse has it and ships it anyway
                anyway = cases.rng_of(self.seed, "cancel-fulfil", order.index)
                shipping = self._fulfil(order, anyway, posted)[0]
                held = shipping[0]
                steps += shipping
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
            if outcome == cases.ERP_NEVER:  # the ERP never cancels
                steps.pop()
            erp = steps[-1] if outcome != cases.ERP_NEVER else None
            self.cases.cancelled(order.ref, outcome, requested, erp, held)
            self.counts["cancelled"] += 1
            return steps
        fulfilment, delivered = self._fulfil(order, rng, posted)
        steps += fulfilment
        if delivered is not None and rng.random() < RETURN_RATE:
            steps += self._return(order, rng, delivered)
        return steps

    def _marketplace_order(self, order: Order, rng: random.Random) -> list[Step]:
        """Every hop of a marketplace order, from its notification to billing."""
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

    # --- validation and posting --------------------------------------------------------

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

    def _posted_total(self, order: Order) -> Decimal:
        """The total the ERP posts: the order's, but for a share of orders (chaos) whose
        tax the ERP recalculates one point higher than the channel did. Decided by the
        order's index on a stream of its own, so that no other draw moves."""
        rate = self.scenario.tax_recalc_rate
        if not rate or random.Random(f"{self.seed}/tax/{order.index}").random() >= rate:
            return order.total
        return order.total + money((order.subtotal - order.discount) * TAX_RECALC_POINT)

    def _post_order(
        self,
        order: Order,
        rng: random.Random,
        at: datetime,
        parent: str,
        base_keys: dict[str, str | list[str]],
    ) -> tuple[list[Step], datetime, bool]:
        """Post one web or marketplace order; returns (steps, posted at, conflicted)."""
        so = order.erp_sales_order
        # A faulty ERP (a number range reused after a failover) may answer with the
        # sales-order number of another order.
        reused = self._conflict_target(order.index)
        conflicted = reused is not None
        # (one fault to an order: a conflicted posting keeps the order's total)
        posted_total = order.total if conflicted else self._posted_total(order)
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
            amount=posted_total,
            currency=order.currency,
        )
        if conflicted:
            steps[-1].fault = "conflicting_id"
        elif posted_total != order.total:
            steps[-1].fault = "tax_recalculated"
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
                    amount=posted_total,
                    currency=order.currency,
                    attributes={"messaging.message.redelivered": True},
                    fault="replayed_posting",
                )
            )
        return steps, posted, conflicted
