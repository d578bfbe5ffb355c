"""The /reconciliation/ pages: every rule's business days (red with gaps, amber while a
gap is waited for), a day's unmatched orders each linking to its order page, a CSV of
every view, and a fixed number of queries whatever the data."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.transactions.models import TransactionKey
from tests.dashboards.conftest import make_user
from tests.reconciliation.helpers import DAY0, KITS, T0, H, M, run, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(db: None) -> Client:
    client = Client()
    client.force_login(make_user("ruth", "executive"))
    return client


def orders(client: Client, first: int, count: int, *, at=T0, unposted: int = 0) -> None:  # type: ignore[no-untyped-def]
    """``count`` web orders from ``first``, the last ``unposted`` never posted."""
    kit = KITS["shopify-orders"]
    events = []
    for n in range(first, first + count):
        events += kit.source(n, at, "25.00", "USD")
        if n < first + count - unposted:
            events += kit.target(n, at + M, "25.00", "USD", "")
    send(client, *events)


def rows_of(response: object) -> list[dict[str, str]]:
    content = getattr(response, "content", b"").decode()
    return list(csv.DictReader(io.StringIO(content)))


def test_red_days_drill_down_to_their_orders(ingest_client: Client, reader: Client) -> None:
    orders(ingest_client, 1, 5, unposted=1)  # today: one never posted
    orders(ingest_client, 10, 3, at=T0 - timedelta(days=1))  # yesterday: all posted
    orders(ingest_client, 20, 1, at=T0 + 3 * H, unposted=1)  # tomorrow's still waited for
    run(T0 + 3 * H + 30 * M)
    page = reader.get("/reconciliation/", {"since": "2026-11-18", "until": "2026-11-22"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-day="2026-11-20" data-state="red"' in html
    assert 'data-day="2026-11-19" data-state="ok"' in html
    assert 'href="/reconciliation/shopify-orders/2026-11-20/"' in html
    assert "1 day with gaps" in html and "USD 25.00 at risk" in html

    day = reader.get("/reconciliation/shopify-orders/2026-11-20/")
    assert day.status_code == 200
    missing = TransactionKey.objects.get(kind="order_number", value="#5").transaction_id
    text = day.content.decode()
    assert f'data-transaction="{missing}" data-status="missing_in_target"' in text
    assert f'href="/orders/{missing}/"' in text
    assert text.count("data-transaction=") == 2  # #5, and #20 waited for
    everything = reader.get("/reconciliation/shopify-orders/2026-11-20/", {"matched": "1"})
    assert everything.content.decode().count("data-transaction=") == 6


def test_every_view_is_a_csv(ingest_client: Client, reader: Client) -> None:
    orders(ingest_client, 1, 3, unposted=1)
    run(T0 + 2 * H)
    days = reader.get(
        "/reconciliation/", {"rule": "shopify-orders", "since": "2026-11-20", "format": "csv"}
    )
    assert days["Content-Type"].startswith("text/csv")
    assert "attachment" in days["Content-Disposition"]
    [row] = rows_of(days)
    assert (row["rule"], row["day"], row["currency"], row["source_total"]) == (
        "shopify-orders",
        "2026-11-20",
        "USD",
        "75.00",
    )
    assert (row["matched"], row["missing_in_target"], row["rate"]) == ("2", "1", "0.6667")
    items = rows_of(reader.get("/reconciliation/shopify-orders/2026-11-20/", {"format": "csv"}))
    assert [(r["order"], r["status"], r["value_at_risk"]) for r in items] == [
        ("order_number=#3", "missing_in_target", "25.00")
    ]
    assert items[0]["url"].endswith(f"/orders/{items[0]['transaction_id']}/")
    matched = rows_of(
        reader.get("/reconciliation/shopify-orders/2026-11-20/", {"format": "csv", "matched": "1"})
    )
    assert len(matched) == 3


def test_pages_ask_a_fixed_number_of_queries(ingest_client: Client, reader: Client) -> None:
    def count(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert (
                reader.get(path, {"since": "2026-11-01", "until": "2026-11-30"}).status_code == 200
            )
        return len(queries)

    orders(ingest_client, 1, 2, unposted=1)
    run(T0 + 2 * H)
    few = (count("/reconciliation/"), count("/reconciliation/shopify-orders/2026-11-20/"))
    for d in range(1, 6):
        orders(ingest_client, 100 * d, 4, at=T0 - timedelta(days=d), unposted=2)
    orders(ingest_client, 50, 10, unposted=5)
    run(T0 + 3 * H)
    many = (count("/reconciliation/"), count("/reconciliation/shopify-orders/2026-11-20/"))
    assert many == few


def test_pages_need_a_sign_in_and_a_known_rule(reader: Client) -> None:
    assert Client().get("/reconciliation/").status_code == 302
    assert reader.get("/reconciliation/no-such-rule/2026-11-20/").status_code == 404
    assert reader.get("/reconciliation/shopify-orders/2026-02-30/").status_code == 404
    # an unreadable filter is the default window, not an error
    assert reader.get("/reconciliation/", {"since": "yesterday"}).status_code == 200
    assert reader.get(f"/reconciliation/?rule=shopify-orders&until={DAY0}").status_code == 200
