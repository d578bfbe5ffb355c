"""SLA policies say whether a later stage may satisfy their deadline (``skippable``).

Until now any later stage did: an order shipped by the warehouse but never posted to the
ERP had its "not posted" exception closed by the shipment. Deadlines for ``posted``,
``fulfillment_synced``, ``invoiced``, ``refunded`` and ``refund_settled`` may not be
skipped; every other stays skippable.
"""

from django.db import migrations, models

NEVER_SKIPPED = ["posted", "fulfillment_synced", "invoiced", "refunded", "refund_settled"]


def not_skippable(apps, schema_editor):
    SlaPolicy = apps.get_model("transactions", "SlaPolicy")
    SlaPolicy.objects.filter(to_stage__in=NEVER_SKIPPED).update(skippable=False)


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0005_fulfillment_sla_for_web_orders"),
    ]

    operations = [
        migrations.AddField(
            model_name="slapolicy",
            name="skippable",
            field=models.BooleanField(
                default=True,
                help_text="a later stage may satisfy the deadline (off for posted, fulfillment_synced, invoiced, refunded and refund_settled by default)",
            ),
        ),
        migrations.RunPython(not_skippable, migrations.RunPython.noop),
    ]
