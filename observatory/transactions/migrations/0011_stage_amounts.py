"""Each stage reached keeps the amount and currency of the hop that reached it, and whether
that hop joined through a fan-out key only (a batch posting: its amount is the batch's),
so that reconciliation compares what each system said the order was worth
(docs/reconciliation.md). The stages stitched before are filled from their hops, while
those are kept (docs/retention.md)."""

from django.db import migrations, models

STAGES = "transactions_stagereached"
TXKEYS = "transactions_transactionkey"
HOPS = "hops_hop"
HOPKEYS = "hops_hopkey"


def _held(fanout: str) -> str:
    """A key of the stage's hop, fan-out or not as ``fanout`` says, that its transaction
    holds."""
    return (
        f"SELECT 1 FROM {HOPKEYS} k JOIN {TXKEYS} t ON t.kind = k.kind AND t.value = k.value "
        f"AND t.transaction_id = {STAGES}.transaction_id "
        f"WHERE k.hop_id = {STAGES}.hop_id AND {fanout}k.fanout"
    )


def fill(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(
            f"UPDATE {STAGES} SET amount = h.amount, currency = h.currency FROM {HOPS} h "
            f"WHERE h.id = {STAGES}.hop_id AND h.amount IS NOT NULL"
        )
    else:
        hop = f"FROM {HOPS} h WHERE h.id = {STAGES}.hop_id"
        run(
            f"UPDATE {STAGES} SET amount = (SELECT h.amount {hop}), "
            f"currency = (SELECT h.currency {hop}) "
            f"WHERE hop_id IN (SELECT id FROM {HOPS} WHERE amount IS NOT NULL)"
        )
    run(
        f"UPDATE {STAGES} SET fanout = %s WHERE EXISTS ({_held('')}) "
        f"AND NOT EXISTS ({_held('NOT ')})",
        [True],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0010_rerouted_at"),
        ("hops", "0014_inventory_snapshots"),
    ]

    operations = [
        migrations.AddField(
            model_name="stagereached",
            name="amount",
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True),
        ),
        migrations.AddField(
            model_name="stagereached",
            name="currency",
            field=models.CharField(blank=True, max_length=3),
        ),
        migrations.AddField(
            model_name="stagereached",
            name="fanout",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
