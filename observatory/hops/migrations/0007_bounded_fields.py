"""Columns sized for real data (tracing/limits.py): a CloudEvents source of up to 512 bytes
and id of up to 1,024 make a delivery identity of up to 1,543 bytes.

On PostgreSQL a wider varchar changes only the catalogue: no table rewrite, no index
rebuild. SQLite does not hold text to a length at all, and Django would alter the column
by copying the table, which loses the indexes other apps made on it by hand (kpis 0002,
triage 0003): there only the migration state changes.
"""

from typing import Any

from django.db import migrations, models

_WIDER = (
    "ALTER TABLE hops_hop ALTER COLUMN uid TYPE varchar(1600), "
    "ALTER COLUMN source TYPE varchar(512)"
)
_NARROWER = (
    "ALTER TABLE hops_hop ALTER COLUMN uid TYPE varchar(600), ALTER COLUMN source TYPE varchar(255)"
)


def _on_postgresql(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0006_drop_stitched_at"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(_on_postgresql(_WIDER), _on_postgresql(_NARROWER)),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="hop",
                    name="source",
                    field=models.CharField(blank=True, max_length=512),
                ),
                migrations.AlterField(
                    model_name="hop",
                    name="uid",
                    field=models.CharField(max_length=1600),
                ),
            ],
        ),
    ]
