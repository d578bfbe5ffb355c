"""From a red day down to the order, in headless Chromium: the reconciliation page shows
the day with a gap in red, its link opens the day's unmatched orders, and one click opens
the order page of the order that was never posted (screenshots in tests/screenshots/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import sync_playwright

from observatory.transactions.models import TransactionKey
from tests.dashboards.conftest import make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, shot, sign_in
from tests.reconciliation.helpers import KITS, T0, H, M, run, send

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Site:
    url: str
    #: the order never posted, and the day it belongs to
    tx_id: int
    day: str


@pytest.fixture
def site(live_server: Any, ingest_token: str) -> Site:
    """A day of web orders, one never posted, a day before it all matched; reconciled.
    Every database read happens here, before Chromium starts (tests/dashboards/test_browser.py
    says why)."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    kit = KITS["shopify-orders"]
    events = []
    for n, at in ((1, T0 - 24 * H), (2, T0 - 24 * H), (3, T0), (4, T0), (5, T0)):
        events += kit.source(n, at, "42.00", "USD")
        if n != 5:
            events += kit.target(n, at + M, "42.00", "USD", "")
    send(client, *events)
    run(T0 + 2 * H)
    make_user("olivia", "ops")
    tx_id = TransactionKey.objects.get(kind="order_number", value="#5").transaction_id
    return Site(url=live_server.url, tx_id=tx_id, day=T0.date().isoformat())


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs it", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_from_a_red_day_down_to_the_order(browser: Any, site: Site) -> None:
    base = site.url
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base)
        page.click("nav >> text=Reconciliation")
        page.wait_for_url(f"{base}/reconciliation/")
        page.goto(f"{base}/reconciliation/?since=2026-11-15&until=2026-11-25")
        card = page.locator("[data-rule=shopify-orders]")
        red = card.locator("tr[data-state=red]")
        assert red.count() == 1 and red.get_attribute("data-day") == site.day
        assert card.locator("tr[data-state=ok]").count() == 1
        assert "1 day with gaps" in card.inner_text()
        shot(page, "reconciliation")

        red.locator("a").first.click()
        page.wait_for_url(f"{base}/reconciliation/shopify-orders/{site.day}/")
        row = page.locator(f"tr[data-transaction='{site.tx_id}']")
        assert row.get_attribute("data-status") == "missing_in_target"
        assert "missing in target" in row.inner_text()
        shot(page, "reconciliation-day")

        row.locator("a").first.click()
        page.wait_for_url(f"{base}/orders/{site.tx_id}/")
        assert "#5" in page.locator("h1").inner_text()
        exceptions = page.locator("[data-testid=exceptions]").inner_text()
        assert "not posted by erp" in exceptions
        shot(page, "reconciliation-order")
        assert errors == [], errors
    finally:
        context.close()
