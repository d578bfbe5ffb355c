"""``posting_completeness`` (docs/kpis.md): orders captured in the window, and those the
ERP posted before the end of their business day (in the store's time zone), with their
value per currency; sent as Shopify and the ERP report them, through the real endpoints,
and against the twin on generated orders in several zones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.access.actions import do_create_api_token
from observatory.alerts import actions as alert_actions
from observatory.alerts.models import Rule
from observatory.kpis import actions, bruteforce, queries
from observatory.kpis.models import OrderRollup
from observatory.kpis.queries.business_days import BusinessDays
from observatory.kpis.queries.posting import posting_completeness
from observatory.reconciliation.actions.rules import do_set_store_zone
from observatory.transactions.models import Transaction
from tests.kpis.traffic import event
from tests.pipeline import tick

pytestmark = pytest.mark.django_db

NEW_YORK = "America/New_York"


@pytest.fixture(autouse=True)
def utc_business_day(settings: Any) -> None:
    settings.RECONCILIATION_TIME_ZONE = "UTC"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def order(
    n: int,
    captured: datetime,
    posted: datetime | None,
    *,
    store: str,
    amount: str,
    currency: str,
    channel: str = "web",
) -> list[Any]:
    keys = {"order_number": f"#P-{n}"}
    out = [
        event(
            f"p{n}-0",
            captured,
            "shopify",
            keys,
            stage="captured",
            channel=channel,
            store_id=store,
            amount=amount,
            currency=currency,
        )
    ]
    if posted is not None:
        out.append(event(f"p{n}-1", posted, "erp", keys, stage="posted"))
    return out


def send(client: Client, batch: list[Any]) -> None:
    answer = client.post(
        "/api/v1/events", orjson.dumps(batch), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200, answer.content
    tick()
    actions.do_fill_rollups()


# New York leaves daylight saving time on 2026-11-01 at 02:00: that day is 25 hours long,
# from 04:00 UTC to 05:00 UTC on 2026-11-02.
FALL_BACK = utc(2026, 11, 1, 15)  # 10:00 in New York, 1 November


@pytest.fixture
def fall_back_orders(ingest_client: Client) -> None:
    do_set_store_zone("nyc", NEW_YORK)
    send(
        ingest_client,
        [
            # posted 23:30 New York time: after midnight UTC, before midnight there: posted
            *order(
                1, FALL_BACK, utc(2026, 11, 2, 4, 30), store="nyc", amount="100", currency="USD"
            ),
            # posted 00:30 New York time on 2 November: a day late
            *order(
                2, FALL_BACK, utc(2026, 11, 2, 5, 30), store="nyc", amount="50.25", currency="USD"
            ),
            # a store without a zone of its own: the UTC day ended at midnight UTC
            *order(3, FALL_BACK, utc(2026, 11, 2, 4, 30), store="ams", amount="70", currency="EUR"),
            # captured 23:30 on 31 October in New York (daylight time), posted at 00:10 the
            # next day there: the same UTC day, but not the same business day
            *order(
                4,
                utc(2026, 11, 1, 3, 30),
                utc(2026, 11, 1, 4, 10),
                store="nyc",
                amount="20",
                currency="USD",
            ),
            # a POS order in euros, posted within minutes
            *order(
                5,
                FALL_BACK,
                FALL_BACK + timedelta(minutes=5),
                store="ams",
                amount="30.5",
                currency="EUR",
                channel="pos",
            ),
            # captured long before the window: not counted
            *order(6, utc(2026, 10, 20, 12), None, store="nyc", amount="9", currency="USD"),
        ],
    )


def kpi(api_client: Client, **filters: str) -> dict[str, Any]:
    window = {"since": iso(utc(2026, 10, 31)), "until": iso(utc(2026, 11, 3)), **filters}
    answer = api_client.get("/api/v1/kpis", window)
    assert answer.status_code == 200, answer.content
    return answer.json()["kpis"]["posting_completeness"]  # type: ignore[no-any-return]


def test_the_business_day_ends_at_local_midnight_across_a_dst_change(
    api_client: Client, fall_back_orders: None
) -> None:
    assert kpi(api_client) == {
        "orders": 5,
        "posted": 2,
        "rate": 0.4,
        # per currency, never summed across them
        "by_currency": {
            "EUR": {"value": 100.5, "value_posted": 30.5},
            "USD": {"value": 170.25, "value_posted": 100.0},
        },
    }
    assert kpi(api_client, store="nyc") == {
        "orders": 3,
        "posted": 1,
        "rate": 1 / 3,
        "by_currency": {"USD": {"value": 170.25, "value_posted": 100.0}},
    }
    assert kpi(api_client, channel="pos") == {
        "orders": 1,
        "posted": 1,
        "rate": 1.0,
        "by_currency": {"EUR": {"value": 30.5, "value_posted": 30.5}},
    }
    assert kpi(api_client, channel="marketplace") == {
        "orders": 0,
        "posted": 0,
        "rate": None,
        "by_currency": {},
    }
    at = utc(2026, 12, 1)
    for since, until in ((utc(2026, 10, 31), utc(2026, 11, 3)), (utc(2026, 10, 1), at)):
        mine = queries.kpi_values(since, until, at=at)["posting_completeness"]
        twin = bruteforce.kpi_values(since, until, at=at)["posting_completeness"]
        assert not bruteforce.compare({"p": mine}, {"p": twin}), (mine, twin)
    assert twin["orders"] == 6


def test_the_business_day_ends_at_the_next_local_midnight() -> None:
    do_set_store_zone("nyc", NEW_YORK)
    days = BusinessDays()
    # 1 November in New York is 25 hours long: it ends at 05:00 UTC the next day
    assert days.day_end(FALL_BACK, "nyc") == utc(2026, 11, 2, 5)
    # 8 March is 23 hours long: from 05:00 UTC to 04:00 UTC the next day
    assert days.day_end(utc(2026, 3, 8, 12), "nyc") == utc(2026, 3, 9, 4)
    # a store without a zone of its own: RECONCILIATION_TIME_ZONE (UTC here)
    assert days.day_end(FALL_BACK, "ams") == utc(2026, 11, 2)
    assert days.verdict(FALL_BACK, utc(2026, 11, 2, 4, 59), "nyc") == (True, utc(2026, 11, 2, 5))
    assert days.verdict(FALL_BACK, utc(2026, 11, 2, 5), "nyc") == (False, utc(2026, 11, 2, 5))
    assert days.verdict(FALL_BACK, None, "nyc") == (False, utc(2026, 11, 2, 5))


def test_an_unposted_order_counts_once_its_day_is_over(ingest_client: Client) -> None:
    do_set_store_zone("nyc", NEW_YORK)
    captured = utc(2026, 11, 3, 15)  # 10:00 in New York; the day ends 05:00 UTC on the 4th
    send(
        ingest_client,
        [
            *order(11, captured, None, store="nyc", amount="40", currency="USD"),
            *order(
                12,
                captured,
                captured + timedelta(minutes=30),
                store="nyc",
                amount="60",
                currency="USD",
            ),
        ],
    )
    since, until = utc(2026, 11, 3), utc(2026, 11, 4)

    def figures(at: datetime) -> dict[str, Any]:
        mine = posting_completeness(since, until, at=at)
        twin = bruteforce.kpi_values(since, until, at=at)["posting_completeness"]
        assert not bruteforce.compare({"p": mine}, {"p": twin}), (mine, twin)
        return mine

    # the day is still running: the posted order counts, the unposted one waits
    running = figures(captured + timedelta(hours=1))
    assert (running["orders"], running["posted"]) == (1, 1)
    assert running["by_currency"] == {"USD": {"value": 60.0, "value_posted": 60.0}}
    # after midnight UTC, before midnight in New York: still running
    assert figures(utc(2026, 11, 4, 4, 59))["orders"] == 1
    over = figures(utc(2026, 11, 4, 5))
    assert (over["orders"], over["posted"], over["rate"]) == (2, 1, 0.5)
    assert over["by_currency"] == {"USD": {"value": 100.0, "value_posted": 60.0}}


ZONES = {
    "nyc": NEW_YORK,
    "lax": "America/Los_Angeles",
    "syd": "Australia/Sydney",
    "ktm": "Asia/Kathmandu",
    "ber": "Europe/Berlin",
    # 29 March: the local day begins at 00:00 UTC and the next at 23:00 UTC, one UTC date
    "lon": "Europe/London",
}


def generate(rng: random.Random, n: int, start: datetime, days: int) -> None:
    for store, zone in ZONES.items():
        do_set_store_zone(store, zone)
    rows = []
    for _ in range(n):
        captured = start + timedelta(seconds=rng.randrange(days * 86400))
        posted = None
        if rng.random() < 0.75:
            posted = captured + timedelta(seconds=rng.randrange(-600, 40 * 3600))
        priced = rng.random() < 0.85
        rows.append(
            Transaction(
                kind=rng.choice(["order"] * 8 + ["return"]),
                channel=rng.choice(["web", "pos", "marketplace"]),
                store_id=rng.choice([*ZONES, "unzoned", ""]),
                amount=Decimal(rng.randrange(1, 100_000)) / 100 if priced else None,
                currency=rng.choice(["USD", "EUR", "JPY", ""]) if priced else "",
                captured_at=captured,
                posted_at=posted,
            )
        )
    Transaction.objects.bulk_create(rows)
    # some merged away: they count nowhere
    losers = list(Transaction.objects.order_by("id").values_list("id", flat=True)[::17])
    winner = Transaction.objects.exclude(id__in=losers).first()
    Transaction.objects.filter(id__in=losers).update(merged_into=winner)
    actions.do_fill_rollups(full=True)


def test_equals_its_twin_on_generated_orders_in_many_zones(settings: Any) -> None:
    settings.RECONCILIATION_TIME_ZONE = "Pacific/Chatham"  # +12:45/+13:45, its own DST
    # the rollups are filled now, and judged as of moments months ago: without minute
    # rollups those moments' partial hours are read raw, as a fill then would have kept them
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "minute_rollups": 0}
    rng = random.Random(7)
    # spans the DST changes of New York (8 March), Berlin and London (29 March) and Sydney
    # (5 April)
    start = utc(2026, 2, 25)
    generate(rng, 1500, start, 50)
    cases: list[tuple[datetime, datetime, datetime, dict[str, str]]] = [
        (start - timedelta(days=2), start + timedelta(days=60), start + timedelta(days=90), {}),
        (start, start + timedelta(days=50), start + timedelta(days=20, hours=7), {}),
        (
            start + timedelta(days=9, hours=5, minutes=13, seconds=7),
            start + timedelta(days=13, hours=2, seconds=1),
            start + timedelta(days=12, hours=22),
            {},
        ),
    ]
    for store in ("nyc", "syd", "ktm", "unzoned"):
        cases.append(
            (start, start + timedelta(days=50), start + timedelta(days=30), {"store": store})
        )
    for channel in ("pos", "web"):
        cases.append(
            (start, start + timedelta(days=40), start + timedelta(days=41), {"channel": channel})
        )
    for since, until, at, filters in cases:
        mine = posting_completeness(
            since, until, at=at, channel=filters.get("channel"), store=filters.get("store")
        )
        twin = bruteforce.kpi_values(since, until, at=at, **filters)["posting_completeness"]
        problems = bruteforce.compare({"p": mine}, {"p": twin})
        assert not problems, (since, until, at, filters, problems)
        assert mine["orders"] > 0
    whole = posting_completeness(start, start + timedelta(days=50), at=start + timedelta(days=60))
    assert 0 < whole["posted"] < whole["orders"]
    assert set(whole["by_currency"]) == {"EUR", "JPY", "USD"}


def test_a_long_window_reads_the_rollup_not_the_orders() -> None:
    rng = random.Random(3)
    start = utc(2025, 12, 1)
    generate(rng, 300, start, 365)
    since, until = start - timedelta(days=30), start + timedelta(days=400)

    def read() -> tuple[dict[str, Any], int]:
        with CaptureQueriesContext(connection) as ctx:
            mine = posting_completeness(since, until, at=until)
        twin = bruteforce.kpi_values(since, until, at=until)["posting_completeness"]
        assert not bruteforce.compare({"p": mine}, {"p": twin}), (mine, twin)
        return mine, len(ctx.captured_queries)

    few, statements = read()
    assert few["orders"] > 200
    # each order's verdict is in the rollup rows of its day
    assert OrderRollup.objects.exclude(posting={}).exists()
    generate(rng, 600, start, 365)
    more, again = read()
    assert more["orders"] > few["orders"] + 400
    assert again == statements  # the same statements, whatever the number of orders


def test_an_alert_rule_watches_the_rate_and_one_currency(fall_back_orders: None) -> None:
    _, plain = do_create_api_token("posting-writer", "write")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    rule = {
        "name": "orders left unposted",
        "kind": "kpi",
        "severity": "warning",
        "kpi": "posting_completeness",
        "field": "rate",
        "op": "<",
        "threshold": 0.95,
        "window_s": 86400 * 60,
    }
    answer = client.post("/api/v1/alert-rules", rule, content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    per_currency = {
        **rule,
        "name": "dollars posted",
        "field": "by_currency.USD.value_posted",
        "op": "<",
        "threshold": 1000,
    }
    answer = client.post("/api/v1/alert-rules", per_currency, content_type="application/json")
    assert answer.status_code in (200, 201), answer.content
    for field in ("by_currency.USD", "by_currency", "by_currency.USD.amount"):
        bad = client.post(
            "/api/v1/alert-rules",
            {**rule, "name": f"bad {field}", "field": field},
            content_type="application/json",
        )
        assert bad.status_code == 422, (field, bad.content)
        assert "by_currency.<currency>.value_posted" in bad.content.decode()

    alert_actions.do_evaluate()
    assert Rule.objects.get(name="orders left unposted").alerts.filter(state="firing").exists()
    assert Rule.objects.get(name="dollars posted").alerts.filter(state="firing").exists()
