"""``refund_reconciliation`` (docs/kpis.md): refunds whose settlement is due, and those the
ERP settled within the 24 h SLA, sent as Shopify and the ERP report them; against the twin."""

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


def refund(
    n: int, refunded: datetime, settled_after: timedelta | None, channel: str = "web"
) -> Any:
    keys = {"order_number": f"#R-{n}"}
    out = [
        event(
            f"r{n}-0",
            refunded - timedelta(days=2),
            "shopify",
            keys,
            stage="captured",
            channel=channel,
        ),
        event(f"r{n}-1", refunded - timedelta(days=2, minutes=-1), "erp", keys, stage="posted"),
        event(f"r{n}-2", refunded, "shopify", keys, stage="refunded"),
    ]
    if settled_after is not None:
        out.append(event(f"r{n}-3", refunded + settled_after, "erp", keys, stage="refund_settled"))
    return out


@pytest.fixture
def refunds(ingest_client: Client) -> None:
    t = now()
    batch = [
        *refund(1, t - timedelta(hours=40), timedelta(hours=2)),  # in time
        *refund(2, t - timedelta(hours=40), timedelta(hours=30)),  # late
        *refund(3, t - timedelta(hours=30), None),  # due and never settled
        *refund(4, t - timedelta(hours=1), None),  # not due yet: not judged
        *refund(5, t - timedelta(hours=50), timedelta(hours=23), channel="pos"),  # in time
        *refund(6, t - timedelta(days=9), timedelta(hours=1)),  # before the window
    ]
    answer = ingest_client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200, answer.content
    tick()
    actions.do_fill_rollups()


def kpi(api_client: Client, **filters: str) -> dict[str, Any]:
    window = {"since": iso(now() - timedelta(days=3)), "until": iso(now()), **filters}
    answer = api_client.get("/api/v1/kpis", window)
    assert answer.status_code == 200, answer.content
    return answer.json()["kpis"]["refund_reconciliation"]  # type: ignore[no-any-return]


def test_judges_each_refund_once_due_against_its_deadline(
    api_client: Client, refunds: None
) -> None:
    assert kpi(api_client) == {"refunds": 4, "settled_within_sla": 2, "rate": 0.5}
    assert kpi(api_client, channel="pos") == {"refunds": 1, "settled_within_sla": 1, "rate": 1.0}
    until = now()
    for since in (until - timedelta(days=3), until - timedelta(days=10)):
        mine = queries.kpi_values(since, until, at=until)
        twin = bruteforce.kpi_values(since, until, at=until)
        assert not bruteforce.compare(mine, twin)
    assert twin["refund_reconciliation"]["refunds"] == 5
