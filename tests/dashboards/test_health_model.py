"""One health model per system (``dashboards/health.py``): the ops dashboard's card and
flow node, ``/systems/``, ``/systems/<system>/`` and ``GET /api/v1/systems`` all show the
same status, and each status links to what caused it.

Hops go in through the CloudEvents endpoint, the stitcher takes them, and the alert rules
are judged by the real evaluation pass: as in the simulator's chaos scenario, the
warehouse stops reporting while the shop keeps sending orders.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.actions import do_evaluate
from observatory.alerts.models import FIRING, Alert, Rule
from observatory.lib.clock import now
from observatory.transactions.actions import do_stitch
from tests.triage.helpers import ev, send

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)


def warehouse_goes_quiet(ingest_client: Client) -> Any:
    """Twenty minutes of orders: the shop, the middleware and the ERP report to now; the
    warehouse picked orders until 8 minutes ago and has said nothing since."""
    t = now()
    events = []
    for i in range(20):
        at = t - (20 - i) * M
        keys = {"order_number": f"#H{i}", "shopify_order_id": f"77{i}"}
        events += [
            ev("shopify", keys, at, stage="captured", channel="web"),
            ev("middleware", keys, at + timedelta(seconds=5), stage="validated"),
            ev("erp", {**keys, "erp_sales_order": f"SO-H{i}"}, at + timedelta(seconds=20)),
        ]
        if at + 2 * M < t - 8 * M:
            events.append(ev("wms", {"erp_sales_order": f"SO-H{i}"}, at + 2 * M, stage="picked"))
    send(ingest_client, *events)
    do_stitch()
    return t


def warehouse_silent_rule() -> Rule:
    """The rule of the chaos demo: critical, no hop from the warehouse for 5 minutes while
    the shop sends. The shipped rules are switched off so that only it can fire."""
    Rule.objects.update(active=False)
    return Rule.objects.create(
        name="Warehouse silent",
        kind="silence",
        severity="critical",
        system="wms",
        while_system="shopify",
        window_s=300,
    )


def card(page: str, system: str) -> str:
    found = re.search(
        rf'<article class="tile [^"]*" data-system="{system}" data-status="[a-z]+">.*?</article>',
        page,
        re.S,
    )
    assert found, f"no card for {system}"
    return found.group(0)


def status_of(html: str) -> str:
    found = re.search(r'data-status="([a-z]*)"', html)
    assert found
    return found.group(1)


def node(page: str, key: str) -> str:
    found = re.search(rf'<(a|g) [^>]*class="node [^"]*" data-node="{key}"[^>]*>', page)
    assert found, f"no flow node {key}"
    return found.group(0)


def api_systems(client: Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/systems")
    assert answer.status_code == 200, answer.content
    return {s["system"]: s for s in answer.json()["systems"]}


def test_a_silent_warehouse_is_silent_everywhere_and_leads_to_its_alert(
    ingest_client: Client, admin_client: Client
) -> None:
    t = warehouse_goes_quiet(ingest_client)
    warehouse_silent_rule()
    do_evaluate(clock=lambda: t)
    alert = Alert.objects.get(rule__name="Warehouse silent")
    assert alert.state == FIRING and alert.labels["system"] == "wms"

    # the API: silent, with the alert as its reason
    wms = api_systems(admin_client)["wms"]
    assert wms["status"] == "silent" and wms["firing_alerts"] == [alert.id]
    assert wms["reasons"][0]["url"] == f"/alerts/{alert.id}/"
    assert wms["last_hop_at"] is not None and wms["watermark"] is not None

    # the ops dashboard: the card is no longer "OK · sending", and it links to the alert
    home = admin_client.get("/").content.decode()
    wms_card = card(home, "wms")
    assert status_of(wms_card) == "silent" and 'class="tile red"' in wms_card
    assert "Silent" in wms_card and "OK" not in wms_card
    assert f'href="/alerts/{alert.id}/"' in wms_card and "Warehouse silent" in wms_card
    # its flow node is red, says so, and opens the alert
    wms_node = node(home, "wms")
    assert 'class="node red"' in wms_node and 'data-status="silent"' in wms_node
    assert f'href="/alerts/{alert.id}/"' in wms_node

    # /systems/ and /systems/wms/ say the same, with the same link
    listing = admin_client.get("/systems/").content.decode()
    badge = re.search(r'data-testid="health-wms"[^>]*>.*?</span>(.*?)</td>', listing, re.S)
    assert badge and 'class="badge health-silent' in listing
    assert f'href="/alerts/{alert.id}/"' in badge.group(1)
    detail = admin_client.get("/systems/wms/").content.decode()
    assert "health-silent" in detail and f'href="/alerts/{alert.id}/"' in detail

    # and every other system shows the one status the API gives it, on the card and node
    for name, system in api_systems(admin_client).items():
        assert status_of(card(home, name)) == system["status"], name
        if name in ("erp", "middleware", "wms"):
            assert f'data-status="{system["status"]}"' in node(home, name), name


def test_failing_and_retrying_systems_link_to_their_failed_hops(
    ingest_client: Client, admin_client: Client
) -> None:
    t = now() - M
    events = []
    for i in range(10):
        keys = {"erp_sales_order": f"SO-F{i}"}
        events.append(ev("erp", keys, t - i * M, outcome="error" if i < 4 else "ok"))
        events.append(ev("carrier", {"tracking_number": f"1Z{i}"}, t - i * M, retry_attempt=i % 2))
    send(ingest_client, *events)
    do_stitch()
    systems = api_systems(admin_client)
    erp, carrier = systems["erp"], systems["carrier"]
    assert erp["status"] == "failing" and erp["error_rate"] == pytest.approx(0.4)
    assert erp["reasons"][0]["url"] == "/exceptions/?kind=failed_hop&system=erp"
    assert carrier["status"] == "degraded" and carrier["retry_rate"] == pytest.approx(0.5)
    assert "retries" in carrier["reasons"][0]["words"]
    home = admin_client.get("/").content.decode()
    assert status_of(card(home, "erp")) == "failing"
    assert 'href="/exceptions/?kind=failed_hop&amp;system=erp"' in card(home, "erp")
    assert status_of(card(home, "carrier")) == "degraded"
    assert 'class="node amber"' in node(home, "carrier")
