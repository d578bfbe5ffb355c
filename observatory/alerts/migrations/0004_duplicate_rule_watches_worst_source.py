"""The shipped duplicate-rate rule watches the worst sending system, not the blend.

Shopify's duplicate deliveries are a few percent of Shopify's webhooks, but a small share of
all deliveries (spans and events outnumber webhooks): over every source the rate stayed
under 1 % while one source delivered twice too often. The rule now reads
``duplicate_rate.worst_source_rate`` (a source counts from 20 deliveries in the window).
"""

from django.db import migrations

NAME = "Duplicate rate above 1 %"
NEW = {
    "field": "worst_source_rate",
    "description": "More than 1 % of one sending system's deliveries over the last hour "
    "were duplicates (the worst system with at least 20 deliveries).",
}
OLD = {
    "field": "rate",
    "description": "More than 1 % of deliveries over the last hour were duplicates.",
}


def worst_source(apps, schema_editor):
    Rule = apps.get_model("alerts", "Rule")
    Rule.objects.filter(name=NAME, created_by="default", field="rate").update(**NEW)


def blend(apps, schema_editor):
    Rule = apps.get_model("alerts", "Rule")
    Rule.objects.filter(name=NAME, created_by="default", field=NEW["field"]).update(**OLD)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_found_in_history")]

    operations = [migrations.RunPython(worst_source, blend)]
