"""Configuration writes: rules and stores' time zones, validated by the models' own
``clean`` (the admin uses the same). A changed rule is rebuilt in full by its next run
(``run.digest``)."""

from __future__ import annotations

from typing import Any

from observatory.reconciliation.models import Rule, StoreZone


def do_create_rule(fields: dict[str, Any]) -> Rule:
    """A new rule; ``ValidationError`` naming the fields that cannot be used."""
    rule = Rule(**fields)
    rule.full_clean()
    rule.save()
    return rule


def do_update_rule(rule: Rule, changes: dict[str, Any]) -> Rule:
    """Change the fields of ``changes``; ``ValidationError`` as above."""
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.full_clean()
    if changes:
        rule.save(update_fields=sorted(changes))
    return rule


def do_set_store_zone(store_id: str, time_zone: str) -> StoreZone:
    """Set (or change) the zone of a store's business day."""
    zone = StoreZone.objects.filter(store_id=store_id).first() or StoreZone(store_id=store_id)
    zone.time_zone = time_zone
    zone.full_clean()
    zone.save()
    return zone


def do_delete_store_zone(store_id: str) -> bool:
    return StoreZone.objects.filter(store_id=store_id).delete()[0] > 0
