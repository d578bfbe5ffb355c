"""The KPI pages through Django's test client: real numbers, CSV, sign-in, query counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from observatory.kpis import actions
from tests.dashboards import seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def filled(seeded: datetime) -> datetime:
    actions.do_fill_rollups()
    return seeded


def queries_of(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/", "/ops/live/", "/executive/", "/systems/", "/systems/erp/"])
def test_sign_in_required(client: Client, url: str) -> None:
    answer = client.get(url)
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


def test_ops_dashboard(ops_client: Client, filled: datetime) -> None:
    html = ops_client.get("/").content.decode()
    assert "Operations dashboard" in html
    assert re.search(r'data-testid="orders-24h">2<', html)
    # the systems of seed.py, each a tile
    for system in ("shopify", "middleware", "erp", "wms", "carrier"):
        assert f'data-system="{system}"' in html
    # #1002 waits for the ERP; #1001's shipment was never shown in Shopify
    assert 'data-testid="backlog-posted">1<' in html
    assert 'data-testid="backlog-fulfillment_synced">1<' in html
    # the newest failures link to their order, with the error
    assert "location DC-2 has no stock for SKU TEE-M-BLK" in html
    assert re.search(r'href="/orders/\d+/">#1001</a>', html)
    # the flow map: validated -> posted took 2 min 56 s for #1001
    assert "typical 2.9 min" in html
    assert 'data-ws="/ws/ops/?range=24h"' in html
    live = ops_client.get("/ops/live/").content.decode()
    assert 'data-testid="orders-24h">2<' in live and "<html" not in live


def test_executive(exec_client: Client, filled: datetime) -> None:
    html = exec_client.get("/executive/").content.decode()
    assert "Executive overview" in html
    assert re.search(r'data-testid="value-orders">2<', html)
    # #1001 took 3 minutes to reach the ERP: its p95, and 0 % within the 60 s deadline
    # per channel, against the channel's own deadline
    assert re.search(r'data-testid="value-acceptance_to_posting-web">3.0 min<', html)
    assert "0.0% within 1 min" in html
    assert re.search(r'data-testid="value-exception_rate">100.0 %<', html)
    for key in (
        "posting",
        "exceptions",
        "duplicates",
        "backlog",
        "inventory",
        "resolution",
    ):
        assert f'data-chart="{key}"' in html
        assert f'href="/executive/{key}.csv?window=30"' in html
    assert "vendor/plotly/plotly-basic.min." in html
    # filters keep to what exists
    assert '<option value="web">web</option>' in html
    web = exec_client.get("/executive/", {"channel": "web", "window": "7"}).content.decode()
    assert "Last 7 days, web orders" in web


def test_executive_csv(exec_client: Client, filled: datetime) -> None:
    answer = exec_client.get("/executive/posting.csv", {"window": "30"})
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert len(rows) == 30
    posted = [r for r in rows if r["orders_posted"] != "0"]
    assert len(posted) == 1 and posted[0]["channel"] == "web"
    assert abs(float(posted[0]["p95_s"]) - 180) < 1
    for chart in (
        "posting",
        "slo",
        "exceptions",
        "duplicates",
        "backlog",
        "inventory",
        "resolution",
        "summary",
    ):
        answer = exec_client.get(f"/executive/{chart}.csv")
        assert answer.status_code == 200, chart
        assert len(answer.content.decode().splitlines()) >= 2, chart
    summary = list(
        csv.DictReader(io.StringIO(exec_client.get("/executive/summary.csv").content.decode()))
    )
    assert {r["kpi"] for r in summary} >= {"orders", "acceptance_to_posting:web", "exception_rate"}
    assert exec_client.get("/executive/nothing.csv").status_code == 404


def test_systems(ops_client: Client, filled: datetime) -> None:
    html = ops_client.get("/systems/").content.decode()
    assert 'data-testid="hops-erp">2<' in html
    assert 'data-testid="errors-erp"><span class="badge red">50.0 %<' in html
    detail = ops_client.get("/systems/wms/").content.decode()
    assert "reserve stock" in detail and "pick_pack" in detail
    assert "location DC-2 has no stock for SKU TEE-M-BLK" in detail
    assert re.search(r'href="/orders/\d+/">#1001</a>', detail)
    assert ops_client.get("/systems/nosuch/").status_code == 404


#: Statements per page, whatever the number of orders, hops, systems or days: reads are
#: set-based (the backlog is one statement over the stages that are late).
# /executive/: the time to the ERP per channel with a posting deadline (web, POS) reads
# each channel's rollups for the period and the one before; the service levels read the
# SLA policies once (their totals are the cards')
# and the business outcomes read each of their six KPIs for the period and the one before
# (posting completeness: from the cards' order totals for the period, which the page reads
# once; for the period before, whose bounds differ from the cards', the orders rollup's
# rows, the raw facts of its edges and the stores' time zones they are judged in); the
# SLA policies, the store zones and the raw facts of the hour not yet rolled up are read
# once for the whole page (lib.memo), not once a figure, and the inventory chart's total
# is the cards' own
# /systems/: the health model reads the streams, the hops waiting to be stitched, the arrival
# lags, the firing alerts and the silence exceptions
# /: the same health model for its cards and flow nodes, and the duplicates, conflicts and
# silence per source (the hop rollups, the conflict and the silence exceptions), and the
# value at risk (the value_at_risk KPI's one statement for its card, stages and tiles)
PINNED = {"/": 32, "/executive/": 37, "/systems/": 12, "/systems/erp/": 16}


def test_pages_run_a_fixed_number_of_queries(
    ops_client: Client, ingest_client: Client, filled: datetime
) -> None:
    urls = tuple(PINNED)
    assert {url: queries_of(ops_client, url) for url in urls} == PINNED
    # more orders, in other hours and days, from another channel and system: same counts
    events = []
    for i in range(12):
        at = filled - timedelta(hours=5 * i)
        keys = {"pos_receipt": f"ST-1-{i}"}
        events.append(
            seed.event(
                "urn:pos",
                "pos.sale",
                at,
                system="pos",
                stage="captured",
                channel="pos",
                store_id=f"ST-{i % 3}",
                keys=keys,
            )
        )
        events.append(
            seed.event(
                "urn:erp",
                "erp.post",
                at + timedelta(minutes=20),
                system="erp",
                stage="posted",
                keys=keys,
                outcome="error" if i % 4 else "ok",
            )
        )
    answer = ingest_client.post(
        "/api/v1/events", orjson.dumps(events), content_type="application/cloudevents-batch+json"
    )
    assert answer.status_code == 200
    seed.stitch()
    actions.do_fill_rollups()
    assert {url: queries_of(ops_client, url) for url in urls} == PINNED
