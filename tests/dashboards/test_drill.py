"""Drill-down: every number on ``/`` and ``/executive/`` links to the orders behind it, and
the orders list behind a link counts exactly what the number counted.

Two days of the simulator's chaos scenario go through the real ingest endpoints (stuck
orders, failed steps, double postings) with ``seed.py``'s late posting on top, then the pipeline and the rollup
fill run as the worker would. Each linked figure is then read from the page and from
``GET /api/v1/kpis`` for the link's own window, and the link is followed.
"""

from __future__ import annotations

import csv
import html as html_lib
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.access.actions import do_create_ingest_token
from observatory.kpis import actions
from tests.dashboards import seed
from tests.dashboards.conftest import make_user
from tests.kpis.traffic import start_traffic
from tests.pipeline import tick

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: queries of one page of the filtered list, whatever it holds: session, user, the rows,
#: the count, the rows' keys and open exceptions, the SLA policies (for ``late``)
LIST_QUERIES = 7


@pytest.fixture
def traffic(live_server: object) -> Client:
    _, token = do_create_ingest_token("drill-tests")
    sent = start_traffic(live_server.url, token, scenario="chaos", orders=160, days=2, seed=7)  # type: ignore[attr-defined]
    try:
        sent.send_until(sent.start)
    finally:
        sent.close()
    # seed.py's two orders on top: #1001 posted three minutes after its capture (late)
    seed.send(Client(HTTP_AUTHORIZATION=f"Bearer {token}"))
    tick()
    actions.do_fill_rollups()
    client = Client()
    client.force_login(make_user("olivia", "ops"))
    return client


def drill_links(html: str) -> dict[str, str]:
    """data-drill name -> the link's address."""
    out = {}
    for tag in re.findall(r"<a [^>]*data-drill=[^>]*>", html):
        name = re.search(r'data-drill="([^"]+)"', tag)
        href = re.search(r'href="([^"]+)"', tag)
        assert name and href, tag
        out[name.group(1)] = html_lib.unescape(href.group(1))
    return out


def listed(client: Client, url: str) -> int:
    """The total the orders list shows for ``url``, checked against its CSV."""
    page = client.get(url)
    assert page.status_code == 200
    total = int(re.search(r'data-testid="orders-total">(\d+)<', page.content.decode()).group(1))  # type: ignore[union-attr]
    sep = "&" if "?" in url else "?"
    body = b"".join(client.get(f"{url}{sep}format=csv").streaming_content).decode()  # type: ignore[attr-defined]
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["id", "label", "kind"]
    assert len(rows) - 1 == total, url
    return total


def window(url: str) -> dict[str, str]:
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return params


def kpis(client: Client, params: dict[str, str]) -> dict[str, dict[str, object]]:
    query = {k: params[k] for k in ("since", "until", "channel", "store") if k in params}
    answer = client.get("/api/v1/kpis", query)
    assert answer.status_code == 200, answer.content
    got: dict[str, dict[str, object]] = answer.json()["kpis"]
    return got


def test_executive_figures_equal_the_orders_behind_them(traffic: Client) -> None:
    client = traffic
    html = client.get("/executive/?window=7").content.decode()
    links = drill_links(html)
    assert {"orders", "exception_rate", "duplicate_rate", "backlog"} <= set(links)
    assert any(k.startswith("acceptance_to_posting") for k in links)

    params = window(links["orders"])
    figures = kpis(client, params)
    orders = figures["exception_rate"]["orders"]
    assert isinstance(orders, int) and orders > 50
    assert listed(client, links["orders"]) == orders
    assert re.search(rf'data-testid="value-orders">{orders:,}<', html)

    problem = figures["exception_rate"]["with_exception"]
    assert isinstance(problem, int) and problem > 0
    assert listed(client, links["exception_rate"]) == problem

    assert listed(client, links["duplicate_rate"]) == figures["duplicate_rate"]["posted_twice"]

    backlog = figures["reconciliation_backlog"]["total"]
    assert isinstance(backlog, int) and backlog > 0
    assert listed(client, links["backlog"]) == backlog

    # per channel: orders posted after their channel's deadline = count - within share
    late_total = 0
    for name, url in links.items():
        if not name.startswith("acceptance_to_posting"):
            continue
        p = window(url)
        a2p = kpis(client, p)["acceptance_to_posting"]
        count, within = a2p["count"], a2p["within_sla"]
        assert isinstance(count, int)
        expected = count - round(float(within or 0) * count) if count else 0
        got = listed(client, url)
        assert got == expected, (name, a2p)
        late_total += got
    assert late_total > 0, "seed.py's #1001 was posted late"


def test_ops_numbers_equal_the_orders_behind_them(traffic: Client) -> None:
    client = traffic
    html = client.get("/").content.decode()
    links = drill_links(html)
    tile = int(re.search(r'data-testid="orders-24h">(\d+)<', html).group(1))  # type: ignore[union-attr]
    assert listed(client, links["orders-24h"]) == tile
    # the failed-steps tile counts steps; its link lists the orders they failed in
    assert "failed_since=" in links["failed-24h"]
    assert listed(client, links["failed-24h"]) >= (1 if 'failed-24h">0<' not in html else 0)

    # every backlog row: the orders waiting for that stage
    rows = re.findall(r'href="([^"]*awaiting=[^"]+)"[^>]*data-testid="backlog-(\w+)">(\d+)<', html)
    assert rows, "the chaos scenario leaves orders past a deadline"
    for href, _stage, count in rows:
        assert listed(client, html_lib.unescape(href)) == int(count)

    # every flow arrow with orders: the orders it measured
    edges = re.findall(
        r'<a href="([^"]+)" class="edge-link".*?class="edge-sub">([\d,]+) orders?<', html, re.S
    )
    assert edges
    for href, count in edges:
        assert listed(client, html_lib.unescape(href)) == int(count.replace(",", ""))


def test_the_list_filters_sort_page_and_cost_a_fixed_number_of_queries(traffic: Client) -> None:
    client = traffic
    base = "/orders/?kind=order&condition=late"
    for url in (base, f"{base}&sort=value", "/orders/?condition=problem&sort=oldest&page=2"):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        assert len(ctx.captured_queries) <= LIST_QUERIES, [q["sql"] for q in ctx.captured_queries]
    one = client.get("/orders/?kind=order&sort=value").content.decode()
    assert "Highest value first" in one or "highest value first" in one
    # a bad value is named, and the rest of the filters still apply
    bad = client.get("/orders/?kind=order&condition=nonsense&since=yesterday").content.decode()
    assert "condition: &#x27;nonsense&#x27; is not one of" in bad
    assert "since: &#x27;yesterday&#x27; is not an ISO 8601 time" in bad
    everything = listed(client, "/orders/?kind=order")
    assert everything > 50
    pages = re.search(r"page 1 of (\d+)", client.get("/orders/?kind=order").content.decode())
    assert pages and int(pages.group(1)) == -(-everything // 50)
