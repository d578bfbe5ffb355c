"""The pages in headless Chromium: sign in, find an order, read it, acknowledge its
exception; and no page asks anything of the internet.

Playwright drives Debian's chromium (``make test`` installs it; Playwright's own browser
download does not work here). Screenshots land in ``tests/screenshots/`` (gitignored):
look at them after a change to the pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from playwright.sync_api import sync_playwright

from observatory.transactions.models import TransactionKey
from observatory.triage.models import FAILED_HOP, OPEN, Issue
from tests.dashboards import seed
from tests.dashboards.conftest import PASSWORD, make_user

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
# between browser steps are plain synchronous ones and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
LAPTOP = {"width": 1440, "height": 900}
WALL = {"width": 2560, "height": 1440}
PHONE = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(seeded_live: Site) -> Iterator[Any]:
    """Chromium, started after the seeding: Playwright's sync API keeps an event loop
    running in this thread, and the pipeline's after-commit live publishing must not
    run inside one."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make browser`, or `apt-get install chromium`)",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass(frozen=True)
class Site:
    url: str
    #: the transaction of order #1001, and its open failed-hop exception
    tx_id: int
    issue_id: int


@pytest.fixture
def seeded_live(live_server: Any, ingest_token: str) -> Site:
    """The orders of ``seed.py`` sent through the real ingest endpoints, then stitched.

    Every database read the test needs happens here, before Chromium starts: the ORM used
    beside Playwright's event loop would open a connection of its own that nobody closes.
    """
    seed.seed(Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}"))
    make_user("olivia", "ops")
    tx_id = TransactionKey.objects.get(kind="order_number", value=seed.ORDER).transaction_id
    issue = Issue.objects.get(kind=FAILED_HOP, transaction_id=tx_id, state=OPEN)
    return Site(url=live_server.url, tx_id=tx_id, issue_id=issue.id)


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "olivia")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_search_read_and_acknowledge(browser: Any, seeded_live: Site) -> None:
    base, tx_id, issue_id = seeded_live.url, seeded_live.tx_id, seeded_live.issue_id
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{base}/")
        shot(page, "login", full_page=False)
        sign_in(page, base)
        assert page.get_by_role("heading", name="Operations dashboard").is_visible()
        assert page.locator("[data-testid=orders-24h]").inner_text() == "2"
        shot(page, "dashboard")

        # search by order number from the top bar: a whole key opens the order
        page.fill("#topbar-q", "#1001")
        page.press("#topbar-q", "Enter")
        page.wait_for_url(f"{base}/orders/{tx_id}/")
        assert "#1001" in page.locator("h1").inner_text()

        # the timeline, with the platform's words and an SLA verdict
        timeline = page.locator("[data-testid=timeline]")
        assert timeline.is_visible()
        text = timeline.inner_text()
        for stage in ("Captured", "Validated", "Posted", "Picked", "Shipped"):
            assert stage in text
        assert "Pending Fulfillment" in text and "Late" in text

        # the swimlane: plotly drew it (an SVG inside a .js-plotly-plot div)
        page.wait_for_selector("#swimlane.js-plotly-plot .main-svg", timeout=15_000)
        lanes = page.locator("#swimlane .ytick text").all_text_contents()
        assert {"shopify", "middleware", "erp", "wms", "carrier"} <= {t.strip() for t in lanes}
        assert page.locator("#swimlane .scatterlayer .point").count() >= 7

        # the exception, then acknowledge it
        row = page.locator(f".exc[data-issue='{issue_id}']")
        assert "reserve stock" in row.inner_text() or "wms" in row.inner_text()
        assert row.locator("[data-state=open]").is_visible()
        shot(page, "order")
        hop = page.locator("details.hop.failed").first
        hop.locator("summary").click()
        assert hop.locator("dl.attrs").is_visible()

        row.locator("button[data-action=acknowledge]").click()
        page.wait_for_url(f"{base}/orders/{tx_id}/")
        row = page.locator(f".exc[data-issue='{issue_id}']")
        assert row.locator("[data-state=acknowledged]").is_visible()
        assert "acknowledged by olivia" in row.inner_text()
        assert row.locator("button[data-action=acknowledge]").count() == 0
        assert page.locator(".messages").inner_text() == f"Exception {issue_id} acknowledged."
        shot(page, "order-acknowledged", full_page=False)

        page.goto(f"{base}/exceptions/")
        assert page.locator("tr[data-issue]").count() >= 2
        shot(page, "exceptions")
        page.goto(f"{base}/orders/?q=%23100")
        assert page.locator("tbody tr").count() == 2
        shot(page, "orders-search")
        page.goto(f"{base}/orders/?q=nothing-like-this")
        assert page.locator("[data-testid=no-results]").is_visible()

        # the same pages on a wall display and a phone
        for size, tag in ((WALL, "wall"), (PHONE, "phone")):
            page.set_viewport_size(size)
            page.goto(f"{base}/orders/{tx_id}/")
            page.wait_for_selector("#swimlane.js-plotly-plot .main-svg", timeout=15_000)
            shot(page, f"order-{tag}", full_page=tag == "phone")
            page.goto(f"{base}/exceptions/")
            shot(page, f"exceptions-{tag}", full_page=False)
        assert errors == [], errors
    finally:
        context.close()


def test_no_page_reaches_outside(browser: Any, seeded_live: Site) -> None:
    base, tx_id = seeded_live.url, seeded_live.tx_id
    assert urlsplit(base).hostname in ("127.0.0.1", "localhost", "::1")
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        sign_in(page, base)
        for path in (
            "/",
            "/orders/",
            "/orders/?q=%23100",
            f"/orders/{tx_id}/",
            "/exceptions/",
            "/exceptions/?state=all",
        ):
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            if path.startswith("/orders/") and path.endswith("/") and path != "/orders/":
                # plotly drew: anything it would fetch (fonts, MathJax, maps) was asked for
                page.wait_for_selector("#swimlane.js-plotly-plot .main-svg")
    finally:
        context.close()
    outside = [
        u
        for u in requested
        if not u.startswith(f"{base}/") and urlsplit(u).scheme not in ("data", "blob")
    ]
    assert requested and outside == []
    assert any("/static/vendor/plotly/plotly-basic.min." in u for u in requested)
