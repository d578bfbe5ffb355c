"""Idempotency moves to a receipt table (so the hop table can be partitioned by day), and
the hop tables' indexes are declared on their models.

Until now the KPI and triage apps made indexes on the hop tables with raw SQL; they are
dropped here and declared on ``Hop`` and ``Stitched`` instead, under new names, so
``makemigrations --check`` sees them and a SQLite table rebuild keeps them.
"""

import django.db.models.deletion
from django.db import migrations, models

import observatory.lib.indexes

RAW_INDEXES = [
    "kpi_hop_start_brin",
    "kpi_hop_start",
    "kpi_hop_stitched_brin",
    "kpi_hop_stitched",
    "triage_hop_failed",
    "triage_hop_failed_id",
    "kpi_stitched_at_brin",
    "kpi_stitched_at",
]


def fill_receipts(apps, schema_editor):
    schema_editor.execute("INSERT INTO hops_receipt (hop_id, uid) SELECT id, uid FROM hops_hop")


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0009_touched_hours"),
        ("kpis", "0005_stitched_at_index"),
        ("triage", "0003_failed_hop_index_by_id"),
    ]

    operations = [
        migrations.RunSQL(
            [f"DROP INDEX IF EXISTS {name}" for name in RAW_INDEXES], migrations.RunSQL.noop
        ),
        migrations.CreateModel(
            name="Receipt",
            fields=[
                (
                    "hop",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="receipt",
                        serialize=False,
                        to="hops.hop",
                    ),
                ),
                ("uid", models.CharField(max_length=1600)),
            ],
        ),
        migrations.RunPython(fill_receipts, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="receipt",
            constraint=models.UniqueConstraint(fields=("uid",), name="receipt_uid_unique"),
        ),
        migrations.RemoveConstraint(model_name="hop", name="hop_uid_unique"),
        migrations.AlterField(
            model_name="duplicatedelivery",
            name="hop",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="duplicates",
                to="hops.hop",
            ),
        ),
        migrations.AddIndex(
            model_name="hop",
            index=observatory.lib.indexes.TimeIndex(
                fields=["start_time"], name="hop_start", pages_per_range=16
            ),
        ),
        migrations.AddIndex(
            model_name="hop",
            index=models.Index(
                condition=models.Q(("outcome", "error")), fields=["id"], name="hop_failed"
            ),
        ),
        migrations.AddIndex(
            model_name="stitched",
            index=observatory.lib.indexes.TimeIndex(
                fields=["at"], name="stitched_at", pages_per_range=16
            ),
        ),
    ]
