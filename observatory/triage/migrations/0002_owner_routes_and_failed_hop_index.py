"""Seed the owner routing table, and index the failed hops triage scans.

The index is on the hop table but belongs to triage: it serves only the sweep's "failed
hops stitched since the last sweep" scan and is tiny (failed hops only). It is created
with RunSQL and no model state, so the hops app's models stay as they are.
"""

from django.db import migrations

ROUTES = {
    "shopify": "ecommerce",
    "erp": "finance-systems",
    "wms": "warehouse",
    "carrier": "logistics",
    "middleware": "integration",
    "pos": "retail-ops",
    "*": "integration",
}


def seed(apps, schema_editor):
    OwnerRoute = apps.get_model("triage", "OwnerRoute")
    for system, team in ROUTES.items():
        OwnerRoute.objects.get_or_create(system=system, defaults={"team": team})


def unseed(apps, schema_editor):
    OwnerRoute = apps.get_model("triage", "OwnerRoute")
    for system, team in ROUTES.items():
        OwnerRoute.objects.filter(system=system, team=team).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0001_initial"),
        ("hops", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
        migrations.RunSQL(
            "CREATE INDEX triage_hop_failed ON hops_hop (stitched_at) WHERE outcome = 'error'",
            "DROP INDEX triage_hop_failed",
        ),
    ]
