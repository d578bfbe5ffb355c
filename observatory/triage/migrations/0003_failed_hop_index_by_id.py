"""The failed-hop index moves off ``Hop.stitched_at`` (dropped by hops 0006): the sweep
finds newly stitched hops through the stitch log now (``hops.Stitched``, by ``at``), and
the failed hops are indexed by id, newest first for the ops dashboard's failure list."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0002_owner_routes_and_failed_hop_index"),
        ("hops", "0005_stitch_queue"),
    ]

    operations = [
        migrations.RunSQL(
            # IF EXISTS: SQLite lost it where a later hops migration rebuilt the table
            "DROP INDEX IF EXISTS triage_hop_failed",
            "CREATE INDEX triage_hop_failed ON hops_hop (stitched_at) WHERE outcome = 'error'",
        ),
        migrations.RunSQL(
            "CREATE INDEX triage_hop_failed_id ON hops_hop (id) WHERE outcome = 'error'",
            "DROP INDEX IF EXISTS triage_hop_failed_id",
        ),
    ]
