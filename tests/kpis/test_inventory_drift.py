"""``inventory_drift`` (docs/kpis.md) and its exceptions: ``inventory.snapshot`` events
from the warehouse (the source of truth) and from Shopify, through the real events
endpoint; the latest per system, sku and location by business time; pairs compared at
comparable times; drift opens a ``mismatch`` exception that resolves by itself; the KPI
against its twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.test import Client, override_settings

from observatory.access.actions import do_create_api_token, do_create_ingest_token
from observatory.alerts.actions import do_evaluate
from observatory.alerts.models import Rule
from observatory.hops.models import InventorySnapshot
from observatory.kpis import bruteforce, queries
from observatory.lib.clock import now
from observatory.triage.models import MISMATCH, OPEN, RESOLVED, Issue
from tests.pipeline import tick

pytestmark = pytest.mark.django_db

CE = "application/cloudevents-batch+json"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def snap(
    ident: str, at: datetime, system: str, sku: str, location: str, quantity: Any
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": ident,
        "source": f"urn:{system}:inventory",
        "type": "inventory.snapshot",
        "time": iso(at),
        "data": {"system": system, "sku": sku, "location": location, "quantity": quantity},
    }


def send(client: Client, batch: list[dict[str, Any]]) -> Any:
    return client.post("/api/v1/events", orjson.dumps(batch), content_type=CE)


def kpi(api_client: Client, **filters: str) -> dict[str, Any]:
    window = {"since": iso(now() - timedelta(hours=12)), "until": iso(now()), **filters}
    answer = api_client.get("/api/v1/kpis", window)
    assert answer.status_code == 200, answer.content
    return answer.json()["kpis"]["inventory_drift"]  # type: ignore[no-any-return]


def agrees_with_twin() -> None:
    until = now()
    for since in (until - timedelta(hours=12), until - timedelta(days=4)):
        mine = queries.kpi_values(since, until, at=until)
        twin = bruteforce.kpi_values(since, until, at=until)
        assert not bruteforce.compare(mine, twin)


def drift_issues() -> list[Issue]:
    return list(Issue.objects.filter(kind=MISMATCH).order_by("id"))


def test_drift_opens_an_exception_and_resolves_when_the_quantities_agree(
    ingest_client: Client, api_client: Client
) -> None:
    t = now() - timedelta(hours=2)
    answer = send(
        ingest_client,
        [
            snap("w1", t, "wms", "SKU-1", "DC1", 10),
            snap("s1", t + timedelta(minutes=2), "shopify", "SKU-1", "DC1", 10),  # agrees
            snap("w2", t, "wms", "SKU-2", "DC1", 7),
            snap("s2", t + timedelta(minutes=1), "shopify", "SKU-2", "DC1", 4),  # 3 off
            snap("w3", t, "wms", "SKU-3", "DC2", 0),
            snap("s3", t, "shopify", "SKU-3", "DC2", 5),  # 5 off
            # the channel's snapshot is hours from the truth's: not comparable
            snap("w4", t - timedelta(hours=5), "wms", "SKU-4", "DC1", 1),
            snap("s4", t, "shopify", "SKU-4", "DC1", 9),
            # no truth for it at all
            snap("s5", t, "shopify", "SKU-5", "DC1", 9),
            # a bad one beside the good: refused alone, naming the field
            snap("bad", t, "shopify", "SKU-6", "DC1", 1.5),
        ],
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [a["index"] for a in body["accepted"]] == list(range(9))
    assert body["rejected"] == [
        {
            "index": 9,
            "id": "bad",
            "reason": "event 9: data.quantity: must be a whole number (got 1.5)",
        }
    ]
    # a snapshot is not a hop
    assert InventorySnapshot.objects.count() == 9
    tick()
    assert kpi(api_client) == {"pairs": 3, "off": 2, "rate": 2 / 3, "units_off": 8}
    assert kpi(api_client, store="DC2") == {"pairs": 1, "off": 1, "rate": 1.0, "units_off": 5}
    agrees_with_twin()
    issues = drift_issues()
    assert [(i.system, i.state, i.detail["sku"], i.detail["units_off"]) for i in issues] == [
        ("shopify", OPEN, "SKU-2", 3),
        ("shopify", OPEN, "SKU-3", 5),
    ]
    assert issues[0].detail["subkind"] == "amount_mismatch"
    assert issues[0].detail["rule"] == "inventory_drift"
    assert issues[0].owner == "ecommerce"  # the seeded route of shopify
    assert issues[0].transaction_id is None

    # an older snapshot arriving late changes nothing; a second sweep opens nothing new
    send(ingest_client, [snap("s2-old", t - timedelta(hours=1), "shopify", "SKU-2", "DC1", 7)])
    tick()
    assert InventorySnapshot.objects.get(system="shopify", sku="SKU-2").quantity == 4
    assert len(drift_issues()) == 2

    # Shopify catches up on SKU-2: its exception resolves by itself; SKU-3 stays open
    send(ingest_client, [snap("s2-new", t + timedelta(minutes=5), "shopify", "SKU-2", "DC1", 7)])
    tick()
    states = {i.detail["sku"]: i.state for i in drift_issues()}
    assert states == {"SKU-2": RESOLVED, "SKU-3": OPEN}
    assert kpi(api_client) == {"pairs": 3, "off": 1, "rate": 1 / 3, "units_off": 5}
    agrees_with_twin()


def test_without_drift_nothing_opens_and_the_threshold_is_a_setting(
    ingest_client: Client, api_client: Client
) -> None:
    t = now() - timedelta(hours=1)
    send(
        ingest_client,
        [
            snap("w1", t, "wms", "SKU-1", "DC1", 10),
            snap("s1", t, "shopify", "SKU-1", "DC1", 10),
            snap("w2", t, "wms", "SKU-2", "DC1", 10),
            snap("s2", t, "shopify", "SKU-2", "DC1", 8),
        ],
    )
    with override_settings(INVENTORY_DRIFT_UNITS=2):
        tick()
        assert kpi(api_client) == {"pairs": 2, "off": 0, "rate": 0.0, "units_off": 0}
        agrees_with_twin()
    assert drift_issues() == []
    tick()
    assert kpi(api_client) == {"pairs": 2, "off": 1, "rate": 0.5, "units_off": 2}
    assert len(drift_issues()) == 1


def test_a_token_limited_to_a_system_refuses_the_other_systems_snapshots(
    db: None, client: Client
) -> None:
    _, plain = do_create_ingest_token("wms-only", system="wms")
    t = now()
    answer = client.post(
        "/api/v1/events",
        orjson.dumps(
            [snap("w1", t, "wms", "A", "DC1", 1), snap("s1", t, "shopify", "A", "DC1", 2)]
        ),
        content_type=CE,
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert answer.status_code == 200, answer.content
    assert [r["index"] for r in answer.json()["rejected"]] == [1]
    assert list(InventorySnapshot.objects.values_list("system", flat=True)) == ["wms"]


def test_an_alert_rule_watches_the_share_of_drifting_pairs(ingest_client: Client) -> None:
    t = now() - timedelta(hours=1)
    send(
        ingest_client,
        [
            snap("w1", t, "wms", "SKU-1", "DC1", 10),
            snap("s1", t, "shopify", "SKU-1", "DC1", 12),
        ],
    )
    tick()
    _, plain = do_create_api_token("drift-writer", "write")
    writer = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    rule = {
        "name": "stock drifting",
        "kind": "kpi",
        "severity": "warning",
        "kpi": "inventory_drift",
        "field": "rate",
        "op": ">",
        "threshold": 0.1,
        "window_s": 21600,
    }
    answer = writer.post("/api/v1/alert-rules", rule, content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    bad = writer.post(
        "/api/v1/alert-rules",
        {**rule, "name": "no such field", "field": "drift"},
        content_type="application/json",
    )
    assert bad.status_code == 422 and "pairs, off, rate, units_off" in bad.content.decode()
    reroutes = {**rule, "name": "reroutes", "kpi": "reroute_rate", "field": "rerouted"}
    answer = writer.post("/api/v1/alert-rules", reroutes, content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    do_evaluate()
    assert Rule.objects.get(name="stock drifting").alerts.filter(state="firing").exists()
    assert not Rule.objects.get(name="reroutes").alerts.exists()
