"""Business impact through the real interfaces: web orders in two currencies stuck before
posting show their value, each currency apart, on the ops dashboard, in the exception
queue's header, and in the Slack, e-mail and Alertmanager webhook messages; an alert about
orders without amounts says nothing about value (docs/alerts.md, "Business impact")."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from observatory.alerts.models import Alert, Channel, Rule
from observatory.transactions.models import Transaction
from tests.alerts.conftest import Receiver
from tests.alerts.helpers import (
    T0,
    capture,
    ev,
    later,
    only_rules,
    posting,
    run,
    send,
    stuck_rule,
    webhook_channel,
)
from tests.dashboards.conftest import make_user
from tests.triage.helpers import reporting

pytestmark = pytest.mark.django_db
HOOK = "/services/T000/B000/IMPACT"


@pytest.fixture
def ops(db: None) -> Client:
    client = Client()
    client.force_login(make_user("olivia", "ops"))
    return client


def capture_eur(number: int, amount: str) -> dict[str, Any]:
    event = capture(number, T0, amount)
    event["data"]["currency"] = "EUR"
    return event


def two_currencies(client: Client) -> None:
    """Three USD orders (10 + 20 + 30) and two EUR orders (1,000.25 + 234.25), never
    posted, while the ERP goes on reporting."""
    send(
        client,
        *[capture(7000 + i, T0, Decimal(10 * (i + 1))) for i in range(3)],
        capture_eur(7100, "1000.25"),
        capture_eur(7101, "234.25"),
        *reporting(later(T0, 70), "erp"),
    )


def test_two_currencies_apart_everywhere(
    ingest_client: Client, receiver: Receiver, allow_private: None, ops: Client
) -> None:
    rule = stuck_rule()
    webhook_channel(receiver.url + HOOK)
    Channel.objects.create(name="am", kind="webhook", webhook_url=receiver.url + "/am")
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    two_currencies(ingest_client)
    evaluated, delivered = run(later(T0, 120))
    assert evaluated.firing == 1 and delivered.sent == 3

    alert = Alert.objects.get(rule=rule)
    assert alert.detail["orders"]["count"] == 5
    assert alert.detail["orders"]["totals"] == [
        {"currency": "EUR", "value": "1234.50"},
        {"currency": "USD", "value": "60.00"},
    ]
    [slack] = receiver.posts(HOOK)
    body = slack.json()
    assert "EUR 1,234.50 + USD 60.00" in body["text"]
    assert "*Value*\\nEUR 1,234.50 + USD 60.00" in json.dumps(body["blocks"])
    [am] = receiver.posts("/am")
    annotations = am.json()["alerts"][0]["annotations"]
    assert annotations["affected_orders"] == "5"
    assert annotations["value"] == "EUR 1234.50 + USD 60.00"
    [msg] = mail.outbox
    assert "Affected orders: 5  (EUR 1,234.50 + USD 60.00)" in msg.body
    assert "EUR 1,234.50 + USD 60.00" in msg.alternatives[0][0]

    page = ops.get("/").content.decode()
    assert re.search(r'data-testid="risk-orders">5<', page)
    assert 'data-testid="risk-EUR">EUR 1,234.50<' in page
    assert 'data-testid="risk-USD">USD 60.00<' in page
    assert 'data-testid="tile-risk">EUR 1,234.50 · USD 60.00<' in page  # the ERP's tile

    queue = ops.get("/exceptions/?sort=value").content.decode()
    assert re.search(r'data-testid="queue-value-EUR"[^>]*>EUR 1,234.50<', queue)
    assert re.search(r'data-testid="queue-value-USD"[^>]*>USD 60.00<', queue)
    rows = re.findall(r'data-testid="row-value">([^<]+)<', queue)
    assert rows == ["EUR 1,000.25", "EUR 234.25", "USD 30.00", "USD 20.00", "USD 10.00"]
    # a filter narrows the total to what is listed
    one = ops.get("/exceptions/?q=%237100").content.decode()
    assert 'data-testid="queue-value-USD"' not in one
    assert re.search(r'data-testid="queue-value-EUR"[^>]*>EUR 1,000.25<', one)


def test_error_rate_alert_states_the_value_of_its_failed_orders_or_none(
    ingest_client: Client,
) -> None:
    rule = Rule.objects.create(
        name="ERP errors", kind="error_rate", severity="critical", system="erp",
        threshold=0.1, window_s=600,
    )  # fmt: skip
    only_rules(rule)
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    # orders without amounts fail to post: the alert counts them, claims no value
    send(
        ingest_client,
        *[
            ev(
                "shopify",
                {"order_number": f"#{7200 + i}", "shopify_order_id": f"9{7200 + i}"},
                T0,
                stage="captured",
                operation="orders/create",
                channel="web",
            )
            for i in range(2)
        ],
        *[posting(7200 + i, later(T0, 10), ok=False) for i in range(2)],
    )
    run(later(T0, 30))
    assert not Transaction.objects.filter(amount__isnull=False).exists()
    alert = Alert.objects.get(rule=rule)
    assert alert.detail["orders"]["count"] == 2 and alert.detail["orders"]["totals"] == []
    assert "2 orders behind the failed hops" in alert.summary
    assert not re.search(r"USD|EUR|\d\.\d\d", alert.summary.split(";")[-1])
    [msg] = mail.outbox
    assert "USD" not in msg.body and "Affected orders: 2" in msg.body


def test_error_rate_alert_with_amounts(ingest_client: Client) -> None:
    rule = Rule.objects.create(
        name="ERP errors", kind="error_rate", severity="critical", system="erp",
        threshold=0.1, window_s=600,
    )  # fmt: skip
    only_rules(rule)
    send(
        ingest_client,
        capture(7300, T0, "15.50"),
        capture_eur(7301, "99.99"),
        posting(7300, later(T0, 10), ok=False),
        {**posting(7301, later(T0, 11), ok=False)},
    )
    run(later(T0, 30), deliver=False)
    alert = Alert.objects.get(rule=rule)
    assert "2 orders, EUR 99.99 + USD 15.50 behind the failed hops" in alert.summary
    assert timedelta(0) <= later(T0, 30) - alert.started_at
