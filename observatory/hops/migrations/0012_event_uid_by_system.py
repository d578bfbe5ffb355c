"""A CloudEvent's delivery identity names its system: ``event:<system>:<source>:<id>``
(was ``event:<source>:<id>``), so that one system's events never collide with another's
(a token limited to one system could otherwise pre-empt another system's event ids, or
learn from a "duplicate" answer that one exists). The stored events' uids are rewritten
to the new form, so a re-delivery of an event stored before still counts as a duplicate;
the column grows by the system's 64 characters and a separator.

The receipts, which keep uids unique, are rewritten with their hops.
"""

from django.db import migrations, models

TO_NEW = (
    "UPDATE hops_hop SET uid = 'event:' || system || ':' || substr(uid, 7) "
    "WHERE via = 'event' AND uid LIKE 'event:%'"
)
TO_OLD = (
    "UPDATE hops_hop SET uid = 'event:' || substr(uid, 8 + length(system)) "
    "WHERE via = 'event' AND uid LIKE 'event:%'"
)
RECEIPTS = (
    "UPDATE hops_receipt SET uid = (SELECT h.uid FROM hops_hop h WHERE h.id = hop_id) "
    "WHERE uid LIKE 'event:%'"
)


class Migration(migrations.Migration):
    dependencies = [("hops", "0011_partition_by_day")]

    operations = [
        migrations.AlterField(
            model_name="hop", name="uid", field=models.CharField(max_length=1700)
        ),
        migrations.AlterField(
            model_name="receipt", name="uid", field=models.CharField(max_length=1700)
        ),
        migrations.RunSQL([TO_NEW, RECEIPTS], [TO_OLD, RECEIPTS]),
    ]
