"""Every table has a lifetime (docs/retention.md): hops and what was written with them go
after ``RETENTION_DAYS["hops"]``, transactions with their timelines and exceptions after
``["transactions"]`` (outliving their hops), alert history after ``["alerts"]``, rollups by
resolution. Data goes in through the CloudEvents endpoint and the pipeline; the prune runs
as the worker runs it (``pipeline.wiring.prune``) and as ``manage.py prune``."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from observatory.alerts.models import (
    EV_FIRING,
    FIRING,
    N_PENDING,
    N_SENT,
    RESOLVED,
    Alert,
    AlertEvent,
    DeliveryAttempt,
    Notification,
    Rule,
)
from observatory.hops.models import (
    DuplicateDelivery,
    Hop,
    HopKey,
    Receipt,
    Stitched,
    Waiting,
)
from observatory.kpis.actions import do_fill_rollups
from observatory.kpis.models import HOUR, MINUTE, HopRollup, IssueSeen, OpenStage, OrderRollup
from observatory.lib import partitions
from observatory.lib.clock import now
from observatory.pipeline import wiring
from observatory.transactions.models import (
    StageReached,
    Transaction,
    TransactionHop,
    TransactionKey,
)
from observatory.triage.models import STUCK, Issue
from tests.alerts.helpers import webhook_channel
from tests.dashboards.conftest import make_user
from tests.pipeline import tick
from tests.triage.helpers import contract_policies, ev, send

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def prune(at: datetime) -> Counter[str]:
    deleted: Counter[str] = Counter()
    for table, n in wiring.prune(at=at):
        deleted[table] += n
    return deleted


def counts(*models: Any) -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in models}


HOP_ROWS = (Hop, HopKey, Receipt, Stitched, DuplicateDelivery, Waiting, TransactionHop)
KEPT_LONGER = (Transaction, TransactionKey, StageReached, Issue)


@pytest.fixture
def history(ingest_client: Client) -> dict[str, Any]:
    """Two orders a few hours old: one posted, one never posted (a stuck exception), one
    event delivered twice; stitched, swept and rolled up; and an alert that fired, was
    notified and resolved, beside one whose notification is still waiting to be sent."""
    contract_policies()
    t0 = now().replace(microsecond=0) - timedelta(hours=6)
    captured = ev("shopify", {"order_number": "#R1", "shopify_order_id": "91"}, t0,
                  stage="captured", channel="web")  # fmt: skip
    send(
        ingest_client,
        captured,
        ev("erp", {"order_number": "#R1", "erp_sales_order": "SO-1"}, t0 + 20 * timedelta(
            seconds=1), stage="posted"),
        ev("shopify", {"order_number": "#R2", "shopify_order_id": "92"}, t0,
           stage="captured", channel="web"),
    )  # fmt: skip
    send(ingest_client, captured)  # delivered again
    tick()
    do_fill_rollups()
    assert Issue.objects.filter(kind=STUCK, transaction__keys__value="#R2").exists()
    rule = Rule.objects.create(name="retention", kind="stuck", stage="posted")
    channel = webhook_channel("https://hooks.slack.test/T0/B0/x")
    t = now()
    old = Alert.objects.create(
        rule=rule, fingerprint="old", state=RESOLVED, started_at=t - 2 * DAY,
        fired_at=t - 2 * DAY, resolved_at=t - DAY, last_true_at=t - DAY, last_eval_at=t,
    )  # fmt: skip
    event = AlertEvent.objects.create(alert=old, kind=EV_FIRING, at=t - 2 * DAY)
    sent = Notification.objects.create(
        event=event, alert=old, channel=channel, status=N_SENT, next_attempt_at=t - 2 * DAY,
        created_at=t - 2 * DAY, sent_at=t - 2 * DAY,
    )  # fmt: skip
    DeliveryAttempt.objects.create(notification=sent, at=t - 2 * DAY, ok=True, status_code=200)
    firing = Alert.objects.create(
        rule=rule, fingerprint="firing", state=FIRING, started_at=t - DAY, fired_at=t - DAY,
        last_true_at=t, last_eval_at=t,
    )  # fmt: skip
    waiting = Notification.objects.create(
        event=AlertEvent.objects.create(alert=firing, kind=EV_FIRING, at=t - DAY),
        alert=firing, channel=channel, status=N_PENDING, next_attempt_at=t, created_at=t - DAY,
    )  # fmt: skip
    return {"old": old, "firing": firing, "waiting": waiting}


def test_the_defaults_are_the_documented_ones(settings: Any) -> None:
    assert settings.RETENTION_DAYS == {
        "hops": 90,
        "transactions": 400,
        "alerts": 90,
        "minute_rollups": 14,
        "hour_rollups": 400,
    }


def test_nothing_goes_before_its_time(history: dict[str, Any]) -> None:
    before = counts(*HOP_ROWS, *KEPT_LONGER, OrderRollup, HopRollup, Alert, Notification)
    assert before["Hop"] == 4 - 1 and before["DuplicateDelivery"] == 1
    assert prune(now() + 13 * DAY) == Counter()
    assert counts(*HOP_ROWS, *KEPT_LONGER, OrderRollup, HopRollup, Alert, Notification) == before


def test_hops_go_after_90_days_and_the_timelines_outlive_them(
    history: dict[str, Any], api_client: Client, settings: Any
) -> None:
    settings.PRUNE_CHUNK = 2  # several chunks per table
    kept = counts(*KEPT_LONGER)
    assert all(kept.values())
    minutes = OrderRollup.objects.filter(resolution=MINUTE).count()
    hours = OrderRollup.objects.filter(resolution=HOUR).count()
    assert minutes and hours

    deleted = prune(now() + 91 * DAY)

    assert counts(*HOP_ROWS) == {c.__name__: 0 for c in HOP_ROWS}
    assert counts(*KEPT_LONGER) == kept
    assert deleted[Hop._meta.db_table] == 3
    assert deleted[TransactionHop._meta.db_table] == 3  # one link per hop
    # the order is still found by its number, its timeline whole, its hops gone
    answer = api_client.get("/api/v1/orders/%23R1").json()
    assert [s["stage"] for s in answer["stages"]][:2] == ["captured", "posted"]
    page = Client()
    page.force_login(make_user("olivia", "ops"))
    shown = page.get(f"/orders/{answer['id']}/")
    assert shown.status_code == 200 and b"#R1" in shown.content
    assert b"have been removed by retention" in shown.content
    # minute rollups are kept 14 days, hour ones 400
    assert OrderRollup.objects.filter(resolution=MINUTE).count() == 0
    assert OrderRollup.objects.filter(resolution=HOUR).count() == hours
    # alert history goes after 90 days; an alert still firing, and a notification not sent
    # yet with what it needs, stay
    old, firing, waiting = history["old"], history["firing"], history["waiting"]
    assert not Alert.objects.filter(pk=old.pk).exists()
    assert DeliveryAttempt.objects.count() == 0
    assert list(Notification.objects.values_list("pk", flat=True)) == [waiting.pk]
    assert Alert.objects.filter(pk=firing.pk).exists()


def test_transactions_and_their_exceptions_go_after_400_days(history: dict[str, Any]) -> None:
    assert IssueSeen.objects.exists() and OpenStage.objects.exists()
    prune(now() + 401 * DAY)
    assert counts(*KEPT_LONGER, OrderRollup, HopRollup, IssueSeen, OpenStage) == {
        name: 0
        for name in (
            "Transaction", "TransactionKey", "StageReached", "Issue", "OrderRollup",
            "HopRollup", "IssueSeen", "OpenStage",
        )
    }  # fmt: skip


def test_a_span_sent_again_is_a_duplicate_across_day_partitions(
    ingest_client: Client,
) -> None:
    """Idempotency does not end at a partition's edge: the hop stored yesterday (moved to
    yesterday's partition on PostgreSQL) is still known when its event comes again."""
    event = ev("erp", {"order_number": "#D1"}, now() - DAY, stage="posted")
    send(ingest_client, event)
    hop = Hop.objects.get()
    if partitions.supported():
        yesterday = partitions.day_base(now().date() - DAY) + 7
        with connection.cursor() as cur:
            for table, column in (
                ("hops_hop", "id"),
                ("hops_hopkey", "hop_id"),
                ("hops_receipt", "hop_id"),
                ("hops_waiting", "hop_id"),
            ):
                cur.execute(f"UPDATE {table} SET {column} = %s WHERE {column} = %s",
                            [yesterday, hop.id])  # fmt: skip
            cur.execute("SELECT tableoid::regclass::text FROM hops_hop")
            assert cur.fetchone()[0] == partitions.name("hops_hop", now().date() - DAY)
    answer = send(ingest_client, event)
    assert len(answer["duplicates"]) == 1 and answer["accepted"] == []
    assert Hop.objects.count() == 1 and DuplicateDelivery.objects.count() == 1


