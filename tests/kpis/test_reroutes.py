"""``reroute_rate`` (docs/kpis.md): orders shipped in the window whose fulfilling location
changed after release, from ``retail.reroute`` on a hop or the warehouse's
``retail.location_id`` changing, sent through the real events endpoint; the stitcher
records the fact once (``Transaction.rerouted_at``); against the twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.kpis import actions, bruteforce, queries
from observatory.lib.clock import now
from observatory.transactions.models import Transaction
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(
    n: int, t: datetime, *steps: tuple[int, str, dict[str, Any]], channel: str = "web"
) -> list[Any]:
    """Order ``#R-n`` captured at ``t``, then (minutes after, system, data) each."""
    keys = {"order_number": f"#R-{n}"}
    out = [event(f"r{n}-0", t, "shopify", keys, stage="captured", channel=channel)]
    for i, (minutes, system, data) in enumerate(steps, 1):
        out.append(event(f"r{n}-{i}", t + timedelta(minutes=minutes), system, keys, **data))
    return out


def wms(stage: str, location: str, **attrs: Any) -> dict[str, Any]:
    return {"stage": stage, "attributes": {"retail.location_id": location, **attrs}}


@pytest.fixture
def shipments(ingest_client: Client) -> datetime:
    t = now() - timedelta(hours=5)
    batch = [
        # released to DC1, shipped from DC1: not rerouted
        *order(1, t, (1, "wms", wms("released", "DC1")), (60, "wms", wms("shipped", "DC1"))),
        # released to DC1, picked and shipped from DC2: rerouted (the location changed)
        *order(
            2,
            t,
            (1, "wms", wms("released", "DC1")),
            (30, "wms", wms("picked", "DC2")),
            (60, "wms", wms("shipped", "DC2")),
        ),
        # an order management system says so: rerouted
        *order(
            3,
            t,
            (1, "wms", wms("released", "DC1")),
            (10, "oms", {"operation": "reroute", "attributes": {"retail.reroute": True}}),
            (60, "carrier", {"stage": "shipped"}),
        ),
        # rerouted but never shipped: not a shipment
        *order(4, t, (1, "wms", wms("released", "DC1")), (30, "wms", wms("picked", "DC3"))),
        # a POS order shipped from its store: counted, not rerouted
        *order(5, t, (60, "wms", wms("shipped", "S1")), channel="pos"),
        # shipped long before the window
        *order(
            6,
            t - timedelta(days=3),
            (1, "wms", wms("released", "DC1")),
            (60, "wms", wms("shipped", "DC2")),
        ),
    ]
    answer = ingest_client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200, answer.content
    tick()
    actions.do_fill_rollups()
    return t


def kpi(api_client: Client, **filters: str) -> dict[str, Any]:
    window = {"since": iso(now() - timedelta(hours=12)), "until": iso(now()), **filters}
    answer = api_client.get("/api/v1/kpis", window)
    assert answer.status_code == 200, answer.content
    return answer.json()["kpis"]["reroute_rate"]  # type: ignore[no-any-return]


def test_counts_shipments_whose_location_changed(api_client: Client, shipments: datetime) -> None:
    assert kpi(api_client) == {"shipments": 4, "rerouted": 2, "rate": 0.5}
    assert kpi(api_client, channel="pos") == {"shipments": 1, "rerouted": 0, "rate": 0.0}
    # the fact is recorded once, at stitch time, with the business time of the change
    moved = Transaction.objects.filter(rerouted_at__isnull=False).order_by("rerouted_at")
    assert [t.rerouted_at - shipments for t in moved] == [
        timedelta(minutes=-3 * 24 * 60 + 60),
        timedelta(minutes=10),
        timedelta(minutes=30),
        timedelta(minutes=30),
    ]
    until = now()
    for since in (until - timedelta(hours=12), until - timedelta(days=4)):
        mine = queries.kpi_values(since, until, at=until)
        twin = bruteforce.kpi_values(since, until, at=until)
        assert not bruteforce.compare(mine, twin)
    assert twin["reroute_rate"] == {"shipments": 5, "rerouted": 3, "rate": 0.6}


def test_a_late_hop_with_the_first_location_still_finds_the_change(
    ingest_client: Client, api_client: Client
) -> None:
    """The hops arrive out of order: the stitcher judges them in business-time order."""
    t = now() - timedelta(hours=3)
    late, early = (
        order(7, t, (60, "wms", wms("shipped", "DC2"))),
        order(7, t, (1, "wms", wms("released", "DC1"))),
    )
    early[1]["id"] = "r7-early"
    for batch in (late, early[1:]):
        answer = ingest_client.post(
            "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
        )
        assert answer.status_code == 200, answer.content
        tick()
    assert kpi(api_client) == {"shipments": 1, "rerouted": 1, "rate": 1.0}
