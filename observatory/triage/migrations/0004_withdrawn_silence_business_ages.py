"""Exceptions judged on business time: a ``withdrawn`` state (it never was a problem),
``silence`` and ``mismatch`` kinds, and ages counted from when the problem began.

``opened_at`` now holds the business time the problem began (a missed deadline, a failed
hop); when triage found it moves to ``detected_at``. Existing rows keep their detection
time there, and their ``opened_at`` becomes the business time of their fact
(``event_at``) where they have one.
"""

from django.db import migrations, models
from django.db.models import F


def business_ages(apps, schema_editor):
    Issue = apps.get_model("triage", "Issue")
    Issue.objects.update(detected_at=F("opened_at"))
    Issue.objects.filter(event_at__isnull=False).update(opened_at=F("event_at"))


def detection_ages(apps, schema_editor):
    Issue = apps.get_model("triage", "Issue")
    Issue.objects.filter(detected_at__isnull=False).update(opened_at=F("detected_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("hops", "0008_streams"),
        ("transactions", "0006_sla_skippable"),
        ("triage", "0003_failed_hop_index_by_id"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="issue",
            name="issue_unresolved_once",
        ),
        migrations.AddField(
            model_name="issue",
            name="detected_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="issue",
            name="kind",
            field=models.CharField(
                choices=[
                    ("stuck", "stuck past its SLA"),
                    ("failed_hop", "failed hop"),
                    ("duplicate", "duplicate"),
                    ("conflict", "conflict"),
                    ("silence", "silent system"),
                    ("mismatch", "reconciliation gap"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="issue",
            name="state",
            field=models.CharField(
                choices=[
                    ("open", "open"),
                    ("acknowledged", "acknowledged"),
                    ("resolved", "resolved"),
                    ("withdrawn", "withdrawn"),
                ],
                default="open",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="issue",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state__in", ("open", "acknowledged"))),
                fields=("dedupe_key",),
                name="issue_unresolved_once",
            ),
        ),
        migrations.RunPython(business_ages, detection_ages),
    ]
