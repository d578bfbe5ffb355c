"""Seed the status maps and the default SLA policies (docs/stages.md). Both are data: edit
them in the admin; this migration only adds rows that are missing, and its reverse
removes only rows it would have added.

How a word is looked up (``observatory.transactions.stages``): the hop's own system
first, then ``*``; case-insensitively, then ignoring spaces, ``_`` and ``-`` too. So one
row covers ``Pending Fulfillment``, ``pending_fulfillment`` and ``_pendingFulfillment``.

Choices, and why (sources: the vendors' own status lists: Shopify's webhook topics and
order, fulfillment and return statuses; NetSuite, Dynamics 365, Business Central and SAP
sales-order statuses; EasyPost, Shippo and AfterShip tracking statuses):

* ``posted`` means "the ERP holds the sales order": every ERP status of an order that
  exists and is not cancelled reaches it, pending approval included.
* ``shipped`` means "handed to a carrier". NetSuite's Partially Fulfilled / Pending
  Billing (an item fulfillment is saved; without Pick, Pack and Ship that is the
  shipment) and Dynamics' ``Delivered`` (packing slip posted: the goods left) are
  ``shipped``. A carrier's in-transit, out-for-delivery, failed-attempt and
  waiting-at-a-pickup-point words are ``shipped`` as well: the parcel is with the
  carrier and has not reached the customer.
* Carrier "label created" words (EasyPost ``pre_transit``, Shippo ``PRE_TRANSIT``,
  AfterShip ``InfoReceived``/``Pending``, Shopify ``label_purchased``/``confirmed``) mean
  only that the carrier knows a label: no stage. Shopify ``label_printed`` is the
  merchant packing the parcel: ``picked``.
* Carrier exceptions, failures, returns-to-sender, expiries and unknowns are known words
  with no stage: they are not our return flow, and triage sees them through failed hops
  and stuck SLAs. EasyPost ``cancelled`` (a tracker, not an order) is mapped to no stage
  for carrier systems, while ``*`` ``cancelled`` (NetSuite, Dynamics) cancels the order.
* SAP codes arrive qualified by their field, ``OverallSDProcessStatus:A``, because a bare
  ``A``/``B``/``C`` means nothing; ``A`` (not yet processed) of any field means the order
  exists (``posted``). A delivery created (``OverallDeliveryStatus:B``/``C``) is the order
  released to the warehouse (goods issue is on the delivery, not the order); billing
  started is ``invoiced``; fully rejected is ``cancelled``; ``OverallSDProcessStatus:C``
  (completed, which may mean billed or rejected) has no stage of its own.
* Dynamics 365 F&O ``SalesStatus`` words also come qualified (``SalesStatus:Delivered``).
  The bare ``Delivered`` under ``*`` is the carriers' delivered; under the ERP systems
  (``erp``, ``d365``, ``dynamics``) it is Dynamics' packing slip: ``shipped``.
* Business Central: ``Open`` (being edited) and ``Pending Approval`` /
  ``Pending Prepayment`` are held by the ERP (``posted``); ``Released`` is released to the
  warehouse. Bare ``Open`` is too common a word for ``*``: it is mapped for ERP systems
  and as ``SalesDocumentStatus:Open``.
* NetSuite's REST letters come as ``SalesOrd:A`` (its search-filter form) under ``*`` and
  bare under system ``netsuite``. ``Closed`` (remaining lines closed by hand) has no
  stage: it is neither a cancellation nor a billing.
* Shopify: ``returns/cancel`` and a fulfillment's ``cancelled`` do not cancel the order
  (only ``orders/cancelled`` does). A return ``OPEN`` shares the word with a fulfillment's
  ``open``, so ``open`` has no stage; ``returns/approve`` says it instead.
"""

from django.db import migrations

ERP_SYSTEMS = ("erp", "d365", "dynamics")
CARRIER_SYSTEMS = ("carrier", "easypost", "shippo", "aftership")
R, INV = "return", "inventory_update"

