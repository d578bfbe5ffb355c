"""The alert pages in headless Chromium (Debian's, as in tests/dashboards/test_browser.py):
a channel added on its form while an alert fires receives that alert at the next
evaluation; the rule form shows the fields of the chosen kind and previews what the
unsaved rule would fire for. Screenshots at 1440 and 390 px wide land in
``tests/screenshots/`` (or ``$OBSERVATORY_SHOTS``): look at them after a change."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import sync_playwright

from observatory.alerts.actions import do_deliver, do_evaluate
from observatory.alerts.models import Alert, Channel
from tests.alerts.conftest import Receiver
from tests.alerts.helpers import T0, later, stitch, stuck_orders, stuck_rule
from tests.dashboards.conftest import PASSWORD, make_user
from tests.dashboards.test_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, PHONE

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
SHOTS = Path(os.environ.get("OBSERVATORY_SHOTS") or Path(__file__).parents[1] / "screenshots")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
T = TypeVar("T")


def off_loop(work: Callable[[], T]) -> T:
    """Run ORM work in a thread of its own (not beside Playwright's event loop), closing
    the connection it opened."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("h1").scroll_into_view_if_needed()  # the sticky bar at the top
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def poll(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def firing(
    live_server: Any, ingest_client: Client, receiver: Receiver, settings: Any
) -> Iterator[str]:
    """A critical stuck alert firing, already sent to the first channel; an admin."""
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    settings.OBSERVATORY_BASE_URL = live_server.url
    stuck_rule()
    Channel.objects.create(name="first", kind="slack", webhook_url=receiver.url + "/first")
    stuck_orders(ingest_client, 3, T0)
    stitch(later(T0, 120))
    do_evaluate(clock=lambda: later(T0, 120))
    do_deliver(clock=lambda: later(T0, 120))
    assert Alert.objects.get().state == "firing" and len(receiver.posts("/first")) == 1
    make_user("ada", "admin")
    yield live_server.url


@pytest.fixture
def browser(firing: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (`make browser`)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(page: Any, base: str, then: str) -> None:
    page.goto(f"{base}{then}")
    page.fill("#id_username", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{then}")


def shows(box: Any, verdict: str) -> Callable[[], bool]:
    """Does the preview box show ``verdict`` (fires, quiet...)?"""
    return lambda: bool(box.locator(f"[data-preview={verdict}]").count() == 1)


def visible(page: Any, name: str) -> bool:
    return bool(page.locator(f'[data-field="{name}"]').is_visible())


def test_a_new_channel_receives_the_alert_already_firing(
    browser: Any, firing: str, receiver: Receiver
) -> None:
    base = firing
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, base, "/alerts/channels/new/")
        # the form shows the fields of the chosen kind only
        page.select_option("[name=kind]", "webhook")
        assert visible(page, "webhook_url") and visible(page, "secret")
        assert not visible(page, "to") and not visible(page, "routing_key")
        assert not visible(page, "bot_token")
        page.select_option("[name=kind]", "pagerduty")
        assert visible(page, "routing_key") and not visible(page, "webhook_url")
        page.select_option("[name=kind]", "webhook")
        page.fill("[name=name]", "on-call receiver")
        page.fill("[name=webhook_url]", receiver.url + "/am")
        page.fill("[name=secret]", "a-secret-of-twenty-chars")
        shot(page, "alerts-channel-form-1440")
        page.click("button.primary[type=submit]")
        page.wait_for_url(f"{base}/alerts/#channels")
        assert page.locator("[data-testid=channels]").inner_text().count("on-call receiver") == 1

        # the next evaluation sends it the alert that fires already (not 4 h later)
        evaluated = off_loop(lambda: do_evaluate(clock=lambda: later(T0, 135)))
        assert evaluated.notifications == 1
        off_loop(lambda: do_deliver(clock=lambda: later(T0, 135)))
        [req] = receiver.posts("/am")
        doc = req.json()
        assert doc["status"] == "firing" and doc["version"] == "4"
        assert "3 web orders stuck before posted" in doc["alerts"][0]["annotations"]["description"]
        assert req.headers["X-Observatory-Signature"].startswith("sha256=")
        assert len(receiver.posts("/first")) == 1  # the first channel heard nothing new

        alert_id = doc["groupKey"].rsplit("/", 1)[1]
        page.goto(f"{base}/alerts/{alert_id}/")
        notifications = page.locator("[data-testid=notifications]").inner_text()
        assert "on-call receiver" in notifications and "sent" in notifications
        caught_up = page.locator("[data-testid=caught-up]").inner_text()
        assert caught_up == "to the channels added while it fired: on-call receiver"
        shot(page, "alerts-alert-1440")
        page.set_viewport_size(PHONE)
        page.goto(f"{base}/alerts/channels/new/")
        page.select_option("[name=kind]", "teams")
        shot(page, "alerts-channel-form-390")
        page.goto(f"{base}/alerts/")
        shot(page, "alerts-board-390")
        assert errors == [], errors
    finally:
        context.close()


def test_the_rule_form_follows_the_kind_and_previews(browser: Any, firing: str) -> None:
    base = firing
    for size, tag in ((LAPTOP, "1440"), (PHONE, "390")):
        context = browser.new_context(viewport=size)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            sign_in(page, base, "/alerts/rules/new/")
            page.select_option("[name=kind]", "silence")
            assert visible(page, "system") and visible(page, "window_s")
            assert visible(page, "while_system")
            for name in ("kpi", "field", "op", "stage", "threshold", "min_count"):
                assert not visible(page, name), name
            page.select_option("[name=kind]", "kpi")
            assert visible(page, "kpi") and visible(page, "op") and not visible(page, "stage")
            page.select_option("[name=kpi]", "inventory_sync_lag")
            groups = page.locator("select[name=field] optgroup")
            shown = [
                groups.nth(i).get_attribute("label")
                for i in range(groups.count())
                if groups.nth(i).get_attribute("hidden") is None
            ]
            assert shown == ["Inventory sync lag"]
            help_text = page.locator('[data-help-for="threshold"]').inner_text()
            assert help_text == "the value the KPI's field is compared with"

            page.select_option("[name=kind]", "stuck")
            assert visible(page, "stage") and visible(page, "threshold")
            assert not visible(page, "kpi") and not visible(page, "window_s")
            page.fill("[name=name]", "Web orders late to post")
            page.select_option("[name=stage]", "posted")
            page.fill("[name=channel]", "web")
            box = page.locator("[data-testid=rule-preview]")
            poll(shows(box, "fires"))  # as you type
            said = box.inner_text()
            assert "Would fire" in said and "3 web orders stuck before posted" in said
            assert "system=erp" in said
            page.select_option("[name=stage]", "shipped")
            poll(shows(box, "quiet"))
            assert "0 web orders stuck before shipped" in box.inner_text()
            page.select_option("[name=stage]", "posted")
            page.click("[data-action=preview]")
            poll(shows(box, "fires"))
            shot(page, f"alerts-rule-preview-{tag}")
            assert errors == [], errors
        finally:
            context.close()
    assert off_loop(lambda: not Alert.objects.filter(rule__name="Web orders late to post").exists())
