"""Shopify webhook bodies, built from captured Shopify sample payloads.

Each body is a deep copy of a real sample (``shopify_samples/``) with the ids, names,
amounts, line items, customer and times of the simulated order put in, so that every
other field keeps the shape Shopify sends (customer PII included: the server must mask
it). Pure: the same spec and times give the same body.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final

from observatory.simulator import catalog as cat
from observatory.simulator.entities import Line, Order, Shipment, WebhookSpec, money

SAMPLES: Final = Path(__file__).with_name("shopify_samples")
_SHOP_TZ: Final = timezone(timedelta(hours=cat.SHOP_UTC_OFFSET_H))
#: Shopify's numeric id of the shop (appears in the order status URL).
SHOP_ID: Final = 60_221_473_031
#: Shopify location ids of the warehouses.
LOCATION_IDS: Final = {w.code: 71_840_112_000 + i for i, w in enumerate(cat.WAREHOUSES)}

Stamp = Callable[[datetime], datetime]


@cache
def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


def shopify_time(moment: datetime) -> str:
    """Shopify's timestamp style: shop-local time with its offset, whole seconds."""
    return moment.astimezone(_SHOP_TZ).replace(microsecond=0).isoformat()


def _money(amount: Decimal) -> str:
    return str(money(amount))


def _money_set(amount: Decimal) -> dict[str, Any]:
    value = {"amount": _money(amount), "currency_code": cat.CURRENCY}
    return {"shop_money": dict(value), "presentment_money": dict(value)}


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def render(spec: WebhookSpec, at: datetime, stamp: Stamp) -> dict[str, Any]:
    """The body of one delivery of ``spec``; ``at`` is its (stamped) trigger time and
    ``stamp`` maps the model's other simulated times onto business time."""
    family = spec.topic.split("/", 1)[0]
    if family == "orders":
        return order_body(spec, at, stamp)
    if family == "fulfillments":
        assert spec.shipment is not None
        return fulfillment_body(spec.order, spec.shipment, at, spec.shipment_status)
    if family == "refunds":
        return refund_body(spec, at)
    if family == "returns":
        return return_body(spec)
    raise ValueError(f"no body for topic {spec.topic!r}")


def _line_item(order: Order, line: Line, fulfilled: bool) -> dict[str, Any]:
    item: dict[str, Any] = copy.deepcopy(_sample("orders_create")["line_items"][0])
    product = line.product
    item.update(
        {
            "id": line.line_id,
            "admin_graphql_api_id": _gid("LineItem", line.line_id),
            "attributed_staffs": [],
            "current_quantity": line.quantity,
            "fulfillable_quantity": 0 if fulfilled else line.quantity,
            "fulfillment_status": "fulfilled" if fulfilled else None,
            "grams": product.grams,
            "name": product.title,
            "title": product.title.split(" - ")[0],
            "variant_title": product.title.split(" - ")[1] if " - " in product.title else None,
            "price": _money(product.price),
            "price_set": _money_set(product.price),
            "product_id": product.product_id,
            "quantity": line.quantity,
            "sku": product.sku,
            "variant_id": product.variant_id,
            "vendor": "Northwind Outfitters",
        }
    )
    return item


def _address(order: Order) -> dict[str, Any]:
    customer = order.customer
    address: dict[str, Any] = copy.deepcopy(_sample("orders_create")["shipping_address"])
    if customer is None:
        return address
    address.update(
        {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "name": f"{customer.first_name} {customer.last_name}",
            "address1": f"{100 + order.index % 800} Market Street",
            "city": customer.city,
            "province": customer.province,
            "province_code": customer.province,
            "zip": f"{10_000 + (order.index * 37) % 89_999:05d}",
            "phone": f"+1 555 01{order.index % 100:02d} {order.index % 10_000:04d}",
            "company": None,
        }
    )
    return address