# (system, vendor, status, stage, transaction kind)
SHOPIFY = [
    # --- topics (X-Shopify-Topic) ---
    ("orders/create", "captured", ""),
    ("orders/updated", "", ""),
    ("orders/edited", "", ""),
    ("orders/paid", "payment_authorized", ""),
    ("orders/partially_fulfilled", "shipped", ""),
    ("orders/fulfilled", "shipped", ""),
    ("orders/cancelled", "cancelled", ""),
    ("orders/delete", "", ""),
    ("orders/risk_assessment_changed", "", ""),
    ("order_transactions/create", "", ""),  # auth, capture or refund: the topic cannot tell
    ("fulfillments/create", "shipped", ""),
    ("fulfillments/update", "", ""),  # the shipment status carries the news
    ("fulfillment_events/create", "", ""),
    ("fulfillment_events/delete", "", ""),
    ("fulfillment_holds/added", "", ""),
    ("fulfillment_holds/released", "", ""),
    ("fulfillment_orders/placed_on_hold", "", ""),
    ("fulfillment_orders/hold_released", "", ""),
    ("fulfillment_orders/cancelled", "", ""),
    ("fulfillment_orders/split", "", ""),
    ("fulfillment_orders/merged", "", ""),
    ("fulfillment_orders/moved", "", ""),
    ("fulfillment_orders/rescheduled", "", ""),
    ("fulfillment_orders/order_routing_complete", "", ""),
    ("fulfillment_orders/fulfillment_request_submitted", "released", ""),
    ("fulfillment_orders/fulfillment_request_accepted", "released", ""),
    ("fulfillment_orders/fulfillment_request_rejected", "", ""),
    ("fulfillment_orders/cancellation_request_submitted", "", ""),
    ("fulfillment_orders/cancellation_request_accepted", "", ""),
    ("fulfillment_orders/cancellation_request_rejected", "", ""),
    ("refunds/create", "refunded", ""),
    ("returns/request", "return_requested", R),
    ("returns/approve", "return_requested", R),
    ("returns/decline", "", R),
    ("returns/cancel", "", R),
    ("returns/close", "return_received", R),
    ("returns/reopen", "", R),
    ("returns/process", "return_received", R),
    ("returns/update", "", R),
    ("reverse_fulfillment_orders/dispose", "return_received", R),
    ("inventory_levels/update", "inventory_published", INV),
    ("inventory_levels/connect", "", INV),
    ("inventory_levels/disconnect", "", INV),
    ("inventory_items/create", "", INV),
    ("inventory_items/update", "", INV),
    ("inventory_items/delete", "", INV),
    ("variants/in_stock", "", INV),
    ("variants/out_of_stock", "", INV),
    # --- order financial_status (REST) / displayFinancialStatus (GraphQL) ---
    ("pending", "", ""),
    ("authorized", "payment_authorized", ""),
    ("partially_paid", "payment_authorized", ""),
    ("paid", "payment_authorized", ""),
    ("partially_refunded", "refunded", ""),
    ("refunded", "refunded", ""),
    ("voided", "", ""),
    ("expired", "", ""),
    # --- order fulfillment_status (REST) / displayFulfillmentStatus (GraphQL) ---
    ("unfulfilled", "", ""),
    ("partial", "shipped", ""),
    ("partially_fulfilled", "shipped", ""),
    ("fulfilled", "shipped", ""),
    ("restocked", "", ""),
    ("in_progress", "released", ""),
    ("pending_fulfillment", "released", ""),  # deprecated: a fulfillment service was asked
    ("on_hold", "", ""),
    ("scheduled", "", ""),
    ("open", "", ""),
    # --- fulfillment status ---
    ("success", "shipped", ""),
    ("cancelled", "", ""),
    ("error", "", ""),
    ("failure", "", ""),
    # --- fulfillment shipment_status / FulfillmentEventStatus ---
    ("label_printed", "picked", ""),
    ("label_purchased", "", ""),
    ("confirmed", "", ""),
    ("carrier_picked_up", "shipped", ""),
    ("in_transit", "shipped", ""),
    ("out_for_delivery", "shipped", ""),
    ("attempted_delivery", "shipped", ""),
    ("delayed", "shipped", ""),
    ("ready_for_pickup", "shipped", ""),
    ("picked_up", "delivered", ""),  # the buyer collected it
    ("delivered", "delivered", ""),
    # --- return status ---
    ("requested", "return_requested", R),
    ("closed", "return_received", R),
    ("declined", "", R),
    ("canceled", "", R),
]

