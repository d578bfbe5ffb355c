"""``value_at_risk`` (docs/kpis.md): the amount of the orders with an open exception, per
currency and never across currencies, per system and stage, through the real endpoints;
and an alert rule on one currency's figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.access.actions import do_create_api_token
from observatory.alerts import actions as alert_actions
from observatory.alerts.models import Rule
from observatory.kpis import actions, bruteforce, queries
from observatory.lib.clock import now
from observatory.triage.models import RESOLVED, Issue
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def captured(n: int, at: datetime, amount: str, currency: str, channel: str = "web") -> Any:
    """An order Shopify captured and the ERP never posted: stuck, waiting on the ERP."""
    return event(
        f"var-{n}",
        at,
        "shopify",
        {"order_number": f"#V-{n}"},
        stage="captured",
        channel=channel,
        amount=amount,
        currency=currency,
    )


@pytest.fixture
def stuck_orders(ingest_client: Client) -> list[Issue]:
    t = now() - timedelta(hours=3)
    batch = [
        captured(1, t, "100.25", "USD"),
        captured(2, t + timedelta(minutes=1), "50.50", "USD"),
        captured(3, t + timedelta(minutes=2), "80.00", "EUR"),
        captured(4, t + timedelta(minutes=3), "12.00", "USD", channel="pos"),
        # posted in time: no exception, not at risk
        captured(5, t + timedelta(minutes=4), "999.00", "USD"),
        event(
            "var-5-posted",
            t + timedelta(minutes=4, seconds=20),
            "erp",
            {"order_number": "#V-5"},
            stage="posted",
        ),
    ]
    answer = ingest_client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200, answer.content
    tick()
    actions.do_fill_rollups()
    issues = list(Issue.objects.filter(kind="stuck").select_related("transaction"))
    assert {i.transaction.amount for i in issues if i.transaction} >= {
        _d("100.25"),
        _d("50.50"),
        _d("80.00"),
    }
    return issues


def _d(text: str) -> Decimal:
    return Decimal(text)


def kpis(api_client: Client, **filters: str) -> dict[str, Any]:
    window = {"since": iso(now() - timedelta(hours=6)), "until": iso(now()), **filters}
    answer = api_client.get("/api/v1/kpis", window)
    assert answer.status_code == 200, answer.content
    return answer.json()["kpis"]["value_at_risk"]  # type: ignore[no-any-return]


def test_sums_each_currency_apart_and_each_order_once(
    api_client: Client, stuck_orders: list[Issue]
) -> None:
    at_risk = kpis(api_client)
    assert at_risk["orders"] == 4
    assert at_risk["by_currency"] == {"EUR": 80.0, "USD": 162.75}
    assert at_risk["by_system"]["erp"] == {"EUR": 80.0, "USD": 162.75}
    assert at_risk["by_stage"]["posted"] == {"EUR": 80.0, "USD": 162.75}
    # the same from the brute-force twin
    until = now()
    mine = queries.kpi_values(until - timedelta(hours=6), until, at=until)
    twin = bruteforce.kpi_values(until - timedelta(hours=6), until, at=until)
    assert not bruteforce.compare(mine, twin)
    assert twin["value_at_risk"] == at_risk

    assert kpis(api_client, channel="pos") == {
        "orders": 1,
        "by_currency": {"USD": 12.0},
        "by_system": {"erp": {"USD": 12.0}},
        "by_stage": {"posted": {"USD": 12.0}},
    }


def test_a_resolved_exception_is_no_longer_at_risk(
    api_client: Client, stuck_orders: list[Issue]
) -> None:
    euro = next(i for i in stuck_orders if i.transaction and i.transaction.currency == "EUR")
    Issue.objects.filter(pk=euro.pk).update(state=RESOLVED, resolved_at=now())
    at_risk = kpis(api_client)
    assert at_risk["orders"] == 3
    assert at_risk["by_currency"] == {"USD": 162.75}


def test_a_rule_watches_one_currency(stuck_orders: list[Issue]) -> None:
    _, plain = do_create_api_token("risk-writer", "write")
    api_client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    rule = {
        "name": "dollars waiting",
        "kind": "kpi",
        "severity": "warning",
        "kpi": "value_at_risk",
        "field": "by_currency.USD",
        "op": ">",
        "threshold": 150,
        "window_s": 21600,
    }
    answer = api_client.post("/api/v1/alert-rules", rule, content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    bad = api_client.post(
        "/api/v1/alert-rules",
        {**rule, "name": "every currency at once", "field": "by_currency"},
        content_type="application/json",
    )
    assert bad.status_code == 422, bad.content
    assert "field" in bad.content.decode() and "by_currency.<currency>" in bad.content.decode()

    alert_actions.do_evaluate()
    fired = Rule.objects.get(name="dollars waiting").alerts.filter(state="firing")
    assert fired.exists()
    assert "162.75" in fired.first().summary  # type: ignore[union-attr]
