"""Stages from statuses: the rules (pure) and the seeded maps of every vendor list."""

from __future__ import annotations

import importlib
from collections import defaultdict

import pytest

from observatory.transactions import stages as st
from observatory.transactions.actions import load_status_maps
from observatory.transactions.models import SlaPolicy, StatusMap

seed = importlib.import_module("observatory.transactions.migrations.0002_seed_status_maps_and_slas")

MAPS = st.StatusMaps(
    [
        ("shopify", "orders/create", "captured", ""),
        ("shopify", "in_transit", "shipped", ""),
        ("shopify", "pending", "", ""),
        ("*", "Pending Fulfillment", "posted", ""),
        ("*", "Delivered", "delivered", ""),
        ("erp", "Delivered", "shipped", ""),
        ("*", "returns/request", "return_requested", "return"),
    ]
)


def derive(system: str, status: str = "", operation: str = "", stage: str = "") -> st.Derived:
    return st.derive(MAPS, system=system, stage=stage, platform_status=status, operation=operation)


def test_explicit_stage_wins_over_the_status() -> None:
    assert derive("erp", "Pending Fulfillment", stage="released").stages == ("released",)
    assert not derive("erp", "Weird", stage="released").unknown_status


def test_unknown_explicit_stage_falls_back_to_the_status() -> None:
    assert derive("erp", "Pending Fulfillment", stage="not_a_stage").stages == ("posted",)


def test_status_lookup_ignores_case_and_separators() -> None:
    for word in (
        "Pending Fulfillment",
        "pending_fulfillment",
        "_pendingFulfillment",
        "PENDING-FULFILLMENT",
    ):
        assert derive("erp", word).stages == ("posted",), word


def test_system_map_before_vendor_vocabularies() -> None:
    assert derive("erp", "Delivered").stages == ("shipped",)
    assert derive("carrier", "delivered").stages == ("delivered",)


def test_operation_when_the_status_says_nothing() -> None:
    d = derive("shopify", "pending", "orders/create")
    assert d.stages == ("captured",) and not d.unknown_status
    d = derive("shopify", "", "orders/create")
    assert d.stages == ("captured",)


def test_unknown_status_is_flagged_but_the_operation_still_counts() -> None:
    d = derive("shopify", "mystery", "orders/create")
    assert d.unknown_status and d.stages == ("captured",)
    assert derive("erp", "Mystery").unknown_status
    assert not derive("erp", "").unknown_status


def test_shipped_by_shopify_is_also_fulfillment_synced() -> None:
    assert derive("shopify", "in_transit").stages == ("shipped", "fulfillment_synced")
    assert derive("wms", stage="shipped").stages == ("shipped",)


def test_kind_hint_from_the_map() -> None:
    assert derive("shopify", "", "returns/request").kind_hint == "return"


def test_transaction_kind() -> None:
    assert st.transaction_kind(["order_number"], ["captured"], []) == "order"
    # a refund on an order keeps it an order
    assert st.transaction_kind(["order_number", "return_id"], ["refunded"], []) == "order"
    assert st.transaction_kind(["return_id"], [], []) == "return"
    assert st.transaction_kind(["refund_id"], ["refunded"], []) == "return"
    assert st.transaction_kind(["inventory_update_id"], [], []) == "inventory_update"
    assert st.transaction_kind([], ["inventory_adjusted"], []) == "inventory_update"
    assert st.transaction_kind(["correlation_id"], [], ["return"]) == "return"
    assert st.transaction_kind(["correlation_id"], [], []) == "order"


def test_current_stage_is_the_furthest_and_cancelled_wins() -> None:
    assert st.current_stage(["captured", "shipped", "posted"]) == "shipped"
    assert st.current_stage(["captured", "shipped", "fulfillment_synced"]) == "shipped"
    assert st.current_stage(["captured", "refunded", "cancelled"]) == "cancelled"
    assert st.current_stage(["delivered", "return_requested"]) == "return_requested"
    assert st.current_stage([]) == ""


# --- the seeded maps ------------------------------------------------------------------------