NETSUITE = [
    ("Pending Approval", "posted"),
    ("Pending Fulfillment", "posted"),
    ("Partially Fulfilled", "shipped"),
    ("Pending Billing/Partially Fulfilled", "shipped"),
    ("Pending Billing", "shipped"),
    ("Billed", "invoiced"),
    ("Closed", ""),
    ("Cancelled", "cancelled"),
    # SOAP SalesOrderOrderStatus
    ("_pendingApproval", "posted"),
    ("_pendingFulfillment", "posted"),
    ("_partiallyFulfilled", "shipped"),
    ("_pendingBillingPartFulfilled", "shipped"),
    ("_pendingBilling", "shipped"),
    ("_fullyBilled", "invoiced"),
    ("_closed", ""),
    ("_cancelled", "cancelled"),
    ("_undefined", ""),
]
NETSUITE_LETTERS = [
    ("A", "posted"),  # Pending Approval
    ("B", "posted"),  # Pending Fulfillment
    ("C", "cancelled"),  # Cancelled
    ("D", "shipped"),  # Partially Fulfilled
    ("E", "shipped"),  # Pending Billing/Partially Fulfilled
    ("F", "shipped"),  # Pending Billing
    ("G", "invoiced"),  # Billed
    ("H", ""),  # Closed
]

DYNAMICS_FO = [  # SalesStatus
    ("None", ""),
    ("Backorder", "posted"),  # shown as "Open order"
    ("Delivered", "shipped"),  # packing slip posted
    ("Invoiced", "invoiced"),
    ("Canceled", "cancelled"),
]
BUSINESS_CENTRAL = [  # Sales Header Status ("Sales Document Status"), API v2.0 status
    ("Open", "posted"),
    ("Released", "released"),
    ("Pending Approval", "posted"),
    ("Pending Prepayment", "posted"),
    ("Draft", ""),
    ("In Review", "posted"),
]
SAP_FIELDS = {
    # field: stage for A (not yet processed), B (partially), C (completely)
    "OverallSDProcessStatus": ("posted", "posted", ""),
    "OverallDeliveryStatus": ("posted", "released", "released"),
    "OverallTotalDeliveryStatus": ("posted", "released", "released"),
    "OverallBillingStatus": ("posted", "invoiced", "invoiced"),
    "OverallSDDocumentRejectionSts": ("", "", "cancelled"),
}

EASYPOST = [
    ("unknown", ""),
    ("pre_transit", ""),
    ("in_transit", "shipped"),
    ("out_for_delivery", "shipped"),
    ("delivered", "delivered"),
    ("available_for_pickup", "shipped"),
    ("return_to_sender", ""),
    ("failure", ""),
    ("error", ""),
]
SHIPPO = [
    ("PRE_TRANSIT", ""),
    ("TRANSIT", "shipped"),
    ("DELIVERED", "delivered"),
    ("RETURNED", ""),
    ("FAILURE", ""),
    ("UNKNOWN", ""),
]
AFTERSHIP = [
    ("Pending", ""),
    ("InfoReceived", ""),
    ("InTransit", "shipped"),
    ("OutForDelivery", "shipped"),
    ("AttemptFail", "shipped"),
    ("Delivered", "delivered"),
    ("AvailableForPickup", "shipped"),
    ("Exception", ""),
    ("Expired", ""),
]
#: Plain words a WMS, a middleware or a POS may say (any system).
GENERIC = [
    ("Captured", "captured"),
    ("Validated", "validated"),
    ("Authorized", "payment_authorized"),
    ("Reserved", "reserved"),
    ("Allocated", "reserved"),
    ("Posted", "posted"),
    ("Picked", "picked"),
    ("Packed", "picked"),
    ("Shipped", "shipped"),
    ("Cancelled", "cancelled"),
    ("Canceled", "cancelled"),
]


