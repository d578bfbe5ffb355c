"""The reconciliation API's edges: its parameters (422 naming the one that cannot be
used), 404s, the rules and stores' zones as configuration (write scope only), and the
schedule a rule runs on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from observatory.access.actions import do_create_api_token
from observatory.lib.clock import now
from observatory.reconciliation import tasks
from observatory.reconciliation.actions import do_reconcile
from observatory.reconciliation.models import Rule
from tests.reconciliation.helpers import T0

pytestmark = pytest.mark.django_db


@pytest.fixture
def write_client(db: None) -> Client:
    _, plain = do_create_api_token("recon-writer", "write")
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


def loc(answer: Any) -> list[list[Any]]:
    """Where each 422 says the problem is: (location, field), as the schema and the
    models' own checks name it."""
    assert answer.status_code == 422, answer.content
    return [[e["loc"][0], e["loc"][-1]] for e in answer.json()["detail"]]


def test_results_take_business_days(api_client: Client) -> None:
    answer = api_client.get("/api/v1/reconciliation")
    assert answer.status_code == 200
    body = answer.json()
    assert body["results"] == []
    # the last 31 days by default
    since, until = (body[k] for k in ("since", "until"))
    assert until == now().date().isoformat()
    assert (now().date() - timedelta(days=30)).isoformat() == since
    assert loc(api_client.get("/api/v1/reconciliation", {"rule": "no-such-rule"})) == [
        ["query", "rule"]
    ]
    assert loc(api_client.get("/api/v1/reconciliation", {"since": "2026-13-01"})) == [
        ["query", "since"]
    ]
    assert loc(
        api_client.get("/api/v1/reconciliation", {"since": "2026-03-02", "until": "2026-03-01"})
    ) == [["query", "until"]]
    several = api_client.get(
        "/api/v1/reconciliation", {"rule": "shopify-orders, pos-cash-sales", "since": "2026-03-01"}
    )
    assert several.status_code == 200 and several.json()["until"] == "2026-03-31"


def test_a_day_of_an_unknown_rule_is_404_and_a_bad_day_422(api_client: Client) -> None:
    assert api_client.get("/api/v1/reconciliation/no-such-rule/2026-03-01").status_code == 404
    assert loc(api_client.get("/api/v1/reconciliation/shopify-orders/2026-02-30")) == [
        ["path", "day"]
    ]
    empty = api_client.get("/api/v1/reconciliation/shopify-orders/2026-03-01").json()
    assert (empty["results"], empty["items"], empty["time_zone"]) == ([], [], "UTC")


def test_the_default_rules_are_data(api_client: Client) -> None:
    rules = {r["name"]: r for r in api_client.get("/api/v1/reconciliation-rules").json()}
    assert set(rules) == {
        "shopify-orders",
        "shopify-refunds",
        "pos-cash-sales",
        "wms-carrier-scans",
        "marketplace-orders",
    }
    orders = rules["shopify-orders"]
    assert (orders["source_system"], orders["source_stage"]) == ("shopify", "captured")
    assert (orders["target_system"], orders["target_stage"]) == ("erp", "posted")
    assert (orders["target_key"], orders["channels"]) == ("erp_sales_order", ["web"])
    assert (orders["tolerance_abs"], orders["tolerance_rel"]) == ("0.01", "0.000000")
    pos = rules["pos-cash-sales"]
    assert pos["group_by_store"] and pos["store_time_zones"]
    refunds = rules["shopify-refunds"]
    assert (refunds["target_stage"], refunds["grace_s"]) == ("refund_settled", 86400)
    assert api_client.get("/api/v1/reconciliation-rules/pos-cash-sales").json() == pos
    assert api_client.get("/api/v1/reconciliation-rules/nope").status_code == 404


