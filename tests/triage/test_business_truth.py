"""Exceptions that match what really happened, case by case: a posting skipped by a later
stage, a fragment merging into an order that was on time, an offline store uploading its
day, history streaming in beside live traffic, and a system going silent with orders
waiting on it. Hops go in through the CloudEvents endpoint; the pipeline runs with the
business clock and the wall clock each case needs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.actions import do_evaluate
from observatory.alerts.models import FIRING, Alert, Notification, Rule
from observatory.lib.clock import now
from observatory.pipeline.wiring import tick as do_pipeline_tick
from observatory.transactions.models import Transaction
from observatory.triage.models import (
    OPEN,
    RESOLVED,
    SILENCE,
    STUCK,
    UNRESOLVED,
    WITHDRAWN,
    Issue,
)
from tests.triage.helpers import T0, contract_policies, ev, reporting, send

S = timedelta(seconds=1)
M = timedelta(minutes=1)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def policies(db: None) -> None:
    contract_policies()


def tick(at: Any, wall: Any = None) -> None:
    """One turn of the pipeline as of business time ``at`` (and wall-clock ``wall``)."""
    if wall is None:
        do_pipeline_tick(clock=lambda: at)
    else:
        do_pipeline_tick(clock=lambda: at, wall=lambda: wall)


def web(number: str, sid: str, at: Any, **data: Any) -> dict[str, Any]:
    return ev(
        "shopify",
        {"order_number": number, "shopify_order_id": sid},
        at,
        stage="captured",
        channel="web",
        **data,
    )


def posted(number: str, so: str, at: Any) -> dict[str, Any]:
    return ev("erp", {"order_number": number, "erp_sales_order": so}, at, stage="posted")


def problems() -> set[tuple[str, str, str]]:
    """(kind, stage or system, state) of every exception but the withdrawn ones."""
    return {(i.kind, i.stage or i.system, i.state) for i in Issue.objects.exclude(state=WITHDRAWN)}


def test_a_shipment_does_not_stand_in_for_a_posting_that_never_happened(
    ingest_client: Client,
) -> None:
    """Goods left, the ERP never heard of the order: for finance the worst case."""
    send(
        ingest_client,
        web("#S1", "901", T0),
        ev(
            "wms",
            {"order_number": "#S1", "shopify_order_id": "901", "shipment_id": "SH-1"},
            T0 + 10 * M,
            stage="shipped",
        ),
        *reporting(T0 + 20 * M, "erp"),
    )
    tick(T0 + 20 * M)
    issue = Issue.objects.get(kind=STUCK, stage="posted")
    assert issue.state == OPEN
    assert "shipped by wms, never posted to the ERP" in issue.summary
    tick(T0 + 2 * 60 * M)
    issue.refresh_from_db()
    assert issue.state == OPEN  # the later stage does not close it


def test_a_fragment_merging_into_an_on_time_order_leaves_no_problem(
    ingest_client: Client,
) -> None:
    """The warehouse's shipment (known by the ERP's number only) and the ERP's posting
    that links that number to the order arrive last: until then the shipment is a
    fragment with a fulfillment deadline of its own, and the order looks unposted."""
    send(
        ingest_client,
        web("#F1", "911", T0),
        ev(
            "wms",
            {"erp_sales_order": "SO-F1", "shipment_id": "SH-F1"},
            T0 + 5 * M,
            stage="shipped",
            channel="web",
        ),
        ev(
            "shopify",
            {"shopify_order_id": "911", "fulfillment_id": "FUL-1"},
            T0 + 5 * M + 10 * S,
            stage="shipped",
            operation="fulfillments/create",
        ),
        *reporting(T0 + 40 * M, "erp", "shopify"),
    )
    tick(T0 + 40 * M)
    # judged on what is known: the fragment's shipment unseen by Shopify, the order unposted
    assert problems() == {("stuck", "fulfillment_synced", OPEN), ("stuck", "posted", OPEN)}
    fragment = Issue.objects.get(stage="fulfillment_synced").transaction_id

    order = Issue.objects.get(stage="posted").transaction_id
    send(ingest_client, posted("#F1", "SO-F1", T0 + 20 * S))  # the link, 40 min late
    tick(T0 + 41 * M)
    # one transaction now (the fragment's or the order's id survives: the lowest)
    merged = Transaction.objects.get(keys__value="#F1")
    assert merged.id in (fragment, order) and merged.keys.filter(value="SH-F1").exists()
    # judged on the merged order's stage times: posted in 20 s, shipped and seen by Shopify
    # ten seconds apart: nothing was ever wrong
    assert problems() == set()
    assert set(Issue.objects.values_list("transaction_id", "state")) == {(merged.id, WITHDRAWN)}


def test_an_offline_store_uploading_its_day_is_not_late(ingest_client: Client) -> None:
    """Store ST9's uplink to Observatory was down all day; its sales still reached the ERP
    in the 15-minute batches. The sales' own telemetry arrives in the evening."""
    sales = [(f"ST9-{i}", T0 + i * 20 * M) for i in range(12)]  # four hours of sales
    batches = []
    for b in range(17):
        boundary = T0 + b * 15 * M
        receipts = [r for r, at in sales if boundary - 15 * M < at <= boundary]
        if receipts:
            batches.append(
                ev(
                    "erp",
                    {"pos_receipt": receipts, "batch_id": f"B-{b}", "store_id": "ST9"},
                    boundary + 70 * S,
                    stage="posted",
                    channel="pos",
                    store_id="ST9",
                )
            )
    # during the day: the ERP's batch postings arrive, the pipeline runs
    for i, batch in enumerate(batches):
        send(ingest_client, batch)
        tick(T0 + (i + 1) * 15 * M + 2 * M)
    assert problems() == set()
    # the evening upload: every sale, hours after it happened
    send(
        ingest_client,
        *[
            ev("pos", {"pos_receipt": r}, at, stage="captured", channel="pos", store_id="ST9")
            for r, at in sales
        ],
        *reporting(T0 + 8 * 60 * M, "erp"),
    )
    tick(T0 + 8 * 60 * M)
    assert problems() == set()
    # every sale is one transaction, captured and posted within the hour
    pos = Transaction.objects.filter(channel="pos", merged_into__isnull=True)
    assert pos.count() == 12
    assert all(t.posted_at - t.captured_at <= 60 * M for t in pos)


