"""What lets every KPI of any window be answered from the fill's rows:

* ``OpenStage`` keeps every stage a transaction was late for, open or since reached
  (``closed_at``), once per transaction and stage, with each transaction's ``lead`` row:
  the backlog of a past window, and the live one counted without DISTINCT. Its rows are
  dropped here; the next fill finds no digest of the SLA policies (``FillState.fingerprint``)
  and rebuilds them, and every hour's within-deadline counts.
* ``IssueSeen`` keeps each exception's channel and store (its transaction's), state,
  system and times: exceptions of a channel or store are counted from it alone. Filled in
  here for the rows already kept.
* Rollup rows carry a ``digest`` of their facts: window edges in hours without minute
  rollups are kept in memory under it.
"""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def drop_open_stages(apps, schema_editor):
    apps.get_model("kpis", "OpenStage").objects.all().delete()


def fill_seen_issues(apps, schema_editor):
    IssueSeen = apps.get_model("kpis", "IssueSeen")
    Issue = apps.get_model("triage", "Issue")
    Transaction = apps.get_model("transactions", "Transaction")
    tx = Transaction.objects.filter(pk=OuterRef("transaction_id"))
    issue = Issue.objects.filter(pk=OuterRef("issue_id"))
    IssueSeen.objects.update(
        channel=Coalesce(Subquery(tx.values("channel")[:1]), Value("")),
        store=Coalesce(Subquery(tx.values("store_id")[:1]), Value("")),
        state=Coalesce(Subquery(issue.values("state")[:1]), Value("")),
        system=Coalesce(Subquery(issue.values("system")[:1]), Value("")),
        opened_at=Subquery(issue.values("opened_at")[:1]),
        resolved_at=Subquery(issue.values("resolved_at")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0003_open_stages"),
        ("transactions", "0001_initial"),
        ("triage", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(drop_open_stages, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name="openstage",
            name="kpi_open_tx",
        ),
        migrations.RemoveIndex(
            model_name="openstage",
            name="kpi_open_due",
        ),
        migrations.AddField(
            model_name="fillstate",
            name="fingerprint",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="hoprollup",
            name="digest",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="channel",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="opened_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="resolved_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="state",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="store",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="issueseen",
            name="system",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="openstage",
            name="closed_at",
            field=models.DateTimeField(
                help_text="when the stage (or a later one) came, or the order was cancelled",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="openstage",
            name="lead",
            field=models.BooleanField(db_default=False),
        ),
        migrations.AddField(
            model_name="orderrollup",
            name="digest",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="openstage",
            name="stage",
            field=models.CharField(help_text="the stage that was due", max_length=32),
        ),
        migrations.AddIndex(
            model_name="issueseen",
            index=models.Index(fields=["transaction_id"], name="kpi_issue_tx"),
        ),
        migrations.AddIndex(
            model_name="issueseen",
            index=models.Index(fields=["channel", "opened_at"], name="kpi_issue_channel"),
        ),
        migrations.AddIndex(
            model_name="issueseen",
            index=models.Index(fields=["store", "opened_at"], name="kpi_issue_store"),
        ),
        migrations.AddIndex(
            model_name="openstage",
            index=models.Index(
                condition=models.Q(("closed_at__isnull", True)),
                fields=["overdue_after", "anchor"],
                include=("channel", "store", "stage", "lead"),
                name="kpi_open_due",
            ),
        ),
        migrations.AddIndex(
            model_name="openstage",
            index=models.Index(
                fields=["anchor", "overdue_after"],
                include=("closed_at", "channel", "store", "stage", "transaction_id"),
                name="kpi_open_anchor",
            ),
        ),
        migrations.AddConstraint(
            model_name="openstage",
            constraint=models.UniqueConstraint(
                fields=("transaction_id", "stage"), name="kpi_open_once"
            ),
        ),
        migrations.RunPython(fill_seen_issues, migrations.RunPython.noop),
    ]
