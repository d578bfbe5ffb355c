"""The three roles of the product as auth groups (ops, executive, admin).

ops: reads every page and acts on exceptions; executive: reads; admin: everything the
ops group does, plus configuration in the Django admin (given per user as staff).
"""

from django.db import migrations

GROUPS = ("ops", "executive", "admin")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        Group.objects.get_or_create(name=name)


def remove_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=GROUPS, user__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_groups, remove_groups)]
