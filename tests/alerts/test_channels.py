"""Microsoft Teams, PagerDuty and the generic webhook against local HTTP receivers on
127.0.0.1: each payload's schema (an Adaptive Card; Events API v2 with one dedup_key from
trigger through acknowledge to resolve; Alertmanager's webhook JSON version 4 with a
verifiable HMAC), retries honouring Retry-After, permanent failures, the test button, and
private addresses refused without ALERTS_ALLOW_PRIVATE_URLS."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts.actions import do_acknowledge, do_deliver, do_send_test
from observatory.alerts.models import Alert, Channel, DeliveryAttempt, Notification
from tests.alerts.conftest import Received, Receiver
from tests.alerts.helpers import T0, later, posting, run, send, stuck_orders, stuck_rule

pytestmark = pytest.mark.django_db
BASE = "https://observatory.example.com"
KEY = "R0UTINGKEY0123456789abcdefABCDEF"
SECRET = "s3cret-for-the-hmac-0123"


@pytest.fixture(autouse=True)
def _base(settings: Any) -> None:
    settings.OBSERVATORY_BASE_URL = BASE


# --- schemas ----------------------------------------------------------------------------------

COLOURS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}
SIZES = {"Default", "Small", "Medium", "Large", "ExtraLarge"}


def assert_adaptive_card_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Teams Workflows message: one Adaptive Card (1.4 or later) attachment, using only
    the elements and values of the Adaptive Card schema; answers the card."""
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    major, minor = (int(x) for x in card["version"].split("."))
    assert (major, minor) >= (1, 4)
    assert card["body"]
    for element in card["body"]:
        assert element["type"] in {"TextBlock", "FactSet"}, element
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"].strip()
            assert element.get("color", "Default") in COLOURS
            assert element.get("size", "Default") in SIZES
            assert element.get("weight", "Default") in {"Default", "Lighter", "Bolder"}
            assert element.get("style", "default") == "default" or (major, minor) >= (1, 5)
        else:
            assert element["facts"]
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}
                assert isinstance(fact["title"], str) and isinstance(fact["value"], str)
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["title"]
        assert action["url"].startswith(BASE + "/")
        assert action.get("style", "default") in {"default", "positive", "destructive"}
    assert len(json.dumps(body)) < 28000  # Teams refuses messages over about 28 KB
    return dict(card)


ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def assert_alertmanager_v4(doc: dict[str, Any]) -> None:
    """The Alertmanager webhook payload, version 4, field by field."""
    assert set(doc) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
        "commonLabels", "commonAnnotations", "externalURL", "alerts",
    }  # fmt: skip
    assert doc["version"] == "4" and isinstance(doc["groupKey"], str) and doc["groupKey"]
    assert doc["truncatedAlerts"] == 0 and doc["status"] in {"firing", "resolved"}
    assert doc["externalURL"] == BASE
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc[name].items())
    assert doc["alerts"]
    for alert in doc["alerts"]:
        assert set(alert) == {
            "status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
            "fingerprint",
        }  # fmt: skip
        assert alert["status"] in {"firing", "resolved"}
        assert alert["labels"]["alertname"]
        assert all(isinstance(v, str) for v in alert["labels"].values())
        assert all(isinstance(v, str) for v in alert["annotations"].values())
        assert ISO_Z.match(alert["startsAt"]) and ISO_Z.match(alert["endsAt"])
        if alert["status"] == "firing":
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        else:
            assert alert["endsAt"] >= alert["startsAt"]
        assert alert["generatorURL"].startswith(BASE + "/") and alert["fingerprint"]
        for key, value in doc["commonLabels"].items():
            assert alert["labels"][key] == value


