"""Every KPI's rollup figure equals its brute-force twin on simulator traffic.

The simulator's ``chaos`` scenario (duplicate webhook deliveries, replayed postings, lost
events, late carrier scans, a conflicting ERP id, a silent warehouse) goes through the
real ingest endpoints of a live server in three phases; after each, the pipeline stitches
and sweeps and the fill runs incrementally, so later phases bring late hops, merges of
transactions stitched apart before, and repeat deliveries. After every phase, for many
windows and filters, ``kpi_values`` from the rollups must equal ``bruteforce.kpi_values``:
counts exactly, quantiles within 1 % relative.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.access.actions import do_create_ingest_token
from observatory.hops.models import DuplicateDelivery, Hop
from observatory.kpis import actions, bruteforce, queries
from observatory.kpis.models import DirtyHour, HopRollup, OrderRollup
from observatory.lib.clock import now
from observatory.transactions.models import Merge, Transaction
from tests.kpis.traffic import late_first, late_second, phases, start_traffic
from tests.pipeline import tick

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DAYS = 2.0


@pytest.fixture
def short_minute_retention(settings: Any) -> None:
    # minute rollups for the last day only: older partial hours are read raw
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "minute_rollups": 1}


def windows(start: Any) -> Iterator[tuple[str, Any, Any, dict[str, str]]]:
    at = start
    yield "everything", at - timedelta(days=4), at + timedelta(hours=1), {}
    yield "last 24 h", at - timedelta(hours=24), at, {}
    yield (
        "unaligned",
        at - timedelta(hours=30, minutes=17, seconds=13),
        at - timedelta(hours=2, minutes=5, seconds=41),
        {},
    )
    yield (
        "one odd hour",
        at - timedelta(hours=20, minutes=33),
        at - timedelta(hours=19, minutes=2, seconds=1),
        {},
    )
    for channel in ("web", "pos", "marketplace"):
        yield f"channel {channel}", at - timedelta(days=3), at, {"channel": channel}
        # a window that ended before now, edges in hours without minute rollups: the
        # backlog and the exceptions as they stood at its end
        yield (
            f"channel {channel}, ended",
            at - timedelta(hours=44, minutes=9, seconds=5),
            at - timedelta(hours=26, minutes=40, seconds=33),
            {"channel": channel},
        )
    for system in ("erp", "shopify", "wms"):
        yield f"system {system}", at - timedelta(hours=40, minutes=1), at, {"system": system}
    yield (
        "system erp, web, ended",
        at - timedelta(hours=47, minutes=30),
        at - timedelta(hours=12, minutes=0, seconds=7),
        {"system": "erp", "channel": "web"},
    )


def assert_twins(start: Any, at: Any, label: str) -> dict[str, Any]:
    stores = sorted(
        s for s in Transaction.objects.exclude(store_id="").values_list("store_id", flat=True)
    )
    cases = list(windows(start))
    if stores:
        cases.append(("store", start - timedelta(days=3), start, {"store": stores[0]}))
        cases.append(
            ("pos store", start - timedelta(days=3), start, {"channel": "pos", "store": stores[-1]})
        )
        cases.append(
            (
                "store, ended",
                start - timedelta(hours=40, seconds=3),
                start - timedelta(hours=20, minutes=13),
                {"store": stores[len(stores) // 2]},
            )
        )
    last: dict[str, Any] = {}
    for name, since, until, filters in cases:
        mine = queries.kpi_values(since, until, at=at, **filters)
        twin = bruteforce.kpi_values(since, until, at=at, **filters)
        problems = bruteforce.compare(mine, twin)
        assert not problems, f"{label}, {name}: " + "; ".join(problems[:8])
        if name == "everything":
            last = mine
    return last


def test_rollups_equal_their_brute_force_twin_on_simulated_traffic(
    live_server: Any, short_minute_retention: None
) -> None:
    _, token = do_create_ingest_token("simulator")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    traffic = start_traffic(live_server.url, token, orders=220, days=DAYS)
    start = traffic.start
    late = {1: late_first(start), 2: late_second(start)}
    try:
        for i, until in enumerate(phases(start, DAYS, 3)):
            traffic.send_until(until)
            if i in late:
                answer = client.post(
                    "/api/v1/events",
                    orjson.dumps(late[i]),
                    content_type="application/cloudevents-batch+json",
                )
                assert answer.status_code == 200, answer.content
            tick()
            result = actions.do_fill_rollups()
            assert result.remaining == 0
            assert result.full == (i == 0)
            assert_twins(start, now(), f"after phase {i + 1}")
    finally:
        traffic.close()

    # the traffic had what this test is about
    assert Merge.objects.exists(), "no merge happened between phases"
    assert DuplicateDelivery.objects.exists(), "no duplicate delivery"
    assert Hop.objects.filter(retry_attempt__gt=0).exists()
    figures = assert_twins(start, now(), "at the end")
    assert figures["acceptance_to_posting"]["count"] > 50
    assert figures["duplicate_rate"]["duplicates"] > 0
    assert figures["exception_rate"]["with_exception"] > 0
    at_risk = figures["value_at_risk"]
    assert at_risk["orders"] > 0 and at_risk["by_currency"], at_risk
    assert at_risk["by_system"] and at_risk["by_stage"], at_risk
    assert figures["inventory_sync_lag"]["count"] > 10
    assert figures["fulfillment_propagation"]["count"] > 10
    assert len(figures["hop_health"]["rows"]) > 10

    # a fill with nothing new changes nothing; a full refill gives the same rows
    def snapshot() -> list[tuple[Any, ...]]:
        rows = list(
            OrderRollup.objects.values_list(
                "resolution",
                "bucket",
                "channel",
                "store",
                "orders",
                "with_exception",
                "a2p_count",
                "a2p_within",
                "a2p_sketch",
                "inv_count",
                "inv_max",
                "ful_count",
            )
        ) + list(
            HopRollup.objects.values_list(
                "resolution",
                "bucket",
                "channel",
                "store",
                "system",
                "operation",
                "hops",
                "errors",
                "duplicates",
                "dur_sketch",
            )
        )
        return sorted(
            (tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows), key=repr
        )

    before = snapshot()
    again = actions.do_fill_rollups()
    assert snapshot() == before
    actions.do_fill_rollups(full=True)
    assert snapshot() == before

    # a crash half-way: the queue keeps what was not done, the next fill finishes it
    actions.do_fill_rollups(full=True, max_chunks=1)
    assert DirtyHour.objects.exists()
    actions.do_fill_rollups()
    assert not DirtyHour.objects.exists()
    assert snapshot() == before
    assert again.recomputed is not None
