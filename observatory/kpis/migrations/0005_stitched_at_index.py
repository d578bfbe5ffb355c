"""The fill's "hops stitched since" index moves from ``Hop.stitched_at`` (dropped by hops
0006) to the stitch log, ``hops.Stitched.at``: BRIN on PostgreSQL (the log is appended in
time order), a B-tree on SQLite; the same reasons as 0002."""

from django.db import migrations

INDEXES = {
    "postgresql": [
        (
            "DROP INDEX IF EXISTS kpi_hop_stitched_brin",
            "CREATE INDEX IF NOT EXISTS kpi_hop_stitched_brin ON hops_hop "
            "USING brin (stitched_at) WITH (pages_per_range = 16)",
        ),
        (
            "CREATE INDEX IF NOT EXISTS kpi_stitched_at_brin ON hops_stitched "
            "USING brin (at) WITH (pages_per_range = 16)",
            "DROP INDEX IF EXISTS kpi_stitched_at_brin",
        ),
    ],
    "sqlite": [
        (
            "DROP INDEX IF EXISTS kpi_hop_stitched",
            "CREATE INDEX IF NOT EXISTS kpi_hop_stitched ON hops_hop (stitched_at)",
        ),
        (
            "CREATE INDEX IF NOT EXISTS kpi_stitched_at ON hops_stitched (at)",
            "DROP INDEX IF EXISTS kpi_stitched_at",
        ),
    ],
}


def _run(schema_editor, forwards):
    statements = INDEXES.get(schema_editor.connection.vendor, [])
    for create, drop in statements if forwards else reversed(statements):
        schema_editor.execute(create if forwards else drop)


def forwards(apps, schema_editor):
    _run(schema_editor, True)


def backwards(apps, schema_editor):
    _run(schema_editor, False)


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0004_kpi_reads_from_rollups"),
        ("hops", "0005_stitch_queue"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