def assert_pagerduty_event(event: dict[str, Any]) -> None:
    """An Events API v2 event."""
    assert event["routing_key"] == KEY
    assert event["event_action"] in {"trigger", "acknowledge", "resolve"}
    assert isinstance(event["dedup_key"], str) and 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        p = event["payload"]
        assert 0 < len(p["summary"]) <= 1024 and p["source"]
        assert p["severity"] in {"critical", "error", "warning", "info"}
        if "timestamp" in p:
            datetime.fromisoformat(p["timestamp"])
        assert isinstance(p.get("custom_details", {}), dict)
        for link in event.get("links", []):
            assert link["href"].startswith(BASE + "/") and link["text"]
    else:
        assert "payload" not in event


def accepted(req: Received) -> tuple[int, dict[str, str], bytes]:
    """PagerDuty's answer to a good event: 202 with the dedup key."""
    body = {"status": "success", "message": "Event processed", "dedup_key": req.json()["dedup_key"]}
    return 202, {"Content-Type": "application/json"}, json.dumps(body).encode()


# --- Teams ------------------------------------------------------------------------------------


def test_teams_cards_for_firing_and_resolution(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    rule = stuck_rule()
    Channel.objects.create(name="teams", kind="teams", webhook_url=receiver.url + "/workflows/x")
    receiver.default = (202, {}, b"")
    stuck_orders(ingest_client, 12, T0)
    evaluated, delivered = run(later(T0, 120))
    assert evaluated.firing == 1 and delivered.sent == 1
    [req] = receiver.posts("/workflows/x")
    assert req.headers["Content-Type"].startswith("application/json")
    card = assert_adaptive_card_message(req.json())
    alert = Alert.objects.get(rule=rule)
    assert card["body"][0]["text"] == f"CRITICAL · {rule.name}"
    assert card["body"][0]["color"] == "Attention"
    assert "12 web orders stuck before posted (USD 780.00)" in card["body"][1]["text"]
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert facts["Affected orders"] == "12" and facts["Value"] == "USD 780.00"
    assert facts["System"] == "erp" and facts["Stage"] == "posted"
    top = next(
        b["text"] for b in card["body"] if b["text" if "text" in b else "type"].startswith("- [")
    )
    first = alert.detail["orders"]["top"][0]["id"]
    assert top.splitlines()[0] == f"- [#5011]({BASE}/orders/{first}/) · USD 120.00"
    assert top.splitlines()[-1] == "- …and 2 more"
    buttons = {a["title"]: a["url"] for a in card["actions"]}
    assert buttons["Open in Observatory"] == f"{BASE}/alerts/{alert.id}/"
    assert buttons["Acknowledge"].startswith(f"{BASE}/alerts/{alert.id}/ack/")

    # an acknowledgement is not sent (a Workflows card cannot be edited); the resolution is
    do_acknowledge(alert.id, "maria", clock=lambda: later(T0, 130))
    assert do_deliver(clock=lambda: later(T0, 130)).sent == 0
    send(ingest_client, *[posting(5000 + i, later(T0, 140)) for i in range(12)])
    run(later(T0, 150))
    resolved = assert_adaptive_card_message(receiver.posts("/workflows/x")[-1].json())
    assert resolved["body"][0]["text"].startswith("RESOLVED · ")
    assert resolved["body"][0]["color"] == "Good"
    assert "Acknowledge" not in {a["title"] for a in resolved["actions"]}
    assert len(receiver.posts("/workflows/x")) == 2


def test_teams_retry_after_then_success_and_a_gone_flow(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    channel = Channel.objects.create(name="t", kind="teams", webhook_url=receiver.url + "/wf")
    receiver.answer((429, {"Retry-After": "9"}, b"Too many requests"), (202, {}, b""))
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    _, first = run(at)
    assert first.retrying == 1
    n = Notification.objects.get()
    assert n.next_attempt_at == at + timedelta(seconds=9)  # Retry-After, not the backoff
    assert do_deliver(clock=lambda: at + timedelta(seconds=8)).sent == 0
    assert do_deliver(clock=lambda: at + timedelta(seconds=9)).sent == 1
    attempts = list(
        DeliveryAttempt.objects.order_by("id").values_list("status_code", "retry_after_s")
    )
    assert attempts == [(429, 9.0), (202, None)]

    receiver.answer((404, {}, b"flow not found"))
    sent = do_send_test(channel.id, "tester")
    assert sent.status == "failed" and "404" in sent.last_error
    channel.refresh_from_db()
    assert channel.failing and "Teams answered 404" in channel.failing_reason
    test_card = assert_adaptive_card_message(receiver.requests[-1].json())
    assert test_card["body"][0]["text"] == "Test message from Observatory"


# --- PagerDuty --------------------------------------------------------------------------------


def test_pagerduty_incident_follows_the_alert_on_one_dedup_key(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any
) -> None:
    settings.ALERTS_PAGERDUTY_URL = receiver.url + "/v2/enqueue"
    receiver.default = accepted
    rule = stuck_rule(repeat_s=60)
    Channel.objects.create(name="pd", kind="pagerduty", routing_key=KEY)
    stuck_orders(ingest_client, 3, T0)
    run(later(T0, 120))
    alert = Alert.objects.get(rule=rule)
    run(later(T0, 185))  # a reminder: triggers again on the same key (PagerDuty folds it)
    do_acknowledge(alert.id, "maria", clock=lambda: later(T0, 190))
    do_deliver(clock=lambda: later(T0, 190))
    send(ingest_client, *[posting(5000 + i, later(T0, 195)) for i in range(3)])
    evaluated, _ = run(later(T0, 200))
    assert evaluated.resolved == 1

    events = [r.json() for r in receiver.posts("/v2/enqueue")]
    for e in events:
        assert_pagerduty_event(e)
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {f"observatory/alert/{alert.id}"}
    trigger = events[0]
    p = trigger["payload"]
    assert p["severity"] == "critical" and p["source"] == "erp" and p["component"] == "erp"
    assert p["group"] == "posted" and p["class"] == "stuck"
    assert p["summary"].startswith(f"[FIRING critical] {rule.name}: 3 web orders stuck")
    assert p["custom_details"]["affected_orders"] == 3
    assert p["custom_details"]["labels"]["stage"] == "posted"
    assert trigger["links"][0]["href"] == f"{BASE}/alerts/{alert.id}/"
    assert events[1]["payload"]["summary"].startswith("[STILL FIRING critical]")
    refs = list(Notification.objects.order_by("id").values_list("ref", flat=True))
    assert refs == [{"dedup_key": f"observatory/alert/{alert.id}"}] * 4


def test_pagerduty_test_button_leaves_no_open_incident_and_errors(
    receiver: Receiver, allow_private: None, settings: Any, admin_client: Client
) -> None:
    settings.ALERTS_PAGERDUTY_URL = receiver.url + "/v2/enqueue"
    receiver.default = accepted
    channel = Channel.objects.create(name="pd", kind="pagerduty", routing_key=KEY)
    r = admin_client.post(f"/alerts/channels/{channel.id}/test/")
    assert r.status_code == 302
    trigger, resolve = (x.json() for x in receiver.posts("/v2/enqueue"))
    assert_pagerduty_event(trigger)
    assert_pagerduty_event(resolve)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "observatory/test/pd"
    assert trigger["payload"]["severity"] == "info"

    # a rate limit is retried after its Retry-After; a refused routing key breaks the channel
    receiver.answer((429, {"Retry-After": "4"}, b'{"status":"throttle event"}'))
    assert do_send_test(channel.id, "t").status == "failed"  # a test is tried once
    attempt = DeliveryAttempt.objects.order_by("-id").first()
    assert attempt is not None and attempt.retry_after_s == 4 and not attempt.permanent
    receiver.answer(
        (400, {}, b'{"status":"invalid event","errors":["Invalid routing key"]}'),
    )
    assert do_send_test(channel.id, "t").status == "failed"
    channel.refresh_from_db()
    assert channel.failing and "routing key" in channel.failing_reason


# --- generic webhook (Alertmanager v4) --------------------------------------------------------


def test_webhook_sends_alertmanager_v4_signed_with_hmac(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    rule = stuck_rule()
    Channel.objects.create(
        name="am-receiver", kind="webhook", webhook_url=receiver.url + "/am", secret=SECRET
    )
    stuck_orders(ingest_client, 2, T0)
    run(later(T0, 120))
    alert = Alert.objects.get(rule=rule)
    send(ingest_client, *[posting(5000 + i, later(T0, 140)) for i in range(2)])
    run(later(T0, 150))
    firing, resolved = receiver.posts("/am")
    for req in (firing, resolved):
        signature = req.headers["X-Observatory-Signature"]
        expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, "sha256=" + expected)
        assert_alertmanager_v4(req.json())
    doc = firing.json()
    assert doc["status"] == "firing" and doc["receiver"] == "am-receiver"
    assert doc["groupKey"] == f"observatory/alert/{alert.id}"
    assert doc["groupLabels"] == {"alertname": rule.name}
    [a] = doc["alerts"]
    assert a["labels"] == {"alertname": rule.name, **alert.labels}
    assert a["fingerprint"] == alert.fingerprint
    assert a["generatorURL"] == f"{BASE}/alerts/{alert.id}/"
    assert a["annotations"]["affected_orders"] == "2"
    assert a["annotations"]["description"] == alert.summary
    assert a["annotations"]["acknowledge_url"].startswith(f"{BASE}/alerts/{alert.id}/ack/")
    assert a["startsAt"].startswith(later(T0, 120).strftime("%Y-%m-%dT%H:%M:%S"))
    done = resolved.json()
    assert done["status"] == "resolved" and done["groupKey"] == doc["groupKey"]
    assert done["alerts"][0]["endsAt"].startswith(later(T0, 150).strftime("%Y-%m-%dT%H:%M:%S"))
    # a tampered body does not verify
    forged = hmac.new(SECRET.encode(), firing.body + b" ", hashlib.sha256).hexdigest()
    assert firing.headers["X-Observatory-Signature"] != "sha256=" + forged


def test_webhook_unsigned_without_a_secret_and_retry_after(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    Channel.objects.create(name="am", kind="webhook", webhook_url=receiver.url + "/am")
    receiver.answer((503, {"Retry-After": "12"}, b"busy"))
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    _, first = run(at)
    assert first.retrying == 1
    assert Notification.objects.get().next_attempt_at == at + timedelta(seconds=12)
    assert do_deliver(clock=lambda: at + timedelta(seconds=12)).sent == 1
    last = receiver.posts("/am")[-1]
    assert "X-Observatory-Signature" not in last.headers
    assert_alertmanager_v4(last.json())


@pytest.mark.parametrize("kind", ["teams", "webhook", "pagerduty"])
def test_private_addresses_are_refused_at_delivery(
    ingest_client: Client, receiver: Receiver, settings: Any, kind: str
) -> None:
    """Saved behind the API's back (or the setting turned off later): nothing is sent,
    and the channel says why."""
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    settings.ALERTS_PAGERDUTY_URL = receiver.url + "/v2/enqueue"
    stuck_rule()
    fields = {"routing_key": KEY} if kind == "pagerduty" else {"webhook_url": receiver.url + "/x"}
    channel = Channel.objects.create(name=kind, kind=kind, **fields)
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1 and receiver.requests == []
    channel.refresh_from_db()
    assert channel.failing and "ALERTS_ALLOW_PRIVATE_URLS" in channel.failing_reason


# --- the API and the pages --------------------------------------------------------------------


def test_api_creates_each_kind_and_hides_the_secrets(
    write_client: Client, read_client: Client
) -> None:
    bodies = [
        {"name": "teams", "kind": "teams", "webhook_url": "https://acme.webhook.office.com/wf/1"},
        {"name": "pd", "kind": "pagerduty", "routing_key": KEY},
        {"name": "am", "kind": "webhook", "url": "https://am.example.com/hook", "secret": SECRET},
    ]
    for body in bodies:
        r = write_client.post("/api/v1/alert-channels", body, content_type="application/json")
        assert r.status_code == 201, r.content
    teams, pd, am = (Channel.objects.get(name=b["name"]) for b in bodies)
    assert teams.webhook_url == bodies[0]["webhook_url"] and pd.routing_key == KEY
    assert am.webhook_url == "https://am.example.com/hook" and am.secret == SECRET
    shown = {c["name"]: c for c in read_client.get("/api/v1/alert-channels").json()}
    assert shown["teams"]["mode"] == "teams" and shown["teams"]["webhook_url"].endswith("/…")
    assert shown["pd"]["routing_key"] == "…CDEF" and KEY not in json.dumps(shown)
    assert shown["am"]["url"] == "https://am.example.com/…" and shown["am"]["signed"] is True
    assert SECRET not in json.dumps(shown)


def test_channel_form_for_each_kind(
    admin_client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    r = admin_client.post(
        "/alerts/channels/new/",
        {"name": "am", "kind": "webhook", "webhook_url": "http://10.0.0.7/hook", "active": "on"},
    )
    assert r.status_code == 200 and not Channel.objects.exists()
    page = r.content.decode()
    assert page.count('class="error-text"') == 1
    assert 'data-error-for="webhook_url"' in page and "ALERTS_ALLOW_PRIVATE_URLS" in page

    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    for data in (
        {"name": "teams", "kind": "teams", "webhook_url": receiver.url + "/wf"},
        {"name": "pd", "kind": "pagerduty", "routing_key": KEY, "webhook_url": "https://x.y/"},
        {"name": "am", "kind": "webhook", "webhook_url": receiver.url + "/am", "secret": SECRET},
    ):
        r = admin_client.post("/alerts/channels/new/", {**data, "active": "on"})
        assert r.status_code == 302, r.content.decode()[:3000]
    pd = Channel.objects.get(name="pd")
    assert pd.routing_key == KEY and pd.webhook_url == ""  # another kind's field is not kept
    am = Channel.objects.get(name="am")
    # editing without retyping the secret keeps it
    r = admin_client.post(
        f"/alerts/channels/{am.id}/",
        {"name": "am", "kind": "webhook", "webhook_url": receiver.url + "/am", "active": "on"},
    )
    assert r.status_code == 302
    am.refresh_from_db()
    assert am.secret == SECRET
    page = admin_client.get(f"/alerts/channels/{am.id}/").content.decode()
    assert SECRET not in page and "static/js/alerts" in page.replace("/static/", "static/")
    admin_client.post(f"/alerts/channels/{am.id}/test/")
    assert_alertmanager_v4(receiver.posts("/am")[-1].json())


def test_the_admin_adds_each_kind_with_the_same_checks(admin_client: Client, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    base = {"active": "on", "failing_reason": ""}
    r = admin_client.post(
        "/admin/alerts/channel/add/",
        {**base, "name": "am", "kind": "webhook", "webhook_url": "http://10.1.1.1/x"},
    )
    assert r.status_code == 200 and b"ALERTS_ALLOW_PRIVATE_URLS" in r.content
    r = admin_client.post(
        "/admin/alerts/channel/add/",
        {**base, "name": "pd", "kind": "pagerduty", "routing_key": KEY},
    )
    assert r.status_code == 302, r.content.decode()[:3000]
    pd = Channel.objects.get(name="pd")
    assert pd.routing_key == KEY
    page = admin_client.get(f"/admin/alerts/channel/{pd.id}/change/").content.decode()
    assert KEY not in page  # a secret is never shown again
    r = admin_client.post(
        f"/admin/alerts/channel/{pd.id}/change/", {**base, "name": "pd2", "kind": "pagerduty"}
    )
    assert r.status_code == 302
    pd.refresh_from_db()
    assert pd.name == "pd2" and pd.routing_key == KEY  # blank kept it
    assert admin_client.get("/admin/alerts/channel/").status_code == 200
