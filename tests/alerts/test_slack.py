"""Slack delivery against a local HTTP server on 127.0.0.1: Block Kit shape, 429 with
Retry-After then success, permanent failures marking the channel failing, the bot token
mode editing its message in place, and loopback refused without ALERTS_ALLOW_PRIVATE_URLS."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from observatory.alerts import actions
from observatory.alerts.actions import do_acknowledge, do_deliver, do_evaluate, do_send_test
from observatory.alerts.models import (
    Alert,
    Channel,
    DeliveryAttempt,
    Notification,
)
from observatory.alerts.transports import Message
from observatory.alerts.transports import slack as slack_transport
from tests.alerts.conftest import Receiver, slack_api
from tests.alerts.helpers import (
    T0,
    command,
    later,
    posting,
    run,
    send,
    stitch,
    stuck_orders,
    stuck_rule,
    webhook_channel,
)

pytestmark = pytest.mark.django_db
BASE = "https://observatory.example.com"
HOOK = "/services/T000/B000/XXXXXXXX"


@pytest.fixture(autouse=True)
def _base(settings: Any) -> None:
    settings.OBSERVATORY_BASE_URL = BASE


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for b in blocks:
        if "text" in b and isinstance(b["text"], dict):
            out.append(b["text"]["text"])
        out += [f["text"] for f in b.get("fields", [])]
        out += [e.get("text", "") for e in b.get("elements", []) if e.get("type") == "mrkdwn"]
    return out


def assert_within_slack_limits(payload: dict[str, Any]) -> None:
    assert payload["text"] and len(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    for b in blocks:
        assert b["type"] in {"header", "section", "context", "divider", "actions"}
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text" and len(b["text"]["text"]) <= 150
        if b["type"] == "section":
            if "text" in b:
                assert len(b["text"]["text"]) <= 3000
            assert len(b.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in b.get("fields", []))
        if b["type"] == "actions":
            assert len(b["elements"]) <= 25
            for e in b["elements"]:
                assert len(e["text"]["text"]) <= 75 and len(e["url"]) <= 3000
    assert len(json.dumps(blocks)) < 13000  # msg_blocks_too_long is seen around 13k


def test_webhook_message_is_block_kit_with_orders_links_and_buttons(
    ingest_client: Client, receiver: Receiver, allow_private: None, client: Client
) -> None:
    rule = stuck_rule()
    webhook_channel(receiver.url + HOOK)
    stuck_orders(ingest_client, 12, T0)  # amounts 10, 20, ..., 120: USD 780.00
    evaluated, delivered = run(later(T0, 120))
    assert evaluated.firing == 1 and delivered.sent == 1
    [req] = receiver.posts(HOOK)
    payload = req.json()
    assert_within_slack_limits(payload)
    alert = Alert.objects.get(rule=rule)
    assert payload["text"].startswith(f"[FIRING critical] {rule.name}: 12 web orders stuck")

    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == f"🔴 CRITICAL · {rule.name}"
    texts = _texts(blocks)
    what = texts[1]
    assert "12 web orders stuck before posted (USD 780.00)" in what
    assert "*Firing since* <!date^" in what
    assert "*Affected orders*\n12" in texts and "*Value*\nUSD 780.00" in texts
    top = next(t for t in texts if t.startswith("*Top orders by value*"))
    lines = top.splitlines()[1:]
    assert len(lines) == 11 and lines[-1] == "…and 2 more"
    first_tx = Alert.objects.get(rule=rule).detail["orders"]["top"][0]["id"]
    assert lines[0].startswith(f"• <{BASE}/orders/{first_tx}/|#5011> · USD 120.00")
    assert "#5002" in lines[9] and "#5001" not in top  # the 10 largest, by value

    [actions_block] = [b for b in blocks if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions_block["elements"]}
    assert set(buttons) == {"acknowledge", "open_alert", "open_dashboard"}
    assert buttons["open_dashboard"]["url"] == BASE + "/"
    assert buttons["open_alert"]["url"] == f"{BASE}/alerts/{alert.id}/"
    ack = buttons["acknowledge"]["url"]
    assert ack.startswith(f"{BASE}/alerts/{alert.id}/ack/")

    # the signed link works without signing in: a page first, the POST acknowledges
    path = ack.removeprefix(BASE)
    page = client.get(path)
    assert page.status_code == 200 and b'data-action="acknowledge"' in page.content
    Alert.objects.filter(pk=alert.pk).update()  # nothing acknowledged by looking
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    done = client.post(path)
    assert done.status_code == 200 and b"ack-done" in done.content
    assert Alert.objects.get(pk=alert.pk).acknowledged_by == "someone with the link"
    assert client.get(path[:-10] + "x" * 9 + "/").status_code == 404  # a forged token


def test_limits_hold_for_huge_content() -> None:
    top = [
        {"id": i, "label": "#" + "9" * 400, "amount": "1.00", "currency": "USD"} for i in range(50)
    ]
    snap = {
        "alert_id": 1,
        "rule": "r" * 400,
        "severity": "critical",
        "state": "firing",
        "summary": "x<>&" * 2000,
        "labels": {f"l{i}": "v" * 200 for i in range(40)},
        "orders": {"count": 5000, "totals": [{"currency": "USD", "value": "1.00"}], "top": top},
        "held": [{"rule": "h" * 300, "summary": "s" * 3000, "state": "held"}] * 30,
        "detail": {"last_error": {"operation": "post", "message": "e" * 5000}},
    }
    message = Message("firing", snap, BASE, f"{BASE}/alerts/1/", f"{BASE}/a/" + "k" * 100, BASE)
    payload = slack_transport.payload(message)
    assert_within_slack_limits(payload)
    assert "&lt;&gt;&amp;" in payload["blocks"][1]["text"]["text"]  # mrkdwn escaped


def test_429_with_retry_after_then_success(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    webhook_channel(receiver.url + HOOK)
    receiver.answer((429, {"Retry-After": "7"}, b"rate_limited"))
    stuck_orders(ingest_client, 2, T0)
    at = later(T0, 120)
    _, first = run(at)
    assert first.sent == 0 and first.retrying == 1
    n = Notification.objects.get()
    assert n.status == "pending" and n.next_attempt_at == at + timedelta(seconds=7)
    assert do_deliver(clock=lambda: at + timedelta(seconds=5)).sent == 0  # not due yet
    assert len(receiver.requests) == 1
    assert do_deliver(clock=lambda: at + timedelta(seconds=7)).sent == 1
    n.refresh_from_db()
    assert n.status == "sent" and n.attempts == 2
    attempts = list(DeliveryAttempt.objects.order_by("id"))
    assert [(a.ok, a.status_code, a.retry_after_s) for a in attempts] == [
        (False, 429, 7.0),
        (True, 200, None),
    ]
    assert len(receiver.requests) == 2


def test_server_errors_retry_with_exponential_backoff_then_give_up(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any
) -> None:
    settings.ALERTS_DELIVERY_MAX_ATTEMPTS = 3
    settings.ALERTS_RETRY_BASE_S = 10
    stuck_rule()
    channel = webhook_channel(receiver.url + HOOK)
    receiver.default = (500, {}, b"internal error")
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    run(at)
    n = Notification.objects.get()
    assert n.next_attempt_at == at + timedelta(seconds=10)
    do_deliver(clock=lambda: at + timedelta(seconds=10))
    n.refresh_from_db()
    assert n.next_attempt_at == at + timedelta(seconds=30)  # 10, then 20 more
    result = do_deliver(clock=lambda: at + timedelta(seconds=30))
    n.refresh_from_db()
    assert result.failed == 1 and n.status == "failed" and n.last_error.startswith("gave up")
    assert n.attempts == 3 and DeliveryAttempt.objects.count() == 3
    channel.refresh_from_db()
    assert not channel.failing  # a flaky server is not a broken channel


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [(404, b"no_service", "404"), (403, b"invalid_token", "invalid_token"),
     (410, b"channel_is_archived", "410")],
)  # fmt: skip
def test_permanent_failure_marks_the_channel_failing(
    ingest_client: Client,
    receiver: Receiver,
    allow_private: None,
    admin_client: Client,
    status: int,
    body: bytes,
    reason: str,
) -> None:
    rule = stuck_rule()
    channel = webhook_channel(receiver.url + HOOK)
    receiver.answer((status, {}, body))
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1 and delivered.retrying == 0
    channel.refresh_from_db()
    assert channel.failing and reason in channel.failing_reason
    attempt = DeliveryAttempt.objects.get()
    assert attempt.permanent and attempt.status_code == status

    # nothing more goes to a failing channel, and the page says so
    Alert.objects.filter(rule=rule).update(last_notified_at=T0 - timedelta(days=1))
    run(later(T0, 180))
    assert len(receiver.requests) == 1
    assert Notification.objects.filter(status="failed").count() == 2
    page = admin_client.get("/alerts/")
    assert b'data-testid="failing-channels"' in page.content and reason.encode() in page.content

    # a successful test message clears it
    sent = do_send_test(channel.id, "tester")
    assert sent.status == "sent"
    channel.refresh_from_db()
    assert not channel.failing
    test_payload = receiver.requests[-1].json()
    assert test_payload["blocks"][0]["text"]["text"] == "🧪 Test message from Observatory"


def test_a_refused_payload_fails_the_message_not_the_channel(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    channel = webhook_channel(receiver.url + HOOK)
    receiver.answer((400, {}, b"invalid_blocks"))
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1
    channel.refresh_from_db()
    assert not channel.failing


def test_loopback_is_refused_without_the_setting(
    ingest_client: Client, receiver: Receiver, settings: Any
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    stuck_rule()
    channel = webhook_channel(receiver.url + HOOK)  # saved behind the API's back
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1 and receiver.requests == []
    channel.refresh_from_db()
    assert channel.failing and "ALERTS_ALLOW_PRIVATE_URLS" in channel.failing_reason


def test_evaluation_never_waits_for_delivery(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    webhook_channel(receiver.url + HOOK)
    receiver.delay_s = 5  # a slow Slack
    stuck_orders(ingest_client, 1, T0)
    run(later(T0, 120), deliver=False)
    assert receiver.requests == []
    assert Notification.objects.get().status == "pending"


def test_claims_are_exclusive(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    webhook_channel(receiver.url + HOOK)
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    run(at, deliver=False)
    first = actions._claim(at, 10)
    assert len(first) == 1
    assert actions._claim(at, 10) == []  # held by the first pass's lease
    assert actions._claim(at + timedelta(seconds=actions.LEASE_S + 1), 10) == first  # expired


def test_bot_mode_posts_then_updates_the_same_message(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any
) -> None:
    settings.ALERTS_SLACK_API_URL = receiver.url + "/api/"
    receiver.default = slack_api(receiver)
    rule = stuck_rule()
    Channel.objects.create(
        name="ops-bot", kind="slack", bot_token="xoxb-test-token", slack_channel="#ops"
    )
    stuck_orders(ingest_client, 3, T0)
    run(later(T0, 120))
    [post] = receiver.posts("/api/chat.postMessage")
    assert post.headers["Authorization"] == "Bearer xoxb-test-token"
    body = post.json()
    assert body["channel"] == "#ops" and body["blocks"][0]["type"] == "header"
    assert_within_slack_limits(body)
    first_ts = "1700000000.000001"

    alert = Alert.objects.get(rule=rule)
    do_acknowledge(alert.id, "maria", clock=lambda: later(T0, 130))
    do_deliver(clock=lambda: later(T0, 130))
    [ack] = receiver.posts("/api/chat.update")
    assert ack.json()["ts"] == first_ts and ack.json()["channel"] == "C0ALERTS"
    assert "acknowledged by maria" in json.dumps(ack.json()["blocks"])
    assert "acknowledge" not in {
        e.get("action_id") for b in ack.json()["blocks"] for e in b.get("elements", [])
    }

    send(ingest_client, *[posting(5000 + i, later(T0, 140)) for i in range(3)])
    evaluated, _ = run(later(T0, 150))
    assert evaluated.resolved == 1
    updates = receiver.posts("/api/chat.update")
    assert len(updates) == 2 and updates[-1].json()["ts"] == first_ts
    assert updates[-1].json()["blocks"][0]["text"]["text"].startswith("✅ RESOLVED")
    assert len(receiver.posts("/api/chat.postMessage")) == 1  # one message, edited in place


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth", "not_in_channel"])
def test_bot_mode_permanent_errors(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any, error: str
) -> None:
    settings.ALERTS_SLACK_API_URL = receiver.url + "/api/"
    receiver.default = (200, {}, json.dumps({"ok": False, "error": error}).encode())
    stuck_rule()
    channel = Channel.objects.create(
        name="bot", kind="slack", bot_token="xoxb-1", slack_channel="C1"
    )
    stuck_orders(ingest_client, 1, T0)
    _, delivered = run(later(T0, 120))
    assert delivered.failed == 1
    channel.refresh_from_db()
    assert channel.failing and error in channel.failing_reason


def test_bot_mode_rate_limited(
    ingest_client: Client, receiver: Receiver, allow_private: None, settings: Any
) -> None:
    settings.ALERTS_SLACK_API_URL = receiver.url + "/api/"
    receiver.default = slack_api(receiver)
    receiver.answer((429, {"Retry-After": "3"}, b""))
    stuck_rule()
    Channel.objects.create(name="bot", kind="slack", bot_token="xoxb-1", slack_channel="C1")
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    _, first = run(at)
    assert first.retrying == 1
    assert do_deliver(clock=lambda: at + timedelta(seconds=3)).sent == 1


def test_resolution_waits_for_its_firing_message(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    """A resolution queued while the firing message is still retrying goes after it."""
    stuck_rule()
    webhook_channel(receiver.url + HOOK)
    receiver.answer((503, {}, b"busy"))
    stuck_orders(ingest_client, 1, T0)
    at = later(T0, 120)
    run(at)  # firing: 503, retry in 10 s
    send(ingest_client, posting(5000, later(T0, 121)))
    evaluated, delivered = run(later(T0, 125))  # resolved, but the firing one is not due
    assert evaluated.resolved == 1 and delivered.waiting == 1 and delivered.sent == 0
    delivered = do_deliver(clock=lambda: at + timedelta(seconds=10))
    assert delivered.sent == 2
    kinds = [json.loads(r.body)["text"].split("]")[0] for r in receiver.posts(HOOK)]
    assert kinds == ["[FIRING critical", "[FIRING critical", "[RESOLVED critical"]


def test_evaluation_then_delivery_run_by_the_same_command(
    ingest_client: Client, receiver: Receiver, allow_private: None
) -> None:
    stuck_rule()
    webhook_channel(receiver.url + HOOK)
    stuck_orders(ingest_client, 2, T0)
    at = later(T0, 120)
    stitch(at)
    out = command("evaluate_alerts", now=at.isoformat())
    last = out.strip().splitlines()[-1]
    assert last.startswith("1 rule evaluated: 1 firing, 0 pending, 0 resolved; 1 notification")
    assert "delivered 1, retrying 0, failed 0" in last
    assert len(receiver.posts(HOOK)) == 1
    assert do_evaluate(clock=lambda: at).notifications == 0  # deduped: nothing new


def test_the_evaluate_task_nudges_delivery(
    ingest_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observatory.alerts import tasks

    stuck_rule()
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    stuck_orders(ingest_client, 1, T0)
    stitch(later(T0, 120))
    nudged: list[bool] = []
    monkeypatch.setattr(tasks.deliver, "delay", lambda: nudged.append(True))
    monkeypatch.setattr(tasks, "do_evaluate", lambda: do_evaluate(clock=lambda: later(T0, 120)))
    tasks.evaluate()
    assert nudged == [True]
    tasks.evaluate()  # nothing new: no nudge
    assert nudged == [True]
