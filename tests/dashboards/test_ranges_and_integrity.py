"""The time range of the pages (``lib/timerange.py``, ``templates/_timerange.html``), and
the ops dashboard's duplicates, conflicts and silence per source. Hops go in through the
CloudEvents endpoint; the pipeline (stitch, triage, KPI fill) runs as the worker runs it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.lib.clock import now
from observatory.pipeline.wiring import once as pipeline_once
from observatory.transactions.actions import do_stitch
from observatory.triage.models import CONFLICT, SILENCE, Issue
from tests.triage.helpers import T0, contract_policies, ev, send

pytestmark = pytest.mark.django_db
M = timedelta(minutes=1)
S = timedelta(seconds=1)


def web(number: str, at: Any, **data: Any) -> dict[str, Any]:
    keys = {"order_number": number, "shopify_order_id": f"55{number.lstrip('#')}"}
    return ev("shopify", keys, at, stage="captured", channel="web", **data)


def figure(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</', html, re.S)
    assert found, testid
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_the_range_in_the_url_sets_the_figures(ingest_client: Client, ops_client: Client) -> None:
    t = now()
    send(
        ingest_client,
        *[web(f"#R{i}", t - 30 * M - i * S) for i in range(2)],
        *[web(f"#R{i}", t - 5 * 60 * M - i * S) for i in range(2, 5)],
    )
    do_stitch()
    hour = ops_client.get("/?range=1h").content.decode()
    day = ops_client.get("/?range=24h").content.decode()
    assert figure(hour, "orders-24h") == "2" and "Orders, last hour" in hour
    assert figure(day, "orders-24h") == "5" and "Orders, last 24 hours" in day
    # the live part follows the same range over the websocket and the fallback
    assert 'data-ws="/ws/ops/?range=1h"' in hour
    assert figure(ops_client.get("/ops/live/?range=1h").content.decode(), "orders-24h") == "2"
    # a custom range: the three older orders only
    since = (t - 6 * 60 * M).strftime("%Y-%m-%dT%H:%MZ")
    until = (t - 4 * 60 * M).strftime("%Y-%m-%dT%H:%MZ")
    custom = ops_client.get(f"/?range=custom&from={since}&to={until}").content.decode()
    assert figure(custom, "orders-24h") == "3"
    assert 'data-testid="range-words">' in custom and " UTC</b>" in custom
    # the orders list and the exceptions take the same range
    listed = ops_client.get("/orders/?range=1h").content.decode()
    assert "#R0" in listed and "#R1" in listed and "#R3" not in listed
    assert "#R3" in ops_client.get("/orders/").content.decode()  # all time by default
    for url in ("/exceptions/?range=7d", "/systems/?range=90d", "/executive/?range=7d"):
        page = ops_client.get(url)
        assert page.status_code == 200, url
        assert 'class="active" aria-current="true"' in page.content.decode(), url
    # the older links to /systems/ still work
    assert (
        'data-range="7d" class="active"' in ops_client.get("/systems/?period=7d").content.decode()
    )


@pytest.mark.parametrize("path", ["/", "/orders/", "/exceptions/", "/systems/", "/executive/"])
def test_a_bad_range_is_named_and_the_page_shows_its_default(ops_client: Client, path: str) -> None:
    answer = ops_client.get(f"{path}?range=custom&from=2026-12-02&to=2026-12-01")
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'data-testid="range-error">to: must be after from. Showing ' in html
    html = ops_client.get(f"{path}?range=fortnight").content.decode()
    assert "range: must be one of 1h, 24h, 7d, 30d, 90d" in html


def test_duplicates_conflicts_and_silence_per_source(
    ingest_client: Client, ops_client: Client, api_client: Client
) -> None:
    contract_policies()
    start = now()
    first = web("#D0", T0)
    send(
        ingest_client,
        first,
        ev("erp", {"order_number": "#D0", "erp_sales_order": "SO-D0"}, T0 + 20 * S, stage="posted"),
    )
    # Shopify re-delivers its first event twice; the middleware sends a hop whose Shopify
    # id clashes with the order's
    send(ingest_client, first, first)
    send(
        ingest_client,
        ev(
            "middleware",
            {"order_number": "#D0", "shopify_order_id": "999999"},
            T0 + 30 * S,
            stage="validated",
        ),
    )
    # then the ERP stops reporting while Shopify takes five more orders
    send(ingest_client, *[web(f"#D{i}", T0 + i * M) for i in range(1, 6)])
    pipeline_once(clock=lambda: T0 + 10 * M, wall=lambda: start + 11 * M)
    assert Issue.objects.filter(kind=SILENCE, system="erp").exists()
    assert Issue.objects.filter(kind=CONFLICT, system="middleware").count() == 1

    since, until = T0 - 60 * M, T0 + 60 * M
    q = f"since={since.isoformat()}&until={until.isoformat()}".replace("+", "%2B")
    answer = api_client.get(f"/api/v1/kpis?{q}").json()
    kpis = answer["kpis"]["duplicate_rate"]["by_source"]
    assert kpis["shopify"] == {"deliveries": 8, "duplicates": 2, "rate": 0.25}

    r = "range=custom&from=" + since.strftime("%Y-%m-%dT%H:%MZ") + "&to="
    html = ops_client.get("/?" + r + until.strftime("%Y-%m-%dT%H:%MZ")).content.decode()
    assert "Duplicates, conflicts and silence" in html
    # duplicates: the KPI's own figures, per source
    assert figure(html, "dup-shopify") == "2" and figure(html, "dup-rate-shopify") == "25.0 %"
    assert figure(html, "dup-rate-erp") == "0.0 %"
    # conflicts: one of the middleware's one hop
    assert figure(html, "conflicts-middleware") == "1"
    assert figure(html, "conflict-rate-middleware") == "100.0 %"
    assert 'href="/exceptions/?kind=conflict&amp;system=middleware&amp;state=all"' in html
    # silence: the ERP, from its first missed deadline to the end of the range
    silence = Issue.objects.get(kind=SILENCE, system="erp")
    silent_s = (until - silence.opened_at).total_seconds()
    assert re.search(r'data-testid="silent-erp">.*silent now', html)
    assert figure(html, "silent-rate-erp") == f"{silent_s / 7200:.1%}".replace("%", " %")
    assert figure(html, "silent-shopify") == "never"
