"""The simulator's business cases against the app, exactly: reroutes, cancellations that
work and fail, and inventory drift between the warehouse and Shopify
(observatory/simulator/cases.py). ``manage.py simulate --truth`` sends a history through
the real endpoints of a live server; the pipeline stitches and sweeps it; the
``reroute_rate``, ``cancellation_success`` and ``inventory_drift`` KPIs read through
``GET /api/v1/kpis``, and the drift exceptions, must say what the ground truth says."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from observatory.kpis import bruteforce, queries
from observatory.pipeline.wiring import tick as do_pipeline_tick
from observatory.triage.models import MISMATCH, UNRESOLVED, Issue
from tests.simulator.test_simulate_command import business_end, kpis, simulate

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_reroutes_cancellations_and_drift_match_the_truth(live_server: Any, tmp_path: Path) -> None:
    end = business_end()
    path = tmp_path / "truth.json"
    run = simulate(
        live_server.url,
        "--orders",
        "500",
        "--backfill-days",
        "3",
        "--scenario",
        "normal",
        "--seed",
        "29",
        "--history-end",
        end.isoformat(),
        "--truth",
        str(path),
    )
    assert run.errors == 0
    truth = json.loads(path.read_text())
    do_pipeline_tick(clock=lambda: end, full=True)
    since, until = end - timedelta(days=5), end + timedelta(minutes=1)
    got = kpis(since, until)

    # reroute_rate: the orders the warehouse shipped, and which of them moved
    shipped = {
        t["ref"]
        for t in truth["transactions"]
        if t["kind"] == "order" and t["stages"].get("shipped", {}).get("delivered")
    }
    moved = {r["ref"] for r in truth["reroutes"] if r["delivered"]} & shipped
    assert moved and len(moved) < len(shipped)
    assert got["reroute_rate"] == {
        "shipments": len(shipped),
        "rerouted": len(moved),
        "rate": len(moved) / len(shipped),
    }

    # cancellation_success: each failure kind made, and judged as the truth says
    requested = [c for c in truth["cancellations"] if c["requested"]]
    assert {c["outcome"] for c in requested} == {
        "cancelled",
        "erp_never_cancelled",
        "shipped_anyway",
    }
    worked = sum(1 for c in requested if c["succeeded"])
    assert 0 < worked < len(requested)
    assert got["cancellation_success"] == {
        "requested": len(requested),
        "succeeded": worked,
        "rate": worked / len(requested),
    }

    # inventory_drift: the pairs, the ones off and by how much; one exception each
    inv = truth["inventory"]
    assert inv["off"] > 0 and len(inv["pairs"]) > inv["off"]
    assert got["inventory_drift"] == {
        "pairs": len(inv["pairs"]),
        "off": inv["off"],
        "rate": inv["off"] / len(inv["pairs"]),
        "units_off": inv["units_off"],
    }
    drifting = Issue.objects.filter(
        kind=MISMATCH, state__in=UNRESOLVED, detail__rule="inventory_drift"
    )
    assert sorted((i.detail["sku"], i.detail["location"]) for i in drifting) == sorted(
        (p["sku"], p["location"]) for p in inv["pairs"] if p["off"]
    )

    # and the twins agree
    mine = queries.kpi_values(since, until, at=end)
    twin = bruteforce.kpi_values(since, until, at=end)
    for key in ("reroute_rate", "cancellation_success", "inventory_drift"):
        assert mine[key] == twin[key] == got[key], key
