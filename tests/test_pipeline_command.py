"""``manage.py pipeline``: one pass of everything the worker's schedule does, in order."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from observatory.lib.clock import now
from tests.triage.helpers import ev, send

pytestmark = pytest.mark.django_db


def test_one_pass_stitches_sweeps_fills_and_evaluates(
    ingest_client: Client, api_client: Client
) -> None:
    t = now() - timedelta(minutes=10)
    send(
        ingest_client,
        ev("shopify", {"order_number": "#P1"}, t, stage="captured", channel="web"),
        ev("erp", {"order_number": "#P1", "erp_sales_order": "SO-P1"}, t + timedelta(seconds=20),
           stage="posted"),
    )  # fmt: skip
    out = StringIO()
    call_command("pipeline", stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("stitched 2 hops (1 transactions created, 1 touched, 0 merged)")
    assert "alerts:" in last
    # the KPIs read the figures at once: no wait for the worker's fill
    kpis = api_client.get("/api/v1/kpis", {"since": (t - timedelta(hours=1)).isoformat()})
    a2p = kpis.json()["kpis"]["acceptance_to_posting"]
    assert a2p["count"] == 1 and a2p["p50_s"] == pytest.approx(20, rel=0.01)
