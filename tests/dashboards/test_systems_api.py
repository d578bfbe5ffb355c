"""GET /api/v1/systems: each system's health, watermark and arrival lag, from hops sent
through the real ingest endpoint (CloudEvents) and taken by the stitcher."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.lib.clock import now
from observatory.transactions.actions import do_stitch
from tests.triage.helpers import ev, send

pytestmark = pytest.mark.django_db


def by_system(client: Client) -> dict[str, Any]:
    answer = client.get("/api/v1/systems")
    assert answer.status_code == 200, answer.content
    return {s["system"]: s for s in answer.json()["systems"]}


def test_watermarks_lags_and_stores(ingest_client: Client, api_client: Client) -> None:
    t = now() - timedelta(seconds=2)
    send(
        ingest_client,
        *[ev("erp", {"order_number": f"#{i}"}, t - timedelta(seconds=10 - i)) for i in range(10)],
        ev("pos", {"pos_receipt": "A-1"}, t, store_id="ST1", stage="captured"),
        # store ST2 was offline: its morning arrives now, hours late
        ev("pos", {"pos_receipt": "B-1"}, t - timedelta(hours=5), store_id="ST2"),
        ev("pos", {"pos_receipt": "B-2"}, t - timedelta(hours=4), store_id="ST2"),
    )
    do_stitch()
    systems = by_system(api_client)
    erp = systems["erp"]
    assert erp["status"] == "ok" and erp["firing_alerts"] == []
    # complete up to its newest report, less its skew (5 s at least)
    reported = t - timedelta(seconds=1)
    assert erp["watermark"] is not None
    watermark = erp["watermark"].replace("Z", "+00:00")
    assert watermark <= (reported - timedelta(seconds=5)).isoformat()
    assert 5 <= erp["behind_s"] < 60
    assert 0 < erp["arrival_lag_p95_s"] < 30 and erp["max_delay_s"] == 60
    assert erp["summary"].startswith("erp: reported up to ") and "arrival lag p95" in erp["summary"]
    pos = systems["pos"]
    stores = {s["store_id"]: s for s in pos["stores"]}
    assert set(stores) == {"ST1", "ST2"}
    assert stores["ST2"]["catching_up"] and not stores["ST1"]["catching_up"]
    assert stores["ST2"]["behind_s"] > 4 * 3600
    assert pos["late_hops"] == 2 and pos["status"] == "degraded"
    assert any("catching up" in r["words"] for r in pos["reasons"])

    one = api_client.get("/api/v1/systems/erp")
    assert one.status_code == 200 and one.json()["system"] == "erp"
    missing = api_client.get("/api/v1/systems/nothing-here")
    assert missing.status_code == 404 and "system" in missing.json()["detail"]


def test_the_systems_pages_show_the_watermark(ingest_client: Client, admin_client: Client) -> None:
    t = now() - timedelta(seconds=3)
    send(ingest_client, ev("erp", {"order_number": "#1"}, t), ev("wms", {"shipment_id": "S"}, t))
    do_stitch()
    page = admin_client.get("/systems/").content.decode()
    assert 'data-testid="watermark-erp"' in page and "behind" in page
    assert 'data-testid="health-erp"' in page
    detail = admin_client.get("/systems/erp/").content.decode()
    assert 'data-testid="telemetry-summary">erp: reported up to' in detail
