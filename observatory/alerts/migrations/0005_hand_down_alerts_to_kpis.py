"""The alerts that fired, handed down to the KPIs (``kpis.AlertSeen``): the KPIs used to
look the alerts up by name, from below."""

from django.db import migrations


def hand_down(apps, schema_editor):
    Alert = apps.get_model("alerts", "Alert")
    AlertSeen = apps.get_model("kpis", "AlertSeen")
    rows = [
        AlertSeen(
            alert_id=a.id,
            channel=(a.labels or {}).get("channel", ""),
            store=(a.labels or {}).get("store", ""),
            system=(a.labels or {}).get("system", ""),
            fired_at=a.fired_at,
            resolved_at=a.resolved_at,
        )
        for a in Alert.objects.filter(fired_at__isnull=False, found_in_history=False).iterator()
    ]
    AlertSeen.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0004_duplicate_rule_watches_worst_source"),
        ("kpis", "0006_alerts_seen"),
    ]

    operations = [migrations.RunPython(hand_down, migrations.RunPython.noop)]
