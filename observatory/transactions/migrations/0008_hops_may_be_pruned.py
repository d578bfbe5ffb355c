"""Timelines, merges and conflicts outlive the hops they point at (hops are pruned
sooner), so nothing here points at a hop with a database constraint or a cascade; and the
inventory index the KPI app made with raw SQL is declared on ``Transaction``."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0010_receipts_and_declared_indexes"),
        ("kpis", "0002_source_indexes"),
        ("transactions", "0007_touched"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conflict",
            name="hop",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="hops.hop",
            ),
        ),
        migrations.AlterField(
            model_name="merge",
            name="hop",
            field=models.ForeignKey(
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="hops.hop",
            ),
        ),
        migrations.AlterField(
            model_name="stagereached",
            name="hop",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="hops.hop",
            ),
        ),
        migrations.RunSQL("DROP INDEX IF EXISTS kpi_tx_adjusted", migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="transaction",
            index=models.Index(
                condition=models.Q(("inventory_adjusted_at__isnull", False)),
                fields=["inventory_adjusted_at"],
                name="tx_adjusted",
            ),
        ),
    ]
