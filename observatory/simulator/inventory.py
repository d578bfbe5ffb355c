"""Inventory updates: a stock move in the ERP or the warehouse, published to the channels.

    erp or wms: ``inventory_adjusted`` (``inventory_update_id``, ``sku``, ``location``;
    60 % from the warehouse: cycle counts, receipts, damage, transfers) -> shopify and
    pos: ``inventory_published`` after the sync lag.

One sync service publishes to both channels: its queue delays both alike; Shopify is
updated a few seconds after, the POS stock push picks updates up every
:data:`~.entities.POS_STOCK_SYNC_MINUTES` minute. In ``peak-sale`` the queue grows with
the sync's load (``inventory_lag_growth``), and publications slower than
:data:`~.entities.INVENTORY_SLA` carry the ``inventory_lag_over_sla`` fault. Updates
arrive at :data:`~.entities.INVENTORY_PER_ORDER` per order, each drawing from a stream of
its own (``update``, its index).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from observatory.simulator import catalog as cat
from observatory.simulator.engine import Engine
from observatory.simulator.entities import INVENTORY_SLA, POS_STOCK_SYNC_MINUTES
from observatory.simulator.timing import WEB_CURVE, ceil_to, curve_weight, lognormal


class Inventory(Engine):
    """The inventory update flow; see the module docstring."""

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
        """Plan and queue the hops of the inventory update at ``index``."""
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
        if from_wms:  # what each side then holds (cases.py)
            steps += self.cases.snapshot_steps(
                self.seed,
                index,
                sku=product.sku,
                location=location,
                at=moment + timedelta(seconds=1),
                published=moment + to_shopify + timedelta(seconds=1),
                make=self._event,
            )
        self._schedule(steps)
