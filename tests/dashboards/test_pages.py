"""The pages without a browser: sign-in, search, the order page, the queue, the actions,
and the number of queries each page runs (pinned: constant, whatever the data)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.lib.clock import now
from observatory.transactions.models import Transaction, TransactionKey
from observatory.triage.models import ACKNOWLEDGED, FAILED_HOP, OPEN, RESOLVED, STUCK, Issue
from tests.dashboards import seed
from tests.dashboards.conftest import PASSWORD, make_user

#: Queries per page for a signed-in ops user: session, user, the page's own reads, and
#: the group check that decides whether the action buttons show.
ORDER_PAGE_QUERIES = 13
SEARCH_QUERIES = 6
#: the queue: + the people and teams one may assign to (for people who act), + the
#: filtered list's value per currency (one statement)
QUEUE_QUERIES = 11

PAGES = [
    "/",
    "/orders/",
    "/orders/?q=1001",
    "/orders/1/",
    "/exceptions/",
    "/exceptions/?kind=stuck",
]


def order_id(number: str = seed.ORDER) -> int:
    return TransactionKey.objects.get(kind="order_number", value=number).transaction_id


def issue_of(kind: str, number: str = seed.ORDER) -> Issue:
    return Issue.objects.get(
        kind=kind, transaction_id=order_id(number), state__in=[OPEN, ACKNOWLEDGED]
    )


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries)


# --- access ----------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_every_page_sends_strangers_to_sign_in(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_acting_needs_sign_in_and_a_group_that_acts(client: Client, exec_client: Client) -> None:
    response = client.post("/exceptions/1/acknowledge/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert exec_client.post("/exceptions/1/acknowledge/").status_code == 403
    # reading is fine for executives
    assert exec_client.get("/exceptions/").status_code == 200


@pytest.mark.django_db
def test_the_groups_exist() -> None:
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"ops", "executive", "admin"}


@pytest.mark.django_db
def test_sign_in_and_out(client: Client) -> None:
    make_user("olivia", "ops")
    page = client.get("/accounts/login/?next=/exceptions/")
    assert page.status_code == 200
    assert b'name="username"' in page.content and b"Sign in" in page.content
    bad = client.post("/accounts/login/", {"username": "olivia", "password": "nope"})
    assert bad.status_code == 200 and b'class="errors"' in bad.content
    good = client.post(
        "/accounts/login/", {"username": "olivia", "password": PASSWORD, "next": "/exceptions/"}
    )
    assert good.status_code == 302 and good["Location"] == "/exceptions/"
    home = client.get("/")
    assert b"olivia" in home.content and b"Sign out" in home.content
    out = client.post("/accounts/logout/")
    assert out.status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_the_shell_links_every_page_and_needs_no_internet(ops_client: Client) -> None:
    html = ops_client.get("/").content.decode()
    for href in ("/", "/orders/", "/exceptions/", "/systems/", "/executive/", "/alerts/"):
        assert f'href="{href}"' in html
    assert 'action="/orders/"' in html and 'name="q"' in html
    # every asset is local
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_plotly_bundle_is_the_basic_one_at_the_version_of_the_figures() -> None:
    """The pages draw scatter and bar traces only: plotly.js's official basic bundle,
    vendored from npm with its license, at the plotly.js version plotly.py builds for."""
    import json
    from pathlib import Path

    import plotly

    vendor = Path(settings.BASE_DIR) / "static" / "vendor" / "plotly"
    package = json.loads((vendor / "package.json").read_text())
    assert package["name"] == "plotly.js-basic-dist-min"
    assert (vendor / "LICENSE").read_text().startswith("MIT License")
    full = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert f"plotly.js v{package['version']}" in full.read_text()[:200]
    used = _trace_types_in_figures()
    assert used <= {"scatter", "bar"}, used


def _trace_types_in_figures() -> set[str]:
    """Every trace type the figure modules name."""
    from pathlib import Path

    source = "".join(
        (Path(settings.BASE_DIR) / "observatory" / "dashboards" / name).read_text()
        for name in ("figures.py", "kpi_figures.py")
    )
    kinds = set(re.findall(r'"type": "(\w+)"', source)) - {"date", "category", "log", "linear"}
    return kinds | {m.lower() for m in re.findall(r"go\.(\w+)\(", source)} - {"figure", "layout"}


@pytest.mark.django_db
def test_plotly_bundle_is_served_compressed_and_cached_for_good(ops_client: Client) -> None:
    html = ops_client.get("/systems/").content.decode()
    src = re.search(r'src="(/static/vendor/plotly/plotly-basic\.min\.[0-9a-f]{12}\.js)"', html)
    assert src, "the page names the hashed bundle"
    for encoding in ("br", "gzip"):
        response = ops_client.get(src.group(1), HTTP_ACCEPT_ENCODING=encoding)
        assert response.status_code == 200
        assert response["Content-Encoding"] == encoding
        assert "immutable" in response["Cache-Control"]
        assert int(response["Content-Length"]) < 450_000
        assert not response.streaming


# --- the dashboard ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_empty_dashboard_explains_itself(ops_client: Client) -> None:
    html = ops_client.get("/").content.decode()
    assert "Operations dashboard" in html
    assert "No orders yet" in html


@pytest.mark.django_db
def test_dashboard_shows_real_numbers(ops_client: Client, seeded: datetime) -> None:
    html = ops_client.get("/").content.decode()
    assert re.search(r'data-testid="orders-24h">2<', html)
    unresolved_open = Issue.objects.filter(state=OPEN).count()
    assert unresolved_open >= 2
    assert re.search(rf'data-testid="open-exceptions">{unresolved_open}<', html)
    assert re.search(r'data-testid="failed-24h">2<', html)
    assert "#1001" in html and "#1002" in html


# --- search ----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_search_without_a_query_explains_what_to_type(ops_client: Client) -> None:
    html = ops_client.get("/orders/").content.decode()
    assert "Search by any identifier" in html
    assert "Newest orders" not in html


@pytest.mark.django_db
def test_search_page_lists_the_newest_orders(ops_client: Client, seeded: datetime) -> None:
    html = ops_client.get("/orders/").content.decode()
    assert "Newest orders" in html and "#1001" in html and "#1002" in html


@pytest.mark.django_db
def test_a_whole_key_opens_its_order(ops_client: Client, seeded: datetime) -> None:
    tx = order_id()
    for q in ("#1001", "1001", seed.ERP_SO, seed.TRACKING, f"erp_sales_order={seed.ERP_SO}"):
        response = ops_client.get("/orders/", {"q": q})
        assert response.status_code == 302, q
        assert response["Location"] == f"/orders/{tx}/"


@pytest.mark.django_db
def test_a_prefix_lists_matching_orders(ops_client: Client, seeded: datetime) -> None:
    html = ops_client.get("/orders/", {"q": "#100"}).content.decode()
    assert "2 matches" in html
    assert f'href="/orders/{order_id()}/"' in html
    assert f'href="/orders/{order_id(seed.STUCK_ORDER)}/"' in html
    # columns: stage, channel, open exceptions
    assert "Shipped" in html and "web" in html
    # a prefix of a single order lists it rather than jumping to it
    one = ops_client.get("/orders/", {"q": "SO-482"})
    assert one.status_code == 200 and b"1 match " in one.content
    # and ?list keeps an exact hit on the list
    assert ops_client.get("/orders/", {"q": "#1001", "list": "1"}).status_code == 200


@pytest.mark.django_db
def test_no_match_is_explained(ops_client: Client, seeded: datetime) -> None:
    html = ops_client.get("/orders/", {"q": "ZZ-nothing"}).content.decode()
    assert "No order has a key starting with" in html


@pytest.mark.django_db
def test_search_runs_a_fixed_number_of_queries(ops_client: Client, seeded: datetime) -> None:
    assert count_queries(ops_client, "/orders/?q=%23100") == SEARCH_QUERIES  # two orders
    assert count_queries(ops_client, "/orders/?q=SO-48") == SEARCH_QUERIES  # one
    assert count_queries(ops_client, "/orders/?q=nothing") <= SEARCH_QUERIES  # none


# --- one order -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_order_page_shows_timeline_chart_keys_exceptions_and_hops(
    ops_client: Client, seeded: datetime
) -> None:
    html = ops_client.get(f"/orders/{order_id()}/").content.decode()
    # the stage timeline: time, system, SLA verdict, the platform's own words
    timeline = html[html.index('data-testid="timeline"') : html.index('data-testid="exceptions"')]
    for stage in ("Captured", "Validated", "Posted", "Picked", "Shipped"):
        assert stage in timeline
    assert "Late" in timeline  # posted 3 min after capture, SLA 60 s
    assert "Pending Fulfillment" in timeline and "erp" in timeline
    # the swimlane: a plotly figure with the local bundle
    assert 'data-figure="swimlane-json"' in html
    assert '<script type="application/json" id="swimlane-json">' in html
    assert re.search(r"/static/vendor/plotly/plotly-basic\.min\.[0-9a-f]{12}\.js", html)
    # keys
    for value in (seed.ORDER, seed.SHOPIFY_ID, seed.ERP_SO, seed.SHIPMENT, seed.TRACKING):
        assert value in html
    # exceptions with their buttons
    failed = issue_of(FAILED_HOP)
    assert f'data-issue="{failed.id}"' in html
    assert f'action="/exceptions/{failed.id}/acknowledge/"' in html
    # hops, each with its attributes
    assert html.count('<details class="hop') == 7
    assert "ERP answered 503 Service Unavailable" in html
    assert "easypost.carrier" in html


@pytest.mark.django_db
def test_executives_see_no_buttons(exec_client: Client, seeded: datetime) -> None:
    html = exec_client.get(f"/orders/{order_id()}/").content.decode()
    assert "/acknowledge/" not in html and "/resolve/" not in html


@pytest.mark.django_db
def test_unknown_order_is_404(ops_client: Client) -> None:
    assert ops_client.get("/orders/999999/").status_code == 404


@pytest.mark.django_db
def test_order_page_query_count_is_constant(
    ops_client: Client, ingest_client: Client, seeded: datetime
) -> None:
    url = f"/orders/{order_id()}/"
    before = count_queries(ops_client, url)
    # ten more hops, more keys, another failure: not one query more
    t = seeded + timedelta(hours=1)
    spans = [
        seed.span(
            f"tracker update {i}",
            t + timedelta(minutes=i),
            50,
            trace_id=f"{i:032x}",
            error="carrier API timeout" if i % 3 == 0 else "",
            attributes={
                "retail.system": "carrier",
                "retail.key.tracking_number": seed.TRACKING,
                "retail.retry.attempt": i % 2,
            },
        )
        for i in range(1, 11)
    ]
    response = ingest_client.post(
        "/v1/traces", seed.otlp("carrier-bridge", spans), content_type="application/json"
    )
    assert response.status_code == 200
    seed.stitch()
    assert before == ORDER_PAGE_QUERIES
    assert count_queries(ops_client, url) == ORDER_PAGE_QUERIES


@pytest.mark.django_db
def test_a_merged_transaction_redirects_to_the_winner(
    ops_client: Client, ingest_client: Client
) -> None:
    t = now() - timedelta(minutes=30)
    lone = [
        seed.event("urn:test", "shopify", t, system="shopify", keys={"shopify_order_id": "77"}),
        seed.event("urn:test", "erp", t, system="erp", keys={"order_number": "#2001"}),
    ]
    import orjson

    assert (
        ingest_client.post(
            "/api/v1/events", orjson.dumps(lone), content_type="application/cloudevents-batch+json"
        ).status_code
        == 200
    )
    seed.stitch()
    first = TransactionKey.objects.get(value="77").transaction_id
    second = TransactionKey.objects.get(value="#2001").transaction_id
    assert first != second
    link = seed.event(
        "urn:test",
        "mw",
        t + timedelta(minutes=1),
        system="middleware",
        keys={"shopify_order_id": "77", "order_number": "#2001"},
    )
    assert (
        ingest_client.post(
            "/api/v1/events", orjson.dumps(link), content_type="application/cloudevents+json"
        ).status_code
        == 200
    )
    seed.stitch()
    winner = Transaction.objects.get(keys__value="77")
    loser = first if winner.id == second else second
    response = ops_client.get(f"/orders/{loser}/")
    assert response.status_code == 302
    assert response["Location"] == f"/orders/{winner.id}/"
    assert b"was merged into this one" in ops_client.get(response["Location"]).content


# --- acting on exceptions --------------------------------------------------------------------
@pytest.mark.django_db
def test_acknowledge_then_resolve_from_the_order_page(ops_client: Client, seeded: datetime) -> None:
    issue = issue_of(FAILED_HOP)
    back = f"/orders/{order_id()}/"
    response = ops_client.post(f"/exceptions/{issue.id}/acknowledge/", {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    issue.refresh_from_db()
    assert issue.state == ACKNOWLEDGED and issue.acknowledged_by == "olivia"
    html = ops_client.get(back).content.decode()
    assert "acknowledged." in html  # the message
    assert 'data-state="acknowledged"' in html

    response = ops_client.post(f"/exceptions/{issue.id}/resolve/", {"next": back})
    issue.refresh_from_db()
    assert issue.state == RESOLVED and issue.resolved_by == "olivia"
    # resolving again changes nothing and says so politely; acknowledging a resolved one warns
    response = ops_client.post(f"/exceptions/{issue.id}/acknowledge/", {"next": back})
    assert response.status_code == 302
    assert b"already resolved" in ops_client.get(back).content


@pytest.mark.django_db
def test_actions_never_redirect_off_site(ops_client: Client, seeded: datetime) -> None:
    issue = issue_of(FAILED_HOP)
    response = ops_client.post(
        f"/exceptions/{issue.id}/acknowledge/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == "/exceptions/"


@pytest.mark.django_db
def test_actions_are_post_only(ops_client: Client, seeded: datetime) -> None:
    issue = issue_of(FAILED_HOP)
    assert ops_client.get(f"/exceptions/{issue.id}/acknowledge/").status_code == 405
    assert ops_client.post("/exceptions/999999/resolve/").status_code == 404


# --- the queue -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_queue_lists_unresolved_oldest_first_with_age_buckets(
    ops_client: Client, seeded: datetime
) -> None:
    html = ops_client.get("/exceptions/").content.decode()
    unresolved = Issue.objects.exclude(state=RESOLVED).order_by("opened_at", "id")
    ids = [int(i) for i in re.findall(r'<tr data-issue="(\d+)"', html)]
    assert ids == [i.id for i in unresolved]
    assert f'data-testid="queue-total">{len(ids)} in this view' in html
    for name in ("under_1h", "h1_to_4", "h4_to_24", "over_24h"):
        assert f'data-bucket="{name}"' in html
    # each row links to its order
    assert f'href="/orders/{order_id(seed.STUCK_ORDER)}/"' in html


@pytest.mark.django_db
def test_queue_filters_by_kind_system_owner_and_state(ops_client: Client, seeded: datetime) -> None:
    def listed(**params: str) -> set[int]:
        html = ops_client.get("/exceptions/", params).content.decode()
        return {int(i) for i in re.findall(r'<tr data-issue="(\d+)"', html)}

    unresolved = Issue.objects.exclude(state=RESOLVED)
    assert listed(kind=STUCK) == set(unresolved.filter(kind=STUCK).values_list("id", flat=True))
    assert listed(system="wms") == set(unresolved.filter(system="wms").values_list("id", flat=True))
    owner = issue_of(FAILED_HOP).owner
    assert owner
    assert listed(owner=owner) == set(unresolved.filter(owner=owner).values_list("id", flat=True))
    resolved = set(Issue.objects.filter(state=RESOLVED).values_list("id", flat=True))
    assert resolved  # the ERP's failed post, closed by its successful retry
    assert listed(state="resolved") == resolved
    assert listed(state="all") == set(Issue.objects.values_list("id", flat=True))
    assert listed(kind=STUCK, system="nowhere") == set()
    # an unknown filter value is ignored, not an error
    assert listed(kind="bogus") == set(unresolved.values_list("id", flat=True))


@pytest.mark.django_db
def test_queue_links_keep_the_filters(ops_client: Client, seeded: datetime) -> None:
    html = ops_client.get("/exceptions/", {"kind": STUCK, "owner": "erp-team"}).content.decode()
    bucket_links = re.findall(r'href="([^"]*)" data-bucket=', html)
    assert bucket_links and all("kind=stuck" in h and "owner=erp-team" in h for h in bucket_links)
    assert 'value="stuck" selected' in html
    assert "Clear filters" in html
    # the buttons come back to the filtered view
    issue = issue_of(STUCK, seed.STUCK_ORDER)
    html = ops_client.get("/exceptions/", {"kind": STUCK}).content.decode()
    assert 'name="next" value="/exceptions/?kind=stuck"' in html
    response = ops_client.post(
        f"/exceptions/{issue.id}/acknowledge/", {"next": "/exceptions/?kind=stuck"}
    )
    assert response["Location"] == "/exceptions/?kind=stuck"


@pytest.mark.django_db
def test_age_bucket_filter(ops_client: Client, seeded: datetime) -> None:
    at = now()
    old = issue_of(STUCK, seed.STUCK_ORDER)
    Issue.objects.filter(pk=old.pk).update(opened_at=at - timedelta(hours=30))
    html = ops_client.get("/exceptions/", {"age": "over_24h"}).content.decode()
    assert {int(i) for i in re.findall(r'<tr data-issue="(\d+)"', html)} == {old.pk}
    assert re.search(
        r'data-bucket="over_24h">\s*<div class="stat-label">Over 24 h</div>\s*'
        r'<div class="stat-value">1<',
        html,
    )


@pytest.mark.django_db
def test_empty_queue_is_explained(ops_client: Client) -> None:
    assert "The queue is empty" in ops_client.get("/exceptions/").content.decode()
    html = ops_client.get("/exceptions/", {"kind": "stuck"}).content.decode()
    assert "No exception matches these filters" in html


@pytest.mark.django_db
def test_queue_query_count_is_constant(ops_client: Client, seeded: datetime) -> None:
    before = count_queries(ops_client, "/exceptions/?state=all")
    assert before == QUEUE_QUERIES
    opened = Issue.objects.order_by("id").first()
    assert opened is not None
    Issue.objects.bulk_create(
        [
            Issue(
                kind=STUCK,
                transaction_id=opened.transaction_id,
                system="erp",
                owner="erp-team",
                summary=f"extra {i}",
                dedupe_key=f"test:{i}",
                opened_at=opened.opened_at,
            )
            for i in range(20)
        ]
    )
    assert count_queries(ops_client, "/exceptions/?state=all") == before
