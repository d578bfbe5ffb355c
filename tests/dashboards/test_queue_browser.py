"""Drill-down and the work queue in headless Chromium, on two days of the simulator's
chaos scenario sent through the real endpoints (with ``seed.py``'s orders on top):

* from a red number on ``/`` (the backlog) and a figure on ``/executive/`` (orders with a
  problem), and from a point of its chart, to the orders behind it: the list's count is
  the number clicked;
* select several exceptions and acknowledge them at once;
* add a note to an exception and find it in its history.

Screenshots at 1440 and 390 px wide land in ``/tmp/shots-queue/``: look at them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import sync_playwright

from observatory.access.actions import do_create_ingest_token
from observatory.kpis import actions
from observatory.triage.models import ACKNOWLEDGED, OPEN, Issue, IssueNote
from tests.dashboards import seed
from tests.dashboards.conftest import make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, PHONE, sign_in
from tests.kpis.traffic import start_traffic
from tests.pipeline import tick
from tests.triage.test_exceptions_api import failing_orders

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SHOTS = Path(os.environ.get("OBSERVATORY_SHOTS", "/tmp/shots-queue"))
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Site:
    url: str
    #: open exceptions, oldest first (the queue's first rows)
    open_ids: list[int]


@pytest.fixture
def site(live_server: Any) -> Site:
    """Every database read happens here, before Chromium starts (test_browser.py says
    why)."""
    _, token = do_create_ingest_token("queue-browser")
    sent = start_traffic(live_server.url, token, scenario="chaos", orders=120, days=2, seed=3)
    try:
        sent.send_until(sent.start)
    finally:
        sent.close()
    ingest = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    seed.send(ingest)
    # four orders whose ERP posting failed (weeks ago): open exceptions, whatever the hour
    failing_orders(ingest, 5001, 4)
    tick()
    actions.do_fill_rollups()
    make_user("olivia", "ops")
    ids = list(
        Issue.objects.filter(state=OPEN).order_by("opened_at", "id").values_list("id", flat=True)
    )
    assert len(ids) >= 4
    return Site(live_server.url, ids)


@pytest.fixture
def browser(site: Site) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def total(page: Any) -> int:
    return int(page.locator("[data-testid=orders-total]").inner_text())


def test_drill_down_bulk_acknowledge_and_a_note(browser: Any, site: Site) -> None:
    base = site.url
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base)

        # a red backlog number on / -> the orders waiting for that stage
        badge = page.locator("a.badge.red[data-testid^=backlog-]").first
        count = int(badge.inner_text())
        badge.click()
        page.wait_for_url(re.compile(r".*/orders/\?awaiting="))
        assert total(page) == count
        assert page.locator("tbody tr").count() == min(count, 50)
        shot(page, "orders-awaiting-1440")

        # the executive figure "orders with a problem" -> those orders
        page.goto(f"{base}/executive/?window=7")
        note = page.locator("[data-testid=card-exception_rate] .kpi-note").inner_text()
        problem = int(re.match(r"([\d,]+) of", note).group(1).replace(",", ""))  # type: ignore[union-attr]
        assert problem > 0
        shot(page, "executive-1440")
        page.locator("[data-drill=exception_rate]").click()
        page.wait_for_url(re.compile(r".*condition=problem"))
        assert total(page) == problem
        assert "with a failed step or an exception" in page.locator(".card-head .hint").inner_text()

        # a day's bar of the chart -> that day's orders
        page.goto(f"{base}/executive/?window=7")
        page.wait_for_selector(
            "#chart-exceptions .barlayer .point path", state="attached", timeout=15_000
        )
        bars = page.locator("#chart-exceptions .barlayer .point path")
        tallest = max(
            range(bars.count()), key=lambda i: (bars.nth(i).bounding_box() or {}).get("height", 0)
        )
        bars.nth(tallest).click(force=True)
        page.wait_for_url(re.compile(r".*/orders/\?kind=order&since="), timeout=10_000)
        assert total(page) >= 1

        # select three exceptions and acknowledge them at once
        page.goto(f"{base}/exceptions/")
        picked = site.open_ids[:3]
        for i in picked:
            page.locator(f"tr[data-issue='{i}'] input[name=ids]").check()
        assert page.locator("[data-testid=bulk-count]").inner_text() == "3 selected:"
        shot(page, "exceptions-selected-1440")
        page.locator("[data-bulk=acknowledge]").click()
        page.wait_for_url(re.compile(r".*/exceptions/"))
        assert "3 exceptions acknowledged." in page.locator(".messages").inner_text()
        for i in picked:
            assert page.locator(f"tr[data-issue='{i}'] [data-state=acknowledged]").is_visible()

        # a note on one of them, kept in its history with its author
        page.locator(f"tr[data-issue='{picked[0]}'] [data-testid=issue-link]").click()
        page.fill("#note-text", "Asked the ERP team; they re-post at 10:00.")
        page.get_by_role("button", name="Add note").click()
        page.wait_for_url(re.compile(rf".*/exceptions/{picked[0]}/$"))
        history = page.locator("[data-testid=history]").inner_text()
        assert "Asked the ERP team; they re-post at 10:00." in history
        assert "Acknowledged by olivia" in history and "Note by olivia" in history
        shot(page, "exception-1440")

        # the same pages on a phone
        page.set_viewport_size(PHONE)
        for path, name in (
            (f"/exceptions/{picked[0]}/", "exception"),
            ("/exceptions/", "exceptions"),
            ("/orders/?kind=order&condition=problem", "orders-problem"),
        ):
            page.goto(f"{base}{path}")
            shot(page, f"{name}-390")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (name, width)
        assert errors == [], errors
    finally:
        context.close()
    # Beside Playwright's event loop the ORM opens a connection of its own (Django's are per
    # task there), which nothing would give back to the pool: closed once read.
    try:
        assert Issue.objects.filter(id__in=picked, state=ACKNOWLEDGED).count() == 3
        assert IssueNote.objects.filter(issue_id=picked[0], kind="note", author="olivia").exists()
    finally:
        connections.close_all()
