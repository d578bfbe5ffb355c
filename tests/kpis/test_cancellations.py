"""``cancellation_success`` (docs/kpis.md): orders cancelled in the window, and those the
ERP and the warehouse cancelled too (each where it held the order) that never shipped,
sent as each system reports them, through the real endpoints; against the twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.kpis import actions, bruteforce, queries
from observatory.lib.clock import now
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(n: int, t: datetime, *steps: tuple[int, str, str], channel: str = "web") -> list[Any]:
    """Order ``#C-n`` captured at ``t``, then (minutes after, system, stage) each."""
    keys = {"order_number": f"#C-{n}"}
    out = [event(f"c{n}-0", t, "shopify", keys, stage="captured", channel=channel)]
    for i, (minutes, system, stage) in enumerate(steps, 1):
        out.append(event(f"c{n}-{i}", t + timedelta(minutes=minutes), system, keys, stage=stage))
    return out


@pytest.fixture
def cancellations(ingest_client: Client) -> datetime:
    t = now() - timedelta(hours=5)
    batch = [
        # cancelled everywhere it was held: worked
        *order(
            1,
            t,
            (1, "erp", "posted"),
            (2, "wms", "released"),
            (30, "shopify", "cancelled"),
            (31, "erp", "cancelled"),
            (33, "wms", "cancelled"),
        ),
        # the warehouse never cancelled and it shipped: failed
        *order(
            2,
            t,
            (1, "erp", "posted"),
            (2, "wms", "released"),
            (30, "shopify", "cancelled"),
            (31, "erp", "cancelled"),
            (90, "carrier", "shipped"),
        ),
        # cancelled before the ERP or the warehouse had it: worked
        *order(3, t, (3, "shopify", "cancelled")),
        # the ERP held it and never cancelled: failed
        *order(4, t, (1, "erp", "posted"), (40, "shopify", "cancelled")),
        # a POS order cancelled everywhere: worked, and the channel filter sees it alone
        *order(5, t, (1, "erp", "posted"), (5, "erp", "cancelled"), channel="pos"),
        # cancelled long before the window: not counted
        *order(6, t - timedelta(days=3), (2, "shopify", "cancelled")),
        # never cancelled: not counted
        *order(7, t, (1, "erp", "posted")),
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
    return answer.json()["kpis"]["cancellation_success"]  # type: ignore[no-any-return]


def test_counts_cancellations_that_reached_every_system_that_held_the_order(
    api_client: Client, cancellations: datetime
) -> None:
    assert kpi(api_client) == {"requested": 5, "succeeded": 3, "rate": 0.6}
    assert kpi(api_client, channel="pos") == {"requested": 1, "succeeded": 1, "rate": 1.0}
    assert kpi(api_client, channel="marketplace") == {
        "requested": 0,
        "succeeded": 0,
        "rate": None,
    }
    until = now()
    for since in (until - timedelta(hours=12), until - timedelta(days=4)):
        mine = queries.kpi_values(since, until, at=until)
        twin = bruteforce.kpi_values(since, until, at=until)
        assert not bruteforce.compare(mine, twin)
    assert twin["cancellation_success"]["requested"] == 6