def order_body(spec: WebhookSpec, at: datetime, stamp: Stamp) -> dict[str, Any]:
    order = spec.order
    customer = order.customer
    body = copy.deepcopy(_sample("orders_create"))
    created = shopify_time(stamp(order.placed_at))
    fulfilled = spec.fulfillment_status == "fulfilled"
    line_total = sum((line.total for line in order.lines), Decimal("0"))
    rate = customer.tax_rate if customer else Decimal("0")
    body.update(
        {
            "id": order.shopify_id,
            "admin_graphql_api_id": _gid("Order", order.shopify_id),
            "name": order.name,
            "order_number": order.number,
            "number": order.number - 1000,
            "confirmation_number": order.confirmation,
            "confirmed": True,
            "token": order.token,
            "checkout_token": order.token[::-1],
            "created_at": created,
            "processed_at": created,
            "updated_at": shopify_time(at),
            "cancelled_at": None if spec.cancelled_at is None else shopify_time(at),
            "cancel_reason": None if spec.cancelled_at is None else "customer",
            "closed_at": None,
            "test": False,
            "tags": "sale" if order.discount_code == "SALE20" else "",
            "source_name": "web",
            "financial_status": "voided"
            if spec.cancelled_at is not None
            else spec.financial_status,
            "fulfillment_status": spec.fulfillment_status,
            "currency": order.currency,
            "presentment_currency": order.currency,
            "total_line_items_price": _money(line_total),
            "total_line_items_price_set": _money_set(line_total),
            "subtotal_price": _money(order.subtotal - order.discount),
            "subtotal_price_set": _money_set(order.subtotal - order.discount),
            "current_subtotal_price": _money(order.subtotal - order.discount),
            "current_subtotal_price_set": _money_set(order.subtotal - order.discount),
            "total_discounts": _money(order.discount),
            "total_discounts_set": _money_set(order.discount),
            "current_total_discounts": _money(order.discount),
            "current_total_discounts_set": _money_set(order.discount),
            "total_tax": _money(order.tax),
            "total_tax_set": _money_set(order.tax),
            "current_total_tax": _money(order.tax),
            "current_total_tax_set": _money_set(order.tax),
            "total_price": _money(order.total),
            "total_price_set": _money_set(order.total),
            "current_total_price": _money(order.total),
            "current_total_price_set": _money_set(order.total),
            "total_shipping_price_set": _money_set(order.shipping),
            "total_outstanding": "0.00",
            "total_weight": sum(line.product.grams * line.quantity for line in order.lines),
            "payment_gateway_names": ["shopify_payments"],
            "order_status_url": (
                f"https://{cat.SHOP_DOMAIN}/{SHOP_ID}/orders/{order.token}/authenticate"
                f"?key={order.token[:16]}"
            ),
            "discount_codes": (
                [
                    {
                        "code": order.discount_code,
                        "amount": _money(order.discount),
                        "type": "percentage",
                    }
                ]
                if order.discount_code
                else []
            ),
            "tax_lines": [
                {
                    "price": _money(order.tax),
                    "rate": float(rate),
                    "title": "Sales Tax",
                    "price_set": _money_set(order.tax),
                    "channel_liable": False,
                }
            ],
            "line_items": [_line_item(order, line, fulfilled) for line in order.lines],
            "fulfillments": (
                [fulfillment_body(order, s, at, None) for s in order.shipments] if fulfilled else []
            ),
        }
    )
    shipping = copy.deepcopy(body["shipping_lines"][0])
    shipping.update(
        {
            "id": order.shopify_id + 7,
            "price": _money(order.shipping),
            "price_set": _money_set(order.shipping),
            "discounted_price": _money(order.shipping),
            "discounted_price_set": _money_set(order.shipping),
            "title": "Standard Shipping" if order.shipping else "Free Shipping",
        }
    )
    body["shipping_lines"] = [shipping]
    if customer is not None:
        body["email"] = body["contact_email"] = customer.email
        body["customer"].update(
            {
                "id": customer.id,
                "admin_graphql_api_id": _gid("Customer", customer.id),
                "email": customer.email,
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "state": "enabled",
            }
        )
        body["customer"]["default_address"].update({"customer_id": customer.id, **_address(order)})
        body["billing_address"] = _address(order)
        body["shipping_address"] = _address(order)
    return body


