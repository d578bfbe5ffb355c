"""Late telemetry is not a late order: whatever order the hops arrive in, and however late
(up to the systems' maximum telemetry delay), the exceptions in the end are the same.

Hops go in through the CloudEvents endpoint in the order and batches hypothesis draws; the
pipeline (stitch, sweep) runs between batches at the business time they arrived by; at
the end, the exceptions that were not withdrawn must be exactly those the business facts
call for, and no exception may be left open that the facts do not support.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from observatory.triage.actions import do_sweep
from observatory.triage.models import UNRESOLVED, WITHDRAWN, Issue
from observatory.triage.queries import transaction_labels
from tests.triage.helpers import T0, contract_policies, ev, send

S = timedelta(seconds=1)
MAX_DELAY_S = 60  # the floor of every system's maximum telemetry delay

pytestmark = pytest.mark.django_db


def web(n: str, sid: str) -> dict[str, str]:
    return {"order_number": n, "shopify_order_id": sid}


#: (business second, event): a morning of web orders, each with its own fate
HOPS: list[tuple[int, dict[str, Any]]] = [
    # #A posted in time
    (0, ev("shopify", web("#A", "1"), T0, stage="captured", channel="web")),
    (20, ev("erp", {"order_number": "#A", "erp_sales_order": "SO-A"}, T0 + 20 * S, stage="posted")),
    # #B posted 40 s late
    (5, ev("shopify", web("#B", "2"), T0 + 5 * S, stage="captured", channel="web")),
    (
        105,
        ev("erp", {"order_number": "#B", "erp_sales_order": "SO-B"}, T0 + 105 * S, stage="posted"),
    ),
    # #C never posted
    (10, ev("shopify", web("#C", "3"), T0 + 10 * S, stage="captured", channel="web")),
    # #D posted in time, shipped by the warehouse (linked through the ERP's number only),
    # seen by Shopify ten seconds later
    (12, ev("shopify", web("#D", "4"), T0 + 12 * S, stage="captured", channel="web")),
    (30, ev("erp", {"order_number": "#D", "erp_sales_order": "SO-D"}, T0 + 30 * S, stage="posted")),
    (
        300,
        ev(
            "wms",
            {"erp_sales_order": "SO-D", "shipment_id": "SH-D"},
            T0 + 300 * S,
            stage="shipped",
            channel="web",
        ),
    ),
    (
        310,
        ev(
            "shopify",
            {"shopify_order_id": "4", "shipment_id": "SH-D"},
            T0 + 310 * S,
            stage="shipped",  # Shopify's own fulfillment: the shipment seen by Shopify
            operation="fulfillments/create",
        ),
    ),
    # #E cancelled before its deadline
    (15, ev("shopify", web("#E", "5"), T0 + 15 * S, stage="captured", channel="web")),
    (50, ev("shopify", {"order_number": "#E"}, T0 + 50 * S, stage="cancelled")),
    # #F: the ERP failed once, the retry posted it in time
    (16, ev("shopify", web("#F", "6"), T0 + 16 * S, stage="captured", channel="web")),
    (
        25,
        ev("erp", {"order_number": "#F"}, T0 + 25 * S, operation="post", outcome="error"),
    ),
    (
        45,
        ev(
            "erp",
            {"order_number": "#F", "erp_sales_order": "SO-F"},
            T0 + 45 * S,
            operation="post",
            stage="posted",
        ),
    ),
    # #G posted 5 s before its deadline; the ERP reports other business right after it, so
    # a sweep may judge #G before its own posting has arrived (and must take it back)
    (100, ev("shopify", web("#G", "7"), T0 + 100 * S, stage="captured", channel="web")),
    (
        155,
        ev("erp", {"order_number": "#G", "erp_sales_order": "SO-G"}, T0 + 155 * S, stage="posted"),
    ),
    (170, ev("erp", {"correlation_id": "other-1"}, T0 + 170 * S, operation="beat")),
    # the ERP goes on working for other orders
    (400, ev("erp", {"correlation_id": "other"}, T0 + 400 * S, operation="beat")),
]

EXPECTED = {
    ("order_number=#B", "stuck", "posted"),
    ("order_number=#C", "stuck", "posted"),
    ("order_number=#F", "failed_hop", ""),
}


def final_problems() -> set[tuple[str, str, str]]:
    issues = list(Issue.objects.exclude(state=WITHDRAWN))
    labels = transaction_labels(i.transaction_id for i in issues if i.transaction_id)
    return {(labels.get(i.transaction_id, ""), i.kind, i.stage) for i in issues}


def play(client: Client, order: list[int], delays: list[int], sweeps: list[int]) -> None:
    """Send the hops in ``order``, each arriving ``delay`` seconds after its business time
    (sweeps at the business times in ``sweeps`` see what arrived by then), then the rest,
    and a last sweep an hour later."""
    pending = [HOPS[i] + (delays[i],) for i in order]
    for moment in sorted(sweeps):
        due = [h for h in pending if h[0] + h[2] <= moment]
        if due:
            send(client, *[h[1] for h in due])
            pending = [h for h in pending if h not in due]
        do_sweep_after_stitch(T0 + moment * S)
    if pending:
        send(client, *[h[1] for h in pending])
    do_sweep_after_stitch(T0 + 3600 * S)


def do_sweep_after_stitch(at: Any) -> None:
    from observatory.transactions.actions import do_stitch

    do_stitch()
    do_sweep(clock=lambda: at)


def test_everything_at_once_gives_the_expected_exceptions(ingest_client: Client) -> None:
    contract_policies()
    play(ingest_client, list(range(len(HOPS))), [0] * len(HOPS), [])
    assert final_problems() == EXPECTED
    assert not Issue.objects.filter(state=WITHDRAWN).exists()
    open_ = {(i.stage, i.kind) for i in Issue.objects.filter(state__in=UNRESOLVED)}
    assert open_ == {("posted", "stuck")}  # #C only


_G_POSTING = next(i for i, (b, _) in enumerate(HOPS) if b == 155)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.permutations(range(len(HOPS))),
    delays=st.lists(st.integers(0, MAX_DELAY_S), min_size=len(HOPS), max_size=len(HOPS)),
    sweeps=st.lists(st.integers(0, 600), max_size=8),
)
# #G's posting 60 s late while the ERP's next report is not: judged, then withdrawn
@example(
    order=list(range(len(HOPS))),
    delays=[MAX_DELAY_S if i == _G_POSTING else 0 for i in range(len(HOPS))],
    sweeps=[176],
)
def test_any_arrival_order_and_delay_gives_the_same_exceptions(
    ingest_client: Client, order: list[int], delays: list[int], sweeps: list[int]
) -> None:
    with transaction.atomic():
        contract_policies()
        play(ingest_client, order, delays, sweeps)
        assert final_problems() == EXPECTED
        open_ = {(i.stage, i.kind) for i in Issue.objects.filter(state__in=UNRESOLVED)}
        assert open_ == {("posted", "stuck")}
        transaction.set_rollback(True)
