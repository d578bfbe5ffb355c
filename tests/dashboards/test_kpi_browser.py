"""The KPI pages in headless Chromium, served by the real ASGI application (uvicorn, with
the websocket route), on days of simulator traffic sent through the real endpoints:

* ``/``: real numbers in the tiles; a hop posted to the ingest endpoint shows without a
  reload within 2 seconds; when the websocket drops a notice says so, and it reconnects;
* ``/executive/``: the cards and every chart drawn, the filters, the CSV links, the print
  layout;
* ``/systems/`` and ``/systems/<name>/``.

Screenshots land in ``tests/screenshots/`` (laptop, wall display, print): look at them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from observatory.access.actions import do_create_ingest_token
from observatory.kpis import actions, queries
from observatory.lib.clock import now
from tests.dashboards import seed
from tests.dashboards.conftest import PASSWORD, make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, WALL
from tests.kpis.traffic import start_traffic
from tests.pipeline import tick
from tests.serving import serve_in_thread

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[str]:
    """The ASGI application (HTTP and websockets) on loopback, in a thread of this process
    (so it reads the test database)."""
    from observatory.asgi import application

    with serve_in_thread(application) as url:
        yield url


@dataclass(frozen=True)
class Site:
    url: str
    token: str
    figures: dict[str, Any]


@pytest.fixture
def site(asgi_server: str) -> Site:
    """Four days of simulator traffic through the server's real endpoints, seed.py's two
    orders on top, then the pipeline and the rollup fill, as the worker would."""
    _, token = do_create_ingest_token("browser-tests")
    traffic = start_traffic(asgi_server, token, scenario="chaos", orders=260, days=4, seed=5)
    try:
        traffic.send_until(traffic.start)
    finally:
        traffic.close()
    seed.send(Client(HTTP_AUTHORIZATION=f"Bearer {token}"))
    tick()
    actions.do_fill_rollups()
    make_user("olivia", "ops")
    at = now()
    figures = queries.kpi_values(at - timedelta(days=30), at, at=at)
    return Site(asgi_server, token, figures)


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def post_hop(base: str, token: str, system: str, outcome: str = "ok") -> None:
    at = datetime.now(UTC)
    event = seed.event(
        f"urn:browser:{system}",
        f"com.acme.{system}.check",
        at,
        system=system,
        operation="address check",
        outcome=outcome,
        error="upstream timeout" if outcome == "error" else None,
        duration_ms=230,
        keys={"order_number": f"#LIVE-{at.timestamp()}"},
    )
    answer = requests.post(
        f"{base}/api/v1/events",
        data=orjson.dumps([event]),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents-batch+json",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_ops_dashboard_is_live(browser: Any, site: Site) -> None:
    base = site.url
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base)
        page.wait_for_selector("#live-status.live", timeout=10_000)
        assert page.get_by_role("heading", name="Operations dashboard").is_visible()
        assert page.locator("#live-notice").is_hidden()
        # real numbers: the unresolved exceptions, the tiles of the simulated systems
        open_now = site.figures["exception_aging"]["open"]
        assert page.locator("[data-testid=unresolved]").inner_text() == str(open_now)
        for system in ("shopify", "middleware", "erp", "wms", "carrier", "pos"):
            assert page.locator(f".tile[data-system={system}]").count() == 1
        assert page.locator("svg.flow .edge").count() == 7
        assert "typical" in page.locator("svg.flow").text_content()
        shot(page, "ops-laptop")

        # a hop from a system never seen before: its tile appears without a reload
        page.evaluate("window.__notReloaded = 42")
        assert page.locator(".tile[data-system=tax]").count() == 0
        started = time.monotonic()
        post_hop(base, site.token, "tax", outcome="error")
        page.wait_for_selector(".tile[data-system=tax]", timeout=5_000)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the new hop took {elapsed:.2f} s to show"
        tile = page.locator(".tile[data-system=tax]")
        assert tile.locator("[data-testid=tile-errors]").inner_text() == "100.0 %"
        assert tile.get_attribute("data-status") in ("failing", "degraded", "ok")
        assert page.evaluate("window.__notReloaded") == 42
        updates = page.evaluate("window.ObservatoryLive.updates")
        post_hop(base, site.token, "tax")
        # polled from here: ``wait_for_function`` compiles its predicate in the page, which
        # the pages' Content-Security-Policy (no 'unsafe-eval') rightly refuses
        deadline = time.monotonic() + 5
        while page.evaluate("window.ObservatoryLive.updates") <= updates:
            assert time.monotonic() < deadline, "no live update within 5 s"
            page.wait_for_timeout(50)
        expect(tile.locator("[data-testid=tile-errors]")).to_have_text("50.0 %", timeout=5_000)

        # the line drops: a notice says so, the page keeps its figures, then reconnects
        page.evaluate("window.ObservatoryLive.socket.close()")
        page.wait_for_selector("#live-notice", state="visible", timeout=3_000)
        assert page.locator("#live-status").inner_text() == "Reconnecting…"
        assert page.locator(".tile[data-system=tax]").count() == 1
        shot(page, "ops-disconnected", full_page=False)
        page.wait_for_selector("#live-status.live", timeout=10_000)
        assert page.locator("#live-notice").is_hidden()

        page.set_viewport_size(WALL)
        page.reload()
        page.wait_for_selector("#live-status.live", timeout=10_000)
        shot(page, "ops-wall", full_page=False)
        assert errors == [], errors
    finally:
        context.close()


def test_executive_and_systems_pages(browser: Any, site: Site) -> None:
    base = site.url
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base)
        page.goto(f"{base}/executive/")
        for key in (
            "posting",
            "exceptions",
            "duplicates",
            "backlog",
            "inventory",
            "resolution",
        ):
            page.wait_for_selector(f"#chart-{key}.js-plotly-plot .main-svg", timeout=15_000)
        # the cards hold the same figures as the API
        a2p = site.figures["acceptance_to_posting"]
        assert a2p["count"] > 0
        orders = site.figures["exception_rate"]["orders"]
        assert page.locator("[data-testid=value-orders]").inner_text() == f"{orders:,}"
        assert (
            "within 1 min"
            in page.locator("[data-testid=slo-acceptance_to_posting-web]").inner_text()
        )
        assert (
            "within 1 h" in page.locator("[data-testid=slo-acceptance_to_posting-pos]").inner_text()
        )
        # a line per channel on the posting chart
        names = page.locator("#chart-posting .legendtext").all_text_contents()
        assert any(n.startswith("web") for n in names) and any(n.startswith("pos") for n in names)
        shot(page, "executive-laptop")
        # the business outcomes: each with its definition, the same figures as the API
        rr = site.figures["reroute_rate"]
        assert rr["shipments"] > 0
        assert page.locator("[data-testid=value-reroute_rate]").inner_text() == (
            "—" if rr["rate"] is None else f"{rr['rate'] * 100:.1f} %"
        )
        assert (
            "fulfilling location"
            in page.locator("[data-testid=definition-reroute_rate]").inner_text()
        )
        outcomes = page.locator("[data-testid=business-outcomes]")
        outcomes.screenshot(path=str(SHOTS / "executive-outcomes-laptop.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        box = outcomes.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        outcomes.screenshot(path=str(SHOTS / "executive-outcomes-phone.png"))
        page.set_viewport_size(LAPTOP)

        # the CSV of a chart
        with page.expect_download() as download:
            page.click("[data-testid=csv-exceptions]")
        lines = Path(download.value.path()).read_text().splitlines()
        assert lines[0] == "day,orders,with_exception,rate,posted_twice" and len(lines) == 31

        # filters: web orders over 7 days
        page.select_option("#f-window", "7")
        page.select_option("#f-channel", "web")
        page.click("form.exec-filters button[type=submit]")
        page.wait_for_url("**/executive/?window=7&channel=web*")
        assert "Last 7 days, web orders" in page.locator(".page-head .sub").inner_text()
        page.wait_for_selector("#chart-posting.js-plotly-plot .main-svg", timeout=15_000)
        names = page.locator("#chart-posting .legendtext").all_text_contents()
        assert names and all(n.startswith("web") for n in names)

        page.goto(f"{base}/executive/")
        page.wait_for_selector("#chart-resolution.js-plotly-plot .main-svg", timeout=15_000)
        page.emulate_media(media="print")
        page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
        page.wait_for_timeout(800)
        assert page.locator(".topbar").is_hidden() and page.locator("form.exec-filters").is_hidden()
        shot(page, "executive-print")
        page.emulate_media(media="screen")
        page.set_viewport_size(WALL)
        page.reload()  # a wall display opens the page at its own size
        page.wait_for_selector("#chart-posting.js-plotly-plot .main-svg", timeout=15_000)
        shot(page, "executive-wall", full_page=False)

        page.set_viewport_size(LAPTOP)
        page.goto(f"{base}/systems/")
        page.wait_for_selector("#systems-chart.js-plotly-plot .main-svg", timeout=15_000)
        erp_hops = page.locator("[data-testid=hops-erp]").inner_text()
        assert int(erp_hops.replace(",", "")) > 100
        shot(page, "systems")
        page.click("tr[data-system=erp] a")
        page.wait_for_url("**/systems/erp/**")
        page.wait_for_selector("#system-chart.js-plotly-plot .main-svg", timeout=15_000)
        assert page.locator("tr[data-operation]").count() >= 1
        assert page.locator("table.failures tbody tr.row-failed").count() >= 1
        shot(page, "system-erp")
        assert errors == [], errors
    finally:
        context.close()
