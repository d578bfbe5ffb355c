"""Every attribute name, key kind, stage and outcome Observatory reads or writes, once.

docs/ingest.md and docs/stages.md publish these names; other programs are built against
them, so change nothing here without changing those pages (and telling their users).
"""

from __future__ import annotations

from typing import Final

# --- span / event attributes (docs/ingest.md) ------------------------------------------
KEY_PREFIX: Final = "retail.key."
SYSTEM: Final = "retail.system"
STAGE: Final = "retail.stage"
PLATFORM_STATUS: Final = "retail.platform_status"
CHANNEL: Final = "retail.channel"
STORE_ID: Final = "retail.store_id"
LOCATION_ID: Final = "retail.location_id"
ORDER_AMOUNT: Final = "retail.order.amount"
ORDER_CURRENCY: Final = "retail.order.currency"
RETRY_ATTEMPT: Final = "retail.retry.attempt"
REPLAY: Final = "retail.replay"
#: a truthy value: this hop moved the order to another fulfilling location
REROUTE: Final = "retail.reroute"
INVENTORY_SKU: Final = "retail.inventory.sku"
INVENTORY_LOCATION: Final = "retail.inventory.location"
INVENTORY_SOURCE_TIME: Final = "retail.inventory.source_time"
SERVICE_NAME: Final = "service.name"

#: Attributes that describe the hop itself; they become hop columns, not free attributes.
HOP_FIELDS: Final = frozenset(
    {
        SYSTEM,
        STAGE,
        PLATFORM_STATUS,
        CHANNEL,
        STORE_ID,
        ORDER_AMOUNT,
        ORDER_CURRENCY,
        RETRY_ATTEMPT,
        REPLAY,
    }
)

# --- business key kinds (docs/ingest.md, "Business keys") -------------------------------
ORDER_NUMBER: Final = "order_number"
SHOPIFY_ORDER_ID: Final = "shopify_order_id"
ERP_SALES_ORDER: Final = "erp_sales_order"
SHIPMENT_ID: Final = "shipment_id"
TRACKING_NUMBER: Final = "tracking_number"
FULFILLMENT_ID: Final = "fulfillment_id"
RETURN_ID: Final = "return_id"
REFUND_ID: Final = "refund_id"
POS_RECEIPT: Final = "pos_receipt"
CORRELATION_ID: Final = "correlation_id"
INVENTORY_UPDATE_ID: Final = "inventory_update_id"
MARKETPLACE_ORDER_ID: Final = "marketplace_order_id"
INVOICE_ID: Final = "invoice_id"
BATCH_ID: Final = "batch_id"
FILE: Final = "file"
SKU: Final = "sku"
LOCATION: Final = "location"
STORE: Final = "store_id"

BUILTIN_KEY_KINDS: Final = frozenset(
    {
        ORDER_NUMBER,
        SHOPIFY_ORDER_ID,
        ERP_SALES_ORDER,
        SHIPMENT_ID,
        TRACKING_NUMBER,
        FULFILLMENT_ID,
        RETURN_ID,
        REFUND_ID,
        POS_RECEIPT,
        CORRELATION_ID,
        INVENTORY_UPDATE_ID,
        MARKETPLACE_ORDER_ID,
        INVOICE_ID,
        BATCH_ID,
        FILE,
        SKU,
        LOCATION,
        STORE,
    }
)

#: Kinds that describe a hop but never link two transactions.
SHARED_KINDS: Final = frozenset({BATCH_ID, FILE, SKU, LOCATION, STORE})

#: Kinds a transaction holds at most one value of; a second value is a conflict.
ONE_PER_TRANSACTION_KINDS: Final = frozenset(
    {
        ORDER_NUMBER,
        SHOPIFY_ORDER_ID,
        ERP_SALES_ORDER,
        POS_RECEIPT,
        RETURN_ID,
        CORRELATION_ID,
        INVENTORY_UPDATE_ID,
    }
)

#: A key kind is a lower_snake_case word.
KEY_KIND_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
MAX_KEY_VALUE_LENGTH: Final = 256

# --- hop outcome -------------------------------------------------------------------------
OK: Final = "ok"
ERROR: Final = "error"
RETRY: Final = "retry"
OUTCOMES: Final = (OK, ERROR, RETRY)

# --- OpenTelemetry exception events (semantic conventions): one makes the hop a failure ---
EXCEPTION_EVENT: Final = "exception"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
EXCEPTION_ESCAPED: Final = "exception.escaped"

# --- where a hop came from ---------------------------------------------------------------
VIA_OTLP: Final = "otlp"
VIA_EVENT: Final = "event"
VIA_SHOPIFY: Final = "shopify"
#: an OTLP log record with business keys (docs/ingest.md, "OTLP/HTTP logs")
VIA_OTLP_LOG: Final = "log"

# --- stages (docs/stages.md) -------------------------------------------------------------
ORDER_STAGES: Final = (
    "captured",
    "validated",
    "payment_authorized",
    "reserved",
    "posted",
    "released",
    "picked",
    "shipped",
    "delivered",
    "invoiced",
    "cancelled",
)
RETURN_STAGES: Final = ("return_requested", "return_received", "refunded", "refund_settled")
INVENTORY_STAGES: Final = ("inventory_adjusted", "inventory_published")
ALL_STAGES: Final = ORDER_STAGES + RETURN_STAGES + INVENTORY_STAGES

# --- systems (docs/ingest.md; any other lower-case word is allowed too) ------------------
BUILTIN_SYSTEMS: Final = (
    "shopify",
    "pos",
    "marketplace",
    "middleware",
    "erp",
    "wms",
    "carrier",
    "payment",
    "tax",
)
SYSTEM_PATTERN: Final = r"^[a-z][a-z0-9_\-]{0,63}$"
#: The systems that physically ship an order (``fulfillment_propagation`` starts at the
#: first ``shipped`` one of these reports; Shopify's own fulfillment is its end).
FULFILLMENT_SYSTEMS: Final = ("wms", "carrier")
