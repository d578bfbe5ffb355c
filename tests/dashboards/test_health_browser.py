"""In headless Chromium, on the real ASGI application: from a silent system's card on the
ops dashboard to the alert that makes it silent; the time-range picker (a preset, then a
custom range typed in the browser's own time zone); the UTC switch, remembered.

Screenshots at 1440 and 390 px wide land in ``tests/screenshots/``: look at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from observatory.access.actions import do_create_ingest_token
from observatory.alerts.actions import do_evaluate
from observatory.alerts.models import Alert
from observatory.kpis.actions import do_fill_rollups
from observatory.transactions.actions import do_stitch
from tests.dashboards.conftest import PASSWORD, make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, PHONE
from tests.dashboards.test_health_model import warehouse_goes_quiet, warehouse_silent_rule
from tests.serving import serve_in_thread
from tests.triage.helpers import ev, send

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
#: The browser's time zone: an hour east of UTC in December.
ZONE = "Europe/Berlin"


@dataclass(frozen=True)
class Site:
    url: str
    alert_id: int
    at: datetime


@pytest.fixture
def site(transactional_db: None) -> Iterator[Site]:
    """The chaos demo's warehouse going quiet while the shop sends (20 orders in the last
    20 minutes), three older orders five hours back, and the "Warehouse silent" alert
    fired by the real evaluation; then the ASGI application on loopback."""
    from observatory.asgi import application

    _, token = do_create_ingest_token("browser-tests")
    ingest = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    at = warehouse_goes_quiet(ingest)
    old = at - timedelta(hours=5)
    older = [
        ev(
            "shopify",
            {"order_number": f"#OLD{i}"},
            old + timedelta(minutes=i),
            stage="captured",
            channel="web",
        )
        for i in range(3)
    ]
    send(ingest, *older)
    send(ingest, older[0])  # Shopify delivers one of them again: a duplicate
    do_stitch()
    do_fill_rollups()
    warehouse_silent_rule()
    do_evaluate(clock=lambda: at)
    alert = Alert.objects.get(rule__name="Warehouse silent")
    make_user("olivia", "ops")
    with serve_in_thread(application) as url:
        yield Site(url, alert.id, at)


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


def test_from_a_silent_card_to_its_alert(browser: Any, site: Site) -> None:
    base = site.url
    for size, tag in ((LAPTOP, "1440"), (PHONE, "390")):
        context = browser.new_context(viewport=size, timezone_id=ZONE)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            sign_in(page, base)
            page.wait_for_selector("#live-status.live", timeout=10_000)
            card = page.locator(".tile[data-system=wms]")
            expect(card).to_have_attribute("data-status", "silent")
            expect(card.locator("[data-testid=tile-status]")).to_have_text("Silent")
            node = page.locator("svg.flow [data-node=wms]")
            expect(node).to_have_attribute("data-status", "silent")
            assert "red" in (node.get_attribute("class") or "")
            shot(page, f"health-ops-{tag}")
            page.locator(".integrity").scroll_into_view_if_needed()
            shot(page, f"health-integrity-{tag}", full_page=False)
            cause = card.locator("[data-testid=tile-cause]")
            expect(cause).to_contain_text("Warehouse silent")
            cause.click()
            page.wait_for_url(f"{base}/alerts/{site.alert_id}/")
            assert "Warehouse silent" in page.locator("h1").inner_text()
            shot(page, f"health-alert-{tag}", full_page=False)
            # the flow node leads there too, and /systems/ says the same
            page.goto(f"{base}/systems/")
            badge = page.locator("[data-testid=health-wms]")
            expect(badge).to_have_text("silent")
            shot(page, f"health-systems-{tag}")
            assert errors == [], errors
        finally:
            context.close()


def figure(page: Any) -> str:
    return str(page.locator("[data-testid=orders-24h]").inner_text())


def test_the_time_picker(browser: Any, site: Site) -> None:
    base = site.url
    context = browser.new_context(viewport=LAPTOP, timezone_id=ZONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base)
        assert figure(page) == "23"  # the last 24 hours by default
        page.get_by_role("link", name="Last hour").click()
        page.wait_for_url(re.compile(r".*\?range=1h$"))
        assert figure(page) == "20"
        assert "orders, last hour" in page.locator(".ops-live").inner_text().lower()
        page.get_by_role("link", name="Last 24 hours").click()
        page.wait_for_url(re.compile(r".*\?range=24h$"))
        assert figure(page) == "23"
        expect(page.locator(".timerange a.active")).to_have_text("Last 24 hours")

        # times show in the browser's zone; the switch turns them to UTC, and it is kept
        stamp = page.locator("time[data-local]").first
        expect(stamp).to_contain_text("GMT+1")
        page.locator("[data-tz-switch]").click()
        expect(stamp).to_contain_text(" UTC")
        expect(page.locator("[data-tz-switch]")).to_have_text("Times in UTC")
        assert "tz=utc" in page.url
        page.goto(f"{base}/?range=24h")
        expect(page.locator("time[data-local]").first).to_contain_text(" UTC")
        page.locator("[data-tz-switch]").click()  # back to the browser's zone
        expect(page.locator("time[data-local]").first).to_contain_text("GMT+1")

        # a custom range, typed in Berlin time: the three orders of five hours ago
        old = site.at - timedelta(hours=5)
        start, end = old - timedelta(minutes=30), old + timedelta(minutes=30)
        berlin = timedelta(hours=1)
        page.locator("[data-testid=range-custom]").click()
        page.fill("input[name=from]", (start + berlin).strftime("%Y-%m-%dT%H:%M"))
        page.fill("input[name=to]", (end + berlin).strftime("%Y-%m-%dT%H:%M"))
        page.locator(".timerange-form button[type=submit]").click()
        page.wait_for_url(re.compile(r".*range=custom.*"))
        query = parse_qs(urlsplit(page.url).query)
        assert query["from"] == [start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:00Z")]
        assert query["to"] == [end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:00Z")]
        assert figure(page) == "3"
        # the form shows the range back in Berlin time
        expect(page.locator("input[name=from]")).to_have_value(
            (start + berlin).strftime("%Y-%m-%dT%H:%M")
        )
        shot(page, "timerange-custom-1440", full_page=False)
        # the same picker on the other pages, with the range kept in the URL
        for path in ("/exceptions/", "/systems/", "/orders/", "/executive/"):
            page.goto(f"{base}{path}?range=7d")
            expect(page.locator(".timerange a.active")).to_have_text("Last 7 days")
        page.set_viewport_size(PHONE)
        page.goto(f"{base}/?range=24h")
        shot(page, "timerange-ops-390")
        assert errors == [], errors
    finally:
        context.close()
