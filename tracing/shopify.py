"""Shopify webhook deliveries -> hop records (docs/ingest.md).

Shopify posts the resource of the topic (an order, a fulfillment, a refund, ...) as a JSON
body and says what happened in headers (``X-Shopify-Topic``, ``X-Shopify-Event-Id``,
``X-Shopify-Triggered-At``, ...). One delivery is one hop of system ``shopify``.

Privacy: payloads are full of customer data (e-mail, names, addresses, phone numbers, browser
IP, the order-status URL with its access key). Nothing of the payload is copied into a record
except the business keys and an explicit allowlist of non-personal summary fields
(:data:`_ORDER_SUMMARY` and friends); never add a field here without checking it is not PII.

The stage is not decided here: ``platform_status`` carries the topic (or a fulfillment's
shipment status) and the server maps it to a stage through its status maps, which are data.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

from tracing import conventions, limits
from tracing.cloudevents import TimeOutOfRange, parse_rfc3339
from tracing.records import DecodeError, DecodeResult, HopRecord, Key

__all__ = ["SYSTEM", "decode", "verify_hmac"]

SYSTEM: Final = "shopify"

#: Order fields copied into attributes (as ``shopify.<name>``): statuses and flags only.
_ORDER_SUMMARY: Final = ("financial_status", "fulfillment_status", "cancel_reason", "source_name")
#: Fulfillment fields copied into attributes: carrier and statuses, no destination.
_FULFILLMENT_SUMMARY: Final = ("status", "shipment_status", "tracking_company", "name", "service")
#: Return fields copied into attributes.
_RETURN_SUMMARY: Final = ("status", "name")
#: Where each hop field of a delivery comes from, for the reason of a refused one.
_WIRE: Final = limits.Wire(
    system="system",
    stage="stage",
    channel="source_name",
    store_id="location_id",
    currency="currency",
    amount="total_price",
    retry_attempt="retry",
    start_time="X-Shopify-Triggered-At",
    end_time="X-Shopify-Triggered-At",
    key_prefix="payload key ",
)
#: A refund's money comes from its refund transactions.
_REFUND_WIRE: Final = dataclasses.replace(
    _WIRE, currency="transactions[].currency", amount="transactions[].amount"
)


def verify_hmac(raw_body: bytes, header_value: str | None, secrets: Sequence[str]) -> bool:
    """True when ``X-Shopify-Hmac-Sha256`` signs ``raw_body`` with one of ``secrets``.

    The signature is base64(HMAC-SHA256(secret, raw bytes)), computed over the bytes exactly as
    received, before any JSON parsing. Several secrets are accepted so that an app secret can
    be rotated without losing deliveries; empty secrets are ignored (an unset secret must not
    make an empty-key signature valid). Comparisons are constant-time.
    """
    if not header_value:
        return False
    given = header_value.strip().encode("utf-8")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()
        # No early exit: every configured secret costs the same whatever the header holds.
        matched |= hmac.compare_digest(base64.b64encode(digest), given)
    return matched


def decode(raw_body: bytes, headers: Mapping[str, str], received_at: datetime) -> DecodeResult:
    """Decode one Shopify webhook delivery into one hop record.

    ``headers`` maps header names to values (compared lower-cased). The hop's ``uid`` is
    ``shopify:<shop domain>:<event id>``, the event id being ``X-Shopify-Event-Id`` (the same on
    every retry of one event) or, from older senders, ``X-Shopify-Webhook-Id``. Business time is
    ``X-Shopify-Triggered-At``, else the payload's ``updated_at`` / ``created_at``, else
    ``received_at``.

    Raises :class:`~tracing.records.DecodeError` when the topic or both ids are missing, the
    body is not a JSON object, or a value does not fit storage (tracing/limits.py: the shop
    domain and event id at most 255 bytes, no NUL byte; the amount, currency, store and
    times in range). Call :func:`verify_hmac` first: this function trusts its input.
    """
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    topic = lowered.get("x-shopify-topic", "").lower()
    if not topic:
        raise DecodeError("missing X-Shopify-Topic header: cannot tell what the delivery means")
    event_id = lowered.get("x-shopify-event-id") or lowered.get("x-shopify-webhook-id")
    if not event_id:
        raise DecodeError(
            "missing X-Shopify-Event-Id and X-Shopify-Webhook-Id headers: "
            "cannot deduplicate the delivery"
        )
    shop = lowered.get("x-shopify-shop-domain", "").lower()
    try:  # the delivery identity: refused, never cut
        limits.identifier(
            event_id, limits.SHOPIFY_EVENT_ID, _event_id_header(lowered), in_bytes=True
        )
        limits.identifier(shop, limits.SHOP_DOMAIN, "X-Shopify-Shop-Domain", in_bytes=True)
    except limits.OutOfBounds as exc:
        raise DecodeError(str(exc)) from None

    if not raw_body.strip():
        raise DecodeError("the Shopify webhook body is empty")
    try:
        payload = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"the Shopify webhook body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise DecodeError("the Shopify webhook body must be a JSON object")

    family = topic.split("/", 1)[0]
    keys = _Keys()
    attributes: dict[str, Any] = {}
    platform_status = topic
    channel = ""
    store_id = ""
    amount: Decimal | None = None
    currency = ""

    if family == "orders":
        keys.add(conventions.SHOPIFY_ORDER_ID, payload.get("id"))
        keys.add(conventions.ORDER_NUMBER, payload.get("name"))
        for fulfillment in _objects(payload.get("fulfillments")):
            keys.add(conventions.FULFILLMENT_ID, fulfillment.get("id"))
            keys.add_tracking(fulfillment)
        source_name = payload.get("source_name")
        channel = "pos" if source_name == "pos" else "web"
        if channel == "pos" and payload.get("location_id") is not None:
            store_id = _text(payload.get("location_id"))
        amount = _decimal(payload.get("total_price"))
        currency = _text(payload.get("currency")).upper()
        _copy(attributes, payload, _ORDER_SUMMARY)
        line_items = payload.get("line_items")
        if isinstance(line_items, list):
            attributes["shopify.line_item_count"] = len(line_items)
    elif family == "fulfillments":
        keys.add(conventions.SHOPIFY_ORDER_ID, payload.get("order_id"))
        keys.add(conventions.FULFILLMENT_ID, payload.get("id"))
        keys.add_tracking(payload)
        platform_status = (
            _text(payload.get("shipment_status")) or _text(payload.get("status")) or topic
        )
        _copy(attributes, payload, _FULFILLMENT_SUMMARY)
    elif family == "fulfillment_events":
        keys.add(conventions.SHOPIFY_ORDER_ID, payload.get("order_id"))
        keys.add(conventions.FULFILLMENT_ID, payload.get("fulfillment_id"))
        platform_status = _text(payload.get("status")) or topic
        _copy(attributes, payload, ("status",))
    elif family == "refunds":
        keys.add(conventions.SHOPIFY_ORDER_ID, payload.get("order_id"))
        keys.add(conventions.REFUND_ID, payload.get("id"))
        returned = payload.get("return")
        if isinstance(returned, dict):
            keys.add(conventions.RETURN_ID, returned.get("id"))
        refund_lines = payload.get("refund_line_items")
        if isinstance(refund_lines, list):
            attributes["shopify.refund_line_item_count"] = len(refund_lines)
        # the money the refund gave back: its refund transactions, not the order's value
        amount, currency = _refunded(payload.get("transactions"))
    elif family == "returns":
        keys.add(conventions.RETURN_ID, payload.get("id"))
        order = payload.get("order")
        order_id = order.get("id") if isinstance(order, dict) else payload.get("order_id")
        keys.add(conventions.SHOPIFY_ORDER_ID, order_id)
        _copy(attributes, payload, _RETURN_SUMMARY)
    else:
        # Other topics (order_transactions/create, ...) still name their order.
        keys.add(conventions.SHOPIFY_ORDER_ID, payload.get("order_id"))

    if isinstance(payload.get("test"), bool):
        attributes["shopify.test"] = payload["test"]
    for header, name in (
        ("x-shopify-api-version", "shopify.api_version"),
        ("x-shopify-shop-domain", "shopify.shop_domain"),
        ("x-shopify-webhook-id", "shopify.webhook_id"),
        ("x-shopify-event-id", "shopify.event_id"),
    ):
        if lowered.get(header):
            attributes[name] = lowered[header]

    start = _business_time(lowered.get("x-shopify-triggered-at"), payload, received_at)
    extra: dict[str, Any] = {"topic": topic}
    if isinstance(payload.get("admin_graphql_api_id"), str):
        extra["resource"] = payload["admin_graphql_api_id"]

    record = HopRecord(
        uid=f"shopify:{shop}:{event_id}",
        via=conventions.VIA_SHOPIFY,
        system=SYSTEM,
        operation=topic,
        start_time=start,
        end_time=start,
        outcome=conventions.OK,
        platform_status=platform_status,
        stage="",
        channel=channel,
        store_id=store_id,
        amount=amount,
        currency=currency,
        source=shop,
        keys=keys.keys,
        attributes=attributes,
        extra=extra,
    )
    try:
        truncated = limits.enforce(record, _REFUND_WIRE if family == "refunds" else _WIRE)
    except limits.OutOfBounds as exc:
        raise DecodeError(str(exc)) from None
    return DecodeResult(records=[record], truncated=1 if truncated else 0)


def _event_id_header(lowered: Mapping[str, str]) -> str:
    return "X-Shopify-Event-Id" if lowered.get("x-shopify-event-id") else "X-Shopify-Webhook-Id"


class _Keys:
    """Collects business keys, skipping blanks and repeats; Shopify ids become plain text."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self._seen: set[tuple[str, str]] = set()

    def add(self, kind: str, value: Any) -> None:
        text = _id_text(value)
        if not text or len(text) > conventions.MAX_KEY_VALUE_LENGTH:
            return
        if (kind, text) not in self._seen:
            self._seen.add((kind, text))
            self.keys.append(Key(kind, text))

    def add_tracking(self, fulfillment: Mapping[str, Any]) -> None:
        """Every tracking number of one fulfillment. They all belong to the same order, so
        they link (no fanout), unlike an array of order numbers in a batch posting."""
        numbers = fulfillment.get("tracking_numbers")
        for number in numbers if isinstance(numbers, list) else []:
            self.add(conventions.TRACKING_NUMBER, number)
        self.add(conventions.TRACKING_NUMBER, fulfillment.get("tracking_number"))