def test_history_beside_live_traffic_is_judged_on_business_time(
    ingest_client: Client, api_client: Client
) -> None:
    """A day of history streams in while live orders flow. The history's first orders
    arrive before the ERP's own old hops about them: judging them then would be a false
    alarm. Once the history is in, what was really late is recorded on business time, and
    only what is still wrong now is alerted."""
    live = now() - 40 * S
    day = live - timedelta(days=1)
    send(ingest_client, web("#L1", "801", live), posted("#L1", "SO-L1", live + 10 * S))
    # the history's Shopify hops come first
    history = [("#H1", "701", 20), ("#H2", "702", 300), ("#H3", "703", None)]
    send(
        ingest_client,
        *[web(n, sid, day + i * M) for i, (n, sid, _) in enumerate(history)],
    )
    tick(now(), wall=now())  # as the worker does: business and wall clock now
    assert problems() == set()
    # the ERP's history follows, with other business of that day
    send(
        ingest_client,
        *[
            posted(n, f"SO-{n}", day + i * M + late * S)
            for i, (n, _, late) in enumerate(history)
            if late is not None
        ],
        *reporting(day + 30 * M, "erp"),
    )
    tick(now(), wall=now())
    assert not Issue.objects.filter(kind=STUCK, state__in=UNRESOLVED).exists()
    # the history has settled: the worker a few minutes later
    tick(now(), wall=now() + 5 * M)
    late = Issue.objects.get(kind=STUCK, transaction__keys__value="#H2")
    assert (late.state, late.opened_at, late.resolved_at) == (
        RESOLVED,
        day + 1 * M + 60 * S,
        day + 1 * M + 300 * S,
    )
    never = Issue.objects.get(kind=STUCK, transaction__keys__value="#H3")
    assert never.state == OPEN and never.opened_at == day + 2 * M + 60 * S
    assert not Issue.objects.filter(transaction__keys__value__in=["#H1", "#L1"]).exists()

    # alerts: #H3 is still unposted now, so it is alerted; #H2's hour of lateness ended a
    # day ago, before its data arrived: recorded as found in history, never sent
    Rule.objects.exclude(kind="stuck").update(active=False)
    do_evaluate(clock=now)
    firing = Alert.objects.get(state=FIRING)
    assert firing.detail["orders"]["count"] == 1
    history_alert = Alert.objects.get(found_in_history=True)
    assert history_alert.state == "resolved" and history_alert.detail["orders"] == 1
    assert "found in history" in history_alert.summary
    assert not Notification.objects.filter(event__alert=history_alert).exists()
    listed = {a["id"]: a for a in api_client.get("/api/v1/alerts").json()["items"]}
    assert listed[history_alert.id]["found_in_history"] is True
    assert listed[history_alert.id]["notifications"] == []
    assert listed[firing.id]["found_in_history"] is False