VENDOR_CASES = [
    # Shopify topics
    ("shopify", "orders/create", "captured"),
    ("shopify", "orders/paid", "payment_authorized"),
    ("shopify", "orders/fulfilled", "shipped"),
    ("shopify", "fulfillments/create", "shipped"),
    ("shopify", "orders/cancelled", "cancelled"),
    ("shopify", "refunds/create", "refunded"),
    ("shopify", "returns/request", "return_requested"),
    ("shopify", "returns/cancel", ""),
    ("shopify", "inventory_levels/update", "inventory_published"),
    # Shopify financial, fulfillment and shipment statuses
    ("shopify", "paid", "payment_authorized"),
    ("shopify", "AUTHORIZED", "payment_authorized"),
    ("shopify", "partially_refunded", "refunded"),
    ("shopify", "voided", ""),
    ("shopify", "fulfilled", "shipped"),
    ("shopify", "PARTIALLY_FULFILLED", "shipped"),
    ("shopify", "label_printed", "picked"),
    ("shopify", "in_transit", "shipped"),
    ("shopify", "out_for_delivery", "shipped"),
    ("shopify", "delivered", "delivered"),
    ("shopify", "failure", ""),
    ("shopify", "cancelled", ""),
    # NetSuite: display names, SOAP enum, REST letters
    ("erp", "Pending Approval", "posted"),
    ("erp", "Pending Fulfillment", "posted"),
    ("erp", "Partially Fulfilled", "shipped"),
    ("erp", "Pending Billing/Partially Fulfilled", "shipped"),
    ("erp", "Pending Billing", "shipped"),
    ("erp", "Billed", "invoiced"),
    ("erp", "Closed", ""),
    ("erp", "Cancelled", "cancelled"),
    ("erp", "_pendingFulfillment", "posted"),
    ("erp", "_fullyBilled", "invoiced"),
    ("erp", "_pendingBillingPartFulfilled", "shipped"),
    ("erp", "SalesOrd:B", "posted"),
    ("erp", "SalesOrd:G", "invoiced"),
    ("netsuite", "B", "posted"),
    ("netsuite", "C", "cancelled"),
    # Dynamics 365 F&O and Business Central
    ("erp", "Backorder", "posted"),
    ("erp", "Open order", "posted"),
    ("erp", "Delivered", "shipped"),
    ("erp", "SalesStatus:Delivered", "shipped"),
    ("erp", "Invoiced", "invoiced"),
    ("erp", "Canceled", "cancelled"),
    ("erp", "Open", "posted"),
    ("erp", "Released", "released"),
    ("erp", "Pending Prepayment", "posted"),
    ("middleware", "SalesDocumentStatus:Open", "posted"),
    # SAP
    ("erp", "OverallSDProcessStatus:A", "posted"),
    ("erp", "OverallDeliveryStatus:C", "released"),
    ("erp", "OverallBillingStatus:B", "invoiced"),
    ("erp", "OverallSDDocumentRejectionSts:C", "cancelled"),
    ("erp", "OverallSDProcessStatus:C", ""),
    # EasyPost
    ("carrier", "pre_transit", ""),
    ("carrier", "in_transit", "shipped"),
    ("carrier", "out_for_delivery", "shipped"),
    ("carrier", "delivered", "delivered"),
    ("carrier", "available_for_pickup", "shipped"),
    ("carrier", "return_to_sender", ""),
    ("carrier", "cancelled", ""),
    ("easypost", "cancelled", ""),
    # Shippo
    ("carrier", "PRE_TRANSIT", ""),
    ("carrier", "TRANSIT", "shipped"),
    ("carrier", "DELIVERED", "delivered"),
    ("carrier", "RETURNED", ""),
    ("carrier", "FAILURE", ""),
    # AfterShip
    ("carrier", "InfoReceived", ""),
    ("carrier", "InTransit", "shipped"),
    ("carrier", "OutForDelivery", "shipped"),
    ("carrier", "AttemptFail", "shipped"),
    ("carrier", "Delivered", "delivered"),
    ("carrier", "AvailableForPickup", "shipped"),
    ("carrier", "Exception", ""),
    ("carrier", "Expired", ""),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("system", "status", "stage"), VENDOR_CASES)
def test_seeded_vendor_vocabularies(system: str, status: str, stage: str) -> None:
    rule = load_status_maps().lookup(system, status)
    assert rule is not None, f"{system}: {status} is not mapped"
    assert rule.stage == stage


@pytest.mark.django_db
def test_every_seeded_stage_is_a_stage() -> None:
    stages = set(StatusMap.objects.exclude(stage="").values_list("stage", flat=True))
    assert stages <= st.KNOWN_STAGES


def test_seeds_never_contradict_themselves_under_loose_matching() -> None:
    meaning: dict[tuple[str, str], set[str]] = defaultdict(set)
    for system, _vendor, status, stage, _kind in seed.rows():
        meaning[(system, st.loose_word(status))].add(stage)
    clashes = {k: v for k, v in meaning.items() if len(v) > 1}
    assert not clashes


@pytest.mark.django_db
def test_default_slas_are_seeded() -> None:
    got = {
        (p.transaction_kind, p.channel, p.from_stage, p.to_stage): (
            p.deadline_s,
            p.batch_allowance_s,
        )
        for p in SlaPolicy.objects.all()
    }
    assert got[("order", "web", "captured", "posted")] == (60, 0)
    assert got[("order", "pos", "captured", "posted")][0] == 3600
    assert got[("order", "pos", "captured", "posted")][1] > 0
    # marketplace and POS orders never reach Shopify's fulfillment (transactions 0005)
    assert got[("order", "web", "shipped", "fulfillment_synced")] == (900, 0)
    assert ("order", "", "shipped", "fulfillment_synced") not in got
    assert got[("inventory_update", "", "inventory_adjusted", "inventory_published")] == (300, 0)
    assert got[("return", "", "refunded", "refund_settled")] == (86400, 0)
    assert got[("order", "", "refunded", "refund_settled")] == (86400, 0)