def fulfillment_body(
    order: Order, shipment: Shipment, at: datetime, shipment_status: str | None
) -> dict[str, Any]:
    body = copy.deepcopy(_sample("fulfillments_create"))
    url = shipment.carrier.url.format(shipment.tracking_number)
    when = shopify_time(at)
    template_item = body["line_items"][0]
    items = []
    for line in shipment.lines:
        item = copy.deepcopy(template_item)
        item.update(
            {
                "id": line.line_id,
                "variant_id": line.product.variant_id,
                "product_id": line.product.product_id,
                "title": line.product.title,
                "name": line.product.title,
                "sku": line.product.sku,
                "quantity": line.quantity,
                "fulfillable_quantity": 0,
                "fulfillment_status": "fulfilled",
                "grams": line.product.grams,
                "price": _money(line.product.price),
                "price_set": _money_set(line.product.price),
                "admin_graphql_api_id": _gid("LineItem", line.line_id),
            }
        )
        items.append(item)
    body.update(
        {
            "id": shipment.fulfillment_id,
            "admin_graphql_api_id": _gid("Fulfillment", shipment.fulfillment_id),
            "order_id": order.shopify_id,
            "name": f"{order.name}.{shipment.number}",
            "status": "success",
            "service": "manual",
            "created_at": when,
            "updated_at": when,
            "shipment_status": shipment_status,
            "location_id": LOCATION_IDS[shipment.warehouse.code],
            "tracking_company": shipment.carrier.name,
            "tracking_number": shipment.tracking_number,
            "tracking_numbers": [shipment.tracking_number],
            "tracking_url": url,
            "tracking_urls": [url],
            "line_items": items,
            "destination": _address(order),
            "email": order.customer.email if order.customer else None,
        }
    )
    return body


def refund_body(spec: WebhookSpec, at: datetime) -> dict[str, Any]:
    order, refund = spec.order, spec.refund
    assert refund is not None
    body = copy.deepcopy(_sample("refunds_create"))
    when = shopify_time(at)
    rate = order.customer.tax_rate if order.customer else Decimal("0")
    lines = []
    for n, line in enumerate(refund.lines):
        item = copy.deepcopy(body["refund_line_items"][0])
        tax = money(line.total * rate)
        item.update(
            {
                "id": refund.refund_id * 10 + n,
                "quantity": line.quantity,
                "line_item_id": line.line_id,
                "location_id": LOCATION_IDS[order.shipments[0].warehouse.code],
                "restock_type": "return",
                "subtotal": float(line.total),
                "total_tax": float(tax),
                "subtotal_set": _money_set(line.total),
                "total_tax_set": _money_set(tax),
            }
        )
        item["line_item"] = _line_item(order, line, fulfilled=True)
        lines.append(item)
    transaction = copy.deepcopy(body["transactions"][0])
    transaction.update(
        {
            "id": refund.transaction_id,
            "admin_graphql_api_id": _gid("OrderTransaction", refund.transaction_id),
            "order_id": order.shopify_id,
            "gateway": "shopify_payments",
            "authorization": None,
            "created_at": when,
            "processed_at": when,
            "parent_id": refund.transaction_id - 1,
            "source_name": "web",
            "amount": _money(refund.amount),
            "currency": order.currency,
            "payment_id": f"{order.name}.{len(order.shipments) + 1}",
            "total_unsettled_set": {
                "presentment_money": {"amount": _money(refund.amount), "currency": "USD"},
                "shop_money": {"amount": _money(refund.amount), "currency": "USD"},
            },
        }
    )
    body.update(
        {
            "id": refund.refund_id,
            "admin_graphql_api_id": _gid("Refund", refund.refund_id),
            "order_id": order.shopify_id,
            "created_at": when,
            "processed_at": when,
            "note": "Return received at the warehouse",
            "user_id": None,
            "restock": True,
            "return": {
                "id": refund.return_id,
                "admin_graphql_api_id": _gid("Return", refund.return_id),
            },
            "refund_line_items": lines,
            "transactions": [transaction],
            "order_adjustments": [],
        }
    )
    return body


def return_body(spec: WebhookSpec) -> dict[str, Any]:
    """``returns/request``: Shopify's Return resource (no sample captured; built by hand
    after the Admin API's Return fields)."""
    order, refund = spec.order, spec.refund
    assert refund is not None
    return {
        "id": refund.return_id,
        "admin_graphql_api_id": _gid("Return", refund.return_id),
        "name": f"{order.name}-R1",
        "status": "requested",
        "order": {"id": order.shopify_id, "admin_graphql_api_id": _gid("Order", order.shopify_id)},
        "total_return_line_items": sum(line.quantity for line in refund.lines),
        "return_line_items": [
            {
                "id": refund.return_id * 10 + n,
                "admin_graphql_api_id": _gid("ReturnLineItem", refund.return_id * 10 + n),
                "fulfillment_line_item": {
                    "line_item": {"id": line.line_id, "sku": line.product.sku}
                },
                "quantity": line.quantity,
                "return_reason": "SIZE_TOO_SMALL" if n % 2 == 0 else "UNWANTED",
                "customer_note": None,
            }
            for n, line in enumerate(refund.lines)
        ],
    }
