"""In headless Chromium: the trace waterfall opened from an order's trace link (spans sent
by the OpenTelemetry SDK exporter, one with a recorded exception), and the executive page
with its period changed, every chart following, no axis label clipped. Screenshots at
1440 and 390 px wide land in ``tests/screenshots/``: look at them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from playwright.sync_api import sync_playwright

from observatory.kpis import actions
from observatory.transactions.models import TransactionKey
from tests.dashboards import seed
from tests.dashboards.conftest import PASSWORD, make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, PHONE, SHOTS, shot
from tests.dashboards.test_traces import order_trace
from tests.triage.helpers import stitch

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ("posting", "exceptions", "duplicates", "backlog", "inventory", "resolution")


@dataclass(frozen=True)
class Site:
    url: str
    tx_id: int
    trace_id: str


@pytest.fixture
def site(live_server: Any, ingest_token: str) -> Site:
    """seed.py's orders through the ingest endpoints, and order #5001's trace through the
    OpenTelemetry SDK exporter; stitched and rolled up as the worker would. Every database
    read happens here, before Chromium starts."""
    seed.send(Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}"))
    spans, trace_id, _ = order_trace()
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {ingest_token}"},
        timeout=10,
    )
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    stitch()
    actions.do_fill_rollups()
    make_user("olivia", "ops")
    make_user("evan", "executive")
    tx_id = TransactionKey.objects.get(kind="order_number", value="#5001").transaction_id
    return Site(live_server.url, tx_id, trace_id)


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_trace_waterfall_from_an_orders_trace_link(browser: Any, site: Site) -> None:
    base = site.url
    for name, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            sign_in(page, base, "olivia")
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/orders/{site.tx_id}/")
            failed = page.locator("details.hop.failed").first
            failed.locator("> summary").click()
            # the hop row: the exception event, its stack trace folded until asked for
            event = failed.locator("[data-testid=exception-event]")
            assert "TaxCodeRejected" in event.inner_text()
            trace_text = event.locator("details.stacktrace pre")
            assert trace_text.is_hidden()
            event.locator("details.stacktrace summary").click()
            assert "Traceback (most recent call last)" in trace_text.inner_text()
            shot(page, f"order-exception-{name}")
            # the trace link of the hop's details (the summary's column hides on phones)
            failed.locator(f".hop-body a[href='/traces/{site.trace_id}/']").click()
            page.wait_for_url(f"{base}/traces/{site.trace_id}/")
            waterfall = page.locator("[data-testid=waterfall]")
            rows = waterfall.locator("details.wf-row")
            assert rows.count() == 3
            depths = [rows.nth(i).get_attribute("data-depth") for i in range(3)]
            assert depths == ["0", "1", "2"]
            # each bar lies inside its track, the root's over the whole of it
            track = rows.nth(0).locator(".wf-track").bounding_box()
            bar = rows.nth(0).locator(".wf-bar").bounding_box()
            assert abs(bar["x"] - track["x"]) < 1.5
            assert abs(bar["width"] - track["width"]) < 1.5
            child = rows.nth(1).locator(".wf-bar").bounding_box()
            assert (
                child["x"] >= track["x"]
                and child["x"] + child["width"] <= track["x"] + track["width"] + 1
            )
            rows.nth(1).locator("> summary").click()
            body = rows.nth(1).locator(".hop-body")
            assert "tax code TX-9 unknown" in body.inner_text()
            assert body.locator(f"a[href='/orders/{site.tx_id}/']").count() == 1
            # the page fits the screen: no sideways scrolling
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], width
            shot(page, f"trace-{name}")
            # the transaction chip leads back to the order
            page.locator("[data-testid=trace-transactions] a").first.click()
            page.wait_for_url(f"{base}/orders/{site.tx_id}/")
            assert errors == [], errors
        finally:
            context.close()


def _clipped_labels(page: Any, chart: str) -> list[str]:
    """Tick labels of the chart's axes that stick out of its drawing (clipped)."""
    svg = page.locator(f"#chart-{chart} .main-svg").first.bounding_box()
    out = []
    ticks = page.locator(
        f"#chart-{chart} .xtick text, #chart-{chart} .ytick text, #chart-{chart} .y2tick text"
    )
    for i in range(ticks.count()):
        box = ticks.nth(i).bounding_box()
        if box is None or not box["width"]:
            continue
        if box["x"] < svg["x"] - 0.5 or box["x"] + box["width"] > svg["x"] + svg["width"] + 0.5:
            out.append(ticks.nth(i).inner_text())
    return out


def _x_lengths(page: Any, chart: str) -> list[int]:
    return list(
        page.evaluate(f"Array.from(document.getElementById('chart-{chart}').data, t => t.x.length)")
    )


def test_executive_period_reaches_every_chart(browser: Any, site: Site) -> None:
    base = site.url
    for name, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            sign_in(page, base, "evan")
            page.wait_for_url(f"{base}/executive/")  # executives land on their overview
            for chart in CHARTS:
                page.wait_for_selector(f"#chart-{chart}.js-plotly-plot .main-svg", timeout=15_000)
            assert all(n == 30 for n in _x_lengths(page, "exceptions"))
            page.select_option("#f-window", "7")
            page.click("form.exec-filters button[type=submit]")
            page.wait_for_url("**/executive/?window=7*")
            for chart in CHARTS:
                page.wait_for_selector(f"#chart-{chart}.js-plotly-plot .main-svg", timeout=15_000)
            for chart in ("posting", "exceptions", "duplicates", "resolution"):
                lengths = _x_lengths(page, chart)
                assert lengths and all(n == 7 for n in lengths), (chart, lengths)
            assert "last 7 days" in page.locator("[data-chart=posting] h2").inner_text()
            # the service levels follow the period too
            slo = page.locator("[data-testid=service-levels]")
            assert "missed" in slo.inner_text()
            for chart in CHARTS:
                assert _clipped_labels(page, chart) == [], chart
            shot(page, f"executive-7d-{name}")
            if name == "phone":  # the whole page is too tall to read at once: card by card
                SHOTS.mkdir(parents=True, exist_ok=True)
                slo.screenshot(path=str(SHOTS / "executive-slo-phone.png"))
                for chart in CHARTS:
                    card = page.locator(f"[data-chart={chart}]")
                    card.screenshot(path=str(SHOTS / f"executive-{chart}-phone.png"))
            assert errors == [], errors
        finally:
            context.close()
