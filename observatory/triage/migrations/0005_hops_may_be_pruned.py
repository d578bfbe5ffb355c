"""Exceptions outlive the hops they name (hops are pruned sooner): no database
constraint or cascade from an exception to its hop."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0010_receipts_and_declared_indexes"),
        ("triage", "0004_withdrawn_silence_business_ages"),
    ]

    operations = [
        migrations.AlterField(
            model_name="issue",
            name="hop",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="hops.hop",
            ),
        ),
        migrations.AlterField(
            model_name="triagedhop",
            name="hop",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                primary_key=True,
                related_name="+",
                serialize=False,
                to="hops.hop",
            ),
        ),
    ]
