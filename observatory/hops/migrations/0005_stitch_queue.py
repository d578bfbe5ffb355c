"""The stitcher's queue and log in tables of their own (``Waiting``, ``Stitched``), filled
from ``Hop.stitched_at``, which 0006 then drops.

Marking a hop stitched rewrote the whole hop row and an entry in every index of the hop
table; deleting a queue row and appending a log row cost a fraction of it (bench/stitch.py).
"""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    schema_editor.execute(
        "INSERT INTO hops_waiting (hop_id) SELECT id FROM hops_hop WHERE stitched_at IS NULL"
    )
    schema_editor.execute(
        "INSERT INTO hops_stitched (hop_id, at) "
        "SELECT id, stitched_at FROM hops_hop WHERE stitched_at IS NOT NULL"
    )


def unfill(apps, schema_editor):
    schema_editor.execute(
        "UPDATE hops_hop SET stitched_at = "
        "(SELECT s.at FROM hops_stitched s WHERE s.hop_id = hops_hop.id)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0004_hopkey_without_fk_constraint"),
    ]

    operations = [
        migrations.CreateModel(
            name="Stitched",
            fields=[
                (
                    "hop",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="stitched",
                        serialize=False,
                        to="hops.hop",
                    ),
                ),
                ("at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="Waiting",
            fields=[
                (
                    "hop",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="waiting",
                        serialize=False,
                        to="hops.hop",
                    ),
                ),
            ],
        ),
        migrations.RunPython(fill, unfill),
    ]
