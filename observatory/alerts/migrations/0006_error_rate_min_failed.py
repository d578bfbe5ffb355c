"""``min_failed`` on error-rate rules: the failed hops a window needs before its share
counts. The shipped ERP rule asks for 3: ERP connectors time out now and then and succeed
on their retry, and two such timeouts among a quiet spell's 27 hops are 7.4 % without
anything being wrong with the ERP. A rule someone edited keeps what they chose."""

from django.db import migrations, models

ERP_RULE = "ERP error rate above 5 %"
DESCRIPTION = (
    "More than 5 % of ERP hops failed over the last 5 minutes, once at least 20 hops and 3 "
    "failures were seen in the window: one or two timeouts that the connector retried do "
    "not page anyone."
)


def ship(apps, schema_editor):
    Rule = apps.get_model("alerts", "Rule")
    Rule.objects.filter(name=ERP_RULE, created_by="default", min_failed=1).update(
        min_failed=3, description=DESCRIPTION
    )


class Migration(migrations.Migration):
    dependencies = [("alerts", "0005_hand_down_alerts_to_kpis")]

    operations = [
        migrations.AddField(
            model_name="rule",
            name="min_failed",
            field=models.PositiveIntegerField(
                default=1, help_text="error_rate: failed hops needed in the window"
            ),
        ),
        migrations.RunPython(ship, migrations.RunPython.noop),
    ]
