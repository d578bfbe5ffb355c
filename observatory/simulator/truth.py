"""The ground truth of a run: what really happened to each transaction, written as JSON.

``simulate --truth FILE`` writes it when the run ends (also on Ctrl-C), atomically (a
temporary file renamed over ``FILE``). It is built from the model's own knowledge while
it plans each order, return and inventory update (:class:`Truth` records them; the
model tells it which hops were handed to the senders), so it says what Observatory
should find, whatever reached Observatory and whenever: use it to measure how well the
product tells late telemetry from late orders.

All times are business times in UTC, ISO 8601 (``2026-03-11T15:30:00Z``): the times the
hops carry (in a live run with ``--speed``, the compressed times stamped on them).

``version``, ``scenario``, ``seed``
    ``1``; the run's scenario and seed (the same seed and end replay the same run).
``start``, ``end``
    Where the history ends and live traffic starts; and the business time the run
    stopped: the end of the history in a history-only run, else the send time of the
    last hop handed out. Nothing after ``end`` has happened yet as far as this file
    says.
``policies``
    The product's seeded default SLAs, mirrored: ``name``, ``kind`` (``order``,
    ``return``, ``inventory_update``), ``channel`` (blank: every channel), ``from_stage``,
    ``to_stage``, ``deadline_s``, ``batch_allowance_s`` (a stage reached by a batch hop,
    the POS batch posting, is on time up to deadline + allowance).
``transactions``
    One per order (``ref``: the web order number ``#1001``, the POS receipt, the
    marketplace order id), return (``ref``: the return id; ``order``: the ref of its
    order) and inventory update (``ref``: ``IU-123456``), each a key Observatory finds
    it by, with:

    * ``kind``, ``channel`` (blank for returns and inventory updates), ``store_id``,
      ``amount`` (a string, or null), ``currency``;
    * ``keys``: every business key its hops carry, kind -> value, or a list of values
      when there are several (two shipments, a replayed posting's second sales order);
      a POS batch posting adds its ``batch_id``, not the other receipts of the batch;
    * ``stages``: stage -> ``at`` (business time first reached), ``system`` (who
      reached it), ``batch`` (reached by a batch hop), ``delivered`` (whether that hop
      was handed to the senders: false for the silent warehouse's hops and for hops due
      after the run ended) and ``arrives`` (when it was sent; null when it was not).
      The stages are the model's: ``captured``, ``validated``, ``payment_authorized``,
      ``posted`` (the ERP's sales order or the POS batch posting), ``released``,
      ``picked``, ``shipped`` (the first warehouse shipment), ``delivered`` (the
      carrier's word), ``invoiced``, ``cancelled`` (the Shopify cancellation),
      ``fulfillment_synced`` (the first Shopify ``fulfillments/create``),
      ``return_requested``, ``return_received``, ``refunded``, ``refund_settled``,
      ``inventory_adjusted``, ``inventory_published`` (the first channel). Only stages
      reached by ``end``; a transaction with none is left out;
    * ``missed``: the deadlines of ``policies`` it missed, judged on business time with
      ``end`` as now: ``stage``, ``policy``, ``deadline`` (from-stage time + deadline),
      ``reached`` (or null) and ``late_by_s`` (reached - deadline; null when not
      reached). A deadline counts when it is before ``end``, the to-stage was not
      reached by it (by deadline + allowance when a batch hop reached it), and the
      transaction was not cancelled by then. A stage not reached at all is missed only
      once deadline + allowance is before ``end`` (a batch could still bring it in time).
      ``posted``, ``fulfillment_synced``, ``invoiced``, ``refunded`` and
      ``refund_settled`` are only reached by themselves; a skippable stage
      (``validated``, ``payment_authorized``, ``released``, ``picked``...) also by any
      later stage of its sequence;
    * ``failures``: each failed hop (``at``, ``system``, ``operation``): an ERP posting
      that timed out or met the outage, retried;
    * ``faults``: the scenario faults its hops carry (``lost_event``, ``erp_503``,
      ``wms_silent_dropped``, ``shipped_unposted``...), and ``telemetry``: the notable
      delivery delays of its hops (``shopify_retry``, ``offline_store``).
``deliveries``
    Per source system (``shopify``, ``erp``, ``wms``, ``carrier``, ``pos``,
    ``middleware``, ``marketplace``): hop deliveries handed to the senders, and how many
    of them were ``duplicates`` (another delivery of the same Shopify event).
``duplicates``, ``replays``, ``lost``, ``conflicts``, ``shipped_unposted``,
``tax_recalculations``, ``unsettled_refunds``, ``pos_receipts_left_out``
    The chaos faults, one entry each: a duplicate delivery (``ref``, ``system``,
    ``operation``, ``event_id``: the Shopify event delivered twice); a replayed ERP
    posting (``ref``, the second ``erp_sales_order``); a lost queue message (``ref``,
    ``what``); a posting answered with another order's number (``ref``,
    ``erp_sales_order``, ``other_ref``: the order that owns the number); an order shipped
    from Shopify by the 3PL while its ERP posting was dead-lettered (``ref``); an order
    the ERP posted for a recalculated total (``ref``, ``amount``: the channel's,
    ``posted_amount``); a refund never settled by a credit memo (``ref``: the return,
    ``order``); a POS receipt its batch posting left out (``ref``, ``batch_id``).
``reconciliation``
    What the product's default reconciliation rules should find as of ``end``
    (:mod:`.reconcile`), judged on what was delivered: ``time_zones`` (the shop's and each
    store's, as IANA names: set the server's rules to them), ``rules`` (mirrored),
    ``results`` (per ``rule``, business ``day``, ``currency`` and ``store_id``: every
    figure ``GET /api/v1/reconciliation`` answers), ``unmatched`` (each gap: ``rule``,
    ``day``, ``ref`` or ``batch``, ``status``, ``counted``: false while the grace period
    still waits for it).
``reroutes``, ``cancellations``, ``inventory``
    The business cases (reroutes, cancellations that work or fail, inventory drift
    between the warehouse and Shopify): :meth:`.cases.Cases.document`.
``incidents``
    Business-time windows of injected faults: ``kind`` (``erp_outage``,
    ``wms_silence``), ``system``, ``begin``, ``end``.
``telemetry``
    The delivery delays of the run (:mod:`.telemetry`): ``enabled``, ``export_delay_s``
    (wall seconds), ``relay_every_s``, ``shopify_retry_rate``, ``offline_store_hours``;
    ``shopify_retries`` (``ref``, ``topic``, ``event_id``: the ``X-Shopify-Event-Id``,
    ``at``: the business time, ``X-Shopify-Triggered-At``, ``arrives``: when the retry
    delivers it, ``delivered``: whether that was within the run) and ``offline_stores``
    (``store_id``, ``begin``, ``end``, ``uploaded_at``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from observatory.simulator import catalog as cat
from observatory.simulator import reconcile
from observatory.simulator.slas import POLICIES, Reached, missed
from observatory.simulator.telemetry import SHOPIFY_RETRY, WEBHOOK, OfflineWindow

#: the event type of an inventory snapshot (cases.py): a delivery, but no hop
SNAPSHOT: Final = "inventory.snapshot"

if TYPE_CHECKING:
    from observatory.simulator.entities import Order, Plan, Step
    from observatory.simulator.model import Simulation

VERSION: Final = 1


#: Stages named by the Shopify topic that reaches them.
WEBHOOK_STAGES: Final = {
    "orders/create": "captured",
    "orders/paid": "payment_authorized",
    "orders/cancelled": "cancelled",
    "fulfillments/create": "fulfillment_synced",
    "returns/request": "return_requested",
    "refunds/create": "refunded",
}
ERP_STAGES: Final = {
    cat.NETSUITE_PENDING_FULFILLMENT: "posted",
    cat.NETSUITE_BILLED: "invoiced",
    cat.NETSUITE_CANCELLED: "cancelled",
}
#: Stages the model's hops name themselves (``Step.stage``) that the truth keeps.
OWN_STAGES: Final = frozenset(
    {
        "captured",
        "validated",
        "posted",
        "released",
        "picked",
        "shipped",
        "return_received",
        "refund_settled",
        "inventory_adjusted",
        "inventory_published",
    }
)
LOST_WHAT: Final = "the orders.validate queue message: never validated nor posted"


#: the chaos faults listed in the file, one entry each
FACTS: Final = (
    "replays",
    "lost",
    "conflicts",
    "shipped_unposted",
    "tax_recalculations",
    "unsettled_refunds",
    "pos_receipts_left_out",
)
#: Carrier words the product maps to ``shipped`` (its status maps: in transit, out for
#: delivery, a failed attempt), compared as the maps compare them: without case, spaces,
#: ``_`` or ``-``.
CARRIER_SHIPPED: Final = frozenset({"intransit", "outfordelivery", "attemptfail"})


def reconcile_stage(step: Step) -> str | None:
    """The stage a reconciliation rule reads that the product derives from this hop, if
    any: a Shopify capture, refund or cancellation; a stage the hop names; an ERP
    posting (a replayed one too) or cancellation; a carrier's scan."""
    if step.outcome != "ok" or step.fault == "duplicate_delivery":
        return None
    if step.via == WEBHOOK:
        return WEBHOOK_STAGES.get(step.operation) if step.operation in RECONCILED else None
    if step.stage is not None:
        return step.stage
    word = (step.platform_status or "").lower()
    if step.system == "erp":
        return {"pending fulfillment": "posted", "cancelled": "cancelled"}.get(word)
    if step.system == "carrier" and re.sub(r"[\s_-]", "", word) in CARRIER_SHIPPED:
        return "shipped"
    return None


