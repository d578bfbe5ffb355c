"""The sweep through the real interfaces: CloudEvents in, ``manage.py stitch``, exceptions.

Every story injects the business clock (``stitch --now``) so that SLAs are judged on
business time whatever the wall clock says.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.pipeline.tasks import tick as pipeline_tick
from observatory.transactions.actions import do_stitch
from observatory.transactions.models import Conflict, TransactionKey
from observatory.triage.actions import do_sweep
from observatory.triage.models import (
    CONFLICT,
    DUPLICATE,
    FAILED_HOP,
    OPEN,
    RESOLVED,
    STUCK,
    WITHDRAWN,
    Issue,
    OwnerRoute,
)
from tests.triage.helpers import T0, contract_policies, ev, order_events, reporting, send, stitch

S = timedelta(seconds=1)
DAY = timedelta(days=1)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def policies(db: None) -> None:
    contract_policies()


def captured(number: str, at: object, channel: str = "web", **keys: str) -> dict:
    return ev(
        "shopify",
        {"order_number": number, **keys},
        at,  # type: ignore[arg-type]
        stage="captured",
        operation="orders/create",
        channel=channel,
    )


def stuck(stage: str) -> Issue:
    return Issue.objects.get(kind=STUCK, stage=stage)


def test_web_order_stuck_once_the_erp_has_reported_past_its_deadline_then_closed_when_posted(
    ingest_client: Client,
) -> None:
    send(ingest_client, captured("#1001", T0, shopify_order_id="91001"), *reporting(T0, "erp"))
    assert stitch(T0 + 30 * S) == (
        "stitched 2 hops: 2 transactions created, 2 touched, 0 merged; 0 stuck opened, 0 closed"
    )
    # 60 s have passed, but the ERP has reported nothing past the deadline yet: its posting
    # may be on its way (late telemetry is not a late order)
    assert stitch(T0 + 61 * S).endswith("0 stuck opened, 0 closed")
    assert not Issue.objects.exists()

    # the ERP reports later business: the deadline is knowable, and it was missed
    send(ingest_client, *reporting(T0 + 70 * S, "erp"))
    assert stitch(T0 + 71 * S).endswith("1 stuck opened, 0 closed")
    issue = stuck("posted")
    assert issue.state == OPEN
    assert issue.system == "erp" and issue.owner == "finance-systems"
    assert issue.event_at == issue.opened_at == T0 + 60 * S  # ages count from the deadline
    assert issue.detected_at is not None and issue.detected_at > T0 + DAY
    assert "order_number=#1001" in issue.summary and "within 1 min of captured" in issue.summary
    assert issue.transaction == TransactionKey.objects.get(value="#1001").transaction

    # sweeping again opens nothing new
    assert stitch(T0 + 120 * S).endswith("0 stuck opened, 0 closed")
    assert Issue.objects.count() == 1

    send(ingest_client, order_events("#1001", T0 + 70 * S)[1])
    # the posting joined the order: no transaction created, one touched
    assert stitch(T0 + 130 * S) == (
        "stitched 1 hop: 0 transactions created, 1 touched, 0 merged; 0 stuck opened, 1 closed"
    )
    issue.refresh_from_db()
    assert issue.state == RESOLVED
    assert issue.resolved_by == "system" and issue.resolution == "posted reached"
    assert issue.resolved_at == T0 + 90 * S  # when it was posted, in business time


def test_without_news_from_the_erp_a_deadline_is_judged_after_its_maximum_delay(
    ingest_client: Client,
) -> None:
    send(ingest_client, captured("#1011", T0), *reporting(T0, "erp"))
    assert stitch(T0 + 119 * S).endswith("0 stuck opened, 0 closed")
    # deadline 60 s + the ERP's maximum telemetry delay (the 60 s floor)
    assert stitch(T0 + 121 * S).endswith("1 stuck opened, 0 closed")


def test_a_posting_that_came_in_time_withdraws_the_exception(ingest_client: Client) -> None:
    """The posting happened at 50 s; its telemetry arrived after the sweep judged."""
    send(ingest_client, captured("#1012", T0), *reporting(T0 + 70 * S, "erp"))
    assert stitch(T0 + 71 * S).endswith("1 stuck opened, 0 closed")
    send(ingest_client, order_events("#1012", T0 + 30 * S)[1])
    stitch(T0 + 300 * S)
    issue = stuck("posted")
    assert issue.state == WITHDRAWN
    assert issue.resolution == "posted reached in time (its telemetry came late)"
    # not asked again
    assert stitch(T0 + 400 * S).endswith("0 stuck opened, 0 closed")


def test_a_pos_sale_has_an_hour(ingest_client: Client) -> None:
    send(ingest_client, captured("#P1", T0, channel="pos"), *reporting(T0 + 3700 * S, "erp"))
    stitch(T0 + 61 * S)
    assert not Issue.objects.exists()
    assert stitch(T0 + 3601 * S).endswith("1 stuck opened, 0 closed")
    assert stuck("posted").detail["policy"] == "POS sale captured -> posted"


def test_a_flow_of_days_carrier_delivery(ingest_client: Client) -> None:
    send(
        ingest_client,
        ev("wms", {"order_number": "#2001", "shipment_id": "SH-1"}, T0, stage="shipped"),
        *reporting(T0 + 4 * DAY, "shopify", "carrier"),
    )
    stitch(T0 + 2 * DAY)
    assert not Issue.objects.filter(stage="delivered").exists()
    # (Shopify has not heard of the shipment either: that one is 15 minutes)
    assert stuck("fulfillment_synced").owner == "ecommerce"

    stitch(T0 + 3 * DAY + S)
    late = stuck("delivered")
    assert (late.system, late.owner, late.state) == ("carrier", "logistics", OPEN)

    send(
        ingest_client,
        ev("carrier", {"shipment_id": "SH-1"}, T0 + 3 * DAY + 2 * 3600 * S, stage="delivered"),
    )
    stitch(T0 + 3 * DAY + 3 * 3600 * S)
    late.refresh_from_db()
    assert late.state == RESOLVED and late.resolution == "delivered reached"


def test_cancelling_closes_stuck(ingest_client: Client) -> None:
    send(ingest_client, captured("#1002", T0), *reporting(T0 + 80 * S, "erp"))
    stitch(T0 + 90 * S)
    send(ingest_client, ev("shopify", {"order_number": "#1002"}, T0 + 100 * S, stage="cancelled"))
    assert stitch(T0 + 101 * S).endswith("0 stuck opened, 1 closed")
    assert stuck("posted").resolution == "the order was cancelled"


def test_owner_routing_is_data(ingest_client: Client) -> None:
    OwnerRoute.objects.filter(system="erp").update(team="erp-oncall")
    send(ingest_client, captured("#1003", T0), *reporting(T0 + 70 * S, "erp"))
    stitch(T0 + 71 * S)
    assert stuck("posted").owner == "erp-oncall"
    OwnerRoute.objects.filter(system="*").update(team="catch-all")
    send(
        ingest_client,
        ev("tax", {"order_number": "#1003"}, T0, operation="quote", outcome="error"),
    )
    stitch(T0 + 72 * S)
    assert Issue.objects.get(kind=FAILED_HOP).owner == "catch-all"


def _erp_post(at: object, outcome: str, attempt: int = 0, error: str = "") -> dict:
    data = {"retry_attempt": attempt}
    if error:
        data["error"] = error
    return ev(
        "erp",
        {"order_number": "#1010"},
        at,  # type: ignore[arg-type]
        operation="post_sales_order",
        outcome=outcome,
        stage="posted" if outcome == "ok" else "",
        **data,
    )


def test_failed_hop_opens_once_per_operation_and_closes_on_a_later_success(
    ingest_client: Client,
) -> None:
    send(
        ingest_client,
        captured("#1010", T0),
        _erp_post(T0 + 5 * S, "error", 0, "ERP answered 503"),
        _erp_post(T0 + 15 * S, "error", 1, "ERP answered 503 again"),
    )
    line = stitch(T0 + 16 * S)
    assert line.endswith("; 1 failed hop opened"), line
    issue = Issue.objects.get(kind=FAILED_HOP)
    assert (issue.system, issue.operation, issue.owner) == (
        "erp",
        "post_sales_order",
        "finance-systems",
    )
    assert issue.detail["failures"] == 2
    assert issue.detail["last_error"] == "ERP answered 503 again"
    assert issue.event_at == T0 + 15 * S
    assert "(2 times)" in issue.summary

    # a third failure joins the same exception; re-running changes nothing
    send(ingest_client, _erp_post(T0 + 25 * S, "error", 2, "timeout"))
    stitch(T0 + 26 * S)
    stitch(T0 + 27 * S)
    issue.refresh_from_db()
    assert Issue.objects.filter(kind=FAILED_HOP).count() == 1
    assert issue.detail["failures"] == 3 and issue.event_at == T0 + 25 * S

    send(ingest_client, _erp_post(T0 + 35 * S, "ok", 3))
    assert "1 failed hop closed" in stitch(T0 + 40 * S)
    issue.refresh_from_db()
    assert issue.state == RESOLVED and issue.resolution == "a later attempt succeeded"

    # failing again later is a new exception
    send(ingest_client, _erp_post(T0 + 50 * S, "error", 0, "ERP down"))
    stitch(T0 + 51 * S)
    assert Issue.objects.filter(kind=FAILED_HOP, state=OPEN).count() == 1


def test_a_failure_that_arrives_after_the_success_closes_at_once(ingest_client: Client) -> None:
    send(ingest_client, captured("#1010", T0), _erp_post(T0 + 35 * S, "ok"))
    stitch(T0 + 40 * S)
    send(ingest_client, _erp_post(T0 + 5 * S, "error", 0, "late report"))
    stitch(T0 + 41 * S)
    assert Issue.objects.get(kind=FAILED_HOP).state == RESOLVED


def test_posted_to_the_erp_twice_is_a_duplicate(ingest_client: Client) -> None:
    first, post = order_events("#1001", T0)
    again = ev(
        "erp",
        {"order_number": "#1001", "erp_sales_order": "SO-99"},
        T0 + 40 * S,
        stage="posted",
        operation="post_sales_order",
    )
    send(ingest_client, first, post, again)
    line = stitch(T0 + 50 * S)
    assert line.endswith("; 1 duplicate opened"), line
    dup = Issue.objects.get(kind=DUPLICATE)
    assert dup.detail["duplicate"] == "posted_twice"
    assert {dup.detail["value"], dup.detail["existing_value"]} == {"SO-1001", "SO-99"}
    assert "posted to the ERP twice" in dup.summary
    assert dup.owner == "finance-systems"
    assert Conflict.objects.get().triaged_at is not None
    stitch(T0 + 60 * S)
    assert Issue.objects.filter(kind__in=[DUPLICATE, CONFLICT]).count() == 1


def test_captured_twice_is_a_duplicate(ingest_client: Client) -> None:
    send(
        ingest_client,
        captured("#3001", T0, channel="marketplace", marketplace_order_id="MP-1"),
        captured("#3001", T0 + 5 * S, channel="marketplace", marketplace_order_id="MP-2"),
    )
    stitch(T0 + 10 * S)
    dup = Issue.objects.get(kind=DUPLICATE)
    assert dup.detail == {
        "duplicate": "captured_twice",
        "kind": "marketplace_order_id",
        "values": ["MP-1", "MP-2"],
    }
    assert "captured twice" in dup.summary
    stitch(T0 + 20 * S)
    assert Issue.objects.filter(kind=DUPLICATE).count() == 1


def test_a_conflict_names_both_sides(ingest_client: Client) -> None:
    send(
        ingest_client,
        captured("#1004", T0, shopify_order_id="555"),
        ev(
            "middleware",
            {"shopify_order_id": "555", "order_number": "#1005"},
            T0 + 5 * S,
            operation="validate",
        ),
    )
    line = stitch(T0 + 10 * S)
    assert line.endswith("; 1 conflict opened"), line
    issue = Issue.objects.get(kind=CONFLICT)
    assert issue.detail["kind"] == "order_number"
    assert {issue.detail["value"], issue.detail["existing_value"]} == {"#1004", "#1005"}
    assert "#1004" in issue.summary and "#1005" in issue.summary
    assert issue.owner == "integration"  # middleware
    stitch(T0 + 20 * S)
    assert Issue.objects.filter(kind=CONFLICT).count() == 1


def test_exceptions_follow_a_merge(ingest_client: Client) -> None:
    send(ingest_client, captured("#1006", T0))
    send(
        ingest_client,
        ev(
            "middleware",
            {"correlation_id": "c-77"},
            T0 + 5 * S,
            operation="enrich",
            outcome="error",
        ),
    )
    stitch(T0 + 6 * S)
    issue = Issue.objects.get(kind=FAILED_HOP)
    before = issue.transaction_id
    # a later hop says both are one order
    send(
        ingest_client,
        ev(
            "middleware",
            {"correlation_id": "c-77", "order_number": "#1006"},
            T0 + 7 * S,
            operation="link",
        ),
    )
    stitch(T0 + 8 * S)
    live = TransactionKey.objects.get(value="#1006").transaction
    assert live.merged_into_id is None
    issue.refresh_from_db()
    assert issue.transaction_id == live.id
    assert issue.state == OPEN
    assert before != live.id or TransactionKey.objects.get(value="c-77").transaction_id == live.id


def test_the_celery_task_runs_the_pipeline(ingest_client: Client) -> None:
    send(ingest_client, ev("erp", {"order_number": "#1"}, T0, operation="x", outcome="error"))
    pipeline_tick()
    assert Issue.objects.filter(kind=FAILED_HOP).count() == 1


def test_the_sweep_is_set_based(ingest_client: Client) -> None:
    """The same number of queries whether 3 or 24 orders are stuck and failing."""
    counts = []
    # (the first round warms up: afterwards there are open stuck exceptions to check)
    for start, orders in ((4000, 1), (5000, 3), (6000, 24)):
        events = []
        for i in range(start, start + orders):
            events.append(captured(f"#{i}", T0))
            events.append(
                ev("erp", {"order_number": f"#{i}"}, T0, operation="post", outcome="error")
            )
        send(ingest_client, *events, *reporting(T0 + 70 * S, "erp"))
        do_stitch()
        with CaptureQueriesContext(connection) as queries:
            result = do_sweep(clock=lambda: T0 + 71 * S)
        assert result.stuck_opened == orders and result.failed_opened == orders
        counts.append(len(queries))
    assert counts[1] == counts[2], counts
    # two per SLA policy (overdue now; overdue while no sweep looked), two per silent
    # system's waiting deadlines (the carrier never reported here), the streams, a few
    # per kind, and two for inventory drift (the comparable pairs, the open drift keys)
    assert counts[2] <= 46, counts


def test_a_stage_that_came_late_before_any_sweep_is_recorded_on_business_time(
    ingest_client: Client,
) -> None:
    """History sent in bulk (or a stopped worker): the first sweep comes after the order
    was posted late; the exception is there all the same, opened and closed when a sweep
    running all along would have opened and closed it."""
    posted = ev(
        "erp",
        {"order_number": "#1020", "erp_sales_order": "SO-1020"},
        T0 + 300 * S,
        stage="posted",
        operation="post_sales_order",
    )
    send(
        ingest_client,
        captured("#1020", T0),
        posted,
        *order_events("#1021", T0),
        *reporting(T0 + DAY, "erp"),
    )
    send(ingest_client, captured("#1022", T0))
    send(ingest_client, ev("shopify", {"order_number": "#1022"}, T0 + 90 * S, stage="cancelled"))
    assert stitch(T0 + DAY).startswith(
        "stitched 7 hops: 4 transactions created, 4 touched, 0 merged; 2 stuck opened, 2 closed"
    )
    late = Issue.objects.get(kind=STUCK, transaction__keys__value="#1020")
    assert (late.state, late.resolution, late.resolved_by) == (RESOLVED, "posted reached", "system")
    assert (late.event_at, late.opened_at, late.resolved_at) == (
        T0 + 60 * S,
        T0 + 60 * S,
        T0 + 300 * S,
    )
    assert late.detail["found_after"] is True and late.owner == "finance-systems"
    cancelled = Issue.objects.get(kind=STUCK, transaction__keys__value="#1022")
    assert (cancelled.state, cancelled.resolution) == (RESOLVED, "the order was cancelled")
    assert cancelled.resolved_at == T0 + 90 * S
    # #1021 was posted in time; and the question is not asked twice
    assert stitch(T0 + 2 * DAY).endswith("0 stuck opened, 0 closed")
    assert Issue.objects.filter(kind=STUCK).count() == 2


def test_one_conflict_exception_per_refused_link(ingest_client: Client) -> None:
    send(
        ingest_client,
        captured("#2001", T0, shopify_order_id="777"),
        captured("#2002", T0, shopify_order_id="778"),
        ev("erp", {"order_number": "#2002", "erp_sales_order": "SO-2"}, T0 + 20 * S),
    )
    stitch(T0 + 30 * S)
    # an ERP answer naming #2001 with #2002's sales order: two kinds clash in one refusal
    send(
        ingest_client,
        ev(
            "erp",
            {"shopify_order_id": "777", "order_number": "#2001", "erp_sales_order": "SO-2"},
            T0 + 40 * S,
            operation="post_sales_order",
        ),
    )
    line = stitch(T0 + 50 * S)
    assert Conflict.objects.count() == 2
    assert line.endswith("; 1 conflict opened"), line
    issue = Issue.objects.get(kind=CONFLICT)
    assert issue.detail["kind"] == "order_number"  # what people name an order by, first
    assert [(x["kind"], x["value"], x["existing_value"]) for x in issue.detail["clashes"]] == [
        ("order_number", "#2001", "#2002"),
        ("shopify_order_id", "777", "778"),
    ]
    assert "also shopify_order_id" in issue.summary
    stitch(T0 + 60 * S)
    assert Issue.objects.filter(kind=CONFLICT).count() == 1
