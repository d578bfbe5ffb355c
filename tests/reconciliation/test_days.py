"""Business days: in the rule's time zone (across a change to summer time, when a day has
23 hours), in each store's own zone, per currency (amounts never summed across
currencies) and per channel when a rule groups by it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from tests.reconciliation.helpers import KITS, M, ev, one_day, pos_batch, results, run, send

pytestmark = pytest.mark.django_db


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def patch_rule(client: Client, name: str, **fields: Any) -> dict[str, Any]:
    answer = client.patch(
        f"/api/v1/reconciliation-rules/{name}", fields, content_type="application/json"
    )
    assert answer.status_code == 200, answer.content
    out: dict[str, Any] = answer.json()
    return out


def by_day(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["day"]: r["source_count"] for r in rows}


def test_business_days_follow_the_zone_across_the_change_to_summer_time(
    ingest_client: Client, api_client: Client, admin_client: Client
) -> None:
    """New York goes from UTC-5 to UTC-4 at 02:00 on Sunday, 8 March 2026."""
    assert patch_rule(admin_client, "shopify-orders", time_zone="America/New_York")["zone"] == (
        "America/New_York"
    )
    kit = KITS["shopify-orders"]
    placed = {
        # Friday 23:30 in New York (winter, UTC-5): still Friday
        1: utc("2026-03-07T04:30:00"),
        # Saturday 00:30 in New York
        2: utc("2026-03-07T05:30:00"),
        # Saturday 23:30 (UTC-5): a fixed UTC-4 would call it Sunday
        3: utc("2026-03-08T04:30:00"),
        # the first and the last minute of Sunday 8 March, a day of 23 hours
        4: utc("2026-03-08T05:00:00"),
        5: utc("2026-03-09T03:59:00"),
        # Monday 00:30 in summer time (UTC-4): a fixed UTC-5 would call it Sunday
        6: utc("2026-03-09T04:30:00"),
    }
    send(
        ingest_client,
        *[e for n, at in placed.items() for e in kit.source(n, at, "10.00", "USD")],
        *[e for n, at in placed.items() for e in kit.target(n, at + M, "10.00", "USD", "")],
    )
    run(utc("2026-03-10T12:00:00"))
    rows = results(api_client, "shopify-orders", date(2026, 3, 1), date(2026, 3, 31))
    assert by_day(rows) == {
        "2026-03-06": 1,
        "2026-03-07": 2,
        "2026-03-08": 2,
        "2026-03-09": 1,
    }
    assert all(r["matched"] == r["source_count"] for r in rows)
    # the drill-down of the short day holds its two orders
    day = api_client.get(
        "/api/v1/reconciliation/shopify-orders/2026-03-08", {"matched": "true"}
    ).json()
    assert day["time_zone"] == "America/New_York"
    assert sorted(i["label"] for i in day["items"]) == ["order_number=#4", "order_number=#5"]
    # changing the zone back rebuilds the rule: the same orders on UTC days
    patch_rule(admin_client, "shopify-orders", time_zone="")
    ran = run(utc("2026-03-10T12:05:00"))
    assert any(r.rule == "shopify-orders" and r.full for r in ran.rules)
    rows = results(api_client, "shopify-orders", date(2026, 3, 1), date(2026, 3, 31))
    assert by_day(rows) == {"2026-03-07": 2, "2026-03-08": 2, "2026-03-09": 2}


def test_each_store_counts_its_own_business_day(
    ingest_client: Client, api_client: Client, admin_client: Client
) -> None:
    zone = admin_client.put(
        "/api/v1/reconciliation-store-zones/ST7",
        {"time_zone": "America/Los_Angeles"},
        content_type="application/json",
    )
    assert zone.status_code == 200, zone.content
    at = utc("2026-11-20T06:00:00")  # 22:00 the day before in Los Angeles
    send(
        ingest_client,
        *[
            ev(
                "pos",
                {"pos_receipt": f"{store}-{n}", "store_id": store},
                at,
                stage="captured",
                channel="pos",
                store_id=store,
                amount="25.00",
                currency="USD",
            )
            for n, store in ((1, "ST7"), (2, "ST8"))
        ],
        pos_batch([1], at + 15 * M, "25.00", "USD", "B-7", store="ST7"),
        pos_batch([2], at + 15 * M, "25.00", "USD", "B-8", store="ST8"),
    )
    run(at + 3 * timedelta(hours=1))
    rows = results(api_client, "pos-cash-sales", date(2026, 11, 19), date(2026, 11, 20))
    assert {(r["store_id"], r["day"]) for r in rows} == {
        ("ST7", "2026-11-19"),
        ("ST8", "2026-11-20"),  # no zone of its own: the rule's (UTC)
    }
    assert all((r["matched"], r["target_total"]) == (1, "25.00") for r in rows)


def test_amounts_are_never_summed_across_currencies(
    ingest_client: Client, api_client: Client
) -> None:
    kit = KITS["shopify-orders"]
    at = utc("2026-11-20T12:00:00")
    send(
        ingest_client,
        *kit.source(1, at, "100.00", "USD"),
        *kit.target(1, at + M, "100.00", "USD", ""),
        *kit.source(2, at, "90.00", "EUR"),
        *kit.target(2, at + M, "90.00", "EUR", ""),
        *kit.source(3, at, "40.00", "EUR"),  # never posted
        *kit.source(4, at, "70.00", "EUR"),
        *kit.target(4, at + M, "70.00", "USD", ""),  # posted in another currency
    )
    run(at + 2 * timedelta(hours=1))
    rows = {r["currency"]: r for r in results(api_client, "shopify-orders", at.date())}
    assert set(rows) == {"USD", "EUR"}
    usd, eur = rows["USD"], rows["EUR"]
    assert (usd["source_count"], usd["source_total"], usd["matched"]) == (1, "100.00", 1)
    assert (eur["source_count"], eur["source_total"]) == (3, "200.00")
    assert (eur["matched"], eur["missing_in_target"], eur["amount_mismatch"]) == (1, 1, 1)
    # an order's currency is its source's: the USD posting of an EUR order is under EUR
    assert Decimal(eur["target_total"]) == Decimal("160.00")
    page = api_client.get("/api/v1/reconciliation/shopify-orders/2026-11-20").json()
    mismatch = next(i for i in page["items"] if i["status"] == "amount_mismatch")
    assert (mismatch["currency"], mismatch["source_amount"], mismatch["target_amount"]) == (
        "EUR",
        "70.00",
        "70.00",
    )


def test_a_rule_can_group_by_channel(
    ingest_client: Client, api_client: Client, admin_client: Client
) -> None:
    created = admin_client.post(
        "/api/v1/reconciliation-rules",
        {
            "name": "orders-posted",
            "title": "Every channel's orders against ERP postings",
            "source_stage": "captured",
            "target_system": "erp",
            "target_stage": "posted",
            "channels": ["web", "marketplace"],
            "group_by_channel": True,
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    web, market = KITS["shopify-orders"], KITS["marketplace-orders"]
    at = utc("2026-11-20T12:00:00")
    send(
        ingest_client,
        *web.source(1, at, "10.00", "USD"),
        *web.target(1, at + M, "10.00", "USD", ""),
        *market.source(2, at, "20.00", "USD"),
    )
    run(at + 2 * timedelta(hours=1))
    rows = results(api_client, "orders-posted", at.date())
    assert {r["channel"]: (r["matched"], r["missing_in_target"]) for r in rows} == {
        "web": (1, 0),
        "marketplace": (0, 1),
    }
    assert one_day(api_client, "shopify-orders", at.date())["matched"] == 1