def test_a_system_going_silent_is_one_problem_with_the_orders_waiting_on_it(
    ingest_client: Client,
) -> None:
    start = now()
    send(ingest_client, web("#W0", "600", T0), posted("#W0", "SO-W0", T0 + 20 * S))
    # the ERP stops reporting; Shopify goes on: five orders, worth 10 each
    send(
        ingest_client,
        *[web(f"#W{i}", f"60{i}", T0 + i * M, amount="10.00", currency="USD") for i in range(1, 6)],
    )
    # eleven minutes later nothing has come from the ERP (it stopped reporting)
    tick(T0 + 10 * M, wall=start + 11 * M)
    silence = Issue.objects.get(kind=SILENCE)
    assert silence.system == "erp" and silence.state == OPEN
    assert silence.detail["waiting"] == 5 and silence.detail["value"] == [
        {"currency": "USD", "value": "50.00"}
    ]
    assert silence.opened_at == T0 + 1 * M + 60 * S  # the first deadline it let pass
    assert "erp silent" in silence.summary and "5 orders waiting on it" in silence.summary
    assert not Issue.objects.filter(kind=STUCK).exists()  # not one per order
    # ... and the ERP's silence rule fires with it
    Rule.objects.exclude(kind="silence", system="erp").update(active=False)
    do_evaluate(clock=lambda: T0 + 10 * M)
    alert = Alert.objects.get(rule__kind="silence")
    assert alert.state == FIRING and alert.detail["waiting"] == 5

    # the ERP is back: it posts two of them late, the others never
    send(
        ingest_client,
        posted("#W1", "SO-W1", T0 + 12 * M),
        posted("#W2", "SO-W2", T0 + 12 * M + 5 * S),
        *reporting(T0 + 13 * M, "erp"),
    )
    tick(T0 + 14 * M, wall=now() + 2 * M)
    silence.refresh_from_db()
    assert silence.state == RESOLVED and silence.resolution == "erp reported again"
    stuck = {
        (i.transaction.keys.get(kind="order_number").value, i.state)
        for i in Issue.objects.filter(kind=STUCK)
    }
    assert stuck == {
        ("#W1", RESOLVED),
        ("#W2", RESOLVED),
        ("#W3", OPEN),
        ("#W4", OPEN),
        ("#W5", OPEN),
    }


def test_a_stage_that_came_late_in_history_is_recorded_once_its_hops_are_in(
    ingest_client: Client,
) -> None:
    """History sent today about this morning, as a backfill or an upload sends it: an
    order posted 40 s past its deadline, its hops all received just now. Its lateness is
    known as soon as the posting is here, without waiting for the ERP's maximum delay;
    and the sweeps after the one that stitched it (the transaction untouched since) must
    still find it: the simulator's peak-sale history lost exactly these."""
    morning = now() - timedelta(hours=5)
    send(
        ingest_client,
        web("#P1", "901", morning),
        posted("#P1", "SO-P1", morning + 100 * S),
        web("#P2", "902", morning + M),
        posted("#P2", "SO-P2", morning + M + 20 * S),
        *reporting(morning + 30 * M, "erp"),
    )
    tick(now(), wall=now())
    for later in (M, 20 * M):
        tick(now() + later, wall=now() + later)
        late = Issue.objects.get(kind=STUCK)
        assert late.transaction.keys.filter(value="#P1").exists()
        assert (late.state, late.opened_at, late.resolved_at) == (
            RESOLVED,
            morning + 60 * S,
            morning + 100 * S,
        )
