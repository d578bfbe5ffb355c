"""The default alert rules (docs/alerts.md), shipped as data (editable in the pages, API and admin).

No channel is attached: a rule without channels notifies every active channel, so the
moment someone adds a Slack webhook or an email channel these rules reach it.
"""

from django.db import migrations

DEFAULT_RULES = [
    {
        "name": "Web orders stuck before posted",
        "kind": "stuck",
        "severity": "critical",
        "description": "Web orders not in the ERP within their SLA (captured -> posted, 60 s "
        "by default: the SLA policies of the transactions app).",
        "stage": "posted",
        "channel": "web",
        "threshold": 1,
    },
    {
        "name": "ERP silent while Shopify sends",
        "kind": "silence",
        "severity": "critical",
        "description": "No hop from the ERP for 10 minutes while Shopify keeps sending orders.",
        "system": "erp",
        "while_system": "shopify",
        "window_s": 600,
    },
    {
        "name": "ERP error rate above 5 %",
        "kind": "error_rate",
        "severity": "critical",
        "description": "More than 5 % of ERP hops failed over the last 5 minutes (once at "
        "least 20 hops were seen in the window, so that one failure in a quiet hour does not "
        "page anyone).",
        "system": "erp",
        "threshold": 0.05,
        "window_s": 300,
        "min_count": 20,
        "keep_firing_s": 60,
    },
    {
        "name": "Inventory sync lag p95 above 5 minutes",
        "kind": "kpi",
        "severity": "warning",
        "description": "Inventory adjustments take more than 5 minutes (p95, last hour) to "
        "reach the selling channels.",
        "kpi": "inventory_sync_lag",
        "field": "p95_s",
        "op": ">",
        "threshold": 300,
        "window_s": 3600,
        "for_s": 120,
    },
    {
        "name": "Duplicate rate above 1 %",
        "kind": "kpi",
        "severity": "warning",
        "description": "More than 1 % of deliveries over the last hour were duplicates.",
        "kpi": "duplicate_rate",
        "field": "rate",
        "op": ">",
        "threshold": 0.01,
        "window_s": 3600,
        "for_s": 120,
    },
]


def add_rules(apps, schema_editor):
    Rule = apps.get_model("alerts", "Rule")
    have = set(Rule.objects.values_list("name", flat=True))
    Rule.objects.bulk_create(
        [
            Rule(created_by="default", **fields)
            for fields in DEFAULT_RULES
            if fields["name"] not in have
        ]
    )


def remove_rules(apps, schema_editor):
    Rule = apps.get_model("alerts", "Rule")
    Rule.objects.filter(name__in=[r["name"] for r in DEFAULT_RULES], created_by="default").delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(add_rules, remove_rules)]
