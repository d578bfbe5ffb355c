"""Returns: what happens after a customer sends a delivered web order back.

A share :data:`~.entities.RETURN_RATE` of delivered web orders (decided by
:mod:`.orders`) is returned, one line of it, refunded with its tax:

    shopify ``returns/request`` -> wms ``return_received`` (back at the warehouse that
    shipped it, on its business hours) -> shopify ``refunds/create`` -> erp
    ``refund_settled`` (the customer refund), which never comes for a share of refunds in
    chaos runs (``refund_unsettled``: no credit memo).

Every hop's ``ref`` is the return id (a transaction of its own, keyed ``return_id``; the
truth ties it to its order).
"""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

from observatory.simulator import catalog as cat
from observatory.simulator.engine import Engine
from observatory.simulator.entities import Order, Refund, Step, money
from observatory.simulator.timing import WAREHOUSE_CLOSE_H, WAREHOUSE_OPEN_H, lognormal, next_open


class Returns(Engine):
    """The return of a delivered web order; see the module docstring."""

    def _return(self, order: Order, rng: random.Random, delivered: datetime) -> list[Step]:
        """The hops of returning one line of ``order``, delivered at ``delivered``."""
        n = order.index
        self.counts["returns"] += 1
        lines = [rng.choice(order.lines)]
        tax_rate = order.customer.tax_rate if order.customer else Decimal("0")
        amount = money(sum((line.total for line in lines), Decimal("0")) * (1 + tax_rate))
        refund = Refund(
            refund_id=self._refund_base + n,
            return_id=self._return_base + n,
            lines=lines,
            amount=amount,
            transaction_id=self._refund_base + 50_000_000 + n,
        )
        return_id = str(refund.return_id)
        if self.truth is not None:
            self.truth.return_(return_id, order, amount)
        requested = delivered + lognormal(rng, 5 * 86_400, 0.5, 86_400, 28 * 86_400)
        steps = self._webhooks(rng, order, requested, "returns/request", refund=refund)
        wh = order.shipments[0].warehouse
        received = next_open(
            requested + lognormal(rng, 4.5 * 86_400, 0.4, 1.5 * 86_400, 14 * 86_400),
            wh.utc_offset_h,
            WAREHOUSE_OPEN_H,
            WAREHOUSE_CLOSE_H,
        )
        steps.append(
            self._event(
                rng,
                return_id,
                received,
                "wms",
                "return.received",
                source=cat.SOURCE_WMS,
                event_type="com.northwind.wms.return.received.v1",
                keys={"return_id": return_id, "erp_sales_order": order.erp_sales_order},
                stage="return_received",
                platform_status="RECEIVED",
                attributes={"retail.location_id": wh.code},
            )
        )
        refunded = received + lognormal(rng, 18 * 3600, 0.6, 1800, 4 * 86_400)
        refund_hooks = self._webhooks(rng, order, refunded, "refunds/create", refund=refund)
        steps += refund_hooks
        settled = refunded + lognormal(rng, 4 * 3600, 0.8, 600, 20 * 3600)
        rate = self.scenario.unsettled_refund_rate
        if rate and random.Random(f"{self.seed}/unsettled/{n}").random() < rate:
            # the ERP never issues the credit memo: the refund is never settled
            refund_hooks[0].fault = "refund_unsettled"
            for step in steps:
                step.ref = return_id
            return steps
        steps.append(
            self._event(
                rng,
                return_id,
                settled,
                "erp",
                "customerRefund.settled",
                source=cat.SOURCE_ERP,
                event_type="com.netsuite.customerrefund.settled.v1",
                keys={"return_id": return_id, "refund_id": str(refund.refund_id)},
                stage="refund_settled",
                amount=amount,
                currency=order.currency,
            )
        )
        for step in steps:
            step.ref = return_id
        return steps