RECONCILED: Final = frozenset({"orders/create", "refunds/create", "orders/cancelled"})


def stage_of(step: Step) -> str | None:
    """The business stage a hop is the model's record of, if any."""
    if step.via == WEBHOOK:
        return WEBHOOK_STAGES.get(step.operation)
    if step.outcome != "ok" or step.replay:
        return None
    if step.stage is not None:
        return step.stage if step.stage in OWN_STAGES else None
    if step.system == "erp":
        return ERP_STAGES.get(step.platform_status or "")
    if step.system == "carrier" and (step.platform_status or "").lower() == "delivered":
        return "delivered"
    return None


class Mark:
    """One hop as the truth remembers it: when, by whom, and whether it was sent."""

    __slots__ = ("at", "batch", "delivered", "send_at", "system")

    def __init__(self, step: Step) -> None:
        self.at = step.at
        self.system = step.system
        self.send_at = step.send_at
        self.batch = isinstance(step.keys.get("pos_receipt"), list)
        self.delivered = False


class Record:
    """One transaction of the truth, filled as the model plans its hops."""

    __slots__ = (
        "amount",
        "channel",
        "currency",
        "delays",
        "failures",
        "faults",
        "keys",
        "kind",
        "order",
        "postings",
        "ref",
        "stages",
        "store_id",
    )

    def __init__(
        self,
        ref: str,
        kind: str,
        channel: str = "",
        store_id: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        order: str | None = None,
    ) -> None:
        self.ref = ref
        self.kind = kind
        self.channel = channel
        self.store_id = store_id
        self.amount = amount
        self.currency = currency
        self.order = order
        self.keys: dict[str, str | list[str]] = {}
        self.stages: dict[str, Mark] = {}
        self.faults: list[tuple[datetime, str]] = []
        self.delays: list[tuple[datetime, str]] = []
        #: (business time, system, operation) of each failed hop
        self.failures: list[tuple[datetime, str, str]] = []
        #: every hop reaching a stage a reconciliation rule reads (:mod:`.reconcile`)
        self.postings: list[reconcile.Posting] = []

    def add_key(self, kind: str, value: str) -> None:
        held = self.keys.get(kind)
        if held is None:
            self.keys[kind] = value
        elif isinstance(held, list):
            if value not in held:
                held.append(value)
        elif held != value:
            self.keys[kind] = [held, value]

    def reach(self, stage: str, mark: Mark) -> None:
        held = self.stages.get(stage)
        # two deliveries of one event (a duplicate): the one that arrives first
        if held is None or (mark.at, mark.send_at) < (held.at, held.send_at):
            self.stages[stage] = mark


