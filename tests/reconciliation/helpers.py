"""Reconciliation driven through the real interfaces: hops in through the CloudEvents
endpoint, the pipeline and a reconciliation pass as the worker runs them (with the
business clock each case needs), figures out through the JSON API.

``KITS`` has, for each default rule, the hops of one transaction's source side and of
one target document, as the systems of docs/stages.md send them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.test import Client

from observatory.reconciliation.actions import RunResult, do_reconcile
from tests.pipeline import tick
from tests.triage.helpers import ev, send

__all__ = ["ev", "send"]

#: a Friday, 15:00 UTC
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
DAY0 = T0.date()
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


def run(at: datetime, wall: datetime | None = None) -> RunResult:
    """Stitch and sweep, then one reconciliation pass of every rule, as of business time
    ``at`` (and wall-clock ``wall``)."""
    tick(clock=lambda: at)
    return do_reconcile(clock=lambda: at, wall=(lambda: wall) if wall else None, force=True)


def results(
    client: Client, rule: str, since: date = DAY0, until: date | None = None
) -> list[dict[str, Any]]:
    answer = client.get(
        "/api/v1/reconciliation",
        {"rule": rule, "since": since.isoformat(), "until": (until or since).isoformat()},
    )
    assert answer.status_code == 200, answer.content
    rows: list[dict[str, Any]] = answer.json()["results"]
    return rows


def one_day(client: Client, rule: str, day: date = DAY0) -> dict[str, Any]:
    """The single result row of ``rule`` on ``day``."""
    [row] = results(client, rule, day)
    return row


def day_items(client: Client, rule: str, day: date = DAY0, **params: Any) -> dict[str, Any]:
    answer = client.get(f"/api/v1/reconciliation/{rule}/{day.isoformat()}", params)
    assert answer.status_code == 200, answer.content
    out: dict[str, Any] = answer.json()
    return out


Events = list[dict[str, Any]]


@dataclass(frozen=True)
class Kit:
    """How the systems of one rule report one transaction: ``source(n, at, amount)`` the
    source side of transaction ``n``, ``target(n, at, amount, doc)`` one target document
    (``doc`` tells two documents of one transaction apart), ``ref(n)`` the key it is
    found by."""

    rule: str
    source: Callable[[int, datetime, str | None, str], Events]
    target: Callable[[int, datetime, str | None, str, str], Events]
    ref: Callable[[int], str]
    grace: timedelta


def _money(amount: str | None, currency: str) -> dict[str, Any]:
    return {} if amount is None else {"amount": amount, "currency": currency}


def _shopify_order(n: int, at: datetime, amount: str | None, cur: str) -> Events:
    keys = {"order_number": f"#{n}", "shopify_order_id": f"9{n}"}
    return [ev("shopify", keys, at, stage="captured", channel="web", **_money(amount, cur))]


def _erp_order(n: int, at: datetime, amount: str | None, cur: str, doc: str) -> Events:
    keys = {"order_number": f"#{n}", "erp_sales_order": f"SO-{n}{doc}"}
    return [ev("erp", keys, at, stage="posted", channel="web", **_money(amount, cur))]


def _shopify_refund(n: int, at: datetime, amount: str | None, cur: str) -> Events:
    keys = {"shopify_order_id": f"9{n}", "refund_id": f"R{n}"}
    return [ev("shopify", keys, at, stage="refunded", **_money(amount, cur))]


def _erp_credit_memo(n: int, at: datetime, amount: str | None, cur: str, doc: str) -> Events:
    keys = {"shopify_order_id": f"9{n}", "refund_id": f"R{n}{doc}"}
    return [ev("erp", keys, at, stage="refund_settled", **_money(amount, cur))]


STORE = "ST1"


def _pos_sale(n: int, at: datetime, amount: str | None, cur: str) -> Events:
    keys = {"pos_receipt": f"{STORE}-{n}", "store_id": STORE}
    return [
        ev("pos", keys, at, stage="captured", channel="pos", store_id=STORE, **_money(amount, cur))
    ]


def _cash_sale_batch(n: int, at: datetime, amount: str | None, cur: str, doc: str) -> Events:
    """A batch posting naming receipt ``n`` alone (``pos_batch`` names several)."""
    return [pos_batch([n], at, amount, cur, f"B{n}{doc}")]


def pos_batch(
    receipts: list[int], at: datetime, amount: str | None, cur: str, batch: str, store: str = STORE
) -> dict[str, Any]:
    keys = {
        "pos_receipt": [f"{store}-{n}" for n in receipts],
        "batch_id": batch,
        "store_id": store,
    }
    return ev("erp", keys, at, stage="posted", channel="pos", store_id=store, **_money(amount, cur))


def _wms_shipment(n: int, at: datetime, amount: str | None, cur: str) -> Events:
    keys = {"erp_sales_order": f"SO-W{n}", "shipment_id": f"SH-{n}", "tracking_number": f"1Z{n}"}
    return [ev("wms", keys, at, stage="shipped", channel="web", **_money(amount, cur))]


def _carrier_scan(n: int, at: datetime, amount: str | None, cur: str, doc: str) -> Events:
    # a second label for the same shipment is reported with the shipper's reference
    keys = {"tracking_number": f"1Z{n}{doc}"} | ({"shipment_id": f"SH-{n}"} if doc else {})
    return [ev("carrier", keys, at, platform_status="in_transit", **_money(amount, cur))]


def _marketplace_order(n: int, at: datetime, amount: str | None, cur: str) -> Events:
    keys = {"marketplace_order_id": f"AMZ-{n}"}
    return [
        ev("marketplace", keys, at, stage="captured", channel="marketplace", **_money(amount, cur))
    ]


def _erp_marketplace(n: int, at: datetime, amount: str | None, cur: str, doc: str) -> Events:
    keys = {"marketplace_order_id": f"AMZ-{n}", "erp_sales_order": f"SO-M{n}{doc}"}
    return [ev("erp", keys, at, stage="posted", channel="marketplace", **_money(amount, cur))]


KITS = {
    k.rule: k
    for k in (
        Kit("shopify-orders", _shopify_order, _erp_order, lambda n: f"#{n}", H),
        Kit("shopify-refunds", _shopify_refund, _erp_credit_memo, lambda n: f"R{n}", D),
        Kit("pos-cash-sales", _pos_sale, _cash_sale_batch, lambda n: f"{STORE}-{n}", 2 * H),
        Kit("wms-carrier-scans", _wms_shipment, _carrier_scan, lambda n: f"1Z{n}", D),
        Kit("marketplace-orders", _marketplace_order, _erp_marketplace, lambda n: f"AMZ-{n}", H),
    )
}
