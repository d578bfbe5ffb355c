"""``Hop.stitched_at`` goes: the queue and the log of 0005 hold it now. The indexes other
apps built on the column are replaced first (kpis 0005, triage 0003)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0005_stitch_queue"),
        ("kpis", "0005_stitched_at_index"),
        ("triage", "0003_failed_hop_index_by_id"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="hop", name="hop_unstitched"),
        migrations.RemoveField(model_name="hop", name="stitched_at"),
    ]