class Truth:
    """What happened, recorded while the model plans (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.scenario = plan.scenario.name
        self.seed = plan.seed
        self.start = plan.start
        self.telemetry = plan.telemetry
        self.records: dict[str, Record] = {}
        #: sales-order number -> the order it was given to
        self._so_owner: dict[str, str] = {}
        #: (business time, list, entry) of the chaos faults
        self._facts: list[tuple[datetime, str, dict[str, Any]]] = []
        self._retries: list[tuple[str, str, str, Mark]] = []
        self._deliveries: dict[str, list[int]] = {}
        #: (X-Shopify-Webhook-Id: one per delivery, entry)
        self._duplicates: list[tuple[str, dict[str, Any]]] = []
        #: the latest send time of a hop handed out
        self.last_sent: datetime | None = None
        #: the batch postings (:mod:`.reconcile`)
        self._batches: list[reconcile.Batch] = []
        self._seq = 0
        #: more sections of the document, each ``(end, stamp) -> {name: value}``
        #: (the business cases: simulator/cases.py)
        self.sections: list[
            Callable[[datetime, Callable[[datetime], datetime]], dict[str, Any]]
        ] = []

    # --- what the model tells it ----------------------------------------------------------

    def order(self, order: Order) -> None:
        self.records[order.ref] = Record(
            order.ref,
            "order",
            order.channel,
            order.store.store_id if order.store else None,
            order.total,
            order.currency,
        )
        if order.erp_sales_order:
            self._so_owner[order.erp_sales_order] = order.ref

    def return_(self, return_id: str, order: Order, amount: Decimal) -> None:
        self.records[return_id] = Record(
            return_id, "return", "", None, amount, order.currency, order=order.ref
        )

    def update(self, update_id: str) -> None:
        self.records[update_id] = Record(update_id, "inventory_update")

    def planned(self, step: Step) -> None:
        """A hop was planned (``send_at`` final): its stage, keys, faults and delays."""
        records = self._records(step)
        if not records:
            return
        stage = stage_of(step)
        mark = None
        if stage is not None or step.delay == SHOPIFY_RETRY:
            mark = step.mark = Mark(step)
        for record in records:
            if stage is not None and mark is not None:
                record.reach(stage, mark)
            for kind, value in step.keys.items():
                if isinstance(value, str):
                    record.add_key(kind, value)
                elif len(records) == 1:
                    for one in value:
                        record.add_key(kind, one)
            if step.fault:
                record.faults.append((step.at, step.fault))
            if step.outcome == "error":
                record.failures.append((step.at, step.system, step.operation))
            if step.delay:
                record.delays.append((step.at, step.delay))
        self._posting(step, records)
        ref = records[0].ref
        if step.delay == SHOPIFY_RETRY and mark is not None and step.webhook is not None:
            self._retries.append((ref, step.operation, step.webhook.event_id, mark))
        fact = self._fact(step, ref)
        if fact is not None:
            self._facts.append((step.at, *fact))

    def _posting(self, step: Step, records: list[Record]) -> None:
        """Record a hop reaching a stage a reconciliation rule reads, as the product
        derives it (the replayed posting of an order included)."""
        stage = reconcile_stage(step)
        if stage is None:
            return
        if step.mark is None:
            step.mark = Mark(step)
        amount, currency = step.amount, step.currency or ""
        if step.webhook is not None:
            spec = step.webhook
            if spec.topic.startswith("orders/"):
                amount = spec.order.total
            elif spec.refund is not None:
                amount = spec.refund.amount
            currency = spec.order.currency
        self._seq += 1
        batch = isinstance(step.keys.get("pos_receipt"), list)
        posting = reconcile.Posting(
            stage=stage,
            system=step.system,
            at=step.at,
            seq=self._seq,
            amount=amount,
            currency=currency,
            docs={
                k: v
                for k, v in step.keys.items()
                if k in reconcile.DOC_KINDS and isinstance(v, str)
            },
            batch=batch,
            delivered=step.mark,
        )
        for record in records:
            record.postings.append(posting)
        if batch:
            self._batches.append(
                reconcile.Batch(
                    batch_id=str(step.keys.get("batch_id", "")),
                    posting=posting,
                    receipts=[r.ref for r in records],
                    store_id=step.store_id or "",
                )
            )

    def left_out(self, ref: str, batch_id: str, at: datetime) -> None:
        """A POS receipt left out of its batch posting: never posted."""
        record = self.records.get(ref)
        if record is not None:
            record.faults.append((at, "receipt_left_out"))
        self._facts.append((at, "pos_receipts_left_out", {"ref": ref, "batch_id": batch_id}))

    def handed(self, step: Step) -> None:
        """The hop was handed to the senders."""
        if step.mark is not None:
            step.mark.delivered = True
        if self.last_sent is None or step.send_at > self.last_sent:
            self.last_sent = step.send_at
        if step.event_type == SNAPSHOT:  # a delivery, but no hop: in ``inventory``
            return
        tally = self._deliveries.setdefault(step.system, [0, 0])
        tally[0] += 1
        if step.fault == "duplicate_delivery":
            tally[1] += 1
            delivery, event_id = _delivery(step)
            entry = {
                "ref": step.ref,
                "system": step.system,
                "operation": step.operation,
                "event_id": event_id,
            }
            self._duplicates.append((delivery, entry))

    def not_handed(self, step: Step) -> None:
        """A hop counted by :meth:`handed` was not sent after all (the run stopped)."""
        if step.mark is not None:
            step.mark.delivered = False
        if step.event_type == SNAPSHOT:
            return
        tally = self._deliveries[step.system]
        tally[0] -= 1
        if step.fault == "duplicate_delivery":
            tally[1] -= 1
            delivery, _ = _delivery(step)
            self._duplicates = [(d, e) for d, e in self._duplicates if d != delivery]

    def _records(self, step: Step) -> list[Record]:
        record = self.records.get(step.ref)
        if record is not None:
            return [record]
        receipts = step.keys.get("pos_receipt")  # a POS batch posting: each of its sales
        if isinstance(receipts, list):
            return [self.records[r] for r in receipts if r in self.records]
        return []

    def _fact(self, step: Step, ref: str) -> tuple[str, dict[str, Any]] | None:
        if step.fault == "replayed_posting":
            return "replays", {"ref": ref, "erp_sales_order": step.keys.get("erp_sales_order")}
        if step.fault == "lost_event":
            return "lost", {"ref": ref, "what": LOST_WHAT}
        if step.fault == "conflicting_id":
            so = step.keys.get("erp_sales_order")
            other = self._so_owner.get(so) if isinstance(so, str) else None
            return "conflicts", {"ref": ref, "erp_sales_order": so, "other_ref": other}
        if step.fault == "shipped_unposted":
            return "shipped_unposted", {"ref": ref}
        if step.fault == "tax_recalculated":
            record = self.records[ref]
            entry = {"ref": ref, "amount": str(record.amount), "posted_amount": str(step.amount)}
            return "tax_recalculations", entry
        if step.fault == "refund_unsettled":
            return "unsettled_refunds", {"ref": ref, "order": self.records[ref].order}
        return None

    # --- the document ---------------------------------------------------------------------

    def document(
        self,
        *,
        end: datetime,
        stamp: Callable[[datetime], datetime] = lambda moment: moment,
        incidents: Iterable[tuple[str, str, datetime, datetime]] = (),
        offline: OfflineWindow | None = None,
    ) -> dict[str, Any]:
        """The JSON document as of ``end`` (simulated time; ``stamp`` maps simulated
        times to the business times on the hops)."""
        now = stamp(end)
        transactions = []
        for record in self.records.values():
            stages = {s: m for s, m in record.stages.items() if m.at <= end}
            if stages:
                transactions.append(_transaction(record, stages, now, end, stamp))
        t = self.telemetry
        more: dict[str, Any] = {}
        for section in self.sections:
            more.update(section(end, stamp))
        return {
            **more,
            "version": VERSION,
            "scenario": self.scenario,
            "seed": self.seed,
            "start": iso(stamp(self.start)),
            "end": iso(now),
            "policies": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "channel": p.channel,
                    "from_stage": p.from_stage,
                    "to_stage": p.to_stage,
                    "deadline_s": p.deadline_s,
                    "batch_allowance_s": p.batch_allowance_s,
                }
                for p in POLICIES
            ],
            "transactions": transactions,
            "deliveries": {
                system: {"deliveries": n, "duplicates": d}
                for system, (n, d) in sorted(self._deliveries.items())
            },
            "duplicates": [entry for _, entry in self._duplicates],
            **{
                name: [entry for at, kind, entry in self._facts if kind == name and at <= end]
                for name in FACTS
            },
            "reconciliation": reconcile.results(
                (
                    reconcile.Txn(r.ref, r.kind, r.channel, r.store_id or "", r.keys, r.postings)
                    for r in self.records.values()
                ),
                self._batches,
                end,
                stamp,
            ),
            "incidents": [
                {"kind": kind, "system": system, "begin": iso(stamp(b)), "end": iso(stamp(e))}
                for kind, system, b, e in incidents
                if b <= end
            ],
            "telemetry": {
                "enabled": t.enabled,
                "export_delay_s": t.span_schedule_s,
                "relay_every_s": t.relay_every_s if t.enabled else 0,
                "shopify_retry_rate": t.shopify_retry_rate if t.enabled else 0,
                "offline_store_hours": t.offline_store_hours if offline else 0,
                "shopify_retries": [
                    {
                        "ref": ref,
                        "topic": topic,
                        "event_id": event_id,
                        "at": iso(stamp(mark.at)),
                        "arrives": iso(stamp(mark.send_at)),
                        "delivered": mark.delivered,
                    }
                    for ref, topic, event_id, mark in self._retries
                    if mark.at <= end
                ],
                "offline_stores": [
                    {
                        "store_id": offline.store_id,
                        "begin": iso(stamp(offline.begin)),
                        "end": iso(stamp(offline.end)),
                        "uploaded_at": iso(stamp(offline.uploaded_at)),
                    }
                ]
                if offline is not None and offline.begin <= end
                else [],
            },
        }


def _transaction(
    record: Record,
    marks: dict[str, Mark],
    now: datetime,
    end: datetime,
    stamp: Callable[[datetime], datetime],
) -> dict[str, Any]:
    stages = {
        stage: Reached(stamp(mark.at), mark.batch)
        for stage, mark in sorted(marks.items(), key=lambda sm: sm[1].at)
    }
    out: dict[str, Any] = {
        "ref": record.ref,
        "kind": record.kind,
        "channel": record.channel,
        "store_id": record.store_id,
    }
    if record.order is not None:
        out["order"] = record.order
    out.update(
        {
            "keys": record.keys,
            "amount": None if record.amount is None else str(record.amount),
            "currency": record.currency,
            "stages": {
                stage: {
                    "at": iso(stages[stage].at),
                    "system": mark.system,
                    "batch": mark.batch,
                    "delivered": mark.delivered,
                    "arrives": iso(stamp(mark.send_at)) if mark.delivered else None,
                }
                for stage, mark in sorted(marks.items(), key=lambda sm: sm[1].at)
            },
            "missed": [
                {
                    "stage": m.stage,
                    "policy": m.policy,
                    "deadline": iso(m.deadline),
                    "reached": None if m.reached is None else iso(m.reached),
                    "late_by_s": m.late_by_s,
                }
                for m in missed(record.kind, record.channel, stages, now)
            ],
            "faults": _unique(f for at, f in record.faults if at <= end),
            "failures": [
                {"at": iso(stamp(at)), "system": system, "operation": operation}
                for at, system, operation in record.failures
                if at <= end
            ],
            "telemetry": _unique(d for at, d in record.delays if at <= end),
        }
    )
    return out


def document_of(
    sim: Simulation, stamp: Callable[[datetime], datetime] = lambda moment: moment
) -> dict[str, Any]:
    """The ground truth of ``sim`` as of now: a history-only run ends at the end of its
    history, a live one with the last hop handed out. ``stamp`` maps simulated times to
    the business times on the hops (:class:`~observatory.simulator.timing.TimeMap`)."""
    if sim.truth is None:
        raise ValueError("the simulation was not asked to record the truth")
    end = sim.start
    if sim.live and sim.truth.last_sent is not None:
        end = max(end, sim.truth.last_sent)
    incidents = []
    if sim.erp_outage:
        incidents.append(("erp_outage", "erp", *sim.erp_outage))
    if sim.wms_silence:
        incidents.append(("wms_silence", "wms", *sim.wms_silence))
    return sim.truth.document(
        end=end, stamp=stamp, incidents=incidents, offline=sim.delivery.offline
    )


# --- writing -------------------------------------------------------------------------------


def _delivery(step: Step) -> tuple[str, str]:
    """(this delivery's id, the event's id) of a repeated delivery."""
    if step.webhook is not None:
        return step.webhook.webhook_id, step.webhook.event_id
    return f"{step.event_id}@{step.send_at.isoformat()}", step.event_id


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def write(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` to ``path`` atomically: a temporary file beside it, renamed."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
