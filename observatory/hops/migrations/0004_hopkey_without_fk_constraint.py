"""Key rows without a database foreign-key constraint to their hop.

The ingest hot path stores about four key rows per span, always in the same transaction
as their hop (``hops.store``); the deferred constraint check per key row cost about a
third of the COPY's time (bench/ingest.py). The hop's deletion still removes its keys
(``on_delete=CASCADE`` is applied by Django).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0003_uid_unique_constraint"),
    ]

    operations = [
        migrations.AlterField(
            model_name="hopkey",
            name="hop",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="keys",
                to="hops.hop",
            ),
        ),
    ]
