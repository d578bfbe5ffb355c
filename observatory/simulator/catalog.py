"""The simulated retailer: Northwind Outfitters (constants only, no behaviour).

An apparel and home-goods brand selling through a Shopify store, five shops with POS
tills, and a marketplace storefront; orders are posted to a NetSuite-style ERP and
shipped from three warehouses by UPS, FedEx and USPS, tracked through EasyPost or
AfterShip.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

SHOP_DOMAIN: Final = "northwind-outfitters.myshopify.com"
SHOPIFY_API_VERSION: Final = "2024-07"
CURRENCY: Final = "USD"
#: The shop's business day is US Eastern (fixed offset: no DST games in a simulation).
SHOP_UTC_OFFSET_H: Final = -5

#: CloudEvents sources (URI-references), one per emitting system.
SOURCE_WMS: Final = "urn:northwind:wms:manhattan"
SOURCE_ERP: Final = "urn:northwind:erp:netsuite"
SOURCE_CARRIER: Final = "urn:northwind:middleware:carrier-relay"
SOURCE_MARKETPLACE: Final = "urn:northwind:marketplace:amazon"

#: Resource ``service.name`` of each simulated OpenTelemetry-instrumented service.
SERVICE_SHOPIFY_BRIDGE: Final = "shopify-bridge"
SERVICE_MIDDLEWARE: Final = "oms-middleware"
SERVICE_ERP_CONNECTOR: Final = "erp-connector"
SERVICE_POS: Final = "pos-gateway"
SERVICE_INVENTORY: Final = "inventory-sync"
SERVICE_MARKETPLACE: Final = "marketplace-connector"
SERVICES: Final = (
    SERVICE_SHOPIFY_BRIDGE,
    SERVICE_MIDDLEWARE,
    SERVICE_ERP_CONNECTOR,
    SERVICE_POS,
    SERVICE_INVENTORY,
    SERVICE_MARKETPLACE,
)


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    title: str
    price: Decimal
    #: relative popularity
    weight: float
    grams: int
    product_id: int
    variant_id: int


def _p(sku: str, title: str, price: str, weight: float, grams: int, n: int) -> Product:
    return Product(sku, title, Decimal(price), weight, grams, 7_812_340_000 + n, 43_190_220_000 + n)


PRODUCTS: Final = (
    _p("TEE-ORG-BLK-M", "Organic Cotton Tee - Black / M", "28.00", 9, 180, 1),
    _p("TEE-ORG-WHT-L", "Organic Cotton Tee - White / L", "28.00", 8, 185, 2),
    _p("TEE-ORG-NVY-S", "Organic Cotton Tee - Navy / S", "28.00", 6, 170, 3),
    _p("HOOD-FLC-GRY-M", "Fleece Hoodie - Heather Grey / M", "68.00", 7, 620, 4),
    _p("HOOD-FLC-BLK-L", "Fleece Hoodie - Black / L", "68.00", 6, 640, 5),
    _p("JEAN-SLM-IND-32", "Slim Jean - Indigo / 32", "89.00", 6, 720, 6),
    _p("JEAN-SLM-BLK-34", "Slim Jean - Washed Black / 34", "89.00", 4, 730, 7),
    _p("CHINO-STR-KHK-32", "Stretch Chino - Khaki / 32", "74.00", 4, 560, 8),
    _p("SNK-RUN-WHT-10", "Everyday Runner - White / 10", "120.00", 5, 900, 9),
    _p("SNK-RUN-GRY-9", "Everyday Runner - Grey / 9", "120.00", 4, 890, 10),
    _p("BOOT-CHL-BRN-10", "Chelsea Boot - Brown / 10", "189.00", 2, 1400, 11),
    _p("JKT-DWN-BLK-M", "Recycled Down Jacket - Black / M", "229.00", 2, 1100, 12),
    _p("JKT-RAIN-OLV-L", "Packable Rain Shell - Olive / L", "119.00", 3, 420, 13),
    _p("SWTR-MER-CRM-M", "Merino Crew Sweater - Cream / M", "98.00", 3, 380, 14),
    _p("SHRT-OXF-BLU-M", "Oxford Shirt - Blue / M", "64.00", 4, 300, 15),
    _p("DRS-LIN-SAG-S", "Linen Midi Dress - Sage / S", "110.00", 3, 350, 16),
    _p("LEG-PERF-BLK-M", "Performance Legging - Black / M", "58.00", 5, 260, 17),
    _p("SOCK-WOOL-3PK", "Wool Blend Socks 3-Pack", "24.00", 8, 150, 18),
    _p("BEANIE-WOOL-NVY", "Ribbed Wool Beanie - Navy", "30.00", 4, 90, 19),
    _p("CAP-CANV-KHK", "Canvas Cap - Khaki", "32.00", 3, 110, 20),
    _p("BAG-TOTE-CNV", "Canvas Market Tote", "45.00", 5, 400, 21),
    _p("BAG-DUF-WAX-40L", "Waxed Canvas Duffel 40L", "165.00", 1, 1600, 22),
    _p("BELT-LTH-BRN-34", "Leather Belt - Brown / 34", "55.00", 2, 240, 23),
    _p("MUG-CER-12OZ", "Stoneware Mug 12oz", "18.00", 6, 420, 24),
    _p("CANDLE-CEDAR-8OZ", "Cedar & Smoke Candle 8oz", "32.00", 5, 450, 25),
    _p("THROW-WOOL-GRY", "Wool Throw Blanket - Grey", "129.00", 2, 1300, 26),
    _p("TOWEL-TRK-WHT-2PK", "Turkish Towel 2-Pack - White", "48.00", 3, 700, 27),
    _p("BOTTLE-INS-750", "Insulated Bottle 750ml", "35.00", 5, 380, 28),
    _p("GIFT-CARD-50", "Gift Card $50", "50.00", 2, 10, 29),
    _p("NOTE-LIN-A5", "Linen Notebook A5", "22.00", 3, 280, 30),
)


@dataclass(frozen=True, slots=True)
class Store:
    store_id: str
    city: str
    utc_offset_h: int
    registers: tuple[str, ...]
    tax_rate: Decimal
    #: relative footfall
    weight: float


STORES: Final = (
    Store("ST07", "Boston", -5, ("0071", "0072"), Decimal("0.0625"), 2),
    Store(
        "ST12", "New York - Fifth Ave", -5, ("0041", "0042", "0043", "0044"), Decimal("0.08875"), 4
    ),
    Store("ST21", "Chicago", -6, ("0211", "0212", "0213"), Decimal("0.1025"), 3),
    Store("ST33", "Austin", -6, ("0331", "0332"), Decimal("0.0825"), 2),
    Store("ST45", "San Francisco", -8, ("0451", "0452", "0453"), Decimal("0.08625"), 3),
)


@dataclass(frozen=True, slots=True)
class Warehouse:
    code: str
    city: str
    utc_offset_h: int
    weight: float


WAREHOUSES: Final = (
    Warehouse("DC-NJ1", "Edison NJ", -5, 5),
    Warehouse("DC-TX2", "Dallas TX", -6, 3),
    Warehouse("DC-NV1", "Reno NV", -8, 2),
)


@dataclass(frozen=True, slots=True)
class Carrier:
    name: str
    #: share of shipments
    weight: float
    #: which tracking aggregator relays its scans (decides the status vocabulary)
    tracking_provider: str
    url: str


CARRIERS: Final = (
    Carrier("UPS", 5, "easypost", "https://www.ups.com/track?tracknum={}"),
    Carrier("FedEx", 3, "aftership", "https://www.fedex.com/fedextrack/?trknbr={}"),
    Carrier("USPS", 2, "easypost", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
)

#: Carrier tracking vocabularies (docs/stages.md, "Status maps"): label, first scan, out
#: for delivery, delivered, failed attempt.
TRACKING_WORDS: Final = {
    "easypost": {
        "label": "pre_transit",
        "scan": "in_transit",
        "out": "out_for_delivery",
        "delivered": "delivered",
        "failed": "failure",
    },
    "aftership": {
        "label": "InfoReceived",
        "scan": "InTransit",
        "out": "OutForDelivery",
        "delivered": "Delivered",
        "failed": "AttemptFail",
    },
}

#: NetSuite sales-order statuses (docs/stages.md, "Status maps") the ERP reports.
NETSUITE_PENDING_FULFILLMENT: Final = "Pending Fulfillment"
NETSUITE_BILLED: Final = "Billed"
NETSUITE_CANCELLED: Final = "Cancelled"

#: Ship-to regions of web customers: (province code, city, sales-tax rate).
REGIONS: Final = (
    ("NY", "Brooklyn", Decimal("0.08875")),
    ("CA", "Oakland", Decimal("0.1025")),
    ("TX", "Houston", Decimal("0.0825")),
    ("IL", "Evanston", Decimal("0.1000")),
    ("WA", "Seattle", Decimal("0.1035")),
    ("MA", "Cambridge", Decimal("0.0625")),
    ("CO", "Denver", Decimal("0.0881")),
    ("FL", "Miami", Decimal("0.0700")),
    ("OR", "Portland", Decimal("0.0000")),
    ("GA", "Atlanta", Decimal("0.0890")),
)

FIRST_NAMES: Final = (
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Ines", "Omar", "Priya", "Lucas",
    "Hana", "Mateo", "Chloe", "Ravi", "Sofia", "Jonas", "Amara", "Felix", "Lena", "Kai",
)  # fmt: skip
LAST_NAMES: Final = (
    "Garcia", "Chen", "Okafor", "Smith", "Novak", "Haddad", "Kowalski", "Tanaka",
    "Rossi", "Johnson", "Dubois", "Silva", "Nguyen", "Murphy", "Khan", "Larsen",
)  # fmt: skip
