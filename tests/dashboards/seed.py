"""Realistic orders for the page tests, sent through the real ingest endpoints.

Two web orders, as their systems would report them:

* ``#1001``: Shopify captures it (a CloudEvent relayed by middleware), middleware
  validates it (an OTLP span), the ERP's first posting attempt fails with a 503 and its
  retry posts it three minutes after capture (late against the 60 s SLA), the WMS fails
  to reserve stock once (a failed hop nobody has fixed: an open ``failed_hop``
  exception), picks it, and the carrier scans the parcel.
* ``#1002``: captured two hours ago and never posted: a ``stuck`` exception for the ERP.

Then one pass of the pipeline (stitch, then SLA sweep), as ``manage.py stitch`` does.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.test import Client

from observatory.lib.clock import now

ORDER = "#1001"
SHOPIFY_ID = "450789469"
ERP_SO = "SO-48213"
SHIPMENT = "SH-77"
TRACKING = "1Z999AA10123456784"
STUCK_ORDER = "#1002"


def _ns(at: datetime) -> str:
    return str(int(at.timestamp() * 1_000_000_000))


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def span(
    name: str,
    at: datetime,
    duration_ms: float,
    *,
    trace_id: str,
    error: str = "",
    attributes: dict[str, Any],
) -> dict[str, Any]:
    """One OTLP JSON span, as an OpenTelemetry SDK exports it."""
    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": secrets.token_hex(8),
        "name": name,
        "kind": 3,
        "startTimeUnixNano": _ns(at),
        "endTimeUnixNano": _ns(at + timedelta(milliseconds=duration_ms)),
        "attributes": [_attr(k, v) for k, v in attributes.items()],
    }
    if error:
        out["status"] = {"code": 2, "message": error}
    return out


def otlp(service: str, spans: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [_attr("service.name", service)]},
                    "scopeSpans": [{"scope": {"name": "seed"}, "spans": spans}],
                }
            ]
        }
    )


def event(source: str, type_: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": secrets.token_hex(8),
        "source": source,
        "type": type_,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def send(client: Client, t0: datetime | None = None) -> datetime:
    """Send both orders' hops; answers the capture time of ``#1001``."""
    t0 = t0 or now() - timedelta(hours=3)
    validate_trace = secrets.token_hex(16)
    erp_trace = secrets.token_hex(16)
    wms_trace = secrets.token_hex(16)
    events = [
        event(
            "urn:acme:middleware:shopify-relay",
            "com.shopify.orders.create",
            t0,
            system="shopify",
            operation="orders/create",
            stage="captured",
            platform_status="pending",
            channel="web",
            amount="598.94",
            currency="USD",
            duration_ms=120,
            keys={"order_number": ORDER, "shopify_order_id": SHOPIFY_ID},
            attributes={"shopify.financial_status": "pending", "shopify.line_items": 3},
        ),
        event(
            "urn:acme:middleware:shopify-relay",
            "com.shopify.orders.create",
            now() - timedelta(hours=2),
            system="shopify",
            operation="orders/create",
            stage="captured",
            platform_status="pending",
            channel="web",
            duration_ms=95,
            keys={"order_number": STUCK_ORDER, "shopify_order_id": "450789470"},
        ),
        event(
            "urn:acme:wms:manhattan",
            "com.acme.wms.order.picked",
            t0 + timedelta(minutes=41),
            system="wms",
            operation="pick_pack",
            stage="picked",
            platform_status="PACKED",
            duration_ms=2300,
            keys={"erp_sales_order": ERP_SO, "shipment_id": SHIPMENT},
        ),
        event(
            "urn:acme:middleware:easypost-relay",
            "com.acme.carrier.tracker.updated",
            t0 + timedelta(minutes=95),
            system="carrier",
            operation="tracker.updated",
            stage="shipped",
            platform_status="in_transit",
            duration_ms=40,
            keys={"shipment_id": SHIPMENT, "tracking_number": TRACKING},
            attributes={"easypost.carrier": "UPS"},
        ),
    ]
    answer = client.post(
        "/api/v1/events",
        orjson.dumps(events),
        content_type="application/cloudevents-batch+json",
    )
    assert answer.status_code == 200, answer.content

    batches = [
        otlp(
            "order-middleware",
            [
                span(
                    "validate order",
                    t0 + timedelta(seconds=4),
                    180,
                    trace_id=validate_trace,
                    attributes={
                        "retail.system": "middleware",
                        "retail.stage": "validated",
                        "retail.channel": "web",
                        "retail.key.order_number": ORDER,
                        "retail.key.shopify_order_id": SHOPIFY_ID,
                    },
                ),
            ],
        ),
        otlp(
            "erp-connector",
            [
                span(
                    "post sales order",
                    t0 + timedelta(seconds=9),
                    30_000,
                    trace_id=erp_trace,
                    error="ERP answered 503 Service Unavailable",
                    attributes={
                        "retail.system": "erp",
                        "retail.key.order_number": ORDER,
                        "retail.retry.attempt": 0,
                    },
                ),
                span(
                    "post sales order",
                    t0 + timedelta(minutes=3),
                    842,
                    trace_id=erp_trace,
                    attributes={
                        "retail.system": "erp",
                        "retail.stage": "posted",
                        "retail.platform_status": "Pending Fulfillment",
                        "retail.key.order_number": ORDER,
                        "retail.key.erp_sales_order": ERP_SO,
                        "retail.retry.attempt": 1,
                    },
                ),
            ],
        ),
        otlp(
            "wms-bridge",
            [
                span(
                    "reserve stock",
                    t0 + timedelta(minutes=6),
                    1500,
                    trace_id=wms_trace,
                    error="location DC-2 has no stock for SKU TEE-M-BLK",
                    attributes={
                        "retail.system": "wms",
                        "retail.key.erp_sales_order": ERP_SO,
                    },
                ),
            ],
        ),
    ]
    for body in batches:
        answer = client.post("/v1/traces", body, content_type="application/json")
        assert answer.status_code == 200, answer.content
    return t0


def stitch() -> None:
    """One pass of the pipeline: what the worker does every few seconds."""
    from tests.pipeline import tick

    tick(full=True)


def seed(client: Client) -> datetime:
    t0 = send(client)
    stitch()
    return t0
