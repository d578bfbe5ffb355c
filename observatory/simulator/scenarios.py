"""The ``--scenario`` choices: what each injects, and what Observatory should show for it.

Every scenario's telemetry arrives as it does from real integrations
(:mod:`observatory.simulator.telemetry`; ``--no-telemetry-delay`` turns it off): spans and
events exported in batches every few seconds, carrier tracking relayed by the middleware
every 5 minutes, ERP callbacks a few seconds and warehouse events up to a minute late,
1 % of Shopify webhooks delivered only by Shopify's retry (minutes to hours later, the
same event), and in a history of a day or more one store's POS offline for 3 hours, its
sales uploaded at once afterwards while their ERP postings were on time. Business times
never move: late telemetry is not a late order, and a scenario's expectations below hold
on business time. ``simulate --truth FILE`` writes what really happened
(:mod:`observatory.simulator.truth`).

``normal``
    Business as usual: web, POS, marketplace orders, returns and inventory updates with
    realistic delays. A little real-world noise: about 1.5 % of ERP postings time out once
    and succeed on the connector's retry (``retail.retry.attempt`` = 1), about 2 % of web
    orders are cancelled by the customer, about 3 % of deliveries need a second attempt.
    Expect: acceptance-to-posting p95 well under the 60 s SLA, no stuck orders, retries
    KPI small, no duplicates, no conflicts.

``erp-outage``
    For 30 simulated minutes (placed where the traffic is: at the order 40 % into the
    history, or 60 s into a live run) the ERP answers 503 Service Unavailable. Every
    posting in the window (web and marketplace orders, POS batches) fails: an ERROR span
    with ``http.response.status_code`` 503, an exception event and ``retail.retry.attempt``
    0, 1, 2, ... while the connector retries with exponential backoff (20 s doubling, at
    most 5 min); when the ERP is back the backlog drains and each order posts with its
    last attempt number. Expect: error hops and the ``hop_health`` error rate of ``erp``
    rise (an ``error_rate`` alert), orders captured in the window are stuck past the 60 s
    captured -> posted SLA (``stuck`` exceptions, the ``reconciliation_backlog`` KPI,
    acceptance-to-posting p95/p99 far over 60 s), POS batches post late, the ``retries``
    KPI jumps; after the window the stuck exceptions close as postings land.

``peak-sale``
    A sale: four times the traffic (backfill volume and live rate), every web order
    discounted, the ERP about 60 % slower, and the inventory sync falling behind: its
    publication lag to Shopify and the POS grows with the load (busy hours of the
    history, and steadily over the first ten minutes of a live run) until many updates
    take longer than the 5 min adjusted -> published SLA. Expect: higher order counts and
    amounts, the ``inventory_sync_lag`` KPI p95/max over 300 s, stuck inventory updates
    (``stuck`` exceptions on ``inventory_published``), some acceptance-to-posting
    outliers.

``chaos``
    Integration faults, each of a kind Observatory must catch:

    * duplicate webhook deliveries: 6 % of Shopify webhooks are delivered twice with the
      same ``X-Shopify-Event-Id`` (a new ``X-Shopify-Webhook-Id``), seconds to a minute
      apart -> duplicate deliveries counted, ``duplicate_rate`` KPI;
    * replayed postings: 1.5 % of orders are posted to the ERP a second time by a
      replayed queue message (``retail.replay`` = true); the ERP takes it for a new order
      and answers with a second sales-order number -> a ``duplicate`` exception (posted
      twice), ``duplicate_rate.posted_twice``, the ``retries`` KPI's replays;
    * lost events: 3 % of web orders lose their queue message between the Shopify bridge
      and validation, so they are never validated nor posted -> ``stuck`` exceptions past
      the 60 s captured -> posted SLA, ``reconciliation_backlog``;
    * late carrier scans: 4 % of shipments get their first carrier scans hours late, and
      the Shopify fulfillment (which waits for the scan) with them -> stuck past the
      15 min shipped -> Shopify SLA, ``fulfillment_propagation`` p95;
    * a conflicting id: one ERP posting in every 150 orders (at least one) names an
      ``erp_sales_order`` already used by another order -> a ``conflict`` exception
      showing both orders;
    * a silent warehouse: for 45 simulated minutes (15 minutes after the fault anchor) the
      WMS sends nothing (its hops of that window are lost) while the ERP keeps posting
      -> a ``silence`` alert on ``wms``, orders missing their released / picked hops;
    * shipped but never posted: one web order in every 150 orders (about 1 % of web
      orders) loses its ERP posting for good (the connector's message is dead-lettered
      after validation), yet a 3PL connector pulls it straight from Shopify and ships it:
      its warehouse hops carry ``order_number`` and ``shopify_order_id`` (no
      ``erp_sales_order``), carrier scans and the Shopify fulfillment follow, there is no
      ERP billing -> goods left while the ERP never heard of the order: ``posted`` is
      missing for good (no later stage makes up for it).

    And the gaps a finance team reconciles (docs/reconciliation.md):

    * a tax recalculation: 2 % of web and marketplace orders are posted by the ERP for
      another total (it taxes them one point higher than the channel did) -> an
      ``amount_mismatch`` of the ``shopify-orders`` or ``marketplace-orders`` rule;
    * a refund without a credit memo: a quarter of the refunds are never settled in the
      ERP -> a ``missing_in_target`` of ``shopify-refunds`` (and a ``stuck`` exception
      past the 24 h refund SLA);
    * a POS batch missing a receipt: 3 % of the ERP's cash-sale batch postings leave one
      receipt out (of its receipts and its total; a batch of one is not posted at all)
      -> a ``missing_in_target`` of ``pos-cash-sales`` (and a stuck POS sale);
    * postings that never happen (the lost events and the orders shipped unposted
      above) are ``missing_in_target`` of ``shopify-orders``, and the replayed postings
      its ``posted_twice``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    #: one line for ``--help``
    summary: str
    #: multiplies the backfill volume and the live rate
    traffic: float = 1.0
    #: web orders discounted (a sale)
    sale: bool = False
    #: multiplies the ERP posting latency
    erp_latency: float = 1.0
    #: length of the ERP 503 window, simulated seconds (0: none)
    erp_outage_s: float = 0.0
    #: inventory publication lag multiplier at full load (1: no growth)
    inventory_lag_growth: float = 1.0
    #: share of Shopify webhooks delivered twice
    duplicate_rate: float = 0.0
    #: share of orders whose ERP posting is replayed
    replay_rate: float = 0.0
    #: share of web orders whose queue message is lost
    lost_rate: float = 0.0
    #: share of shipments whose first carrier scans arrive hours late
    late_scan_rate: float = 0.0
    #: one conflicting ERP id per this many orders (0: none)
    conflict_every: int = 0
    #: length of the WMS silence, simulated seconds (0: none)
    wms_silence_s: float = 0.0
    #: one web order shipped but never posted per this many orders (0: none)
    unposted_every: int = 0
    #: share of web and marketplace orders the ERP posts for a recalculated total
    tax_recalc_rate: float = 0.0
    #: share of refunds the ERP never settles (no credit memo)
    unsettled_refund_rate: float = 0.0
    #: share of POS batch postings leaving one receipt out
    pos_missing_receipt_rate: float = 0.0


SCENARIOS: Final = {
    s.name: s
    for s in (
        Scenario(
            "normal",
            "business as usual, with a little real-world noise -> no stuck orders, no "
            "duplicates, no conflicts",
        ),
        Scenario(
            "erp-outage",
            "the ERP answers 503 for 30 simulated minutes: failed postings retry with "
            "backoff, then the backlog drains -> failed ERP hops (error-rate alert), "
            "orders stuck past the 60 s SLA, acceptance-to-posting p95 over 60 s, retries",
            erp_outage_s=30 * 60,
        ),
        Scenario(
            "peak-sale",
            "4x traffic with a discount on every web order, a slower ERP, an inventory "
            "sync falling behind -> inventory_sync_lag over 300 s, stuck inventory updates",
            traffic=4.0,
            sale=True,
            erp_latency=1.6,
            inventory_lag_growth=5.0,
        ),
        Scenario(
            "chaos",
            "duplicate webhook deliveries, replayed postings, lost events, late carrier "
            "scans, a conflicting ERP id, a silent warehouse, orders shipped but never "
            "posted, tax recalculated by the ERP, refunds without a credit memo, POS "
            "batches missing a receipt -> duplicate_rate and posted_twice, stuck orders, a "
            "conflict exception, a silence alert on wms, reconciliation gaps",
            duplicate_rate=0.06,
            replay_rate=0.015,
            lost_rate=0.03,
            late_scan_rate=0.04,
            conflict_every=150,
            wms_silence_s=45 * 60,
            unposted_every=150,
            tax_recalc_rate=0.02,
            unsettled_refund_rate=0.25,
            pos_missing_receipt_rate=0.03,
        ),
    )
}


def help_text() -> str:
    """One line per scenario, for the command's ``--scenario`` help."""
    return "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values())
