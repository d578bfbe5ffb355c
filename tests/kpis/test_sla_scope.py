"""The seeded "fulfillment seen by Shopify" SLA judges web orders only (transactions
migration 0005): marketplace and POS orders never reach Shopify fulfillment, so they are
never late or stuck on it, in the exceptions or in the KPIs; and the KPIs follow an SLA
policy change by themselves (the fill sees the policies change)."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from observatory.kpis import actions, bruteforce, queries
from observatory.lib.clock import now
from observatory.transactions.models import SlaPolicy
from observatory.triage.models import RESOLVED, STUCK, UNRESOLVED, Issue
from tests.kpis.traffic import event
from tests.pipeline import tick
from tests.transactions.stitching import post_events

pytestmark = pytest.mark.django_db

FULFILLMENT = "fulfillment seen by Shopify"
MIGRATION = importlib.import_module(
    "observatory.transactions.migrations.0005_fulfillment_sla_for_web_orders"
)


def shipped_orders(client: Client) -> None:
    """One order per channel, captured three hours ago, posted in time, shipped two hours
    ago, and never seen by Shopify as fulfilled."""
    t0 = now() - timedelta(hours=3)
    events = []
    for channel in ("web", "marketplace", "pos"):
        keys = {"order_number": f"#F-{channel}"}
        events += [
            event(f"{channel}-1", t0, "shopify", keys, stage="captured", channel=channel),
            event(f"{channel}-2", t0 + timedelta(seconds=20), "erp", keys, stage="posted"),
            event(f"{channel}-3", t0 + timedelta(hours=1), "wms", keys, stage="shipped"),
        ]
    post_events(client, *events)


def stuck_on_fulfillment() -> list[tuple[str, str]]:
    return sorted(
        (i.transaction.channel, i.state)
        for i in Issue.objects.filter(kind=STUCK, stage="fulfillment_synced").select_related(
            "transaction"
        )
    )


def backlog_and_twin() -> dict[str, Any]:
    at = now()
    window = (at - timedelta(days=1), at)
    mine = queries.kpi_values(*window, at=at)
    assert bruteforce.compare(mine, bruteforce.kpi_values(*window, at=at)) == []
    return mine["reconciliation_backlog"]


def test_the_seeded_fulfillment_deadline_is_for_web_orders() -> None:
    policy = SlaPolicy.objects.get(name=FULFILLMENT)
    assert (policy.channel, policy.active, policy.from_stage, policy.to_stage) == (
        "web",
        True,
        "shipped",
        "fulfillment_synced",
    )
    assert not SlaPolicy.objects.filter(to_stage="fulfillment_synced", channel="").exists()


def test_only_the_web_order_is_late_for_shopify_fulfillment(ingest_client: Client) -> None:
    shipped_orders(ingest_client)
    tick()
    actions.do_fill_rollups()
    assert stuck_on_fulfillment() == [("web", "open")]
    assert backlog_and_twin() == {"total": 1, "by_stage": {"fulfillment_synced": 1}}


def test_the_migration_fixes_a_database_seeded_before_it(ingest_client: Client) -> None:
    # as the policy was seeded before: every channel, so every shipped order is stuck on it
    SlaPolicy.objects.filter(name=FULFILLMENT).update(channel="")
    shipped_orders(ingest_client)
    tick()
    actions.do_fill_rollups()
    assert stuck_on_fulfillment() == [("marketplace", "open"), ("pos", "open"), ("web", "open")]
    assert backlog_and_twin() == {"total": 3, "by_stage": {"fulfillment_synced": 3}}

    MIGRATION.web_only(apps, None)
    assert SlaPolicy.objects.get(name=FULFILLMENT).channel == "web"
    assert stuck_on_fulfillment() == [
        ("marketplace", RESOLVED),
        ("pos", RESOLVED),
        ("web", "open"),
    ]
    # the next fill sees the policies change: the backlog is judged again, at once
    result = actions.do_fill_rollups()
    assert result.full is False and result.recomputed["orders"] >= 1
    assert backlog_and_twin() == {"total": 1, "by_stage": {"fulfillment_synced": 1}}
    # and the sweep opens nothing again for the other channels
    tick()
    assert Issue.objects.filter(kind=STUCK, state__in=UNRESOLVED).count() == 1

    MIGRATION.every_channel(apps, None)
    assert SlaPolicy.objects.get(name=FULFILLMENT).channel == ""


def test_a_web_policy_of_ones_own_keeps_and_the_seeded_one_is_switched_off() -> None:
    SlaPolicy.objects.filter(name=FULFILLMENT).update(channel="")
    own = SlaPolicy.objects.create(
        name="our web fulfillment",
        transaction_kind="order",
        channel="web",
        from_stage="shipped",
        to_stage="fulfillment_synced",
        deadline_s=600,
    )
    MIGRATION.web_only(apps, None)
    seeded = SlaPolicy.objects.get(name=FULFILLMENT)
    assert (seeded.channel, seeded.active) == ("", False)
    own.refresh_from_db()
    assert (own.channel, own.active, own.deadline_s) == ("web", True, 600)
    MIGRATION.every_channel(apps, None)
    assert SlaPolicy.objects.get(name=FULFILLMENT).active is True
