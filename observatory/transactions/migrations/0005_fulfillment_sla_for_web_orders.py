"""The seeded "fulfillment seen by Shopify" SLA (``shipped`` -> ``fulfillment_synced``
within 15 minutes, 0002) judged every channel's orders; only web orders are Shopify's own
and ever reach Shopify fulfillment, so marketplace and POS orders were all held late and
stuck on it for ever. It now applies to web orders only.

* The seeded row (still blank-channel) becomes the web one; if a web policy for the same
  stages exists already, the blank-channel row is switched off instead (otherwise it
  would go on judging the other channels).
* ``stuck`` exceptions still open on ``fulfillment_synced`` for orders of other channels
  are resolved: nothing will ever close them (the KPIs rebuild who is late on their next
  fill: they see the policies change).

The reverse restores the seeded policy (the exceptions stay resolved).
"""

from django.db import migrations
from django.utils import timezone

NAME = "fulfillment seen by Shopify"
SEEDED = {
    "name": NAME,
    "transaction_kind": "order",
    "from_stage": "shipped",
    "to_stage": "fulfillment_synced",
}
CHANNEL = "web"
WHY = "the fulfillment SLA applies to web orders only"


def web_only(apps, schema_editor):
    SlaPolicy = apps.get_model("transactions", "SlaPolicy")
    Issue = apps.get_model("triage", "Issue")
    stages = {k: v for k, v in SEEDED.items() if k != "name"}
    seeded = SlaPolicy.objects.filter(**SEEDED, channel="")
    if SlaPolicy.objects.filter(**stages, channel=CHANNEL, active=True).exists():
        seeded.update(active=False)
    else:
        seeded.update(channel=CHANNEL)
    if SlaPolicy.objects.filter(**stages, channel="", active=True).exists():
        return  # someone's own every-channel policy: theirs to judge
    Issue.objects.filter(
        kind="stuck", stage="fulfillment_synced", state__in=("open", "acknowledged")
    ).exclude(transaction__channel=CHANNEL).update(
        state="resolved", resolved_at=timezone.now(), resolved_by="system", resolution=WHY
    )


def every_channel(apps, schema_editor):
    SlaPolicy = apps.get_model("transactions", "SlaPolicy")
    stages = {k: v for k, v in SEEDED.items() if k != "name"}
    if SlaPolicy.objects.filter(**SEEDED, channel="", active=False).exists():
        SlaPolicy.objects.filter(**SEEDED, channel="").update(active=True)
    elif not SlaPolicy.objects.filter(**stages, channel="").exists():
        SlaPolicy.objects.filter(**SEEDED, channel=CHANNEL).update(channel="")


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0004_stitcher_rows_without_fk_constraints"),
        ("triage", "0001_initial"),
    ]

    operations = [migrations.RunPython(web_only, every_channel)]