def _id_text(value: Any) -> str:
    """An id as text: ``820982911946154508``, ``"#1001"``; a GraphQL GID keeps its number."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("gid://shopify/"):
            text = text.rsplit("/", 1)[-1].split("?", 1)[0]
        return text
    return ""


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str | int):
        return str(value).strip()
    return ""


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _refunded(transactions: Any) -> tuple[Decimal | None, str]:
    """The amount and currency a refund paid back: the sum of its refund transactions
    that did not fail (``kind`` ``refund``, ``status`` other than ``failure`` and
    ``error``). None when it has none, or when they are in several currencies (never
    summed across currencies)."""
    total: Decimal | None = None
    currencies: set[str] = set()
    for item in _objects(transactions):
        if item.get("kind") != "refund" or item.get("status") in ("failure", "error"):
            continue
        amount = _decimal(item.get("amount"))
        if amount is None:
            continue
        total = amount if total is None else total + amount
        currencies.add(_text(item.get("currency")).upper())
    if total is None or len(currencies) != 1:
        return None, ""
    return total, currencies.pop()


def _copy(attributes: dict[str, Any], payload: Mapping[str, Any], names: Sequence[str]) -> None:
    """Copy allowlisted scalar fields as ``shopify.<name>``; nested values never come along."""
    for name in names:
        value = payload.get(name)
        if isinstance(value, str | int | float | bool):
            attributes[f"shopify.{name}"] = value


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _business_time(
    triggered_at: str | None, payload: Mapping[str, Any], received_at: datetime
) -> datetime:
    """The first of the candidate times that parses; one that parses but lies outside years
    1970 to 2200 refuses the delivery (``DecodeError`` naming it)."""
    candidates: list[tuple[str, Any]] = [
        ("X-Shopify-Triggered-At", triggered_at),
        ("updated_at", payload.get("updated_at")),
        ("created_at", payload.get("created_at")),
    ]
    for name, candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            try:
                return limits.moment(parse_rfc3339(candidate), name)
            except TimeOutOfRange:
                raise DecodeError(f"{name}: outside years 1970 to 2200") from None
            except limits.OutOfBounds as exc:
                raise DecodeError(str(exc)) from None
            except ValueError:
                continue
    if received_at.tzinfo is None:
        return received_at.replace(tzinfo=UTC)
    return received_at.astimezone(UTC)
