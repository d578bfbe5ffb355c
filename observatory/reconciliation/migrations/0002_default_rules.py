"""The default reconciliation rules (docs/reconciliation.md, "The default rules"): what a
retailer's finance team checks every day. Stages and systems as docs/stages.md names
them; every rule is data, editable in the admin and the API."""

from django.db import migrations

DAY = 86_400
RULES = [
    {
        "name": "shopify-orders",
        "title": "Shopify captured orders against ERP posted sales orders",
        "description": "Every web order Shopify captured is posted to the ERP once, for the "
        "same total.",
        "source_system": "shopify",
        "source_stage": "captured",
        "target_system": "erp",
        "target_stage": "posted",
        "target_key": "erp_sales_order",
        "transaction_kind": "order",
        "channels": "web",
        "grace_s": 3600,
    },
    {
        "name": "shopify-refunds",
        "title": "Shopify refunds against ERP credit memos",
        "description": "Every refund Shopify paid back is settled in the ERP (a credit "
        "memo), for the same amount.",
        "source_system": "shopify",
        "source_stage": "refunded",
        "source_key": "refund_id",
        "target_system": "erp",
        "target_stage": "refund_settled",
        "target_key": "refund_id",
        "grace_s": DAY,
        "exempt_cancelled": False,
    },
    {
        "name": "pos-cash-sales",
        "title": "POS receipts against ERP cash-sale postings, per store",
        "description": "Every receipt of a store's business day is in one of the ERP's "
        "cash-sale batch postings, and the batches add up to the receipts.",
        "source_system": "pos",
        "source_stage": "captured",
        "target_system": "erp",
        "target_stage": "posted",
        "target_key": "batch_id",
        "transaction_kind": "order",
        "channels": "pos",
        "store_time_zones": True,
        "group_by_store": True,
        "grace_s": 2 * 3600,
    },
    {
        "name": "wms-carrier-scans",
        "title": "WMS shipments against carrier first scans",
        "description": "Every parcel the warehouse shipped is scanned by its carrier.",
        "source_system": "wms",
        "source_stage": "shipped",
        "source_key": "tracking_number",
        "target_system": "carrier",
        "target_stage": "shipped",
        "target_key": "tracking_number",
        "transaction_kind": "order",
        "grace_s": DAY,
    },
    {
        "name": "marketplace-orders",
        "title": "Marketplace orders against ERP posted sales orders",
        "description": "Every marketplace order is posted to the ERP once, for the same total.",
        "source_system": "marketplace",
        "source_stage": "captured",
        "target_system": "erp",
        "target_stage": "posted",
        "target_key": "erp_sales_order",
        "transaction_kind": "order",
        "channels": "marketplace",
        "grace_s": 3600,
    },
]


def add_rules(apps, schema_editor):
    Rule = apps.get_model("reconciliation", "Rule")
    for fields in RULES:
        Rule.objects.get_or_create(name=fields["name"], defaults=fields)


def remove_rules(apps, schema_editor):
    Rule = apps.get_model("reconciliation", "Rule")
    Rule.objects.filter(name__in=[r["name"] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0001_initial")]

    operations = [migrations.RunPython(add_rules, remove_rules)]
