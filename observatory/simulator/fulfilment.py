"""Fulfilment: the warehouse, the carriers and the ERP's billing of a shipped order.

Once an order is posted (web or marketplace, :mod:`.orders`), :meth:`Fulfilment._fulfil`
plans the rest of its life up to billing, on warehouse business hours:

warehouse
    wms: ``released``, ``picked`` and ``packed`` (stage ``picked``), ``shipped`` per
    shipment (keys ``shipment_id``, ``tracking_number``; the ERP's ``erp_sales_order``,
    or the Shopify order's keys when a 3PL ships an order the ERP never had). A share
    :data:`~.entities.SPLIT_RATE` of multi-line orders ships in two shipments, the
    back-ordered one about a day later.
carriers
    carrier: EasyPost or AfterShip status words (label, acceptance scan, a failed attempt
    for :data:`~.entities.FAILED_DELIVERY_RATE`, out for delivery, delivered); in chaos
    runs the label and acceptance scan of a share of shipments reach Observatory hours
    late (``late_scan``).
the channel
    web: Shopify ``fulfillments/create`` once the 3PL connector syncs the shipment (after
    the acceptance scan when that was late), ``fulfillments/update`` delivered for most,
    and ``orders/fulfilled``; marketplace: the shipment confirmation span.
billing
    erp: ``Billed`` in the nightly billing run after the last shipment (``invoice_id``),
    unless the ERP never had the order.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from observatory.simulator import cases
from observatory.simulator import catalog as cat
from observatory.simulator.engine import Engine
from observatory.simulator.entities import FAILED_DELIVERY_RATE, SPLIT_RATE, Order, Shipment, Step
from observatory.simulator.timing import (
    WAREHOUSE_CLOSE_H,
    WAREHOUSE_OPEN_H,
    lognormal,
    next_local_time,
    next_open,
)


class Fulfilment(Engine):
    """Warehouse, carrier and billing hops of a posted order; see the module docstring."""

    def _new_shipments(self, order: Order, rng: random.Random) -> list[Shipment]:
        """One warehouse; one shipment, or two for a share of multi-line orders."""
        warehouse = rng.choices(cat.WAREHOUSES, weights=[w.weight for w in cat.WAREHOUSES])[0]
        groups = [order.lines]
        if len(order.lines) >= 2 and rng.random() < SPLIT_RATE:
            cut = rng.randrange(1, len(order.lines))
            groups = [order.lines[:cut], order.lines[cut:]]
        shipments = []
        for number, lines in enumerate(groups, start=1):
            carrier = rng.choices(cat.CARRIERS, weights=[c.weight for c in cat.CARRIERS])[0]
            serial = order.index * 2 + number
            shipments.append(
                Shipment(
                    shipment_id=f"SH-{self._shipment_base + serial}",
                    number=number,
                    warehouse=warehouse,
                    carrier=carrier,
                    tracking_number=_tracking_number(carrier.name, rng),
                    fulfillment_id=self._fulfillment_base + serial,
                    lines=lines,
                )
            )
        if len(shipments) > 1:
            self.counts["split_orders"] += 1
        self.counts["shipments"] += len(shipments)
        return shipments

    def _wms(
        self,
        rng: random.Random,
        order: Order,
        shipment: Shipment,
        at: datetime,
        what: str,
        **kw: Any,
    ) -> Step:
        """A warehouse event about ``shipment`` (``what``: the WMS status word)."""
        keys: dict[str, str | list[str]] = (
            {"erp_sales_order": order.erp_sales_order}
            if order.erp_sales_order  # else shipped by a 3PL from the Shopify order
            else {"order_number": order.name, "shopify_order_id": str(order.shopify_id)}
        )
        keys["shipment_id"] = shipment.shipment_id
        keys.update(kw.pop("extra_keys", {}))
        return self._event(
            rng,
            order.ref,
            at,
            "wms",
            f"shipment.{what.lower()}",
            source=cat.SOURCE_WMS,
            event_type=f"com.northwind.wms.shipment.{what.lower()}.v1",
            keys=keys,
            platform_status=what,
            channel=order.channel,
            attributes={"retail.location_id": shipment.warehouse.code, **kw.pop("attrs", {})},
            **kw,
        )

    def _fulfil(
        self, order: Order, rng: random.Random, posted: datetime
    ) -> tuple[list[Step], datetime | None]:
        """Warehouse release to delivery and billing; returns (steps, last delivery)."""
        steps: list[Step] = []
        order.shipments = self._new_shipments(order, rng)
        wh = order.shipments[0].warehouse
        hours = (wh.utc_offset_h, WAREHOUSE_OPEN_H, WAREHOUSE_CLOSE_H)
        released = next_open(posted + lognormal(rng, 720, 0.8, 60, 3 * 3600), *hours)
        last_ship = released
        last_sync = released
        delivered_last: datetime | None = None
        moved_to = cases.reroute_to(self.seed, order.index, wh)
        for shipment in order.shipments:
            steps.append(self._wms(rng, order, shipment, released, "RELEASED", stage="released"))
            if moved_to is not None:  # rerouted after release (cases.py): its hours now
                shipment.warehouse = moved_to
                hours = (moved_to.utc_offset_h, WAREHOUSE_OPEN_H, WAREHOUSE_CLOSE_H)
            picked = released + lognormal(rng, 1500, 0.7, 180, 4 * 3600)
            if shipment.number > 1:  # the back-ordered part ships about a day later
                picked += lognormal(rng, 86_400, 0.3, 12 * 3600, 3 * 86_400)
            picked = next_open(picked, *hours)
            steps.append(self._wms(rng, order, shipment, picked, "PICKED", stage="picked"))
            if moved_to is not None and shipment.number == 1:
                self.cases.rerouted(order.ref, wh.code, moved_to.code, steps[-1])
            packed = next_open(picked + lognormal(rng, 360, 0.5, 60, 3600), *hours)
            steps.append(self._wms(rng, order, shipment, packed, "PACKED", stage="picked"))
            shipped = next_open(packed + lognormal(rng, 5400, 0.8, 600, 8 * 3600), *hours)
            steps.append(
                self._wms(
                    rng,
                    order,
                    shipment,
                    shipped,
                    "SHIPPED",
                    stage="shipped",
                    extra_keys={"tracking_number": shipment.tracking_number},
                    attrs={"carrier": shipment.carrier.name},
                )
            )
            last_ship = max(last_ship, shipped)
            carrier_steps, scan_seen, delivered = self._carrier(order, shipment, rng, shipped)
            steps += carrier_steps
            delivered_last = max(delivered_last or delivered, delivered)
            if order.channel == "web":
                if scan_seen is not None:
                    # the 3PL connector waits for the carrier's acceptance scan
                    synced = scan_seen + lognormal(rng, 120, 0.6, 20, 900)
                else:
                    synced = shipped + lognormal(rng, 90, 0.8, 10, 720)
                last_sync = max(last_sync, synced)
                steps += self._webhooks(
                    rng,
                    order,
                    synced,
                    "fulfillments/create",
                    shipment=shipment,
                    # as Shopify sends it: no shipment status until the carrier reports
                    shipment_status=None,
                )
                if rng.random() < 0.7:
                    steps += self._webhooks(
                        rng,
                        order,
                        delivered + lognormal(rng, 300, 0.7, 30, 3600),
                        "fulfillments/update",
                        shipment=shipment,
                        shipment_status="delivered",
                    )
            else:
                confirmed = shipped + lognormal(rng, 180, 0.7, 20, 1800)
                steps.append(
                    self._span(
                        order.ref,
                        confirmed,
                        "marketplace",
                        "POST /orders/v0/orders/shipmentConfirmation",
                        keys={
                            "marketplace_order_id": order.marketplace_id,
                            "tracking_number": shipment.tracking_number,
                        },
                        service=cat.SERVICE_MARKETPLACE,
                        span_kind="client",
                        platform_status="Shipped",
                        channel="marketplace",
                        duration_s=lognormal(rng, 0.6, 0.5, 0.1, 8).total_seconds(),
                        attributes={"carrier": shipment.carrier.name},
                    )
                )
        if order.channel == "web":
            steps += self._webhooks(
                rng,
                order,
                last_sync + lognormal(rng, 3, 0.5, 1, 30),
                "orders/fulfilled",
                fulfillment_status="fulfilled",
            )
        if not order.erp_sales_order:  # the ERP never had it: nothing to bill
            return steps, delivered_last
        billed = next_local_time(last_ship, cat.SHOP_UTC_OFFSET_H, 2) + lognormal(
            rng, 900, 0.6, 60, 5400
        )
        steps.append(
            self._event(
                rng,
                order.ref,
                billed,
                "erp",
                "salesOrder.billed",
                source=cat.SOURCE_ERP,
                event_type="com.netsuite.salesorder.billed.v1",
                keys={"erp_sales_order": order.erp_sales_order, "invoice_id": order.invoice_id},
                platform_status=cat.NETSUITE_BILLED,
                channel=order.channel,
                amount=order.total,
                currency=order.currency,
            )
        )
        return steps, delivered_last

    def _carrier(
        self, order: Order, shipment: Shipment, rng: random.Random, shipped: datetime
    ) -> tuple[list[Step], datetime | None, datetime]:
        """Tracking updates; returns (steps, when a late scan reached us, delivered at)."""
        words = cat.TRACKING_WORDS[shipment.carrier.tracking_provider]
        late = bool(self.scenario.late_scan_rate) and rng.random() < self.scenario.late_scan_rate
        delay = lognormal(rng, 8 * 3600, 0.5, 3 * 3600, 30 * 3600) if late else timedelta(0)
        label = shipped + lognormal(rng, 240, 0.6, 30, 1800)
        scan = shipped + lognormal(rng, 3 * 3600, 0.5, 1800, 20 * 3600)
        transit = lognormal(rng, 2.2 * 86_400, 0.35, 0.8 * 86_400, 7 * 86_400)
        delivered = next_open(scan + transit, shipment.warehouse.utc_offset_h, 9, 20)
        failed: datetime | None = None
        if rng.random() < FAILED_DELIVERY_RATE:
            failed = delivered
            delivered = next_open(
                delivered + timedelta(days=1), shipment.warehouse.utc_offset_h, 9, 20
            )
        out_for_delivery = delivered - lognormal(rng, 4 * 3600, 0.4, 3600, 7 * 3600)
        out_for_delivery = max(out_for_delivery, scan + timedelta(minutes=30))

        def update(at: datetime, word: str, send_delay: timedelta = timedelta(0)) -> Step:
            step = self._event(
                rng,
                order.ref,
                at,
                "carrier",
                "tracker.updated",
                source=cat.SOURCE_CARRIER,
                event_type=f"com.{shipment.carrier.tracking_provider}.tracker.updated",
                keys={"tracking_number": shipment.tracking_number},
                platform_status=word,
                send_at=at + send_delay,
                attributes={
                    "carrier": shipment.carrier.name,
                    "tracking_provider": shipment.carrier.tracking_provider,
                },
            )
            if send_delay:
                step.fault = "late_scan"
            return step

        steps = [update(label, words["label"], delay), update(scan, words["scan"], delay)]
        if failed is not None:
            steps.append(update(failed, words["failed"]))
        steps += [update(out_for_delivery, words["out"]), update(delivered, words["delivered"])]
        return steps, (scan + delay if late else None), delivered


# --- helpers -----------------------------------------------------------------------------


def _tracking_number(carrier: str, rng: random.Random) -> str:
    """A tracking number in the carrier's own format (UPS ``1Z...``, FedEx, USPS)."""
    if carrier == "UPS":
        digits = "".join(rng.choices("0123456789", k=8))
        body = f"9W7A48{rng.choice(('01', '02', '03'))}{digits}"
        return f"1Z{body}{_ups_check_digit(body)}"
    if carrier == "FedEx":
        return "7" + "".join(rng.choices("0123456789", k=11))
    return "9400" + "".join(rng.choices("0123456789", k=18))


def _ups_check_digit(body: str) -> int:
    """UPS's check digit over the 15 characters after ``1Z``."""
    total = 0
    for i, char in enumerate(body):
        value = int(char) if char.isdigit() else (ord(char) - 63) % 10
        total += value * (2 if i % 2 else 1)
    return (10 - total % 10) % 10