def test_rules_are_written_with_the_write_scope(api_client: Client, write_client: Client) -> None:
    body = {
        "name": "payments",
        "title": "Payments captured against ERP postings",
        "source_system": "payment",
        "source_stage": "payment_authorized",
        "target_system": "erp",
        "target_stage": "posted",
        "tolerance_abs": "0.05",
        "time_zone": "Europe/Berlin",
    }
    post = "/api/v1/reconciliation-rules"
    assert api_client.post(post, body, content_type="application/json").status_code == 403
    created = write_client.post(post, body, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["zone"] == "Europe/Berlin"
    assert write_client.post(post, body, content_type="application/json").status_code == 409
    bad = write_client.post(
        post,
        {**body, "name": "other", "time_zone": "Mars/Olympus"},
        content_type="application/json",
    )
    assert loc(bad) == [["body", "time_zone"]]
    same = write_client.post(
        post,
        {**body, "name": "other", "target_system": "payment", "target_stage": "payment_authorized"},
        content_type="application/json",
    )
    assert loc(same) == [["body", "target_stage"]]
    assert loc(
        write_client.post(post, {**body, "name": "Bad Name"}, content_type="application/json")
    ) == [["body", "name"]]
    changed = write_client.patch(
        f"{post}/payments", {"grace_s": 600, "channels": ["web"]}, content_type="application/json"
    )
    assert changed.status_code == 200, changed.content
    assert (changed.json()["grace_s"], changed.json()["channels"]) == (600, ["web"])
    assert loc(
        write_client.patch(
            f"{post}/payments", {"tolerance_abs": "-1"}, content_type="application/json"
        )
    ) == [["body", "tolerance_abs"]]
    # a change is an object: every field is optional, an array is not "no change"
    assert loc(write_client.patch(f"{post}/payments", [], content_type="application/json")) == [
        ["body", "body"]
    ]
    assert (
        api_client.patch(f"{post}/payments", {"active": False}, content_type="application/json")
    ).status_code == 403


def test_store_zones(api_client: Client, write_client: Client) -> None:
    url = "/api/v1/reconciliation-store-zones"
    assert (
        api_client.put(
            f"{url}/ST1", {"time_zone": "America/Chicago"}, content_type="application/json"
        ).status_code
        == 403
    )
    put = write_client.put(
        f"{url}/ST1", {"time_zone": "America/Chicago"}, content_type="application/json"
    )
    assert put.json() == {"store_id": "ST1", "time_zone": "America/Chicago"}
    assert loc(
        write_client.put(f"{url}/ST1", {"time_zone": "Chicago"}, content_type="application/json")
    ) == [["body", "time_zone"]]
    assert api_client.get(url).json() == [{"store_id": "ST1", "time_zone": "America/Chicago"}]
    assert write_client.delete(f"{url}/ST1").status_code == 204
    assert write_client.delete(f"{url}/ST1").status_code == 404


def test_each_rule_runs_on_its_own_schedule() -> None:
    Rule.objects.filter(name="shopify-refunds").update(every_s=3600)
    wall = T0
    first = do_reconcile(clock=lambda: T0, wall=lambda: wall)
    assert len(first.rules) == 5  # never ran
    wall = T0 + timedelta(seconds=30)
    assert do_reconcile(clock=lambda: T0, wall=lambda: wall).rules == []
    wall = T0 + timedelta(seconds=61)
    ran = {r.rule for r in do_reconcile(clock=lambda: T0, wall=lambda: wall).rules}
    assert ran == {"shopify-orders", "pos-cash-sales", "wms-carrier-scans", "marketplace-orders"}
    # the worker's beat runs the pass; a pass runs what is due
    entry = settings.CELERY_BEAT_SCHEDULE["reconciliation"]
    assert entry["task"] == tasks.reconcile.name
    assert "reconciliation" in settings.PIPELINE_CONSUMERS


def test_days_past_retention_are_pruned(settings: Any) -> None:
    """Items, batches and results go with the transactions (``RETENTION_DAYS``), counted
    from their business day."""
    from observatory.pipeline.wiring import PRUNERS
    from observatory.reconciliation.models import Batch, Item, Result
    from observatory.reconciliation.retention import do_prune

    assert do_prune in PRUNERS  # the worker's hourly prune runs it

    rule = Rule.objects.get(name="shopify-orders")
    at = now()
    keep = settings.RETENTION_DAYS["transactions"]
    old, recent = (at - timedelta(days=keep + 1)).date(), (at - timedelta(days=keep - 1)).date()
    for n, day in enumerate((old, recent), start=1):
        Item.objects.create(rule=rule, transaction_id=n, day=day, status="matched")
        Batch.objects.create(rule=rule, hop_id=n, transaction_id=n, day=day)
        Result.objects.create(rule=rule, day=day, computed_at=at)
    went = dict(do_prune(at=at))
    assert {"reconciliation_item", "reconciliation_batch", "reconciliation_result"} <= set(went)
    for model in (Item, Batch, Result):
        assert list(model.objects.values_list("day", flat=True)) == [recent]
