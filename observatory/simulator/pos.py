"""POS sales in the shops, and their 15-minute batch postings to the ERP.

    pos: the sale (``captured``, ``pos_receipt`` like ``ST12-0042-118``, ``store_id``)
    -> erp: one batch posting per store every :data:`~.entities.POS_BATCH_MINUTES`
    minutes carrying the array of its new receipts (a fan-out hop) and a ``batch_id``
    (``posted``), through the ERP connector (:mod:`.erp`: retries included). In chaos
    runs a share of batches leaves one receipt out (of its keys and its total; a batch
    of one is not posted at all): that sale is never posted (``receipt_left_out`` in the
    ground truth).

A batch is an action of the queue at each boundary that has sales waiting. History and
live sales are batched apart (a boundary just after the start may see two batches of one
store), so batches do not depend on how the two queues interleave. Each batch draws from
a stream of its own, keyed by its id.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from observatory.simulator import catalog as cat
from observatory.simulator.entities import POS_BATCH_MINUTES, Order, Plan, Step
from observatory.simulator.erp import ErpConnector
from observatory.simulator.timing import ceil_to, lognormal


class PointOfSale(ErpConnector):
    """The POS sale and batch flow; see the module docstring."""

    def __init__(self, plan: Plan, *, record_truth: bool = False) -> None:
        super().__init__(plan, record_truth=record_truth)
        # POS receipts waiting for their batch, per (live?, store); ticks per (live?, time)
        self._pos_pending: dict[tuple[bool, str], list[Order]] = {}
        self._pos_ticks: set[tuple[bool, datetime]] = set()

    def _pos_sale(self, order: Order, rng: random.Random) -> list[Step]:
        """The sale's span; its receipt waits for the next batch of its store."""
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
            rate = self.scenario.pos_missing_receipt_rate
            missing = random.Random(f"{self.seed}/batch-miss/{batch_id}/{int(live)}")
            if rate and missing.random() < rate:
                # the connector leaves one receipt out of the batch (and of its total):
                # that sale is never posted (a batch of one is then not posted at all)
                left_out = batch.pop(missing.randrange(len(batch)))
                self.counts["pos_receipts_left_out"] += 1
                if self.truth is not None:
                    self.truth.left_out(left_out.ref, batch_id, boundary)
                if not batch:
                    continue
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
