"""Amounts on every stage, from every way in: a Shopify webhook's ``total_price`` and a
refund's transactions, ``retail.order.amount`` on an OTLP span, ``data.amount`` on a
CloudEvent. Each stage keeps the amount of the hop that reached it, so the order API, the
order page and the reconciliation compare what Shopify captured with what the ERP posted
for the same order."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from django.test import Client

from tests.reconciliation.helpers import ev, results, run, send

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parent.parent / "data" / "shopify"
SECRET = "shpss_recon_secret"
#: the X-Shopify-Triggered-At of every delivery here
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def shopify_secret(settings: Any) -> None:
    settings.SHOPIFY_WEBHOOK_SECRET = [SECRET]


def deliver(client: Client, topic: str, sample: str, event_id: str) -> None:
    raw = (DATA / sample).read_bytes()
    answer = client.post(
        "/webhooks/shopify",
        raw,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(
                hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()
            ).decode(),
            "X-Shopify-Shop-Domain": "acme-outdoor.myshopify.com",
            "X-Shopify-Event-Id": event_id,
            "X-Shopify-Triggered-At": AT.isoformat().replace("+00:00", "Z"),
        },
    )
    assert answer.status_code == 200, answer.content


def posting_span(order: str, so: str, amount: float, currency: str) -> bytes:
    """The ERP connector's span, as an OpenTelemetry SDK sends it (OTLP JSON)."""
    start = int((AT + timedelta(seconds=40)).timestamp() * 1e9)

    def attr(key: str, value: Any) -> dict[str, Any]:
        typed = {"doubleValue": value} if isinstance(value, float) else {"stringValue": value}
        return {"key": key, "value": typed}

    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "netsuite.salesOrder.create",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 900_000_000),
        "attributes": [
            attr("retail.system", "erp"),
            attr("retail.stage", "posted"),
            attr("retail.key.order_number", order),
            attr("retail.key.erp_sales_order", so),
            attr("retail.order.amount", amount),
            attr("retail.order.currency", currency),
        ],
        "status": {"code": 1},
    }
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [attr("service.name", "erp-connector")],
                },
                "scopeSpans": [{"scope": {"name": "connector"}, "spans": [span]}],
            }
        ]
    }
    return orjson.dumps(body)


def stages(client: Client, key: str) -> dict[str, tuple[str, str | None, str]]:
    order = client.get(f"/api/v1/orders/{quote(key)}").json()
    return {s["stage"]: (s["system"], s["amount"], s["currency"]) for s in order["stages"]}


def test_each_stage_keeps_the_amount_its_system_reported(
    ingest_client: Client, api_client: Client, admin_client: Client
) -> None:
    # Shopify captures #9999 for USD 1,575.90; the ERP posts it for 1,570.90 (a tax
    # recalculated), over OTLP
    deliver(ingest_client, "orders/create", "orders_create.json", "ev-create")
    answer = ingest_client.post(
        "/v1/traces",
        posting_span("#9999", "SO-9999", 1570.9, "usd"),
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content
    # order #1001 is refunded USD 209.00 (its refund transaction); the ERP settles it as a
    # CloudEvent with data.amount
    deliver(ingest_client, "refunds/create", "refunds_create.json", "ev-refund")
    send(
        ingest_client,
        ev(
            "erp",
            {"refund_id": "509562969"},
            AT + timedelta(hours=2),
            stage="refund_settled",
            amount="209.00",
            currency="USD",
        ),
    )
    run(AT + timedelta(days=2))

    assert stages(api_client, "#9999") == {
        "captured": ("shopify", "1575.90", "USD"),
        "posted": ("erp", "1570.90", "USD"),
    }
    assert stages(api_client, "refund_id=509562969") == {
        "refunded": ("shopify", "209.00", "USD"),
        "refund_settled": ("erp", "209.00", "USD"),
    }
    page = admin_client.get("/orders/?q=%239999", follow=True)
    assert page.status_code == 200
    assert b'data-testid="stage-amount">USD 1570.90<' in page.content

    day = AT.date()
    [orders] = results(api_client, "shopify-orders", day)
    assert (orders["source_total"], orders["target_total"]) == ("1575.90", "1570.90")
    assert (orders["amount_mismatch"], orders["mismatched_amount"]) == (1, "5.00")
    [refunds] = results(api_client, "shopify-refunds", date(2026, 11, 20))
    assert (refunds["matched"], refunds["source_total"], refunds["target_total"]) == (
        1,
        "209.00",
        "209.00",
    )
