"""Indexes on other apps' tables that only the KPI fill reads (created here, with no model
state, so those apps' models stay as they are; the same way triage indexes failed hops).

* hops by business start time: a dirty hour is recomputed from the hops of that hour;
* hops by stitch time: the fill finds the hours that newly stitched hops fall in;
* inventory updates by adjusted time: their anchor (orders have ``tx_captured``).

On PostgreSQL the two hop indexes are BRIN: both times grow with the table's physical
order, so a block-range index answers "this hour" and "since then" at almost no cost on the
ingest path (a B-tree there would cost every inserted and every stitched hop).
"""

from django.db import migrations

INDEXES = {
    "postgresql": [
        (
            "CREATE INDEX IF NOT EXISTS kpi_hop_start_brin ON hops_hop "
            "USING brin (start_time) WITH (pages_per_range = 16)",
            "DROP INDEX IF EXISTS kpi_hop_start_brin",
        ),
        (
            "CREATE INDEX IF NOT EXISTS kpi_hop_stitched_brin ON hops_hop "
            "USING brin (stitched_at) WITH (pages_per_range = 16)",
            "DROP INDEX IF EXISTS kpi_hop_stitched_brin",
        ),
    ],
    "sqlite": [
        (
            "CREATE INDEX IF NOT EXISTS kpi_hop_start ON hops_hop (start_time)",
            "DROP INDEX IF EXISTS kpi_hop_start",
        ),
        (
            "CREATE INDEX IF NOT EXISTS kpi_hop_stitched ON hops_hop (stitched_at)",
            "DROP INDEX IF EXISTS kpi_hop_stitched",
        ),
    ],
}
COMMON = [
    (
        "CREATE INDEX IF NOT EXISTS kpi_tx_adjusted ON transactions_transaction "
        "(inventory_adjusted_at) WHERE inventory_adjusted_at IS NOT NULL",
        "DROP INDEX IF EXISTS kpi_tx_adjusted",
    ),
]


def _run(schema_editor, forwards):
    statements = INDEXES.get(schema_editor.connection.vendor, []) + COMMON
    for create, drop in statements if forwards else reversed(statements):
        schema_editor.execute(create if forwards else drop)


def create(apps, schema_editor):
    _run(schema_editor, True)


def drop(apps, schema_editor):
    _run(schema_editor, False)


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0001_initial"),
        ("hops", "0001_initial"),
        ("transactions", "0001_initial"),
    ]

    operations = [migrations.RunPython(create, drop)]
