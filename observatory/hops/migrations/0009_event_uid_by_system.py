"""A CloudEvent's delivery identity names its system: ``event:<system>:<source>:<id>``
(was ``event:<source>:<id>``), so that one system's events never collide with another's
(a token limited to one system could otherwise pre-empt another system's event ids, or
learn from a "duplicate" answer that one exists). The stored events' uids are rewritten
to the new form, so a re-delivery of an event stored before still counts as a duplicate;
the column grows by the system's 64 characters and a separator.

The column is widened in SQL on PostgreSQL only: SQLite does not enforce a varchar's
length, and its AlterField would rebuild the hop table and lose the indexes other apps'
migrations put on it."""

from django.db import migrations, models

TO_NEW = (
    "UPDATE hops_hop SET uid = 'event:' || system || ':' || substr(uid, 7) "
    "WHERE via = 'event' AND uid LIKE 'event:%'"
)
TO_OLD = (
    "UPDATE hops_hop SET uid = 'event:' || substr(uid, 8 + length(system)) "
    "WHERE via = 'event' AND uid LIKE 'event:%'"
)


def _widen(size: int):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE hops_hop ALTER COLUMN uid TYPE varchar({size})")

    return run


class Migration(migrations.Migration):
    dependencies = [("hops", "0008_streams")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="hop", name="uid", field=models.CharField(max_length=1700)
                )
            ],
            database_operations=[migrations.RunPython(_widen(1700), _widen(1600))],
        ),
        migrations.RunSQL(TO_NEW, TO_OLD),
    ]
