"""The value at risk in headless Chromium: web orders in two currencies stuck before
posting, then ``/`` and ``/exceptions/`` at 1440 and 390 px wide show each currency apart
(docs/kpis.md, ``value_at_risk``). Screenshots land in ``/tmp/shots-impact/``: look at
them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import sync_playwright

from observatory.access.actions import do_create_ingest_token
from tests.alerts.helpers import later, run
from tests.alerts.test_impact import two_currencies
from tests.dashboards.conftest import make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, PHONE, sign_in
from tests.triage.helpers import T0

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SHOTS = Path(os.environ.get("OBSERVATORY_SHOTS", "/tmp/shots-impact"))
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_value_at_risk_on_the_dashboard_and_the_queue(live_server: Any) -> None:
    _, token = do_create_ingest_token("impact-browser")
    two_currencies(Client(HTTP_AUTHORIZATION=f"Bearer {token}"))
    run(later(T0, 120), deliver=False)
    make_user("olivia", "ops")
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = live_server.url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, size in (("laptop", LAPTOP), ("phone", PHONE)):
                page = browser.new_page(viewport=size)
                sign_in(page, base)
                risk = page.locator('[data-testid="value-at-risk"]')
                assert risk.locator('[data-testid="risk-EUR"]').inner_text() == "EUR 1,234.50"
                assert risk.locator('[data-testid="risk-USD"]').inner_text() == "USD 60.00"
                assert page.locator('[data-testid="risk-orders"]').inner_text() == "5"
                box = risk.bounding_box()
                assert box is not None and box["x"] + box["width"] <= size["width"] + 1
                page.screenshot(path=str(SHOTS / f"ops-{name}.png"), full_page=True)
                page.goto(f"{base}/exceptions/?sort=value")
                eur = page.locator('[data-testid="queue-value-EUR"]')
                assert eur.inner_text() == "EUR 1,234.50"
                usd = page.locator('[data-testid="queue-value-USD"]')
                assert usd.inner_text() == "USD 60.00"
                first = page.locator('[data-testid="row-value"]').first.inner_text()
                assert first == "EUR 1,000.25"
                page.screenshot(path=str(SHOTS / f"exceptions-{name}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
