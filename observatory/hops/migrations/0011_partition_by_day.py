"""On PostgreSQL the hop table, and the key and stitched tables written with it, become
partitioned by day on the hop id (``lib.partitions``), so retention drops a day instead of
deleting rows. The rows stored so far are copied once into each table's ``_legacy``
partition. SQLite keeps plain tables."""

from django.db import migrations

from observatory.lib import partitions

AHEAD_DAYS = 3
#: table, partition key, identity column, whether its ids carry their day
TABLES = [
    ("hops_hop", "id", "id", True),
    ("hops_hopkey", "hop_id", "id", False),
    ("hops_stitched", "hop_id", None, False),
]


def forwards(apps, schema_editor):
    for table, key, identity, day_ids in TABLES:
        partitions.partition(
            schema_editor, table, key, ahead=AHEAD_DAYS, identity=identity, day_ids=day_ids
        )


def backwards(apps, schema_editor):
    for table, key, identity, day_ids in TABLES:
        partitions.unpartition(schema_editor, table, key, identity=identity, day_ids=day_ids)


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0010_receipts_and_declared_indexes"),
        # every foreign key to the hop table is without a database constraint by then
        ("transactions", "0008_hops_may_be_pruned"),
        ("triage", "0005_hops_may_be_pruned"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
