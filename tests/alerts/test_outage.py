"""Grouping and business-aware inhibition on an ERP outage, seeded through the real ingest
endpoint (CloudEvents), stitched and swept by the ``stitch`` command, evaluated with the
default rules as shipped: one ERP alert with the stuck orders summarised inside it, not a
message per order, and a resolution once the backlog drains."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.models import Alert, Rule
from tests.alerts.conftest import Receiver
from tests.alerts.helpers import (
    T0,
    capture,
    posting,
    run,
    send,
    webhook_channel,
)

pytestmark = pytest.mark.django_db
BASE = "https://observatory.example.com"
HOOK = "/services/T000/B000/OUTAGE"
ORDERS = 40


def messages(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.posts(HOOK)]


def normal_traffic(client: Client, start: int, at: Any, count: int = 10) -> None:
    events = []
    for i in range(count):
        t = at + timedelta(seconds=10 * i)
        events += [capture(start + i, t), posting(start + i, t + timedelta(seconds=20))]
    send(client, *events)


@pytest.fixture(autouse=True)
def _setup(settings: Any) -> None:
    settings.OBSERVATORY_BASE_URL = BASE
    settings.ALERTS_ALLOW_PRIVATE_URLS = True


def test_erp_outage_is_one_alert_with_the_stuck_orders_inside(
    ingest_client: Client, receiver: Receiver, read_client: Client
) -> None:
    assert Rule.objects.filter(active=True).count() == 5  # the shipped defaults
    webhook_channel(receiver.url + HOOK)

    # business as usual before the outage
    normal_traffic(ingest_client, 100, T0 - timedelta(minutes=20))
    evaluated, _ = run(T0 - timedelta(minutes=15))
    assert evaluated.firing == 0 and messages(receiver) == []
    assert evaluated.rules == 5 and evaluated.unavailable == []  # KPI rules included

    # the ERP answers 503 from T0: every posting fails and is retried with backoff
    events = []
    for i in range(ORDERS):
        t = T0 + timedelta(seconds=5 * i)
        events.append(capture(1000 + i, t, Decimal(25 * (i + 1))))
        events += [
            posting(1000 + i, t + timedelta(seconds=s), ok=False, attempt=n)
            for n, s in enumerate((5, 25, 65))
        ]
    send(ingest_client, *events)

    # evaluations every 15 s through the outage (the last order's deadline, 255 s, is
    # known to be missed once the ERP's maximum delay has passed it)
    at = T0 + timedelta(seconds=120)
    while at <= T0 + timedelta(seconds=330):
        run(at)
        at += timedelta(seconds=15)
    sent = messages(receiver)
    assert len(sent) == 1, [m["text"] for m in sent]
    [firing] = sent
    assert firing["text"].startswith(
        "[FIRING critical] ERP error rate above 5 %: erp error rate 100 %"
    )

    erp = Alert.objects.get(rule__kind="error_rate")
    stuck = Alert.objects.get(rule__kind="stuck")
    assert erp.state == "firing" and stuck.state == "firing"
    assert stuck.inhibited_by_id == erp.id and stuck.notified_at is None
    assert stuck.labels["system"] == "erp" and stuck.labels["stage"] == "posted"
    # the message names the held-back orders, their value and the biggest ones
    text = str(firing["blocks"])
    assert "Held back while this fires" in text
    assert "Web orders stuck before posted" in text
    assert "Top held-back orders by value" in text
    top = stuck.detail["orders"]["top"]
    assert len(top) == 10 and top[0]["label"] == "#1039"  # the largest order first

    # the API shows both, the stuck one held back inside the ERP alert
    answer = read_client.get("/api/v1/alerts?state=firing").json()
    by_rule = {a["rule"]: a for a in answer["items"]}
    assert by_rule["Web orders stuck before posted"]["inhibited_by"] == erp.id
    assert by_rule["ERP error rate above 5 %"]["notifications"][0]["status"] == "sent"
    peak = by_rule["Web orders stuck before posted"]["detail"]["orders"]["count"]
    assert peak == ORDERS

    # the ERP is back at T0+400 s: every order posts on its next retry
    send(
        ingest_client,
        *[posting(1000 + i, T0 + timedelta(seconds=400 + i), attempt=3) for i in range(ORDERS)],
    )
    at = T0 + timedelta(seconds=450)
    while at <= T0 + timedelta(seconds=900):
        run(at)
        at += timedelta(seconds=15)

    stuck.refresh_from_db()
    erp.refresh_from_db()
    assert stuck.state == "resolved" and erp.state == "resolved"
    sent = messages(receiver)
    assert len(sent) == 2, [m["text"] for m in sent]  # at most 3 per incident: here 2
    resolved = sent[1]
    assert resolved["text"].startswith("[RESOLVED critical] ERP error rate above 5 %")
    assert "_resolved_" in str(resolved["blocks"])  # the held-back stuck orders drained
    assert Alert.objects.filter(rule__kind="stuck").count() == 1  # one, not one per order


def test_an_orders_backlog_outliving_the_erp_alert_comes_back_on_its_own(
    ingest_client: Client, receiver: Receiver
) -> None:
    webhook_channel(receiver.url + HOOK)
    normal_traffic(ingest_client, 100, T0 - timedelta(minutes=20))
    events = []
    for i in range(30):
        t = T0 + timedelta(seconds=2 * i)
        events.append(capture(2000 + i, t))
        events.append(posting(2000 + i, t + timedelta(seconds=5), ok=False))
    send(ingest_client, *events)
    # every deadline (60 to 118 s) known to be missed once the ERP's maximum delay passed
    run(T0 + timedelta(seconds=180))
    assert len(messages(receiver)) == 1

    # the ERP answers again (other traffic posts fine) but these 30 orders stay stuck
    normal_traffic(ingest_client, 300, T0 + timedelta(seconds=200), count=30)
    at = T0 + timedelta(seconds=520)
    run(at)
    run(at + timedelta(seconds=60))
    erp = Alert.objects.filter(rule__kind="error_rate").latest("id")
    assert erp.state == "resolved"
    texts = [m["text"] for m in messages(receiver)]
    assert len(texts) == 3
    assert texts[1].startswith("[RESOLVED critical] ERP error rate")
    assert texts[2].startswith("[FIRING critical] Web orders stuck before posted: 30 web orders")
    stuck = Alert.objects.get(rule__kind="stuck")
    assert stuck.inhibited_by_id is None and stuck.notified_at is not None
    assert "still true: now reported on its own" in str(messages(receiver)[1]["blocks"])


def test_a_silent_erp_holds_back_its_stuck_orders(
    ingest_client: Client, receiver: Receiver
) -> None:
    """The ERP sends nothing at all while Shopify keeps sending: the silence rule fires
    and the stuck orders go inside it."""
    webhook_channel(receiver.url + HOOK)
    normal_traffic(ingest_client, 100, T0 - timedelta(minutes=30))
    send(ingest_client, *[capture(3000 + i, T0 + timedelta(seconds=30 * i)) for i in range(30)])
    rule = Rule.objects.get(kind="silence")
    rule.window_s = 300  # quicker than the shipped 10 minutes, same behaviour
    rule.save()
    # first minutes: the ERP's last hop is recent enough, the orders are held back once it fires
    run(T0 + timedelta(seconds=1000))
    texts = [m["text"] for m in messages(receiver)]
    assert len(texts) == 1, texts
    assert texts[0].startswith("[FIRING critical] ERP silent while Shopify sends: no hop from erp")
    stuck = Alert.objects.get(rule__kind="stuck")
    silent = Alert.objects.get(rule__kind="silence")
    assert stuck.inhibited_by_id == silent.id
    assert "while shopify sent" in silent.summary


def test_erp_fails_first_then_its_stuck_orders_join_it_three_messages_in_all(
    ingest_client: Client, receiver: Receiver
) -> None:
    """As in the simulator's erp-outage: the error rate fires before any order is past
    its SLA; the stuck orders then join it in one update; the resolution closes it."""
    webhook_channel(receiver.url + HOOK)
    normal_traffic(ingest_client, 100, T0 - timedelta(minutes=20))
    events = []
    for i in range(25):
        t = T0 + timedelta(seconds=i)
        events.append(capture(4000 + i, t, Decimal(10 + i)))
        events.append(posting(4000 + i, t + timedelta(seconds=1), ok=False))
    send(ingest_client, *events)
    run(T0 + timedelta(seconds=30))  # 25 failures, nothing past its SLA yet
    texts = [m["text"] for m in messages(receiver)]
    assert len(texts) == 1 and texts[0].startswith("[FIRING critical] ERP error rate")
    assert "held back" not in texts[0]
    # the orders' deadlines (60 to 84 s) are known to be missed once the ERP's maximum
    # delay has passed them: it has reported nothing past them
    for s in (45, 60, 75, 90, 105, 120, 135, 150):
        run(T0 + timedelta(seconds=s))
    texts = [m["text"] for m in messages(receiver)]
    assert len(texts) == 2
    assert texts[1].startswith("[UPDATE critical] ERP error rate above 5 %")
    assert "held back: 15 web orders stuck before posted (USD 255.00)" in texts[1]
    assert "Top held-back orders by value" in str(messages(receiver)[1]["blocks"])

    send(
        ingest_client,
        *[posting(4000 + i, T0 + timedelta(seconds=120 + i), attempt=1) for i in range(25)],
    )
    for s in range(135, 600, 15):
        run(T0 + timedelta(seconds=s))
    texts = [m["text"] for m in messages(receiver)]
    assert len(texts) == 3, texts
    assert texts[2].startswith("[RESOLVED critical] ERP error rate above 5 %: back to normal")