def rows():
    """Every seeded (system, vendor, status, stage, transaction kind), without repeats."""
    out = {}

    def add(system, vendor, status, stage, kind=""):
        key = (system, status)
        if key in out:
            prev = out[key]
            assert prev[3] == stage, f"contradictory seeds for {key}"
            if vendor not in prev[1].split("/"):
                out[key] = (system, f"{prev[1]}/{vendor}", status, stage, prev[4] or kind)
            return
        out[key] = (system, vendor, status, stage, kind)

    for status, stage, kind in SHOPIFY:
        add("shopify", "shopify", status, stage, kind)
    for status, stage in NETSUITE:
        add("*", "netsuite", status, stage)
    for letter, stage in NETSUITE_LETTERS:
        add("*", "netsuite", f"SalesOrd:{letter}", stage)
        add("netsuite", "netsuite", letter, stage)
    for status, stage in DYNAMICS_FO:
        add("*", "dynamics365", f"SalesStatus:{status}", stage)
        if status == "Delivered":
            for system in ERP_SYSTEMS:
                add(system, "dynamics365", status, stage)
        elif status != "None":
            add("*", "dynamics365", status, stage)
    add("*", "dynamics365", "Open order", "posted")
    for status, stage in BUSINESS_CENTRAL:
        add("*", "business_central", f"SalesDocumentStatus:{status}", stage)
        if status in ("Open", "Draft"):
            for system in (*ERP_SYSTEMS, "business_central", "bc"):
                add(system, "business_central", status, stage)
        else:
            add("*", "business_central", status, stage)
    for field, stages in SAP_FIELDS.items():
        for code, stage in zip("ABC", stages, strict=True):
            add("*", "sap", f"{field}:{code}", stage)
    for vendor, words in (("easypost", EASYPOST), ("shippo", SHIPPO), ("aftership", AFTERSHIP)):
        for status, stage in words:
            add("*", vendor, status, stage)
    for system in CARRIER_SYSTEMS:
        add(system, "easypost", "cancelled", "")  # a tracker cancelled, not the order
    for status, stage in GENERIC:
        add("*", "generic", status, stage)
    return list(out.values())


SLA_POLICIES = [
    # name, kind, channel, from, to, deadline s, batch allowance s
    ("web order posted", "order", "web", "captured", "posted", 60, 0),
    # POS sales post to the ERP in store batches: allow a batch interval on top
    ("POS sale posted", "order", "pos", "captured", "posted", 3600, 900),
    ("fulfillment seen by Shopify", "order", "", "shipped", "fulfillment_synced", 900, 0),
    (
        "inventory published",
        "inventory_update",
        "",
        "inventory_adjusted",
        "inventory_published",
        300,
        0,
    ),
    # a refund on an order keeps the transaction an order: the deadline holds for both kinds
    ("refund settled", "order", "", "refunded", "refund_settled", 86400, 0),
    ("refund settled (return)", "return", "", "refunded", "refund_settled", 86400, 0),
]


def seed(apps, schema_editor):
    StatusMap = apps.get_model("transactions", "StatusMap")
    SlaPolicy = apps.get_model("transactions", "SlaPolicy")
    have = set(StatusMap.objects.values_list("system", "status"))
    StatusMap.objects.bulk_create(
        [
            StatusMap(system=s, vendor=v, status=st, stage=stage, transaction_kind=kind)
            for s, v, st, stage, kind in rows()
            if (s, st) not in have
        ]
    )
    named = set(SlaPolicy.objects.values_list("name", flat=True))
    SlaPolicy.objects.bulk_create(
        [
            SlaPolicy(
                name=name,
                transaction_kind=kind,
                channel=channel,
                from_stage=a,
                to_stage=b,
                deadline_s=deadline,
                batch_allowance_s=allowance,
            )
            for name, kind, channel, a, b, deadline, allowance in SLA_POLICIES
            if name not in named
        ]
    )


def unseed(apps, schema_editor):
    StatusMap = apps.get_model("transactions", "StatusMap")
    SlaPolicy = apps.get_model("transactions", "SlaPolicy")
    for s, _v, st, stage, _kind in rows():
        StatusMap.objects.filter(system=s, status=st, stage=stage).delete()
    SlaPolicy.objects.filter(name__in=[p[0] for p in SLA_POLICIES]).delete()


class Migration(migrations.Migration):
    dependencies = [("transactions", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
