"""The /alerts/ pages: the board, one alert, acknowledging, and the forms for rules,
channels and silences."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from observatory.alerts.actions import ack_url
from observatory.alerts.models import Alert, Channel, Rule, Silence
from tests.alerts.conftest import Receiver
from tests.alerts.helpers import T0, run, stuck_orders, stuck_rule

pytestmark = pytest.mark.django_db


def user_client(client: Client, name: str, *groups: str, staff: bool = False) -> Client:
    user = get_user_model().objects.create_user(name, password="pw", is_staff=staff)
    for g in groups:
        user.groups.add(Group.objects.get_or_create(name=g)[0])
    client.force_login(user)
    return client


@pytest.fixture
def firing(ingest_client: Client) -> Alert:
    stuck_rule()
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    stuck_orders(ingest_client, 3, T0)
    run(T0 + timedelta(seconds=120))
    return Alert.objects.get()


def test_pages_need_a_sign_in(client: Client) -> None:
    r = client.get("/alerts/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_the_board_lists_alerts_silences_channels_and_rules(client: Client, firing: Alert) -> None:
    c = user_client(client, "viewer")
    page = c.get("/alerts/").content.decode()
    assert 'data-testid="alerts-firing"' in page and f'data-alert="{firing.id}"' in page
    assert firing.summary in page
    assert 'data-testid="channels"' in page and "mail" in page
    assert "Web orders stuck before posted" in page  # the shipped rules are listed
    assert 'data-action="acknowledge"' not in page  # a plain viewer cannot act
    detail = c.get(f"/alerts/{firing.id}/").content.decode()
    assert 'data-testid="notifications"' in detail and "sent" in detail
    assert "/orders/" in detail and "#5002" in detail
    assert c.get("/alerts/99999/").status_code == 404


def test_ops_acknowledge_from_the_page(client: Client, firing: Alert) -> None:
    c = user_client(client, "olga", "ops")
    page = c.get("/alerts/").content.decode()
    assert 'data-action="acknowledge"' in page
    r = c.post(f"/alerts/{firing.id}/ack/", {"next": "/alerts/"})
    assert r.status_code == 302 and r["Location"] == "/alerts/"
    firing.refresh_from_db()
    assert firing.acknowledged_by == "olga"
    page = c.get("/alerts/").content.decode()
    assert 'data-testid="alerts-acknowledged"' in page


def test_viewers_cannot_acknowledge(client: Client, firing: Alert) -> None:
    c = user_client(client, "exec", "executive")
    assert c.post(f"/alerts/{firing.id}/ack/").status_code == 403


def test_signed_link_signed_in_user_is_recorded(client: Client, firing: Alert) -> None:
    c = user_client(client, "maria")
    path = ack_url(firing.id).split("//", 1)[1].split("/", 1)[1]
    r = c.post("/" + path)
    assert r.status_code == 200
    firing.refresh_from_db()
    assert firing.acknowledged_by == "maria"
    assert c.get(f"/alerts/{firing.id}/ack/bogus/").status_code == 404
    other = ack_url(firing.id + 1).rsplit("/ack/", 1)[1]
    assert c.get(f"/alerts/{firing.id}/ack/{other}").status_code == 404  # another alert's


def test_admins_edit_rules_and_channels_and_send_a_test(
    client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    c = user_client(client, "root", "admin")
    assert c.get("/alerts/rules/new/").status_code == 200
    r = c.post(
        "/alerts/rules/new/",
        {
            "name": "WMS silent",
            "kind": "silence",
            "severity": "warning",
            "system": "wms",
            "window_s": "900",
            "min_count": "1",
            "min_failed": "1",
            "for_s": "0",
            "repeat_s": "3600",
            "keep_firing_s": "0",
            "labels": '{"team": "warehouse"}',
            "active": "on",
        },
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    rule = Rule.objects.get(name="WMS silent")
    assert rule.labels == {"team": "warehouse"} and rule.created_by == "root"
    r = c.post(f"/alerts/rules/{rule.id}/", {"name": "WMS silent", "kind": "silence"})
    assert r.status_code == 200 and b"required" in r.content  # window_s missing

    r = c.post(
        "/alerts/channels/new/",
        {
            "name": "slack",
            "kind": "slack",
            "webhook_url": receiver.url + "/services/x",
            "active": "on",
        },
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    channel = Channel.objects.get(name="slack")
    r = c.post(f"/alerts/channels/{channel.id}/test/")
    assert r.status_code == 302
    assert receiver.posts("/services/x")[0].json()["text"].startswith("Test message")
    page = c.get(f"/alerts/channels/{channel.id}/").content.decode()
    assert "Recent delivery attempts" in page

    r = c.post(
        "/alerts/channels/new/",
        {"name": "mail", "kind": "email", "to": "a@b.co, c@d.co", "active": "on"},
    )
    assert r.status_code == 302
    assert Channel.objects.get(name="mail").to == ["a@b.co", "c@d.co"]


def test_channel_form_refuses_loopback_without_the_setting(client: Client, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    c = user_client(client, "root", staff=True)
    r = c.post(
        "/alerts/channels/new/",
        {"name": "local", "kind": "slack", "webhook_url": "http://127.0.0.1:8080/hook"},
    )
    assert r.status_code == 200 and b"ALERTS_ALLOW_PRIVATE_URLS" in r.content
    assert not Channel.objects.exists()


def test_ops_cannot_edit_rules(client: Client) -> None:
    c = user_client(client, "olga", "ops")
    r = c.post("/alerts/rules/new/", {"name": "x", "kind": "stuck", "stage": "posted"})
    assert r.status_code == 403


def test_ops_silence_from_the_page_and_end_it(client: Client, firing: Alert) -> None:
    c = user_client(client, "olga", "ops")
    form = c.get("/alerts/silences/new/?system=erp&stage=posted").content.decode()
    assert 'value="system=erp, stage=posted"' in form
    r = c.post(
        "/alerts/silences/new/",
        {"matchers": "system=erp", "ends_at": "2099-01-01T00:00", "comment": "ERP upgrade"},
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    silence = Silence.objects.get()
    assert silence.matchers == {"system": "erp"} and silence.created_by == "olga"
    page = c.get("/alerts/").content.decode()
    assert 'data-testid="silences"' in page and "ERP upgrade" in page
    r = c.post(f"/alerts/silences/{silence.id}/expire/")
    assert r.status_code == 302
    silence.refresh_from_db()
    assert silence.ends_at <= silence.created_at + timedelta(minutes=5)


def test_silence_form_errors(client: Client) -> None:
    c = user_client(client, "olga", "ops")
    r = c.post("/alerts/silences/new/", {"matchers": "erp", "ends_at": "2099-01-01T00:00"})
    assert r.status_code == 200 and b"label=value" in r.content
    assert not Silence.objects.exists()


def test_admin_pages(admin_client: Client, firing: Alert) -> None:
    for path in (
        "/admin/alerts/rule/",
        "/admin/alerts/channel/",
        "/admin/alerts/silence/",
        "/admin/alerts/alert/",
        f"/admin/alerts/alert/{firing.id}/change/",
        "/admin/alerts/deliveryattempt/",
    ):
        assert admin_client.get(path).status_code == 200, path
