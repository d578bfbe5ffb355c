"""The incremental fill corrects exactly the buckets a change touches.

Each case sends hops through the events endpoint into otherwise empty hours, runs the
pipeline and the fill, then sends the twist (an earlier capture, the other half of an
order, a channel, a repeat delivery, an exception opened later) and checks that the
rollups moved with it, against the brute-force twin and against the numbers expected.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.kpis import actions, bruteforce, queries
from observatory.kpis.compute import ALL, HOUR, floor_to
from observatory.kpis.models import HopRollup, OrderRollup
from observatory.lib.clock import now
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db

T = floor_to(now() - timedelta(days=2), HOUR).replace(hour=9)


def send(client: Client, *events: dict[str, Any]) -> None:
    answer = client.post(
        "/api/v1/events",
        orjson.dumps(list(events)),
        content_type="application/cloudevents-batch+json",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert not body.get("rejected"), body


def pipeline(clock: Any = None) -> actions.FillResult:
    if clock is None:
        tick()
    else:
        tick(clock=clock)
    return actions.do_fill_rollups()


def twins(**filters: str) -> dict[str, Any]:
    at = now()
    since, until = T - timedelta(days=1), at
    mine = queries.kpi_values(since, until, at=at, **filters)
    twin = bruteforce.kpi_values(since, until, at=at, **filters)
    assert bruteforce.compare(mine, twin) == []
    return mine


def hour_orders(hour: datetime, channel: str = ALL) -> int:
    row = OrderRollup.objects.filter(
        resolution=HOUR, bucket=hour, channel=channel, store=ALL
    ).first()
    return row.orders if row else 0


def test_an_earlier_capture_moves_the_order_out_of_its_old_hour(ingest_client: Client) -> None:
    send(
        ingest_client,
        event(
            "e-1",
            T + timedelta(hours=5),
            "shopify",
            {"order_number": "#E-1"},
            stage="captured",
            channel="web",
        ),
        event(
            "e-2",
            T + timedelta(hours=5, minutes=1),
            "erp",
            {"order_number": "#E-1"},
            stage="posted",
        ),
    )
    pipeline()
    assert hour_orders(T + timedelta(hours=5)) == 1
    assert twins()["acceptance_to_posting"]["p50_s"] == pytest.approx(60, rel=0.005)

    send(
        ingest_client,
        event(
            "e-0",
            T + timedelta(hours=1),
            "shopify",
            {"order_number": "#E-1"},
            stage="captured",
            channel="web",
        ),
    )
    result = pipeline()
    assert result.full is False
    assert hour_orders(T + timedelta(hours=5)) == 0
    assert hour_orders(T + timedelta(hours=1)) == 1
    values = twins()
    assert values["exception_rate"]["orders"] == 1
    assert values["acceptance_to_posting"]["p50_s"] == pytest.approx(4 * 3600 + 60, rel=0.005)


def test_a_merge_counts_the_order_once_at_its_first_capture(ingest_client: Client) -> None:
    send(
        ingest_client,
        event("m-1", T, "shopify", {"shopify_order_id": "990001"}, stage="captured", channel="web"),
        event(
            "m-2",
            T + timedelta(hours=3),
            "pos",
            {"order_number": "#M-1"},
            stage="captured",
            channel="web",
        ),
    )
    pipeline()
    assert hour_orders(T) == 1 and hour_orders(T + timedelta(hours=3)) == 1
    assert twins()["exception_rate"]["orders"] == 2

    send(
        ingest_client,
        event(
            "m-3",
            T + timedelta(hours=4),
            "middleware",
            {"shopify_order_id": "990001", "order_number": "#M-1"},
            stage="validated",
        ),
    )
    pipeline()
    assert hour_orders(T) == 1 and hour_orders(T + timedelta(hours=3)) == 0
    assert twins()["exception_rate"]["orders"] == 1


def test_hops_follow_their_order_when_its_channel_arrives(ingest_client: Client) -> None:
    send(
        ingest_client,
        event("c-1", T, "shopify", {"order_number": "#C-1"}, stage="captured", duration_ms=70),
        event(
            "c-2",
            T + timedelta(days=1),
            "erp",
            {"order_number": "#C-1"},
            stage="posted",
            duration_ms=710,
            outcome="error",
            error="ERP 503",
        ),
    )
    pipeline()
    assert twins(channel="web")["hop_health"]["rows"] == []

    send(
        ingest_client,
        event(
            "c-3",
            T + timedelta(hours=2),
            "middleware",
            {"order_number": "#C-1"},
            stage="validated",
            channel="web",
            duration_ms=120,
        ),
    )
    pipeline()
    rows = twins(channel="web")["hop_health"]["rows"]
    assert [(r["system"], r["count"], r["error_rate"]) for r in rows] == [
        ("erp", 1, 1.0),
        ("middleware", 1, 0.0),
        ("shopify", 1, 0.0),
    ]
    assert twins(channel="web")["exception_rate"] == {"orders": 1, "with_exception": 1, "rate": 1.0}


def test_a_repeat_delivery_counts_in_its_hops_hour(ingest_client: Client) -> None:
    first = event("d-1", T, "wms", {"shipment_id": "SH-D1"}, stage="shipped", duration_ms=40)
    send(ingest_client, first)
    pipeline()
    assert twins()["duplicate_rate"] == {
        "deliveries": 1,
        "duplicates": 0,
        "rate": 0.0,
        "posted_twice": 0,
        "by_source": {"wms": {"deliveries": 1, "duplicates": 0, "rate": 0.0}},
        "worst_source_rate": None,  # one delivery is not enough to judge a source by
        "worst_source": "",
    }
    send(ingest_client, first)
    send(ingest_client, first)
    pipeline()
    row = HopRollup.objects.get(resolution=HOUR, bucket=T, channel=ALL, store=ALL)
    assert (row.hops, row.duplicates) == (1, 2)
    assert twins()["duplicate_rate"]["rate"] == pytest.approx(2 / 3)
    assert twins()["duplicate_rate"]["by_source"]["wms"]["duplicates"] == 2


def test_an_exception_opened_later_marks_its_order(ingest_client: Client) -> None:
    captured = now() - timedelta(hours=3)
    send(
        ingest_client,
        event(
            "s-1", captured, "shopify", {"order_number": "#S-1"}, stage="captured", channel="web"
        ),
        # the ERP goes on reporting: its silence about #S-1 means it was not posted
        event("s-beat", captured + timedelta(minutes=5), "erp", {"correlation_id": "beat"}),
    )
    # the first sweep judges SLAs as of a moment before the deadline: nothing is stuck
    pipeline(clock=lambda: captured + timedelta(seconds=10))
    at = now()
    window = (captured - timedelta(hours=1), at)
    assert queries.kpi_values(*window, at=at)["exception_rate"]["with_exception"] == 0
    # the next sweep, now: stuck past the 60 s deadline; the order itself did not change
    pipeline()
    at = now()
    window = (captured - timedelta(hours=1), at)
    values = queries.kpi_values(*window, at=at)
    assert values["exception_rate"]["with_exception"] == 1
    assert values["reconciliation_backlog"] == {"total": 1, "by_stage": {"posted": 1}}
    assert values["exception_aging"]["open"] == 1
    assert bruteforce.compare(values, bruteforce.kpi_values(*window, at=at)) == []


def test_a_fill_costs_a_fixed_number_of_queries(ingest_client: Client) -> None:
    send(ingest_client, event("q-1", T, "shopify", {"order_number": "#Q-1"}, stage="captured"))
    pipeline()
    with CaptureQueriesContext(connection) as ctx:
        result = actions.do_fill_rollups()
    assert result.recomputed == {"orders": 0, "hops": 0}
    idle = len(ctx.captured_queries)
    pg = connection.vendor == "postgresql"  # one advisory lock per transaction there
    # (the SLA policies and the stores' zones are read once, to see whether they changed;
    # the two queues the stitcher hands over are claimed: empty)
    assert idle == 16 + (3 if pg else 0), [q["sql"][:90] for q in ctx.captured_queries]
    # one more order in another hour: the same statements, plus those of one chunk
    send(
        ingest_client,
        event("q-2", T + timedelta(hours=3), "shopify", {"order_number": "#Q-2"}, stage="captured"),
    )
    tick()
    with CaptureQueriesContext(connection) as ctx:
        result = actions.do_fill_rollups()
    assert result.recomputed == {"orders": 1, "hops": 1}
    busy = [q["sql"][:100] for q in ctx.captured_queries]
    # collect: +9 (claim the touched transaction and the hours of its hop, and take them out
    # of the queues; the transaction, its old bucket, rewrite it, queue 2 hours) and +8 for its
    # late stages (delete, one INSERT ... SELECT per policy, mark its lead); working off one
    # chunk: +20 (claim, policies, the stores' zones, the orders hour and its day, the hops
    # hour and its day, unqueue, savepoints)
    # (PostgreSQL writes the four row sets by COPY, logged like any statement, and takes
    # one more lock)
    assert len(busy) == idle + (38 if pg else 37), busy


def test_kpi_values_reads_a_fixed_number_of_queries(ingest_client: Client) -> None:
    for i in range(3):
        day = T - timedelta(days=i)
        send(
            ingest_client,
            event(
                f"k-{i}-1",
                day,
                "shopify",
                {"order_number": f"#K-{i}"},
                stage="captured",
                channel="web",
            ),
            event(
                f"k-{i}-2",
                day + timedelta(seconds=42),
                "erp",
                {"order_number": f"#K-{i}"},
                stage="posted",
            ),
        )
    pipeline()
    at = now()
    counts = []
    for since in (at - timedelta(hours=1), at - timedelta(days=90) + timedelta(seconds=17)):
        with CaptureQueriesContext(connection) as ctx:
            queries.kpi_values(since, at, at=at)
        counts.append(len(ctx.captured_queries))
    # rollups (2), raw edges (orders 1, hops 3), policies, backlog per policy, aging,
    # resolution times (2): the same whatever the window
    assert counts[0] == counts[1] <= 20, counts


def test_window_edges_are_exact_to_the_second(ingest_client: Client) -> None:
    base = floor_to(now() - timedelta(hours=30), HOUR)
    send(
        ingest_client,
        *[
            event(
                f"w-{i}",
                base + timedelta(minutes=i * 7, seconds=i),
                "shopify",
                {"order_number": f"#W-{i}"},
                stage="captured",
                channel="pos",
            )
            for i in range(20)
        ],
    )
    pipeline()
    at = now()
    for since, until in [
        (base + timedelta(minutes=7, seconds=1), base + timedelta(minutes=70, seconds=10)),
        (base + timedelta(minutes=7, seconds=2), base + timedelta(minutes=70, seconds=11)),
        (base - timedelta(days=2), base + timedelta(hours=1, minutes=3)),
    ]:
        mine = queries.kpi_values(since, until, at=at)
        assert bruteforce.compare(mine, bruteforce.kpi_values(since, until, at=at)) == []
    # [7:01, 70:10) holds captures 1..9 (i*7 min + i s); [7:02, 70:11) holds 2..10
    assert (
        queries.kpi_values(
            base + timedelta(minutes=7, seconds=1), base + timedelta(minutes=70, seconds=10), at=at
        )["exception_rate"]["orders"]
        == 9
    )


def test_the_command_fills_and_says_so_on_its_last_line(ingest_client: Client) -> None:
    from io import StringIO

    from django.core.management import call_command

    send(ingest_client, event("f-1", T, "shopify", {"order_number": "#F-1"}, stage="captured"))
    tick()
    out = StringIO()
    call_command("fill_kpis", "--full", stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("recomputed 1 order and 1 hop hour buckets") and "0 still queued" in last


def test_the_backlog_of_a_window_that_ended_is_as_it_stood_then(ingest_client: Client) -> None:
    t0 = floor_to(now(), HOUR) - timedelta(hours=6)
    keys = {"order_number": "#B-1"}
    send(
        ingest_client,
        event("b-1", t0, "shopify", keys, stage="captured", channel="web"),
        event("b-2", t0 + timedelta(hours=2), "erp", keys, stage="posted"),
        event("b-3", t0 + timedelta(minutes=5), "shopify", {"order_number": "#B-2"},
              stage="captured", channel="pos"),
    )  # fmt: skip
    pipeline()
    at = now()
    # #B-1 (web) is late for the ERP from 60 s after its capture until it is posted two
    # hours in; #B-2 (POS) from 75 minutes after its capture, for ever
    since = t0 - timedelta(minutes=30)
    for until, web, pos in (
        (t0 + timedelta(hours=1), 1, 0),
        (t0 + timedelta(hours=2) - timedelta(seconds=1), 1, 1),
        (t0 + timedelta(hours=2), 0, 1),
        (at, 0, 1),
    ):
        expected = {"": web + pos, "web": web, "pos": pos}
        for channel in ("", "web", "pos"):
            for system in ("", "erp"):
                mine = queries.kpi_values(since, until, channel, system, at=at)
                twin = bruteforce.kpi_values(since, until, channel, system, at=at)
                assert bruteforce.compare(mine, twin) == []
                backlog = mine["reconciliation_backlog"]
                assert backlog["total"] == expected[channel], (until, channel, system)


def test_exceptions_follow_their_order_into_its_channel(ingest_client: Client) -> None:
    captured = now() - timedelta(hours=3)
    keys = {"order_number": "#X-1"}
    send(
        ingest_client,
        event("x-1", captured, "shopify", keys, stage="captured"),
        event("x-beat", captured + timedelta(minutes=5), "erp", {"correlation_id": "beat"}),
    )
    pipeline()
    assert twins(channel="web")["exception_aging"]["open"] == 0
    # the channel arrives with a later hop: its exception (stuck, not posted) goes with it
    send(
        ingest_client,
        event("x-2", captured + timedelta(minutes=1), "middleware", keys, stage="validated",
              channel="web"),
    )  # fmt: skip
    pipeline()
    web = twins(channel="web")
    assert web["exception_aging"]["open"] >= 1
    assert twins(channel="pos")["exception_aging"]["open"] == 0


def test_an_edge_in_an_hour_without_minute_rollups_is_read_once(
    ingest_client: Client, settings: Any
) -> None:
    settings.RETENTION_DAYS = {
        **settings.RETENTION_DAYS,
        "minute_rollups": 1,
    }  # T's day has hour rollups only
    send(
        ingest_client,
        *[
            event(f"h-{i}", T + timedelta(minutes=m), "shopify", {"order_number": f"#H-{i}"},
                  stage="captured", channel="web", duration_ms=100 + i)
            for i, m in enumerate((10, 40))
        ],
    )  # fmt: skip
    pipeline()
    at = now()
    since, until = T + timedelta(minutes=20, seconds=7), floor_to(at, HOUR)

    def answer() -> dict[str, Any]:
        mine = queries.kpi_values(since, until, at=at, channel="web")
        twin = bruteforce.kpi_values(since, until, at=at, channel="web")
        assert bruteforce.compare(mine, twin) == []
        return mine

    assert answer()["exception_rate"]["orders"] == 1
    # asked again: the edge hour's facts are in memory, no hop or transaction is read
    # (but the cancellations, refunds and shipments (reroutes) of the window, each one
    # statement over its own partial index whatever the window)
    with CaptureQueriesContext(connection) as ctx:
        again = queries.kpi_values(since, until, at=at, channel="web")
    assert again["exception_rate"]["orders"] == 1
    snapshots = ('"cancelled_at" >=', '"refunded_at" >=', '"shipped_at" >=')
    assert not [
        q["sql"]
        for q in ctx.captured_queries
        if ("hops_hop" in q["sql"] or 'FROM "transactions_transaction"' in q["sql"])
        and not any(s in q["sql"] for s in snapshots)
    ]
    # a later order in that hour: the fill replaces the hour's rows, the edge is read again
    send(
        ingest_client,
        event("h-9", T + timedelta(minutes=50), "shopify", {"order_number": "#H-9"},
              stage="captured", channel="web"),
    )  # fmt: skip
    pipeline()
    assert answer()["exception_rate"]["orders"] == 2


def test_an_order_late_for_two_stages_is_one_of_the_backlog(ingest_client: Client) -> None:
    t0 = now() - timedelta(days=3)
    events = []
    for n, refunded in (("R-1", True), ("R-2", False)):
        keys = {"order_number": f"#{n}"}
        events += [
            event(f"{n}-c", t0, "shopify", keys, stage="captured", channel="web"),
            event(f"{n}-p", t0 + timedelta(seconds=20), "erp", keys, stage="posted"),
            event(f"{n}-s", t0 + timedelta(hours=1), "wms", keys, stage="shipped"),
        ]
        if refunded:
            events.append(event(f"{n}-r", t0 + timedelta(hours=2), "shopify", keys,
                                stage="refunded"))  # fmt: skip
    send(ingest_client, *events)
    pipeline()
    at = now()
    since = t0 - timedelta(hours=1)
    for until in (at, t0 + timedelta(days=1, hours=2, seconds=1), t0 + timedelta(hours=1)):
        for system in ("", "erp", "shopify"):
            mine = queries.kpi_values(since, until, system=system, at=at)
            twin = bruteforce.kpi_values(since, until, system=system, at=at)
            assert bruteforce.compare(mine, twin) == []
    backlog = queries.kpi_values(since, at, at=at)["reconciliation_backlog"]
    assert backlog == {"total": 2, "by_stage": {"fulfillment_synced": 2, "refund_settled": 1}}