def test_partitions_are_made_ahead_and_dropped_whole(
    history: dict[str, Any], settings: Any
) -> None:
    if not partitions.supported():
        assert partitions.partitions("hops_hop") == []
        return
    at = now() + 91 * DAY
    deleted = prune(at)
    names = {p.name for p in partitions.partitions("hops_hop")}
    ahead = settings.HOP_PARTITIONS_AHEAD_DAYS
    assert {partitions.name("hops_hop", (at + d * DAY).date()) for d in range(ahead + 1)} <= names
    assert partitions.name("hops_hop", now().date()) not in names  # dropped whole
    assert deleted["hops_hop"] == 3 and deleted["hops_hopkey"] > 0


def test_the_command_prunes_in_chunks_and_says_what_went(
    history: dict[str, Any], settings: Any
) -> None:
    settings.RETENTION_DAYS = dict.fromkeys(settings.RETENTION_DAYS, 0)
    settings.PRUNE_CHUNK = 1
    out = StringIO()
    call_command("prune", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("retention: hops 0 days")
    assert [line for line in lines if line.startswith("  transactions_transaction:")] == [
        "  transactions_transaction: 1",
        "  transactions_transaction: 2",
    ]  # chunk by chunk
    assert lines[-1].startswith("pruned ")
    assert "hops_hop 3" in lines[-1] and "transactions_transaction 2" in lines[-1]
    assert Hop.objects.count() == Transaction.objects.count() == 0
    assert Notification.objects.filter(status=N_PENDING).count() == 1
    out = StringIO()
    call_command("prune", stdout=out)
    assert out.getvalue().splitlines()[-1] == "nothing past its retention"
