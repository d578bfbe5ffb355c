"""The alerting API (docs/api.md, docs/alerts.md): shapes, scopes, validation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from observatory.alerts.models import Alert, Channel, Rule
from tests.alerts.helpers import T0, posting, run, send, stuck_orders, stuck_rule

pytestmark = pytest.mark.django_db


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, orjson.dumps(body), content_type="application/json")


def test_create_channels_of_every_kind(write_client: Client, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    hook = "https://hooks.slack.com/services/T000/B000/XXXX"
    r = post(
        write_client,
        "/api/v1/alert-channels",
        {"name": "ops", "kind": "slack", "webhook_url": hook},
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["id"] and body["kind"] == "slack" and body["mode"] == "slack-webhook"
    assert body["failing"] is False
    r = post(
        write_client,
        "/api/v1/alert-channels",
        {"name": "ops-bot", "kind": "slack", "bot_token": "xoxb-123-abc", "channel": "C0123"},
    )
    assert r.status_code == 201, r.content
    assert r.json()["mode"] == "slack-bot" and r.json()["channel"] == "C0123"
    assert "xoxb-123-abc" not in r.content.decode()  # the token is never shown again
    r = post(
        write_client, "/api/v1/alert-channels", {"name": "mail", "kind": "email", "to": ["a@b.co"]}
    )
    assert r.status_code == 201 and r.json()["to"] == ["a@b.co"]
    listed = write_client.get("/api/v1/alert-channels").json()
    assert [c["name"] for c in listed] == ["ops", "ops-bot", "mail"]
    assert Channel.objects.get(name="ops-bot").bot_token == "xoxb-123-abc"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "slack"}, None),
        ({"name": "x", "kind": "slack", "bot_token": "xoxb-1"}, "channel"),
        ({"name": "x", "kind": "email", "to": []}, "to"),
        ({"name": "x", "kind": "email", "to": ["not-an-address"]}, "to"),
        ({"name": "x", "kind": "slack", "webhook_url": "http://127.0.0.1:9/hook"}, "webhook_url"),
        ({"name": "x", "kind": "slack", "webhook_url": "http://10.0.0.8/hook"}, "webhook_url"),
        ({"name": "x", "kind": "slack", "webhook_url": "ftp://hooks.slack.com/x"}, "webhook_url"),
        ({"name": "x", "kind": "pager", "to": ["a@b.co"]}, "kind"),
        ({"name": "x", "kind": "teams"}, "webhook_url"),
        ({"name": "x", "kind": "teams", "webhook_url": "http://192.168.1.9/wf"}, "webhook_url"),
        ({"name": "x", "kind": "pagerduty"}, "routing_key"),
        ({"name": "x", "kind": "pagerduty", "routing_key": "short"}, "routing_key"),
        ({"name": "x", "kind": "webhook"}, "url"),
        ({"name": "x", "kind": "webhook", "url": "http://127.0.0.1:9/am"}, "url"),
        (
            {"name": "x", "kind": "webhook", "url": "https://am.example.com/", "secret": "s"},
            "secret",
        ),
    ],
)
def test_invalid_channels_are_refused(
    write_client: Client, settings: Any, body: dict[str, Any], field: str | None
) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    r = post(write_client, "/api/v1/alert-channels", body)
    assert r.status_code == 422, r.content
    if field:
        errors = r.json()["detail"]
        assert len(errors) == 1 and field in errors[0]["loc"], errors  # one, naming it
        if "127.0.0.1" in json.dumps(body) or "192.168" in json.dumps(body):
            assert "ALERTS_ALLOW_PRIVATE_URLS" in errors[0]["msg"]
    assert not Channel.objects.exists()


def test_loopback_channel_allowed_with_the_setting(write_client: Client, settings: Any) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    body = {"name": "local", "kind": "slack", "webhook_url": "http://127.0.0.1:9/hook"}
    assert post(write_client, "/api/v1/alert-channels", body).status_code == 201


def test_duplicate_channel_name_conflicts(write_client: Client) -> None:
    body = {"name": "mail", "kind": "email", "to": ["a@b.co"]}
    assert post(write_client, "/api/v1/alert-channels", body).status_code == 201
    assert post(write_client, "/api/v1/alert-channels", body).status_code == 409


def test_create_rules_of_every_kind(write_client: Client) -> None:
    channel = post(
        write_client, "/api/v1/alert-channels", {"name": "m", "kind": "email", "to": ["a@b.co"]}
    ).json()
    bodies = [
        {"name": "stuck", "kind": "stuck", "stage": "posted", "channel": "web"},
        {"name": "errors", "kind": "error_rate", "system": "wms", "threshold": 0.1,
         "window_s": 300, "operation": "pick"},
        {"name": "silent", "kind": "silence", "system": "carrier", "window_s": 3600,
         "while_system": "wms"},
        {"name": "slow", "kind": "kpi", "kpi": "acceptance_to_posting", "field": "p95_s",
         "op": ">=", "threshold": 60, "window_s": 900, "severity": "info", "for_s": 60,
         "repeat_s": 600, "labels": {"team": "erp"}, "channels": [channel["id"]]},
    ]  # fmt: skip
    for body in bodies:
        r = post(write_client, "/api/v1/alert-rules", body)
        assert r.status_code == 201, r.content
        assert r.json()["id"] and r.json()["name"] == body["name"]
    stuck = Rule.objects.get(name="stuck")
    assert stuck.threshold == 1 and stuck.severity == "warning" and stuck.for_s == 0
    assert stuck.repeat_s == 14400
    slow = write_client.get("/api/v1/alert-rules").json()[-1]
    assert slow["channels"] == [channel["id"]] and slow["labels"] == {"team": "erp"}
    assert slow["created_by"] == "token:alerts-writer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "kpi", "kpi": "nope", "field": "rate", "op": ">",
          "threshold": 1, "window_s": 60}, "kpi"),
        ({"name": "x", "kind": "kpi", "kpi": "duplicate_rate", "field": "p95_s", "op": ">",
          "threshold": 1, "window_s": 60}, "field"),
        ({"name": "x", "kind": "kpi", "kpi": "duplicate_rate", "field": "rate", "op": ">",
          "threshold": 1}, "window_s"),
        ({"name": "x", "kind": "stuck", "stage": "teleported"}, "stage"),
        ({"name": "x", "kind": "error_rate", "system": "erp", "threshold": 5,
          "window_s": 300}, "threshold"),
        ({"name": "x", "kind": "error_rate", "threshold": 0.05, "window_s": 300}, "system"),
        ({"name": "x", "kind": "silence", "system": "erp"}, "window_s"),
        ({"name": "x", "kind": "silence", "system": "erp", "window_s": 60,
          "while_system": "erp"}, "while_system"),
        ({"name": "x", "kind": "stuck", "stage": "posted", "severity": "urgent"}, "severity"),
        ({"name": "x", "kind": "stuck", "stage": "posted", "channels": [999]}, "channels"),
    ],
)  # fmt: skip
def test_invalid_rules_are_refused(write_client: Client, body: dict[str, Any], field: str) -> None:
    before = Rule.objects.count()
    r = post(write_client, "/api/v1/alert-rules", body)
    assert r.status_code == 422, r.content
    assert field in r.content.decode()
    assert Rule.objects.count() == before


def test_read_tokens_cannot_write_and_nobody_anonymous_reads(
    read_client: Client, client: Client
) -> None:
    assert read_client.get("/api/v1/alerts").status_code == 200
    body = {"name": "mail", "kind": "email", "to": ["a@b.co"]}
    assert post(read_client, "/api/v1/alert-channels", body).status_code == 403
    assert post(read_client, "/api/v1/alert-rules", {"name": "s", "kind": "stuck",
                "stage": "posted"}).status_code == 403  # fmt: skip
    assert post(read_client, "/api/v1/alerts/1/ack", {}).status_code == 403
    assert client.get("/api/v1/alerts").status_code == 401


def test_ingest_tokens_cannot_read(ingest_client: Client) -> None:
    assert ingest_client.get("/api/v1/alerts").status_code == 403


def test_list_alerts_with_state_since_and_notifications(
    ingest_client: Client, read_client: Client, write_client: Client
) -> None:
    rule = stuck_rule()
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    stuck_orders(ingest_client, 2, T0)
    run(T0 + timedelta(seconds=120))
    answer = read_client.get("/api/v1/alerts").json()
    [item] = answer["items"]
    assert answer["next_cursor"] is None
    assert item["rule"] == rule.name and item["state"] == "firing"
    assert item["since"] == item["fired_at"] == "2026-11-20T10:02:00Z"
    assert item["labels"] == {
        "rule": rule.name,
        "kind": "stuck",
        "severity": "critical",
        "system": "erp",
        "stage": "posted",
        "channel": "web",
    }
    assert item["acknowledged"] is False and item["inhibited_by"] is None
    [note] = item["notifications"]
    assert note["event"] == "firing" and note["status"] == "sent" and note["channel"] == "mail"
    assert item["detail"]["orders"]["count"] == 2

    # acknowledge with a write token
    r = write_client.post(f"/api/v1/alerts/{item['id']}/ack")
    assert r.status_code == 200
    assert r.json()["acknowledged"] and r.json()["acknowledged_by"] == "token:alerts-writer"
    assert write_client.post(f"/api/v1/alerts/{item['id']}/ack").status_code == 200  # no-op
    assert write_client.post("/api/v1/alerts/99999/ack").status_code == 404

    # resolve, then filter by state
    send(ingest_client, *[posting(5000 + i, T0 + timedelta(seconds=130)) for i in range(2)])
    run(T0 + timedelta(seconds=140))
    assert read_client.get("/api/v1/alerts?state=firing").json()["items"] == []
    [resolved] = read_client.get("/api/v1/alerts?state=resolved").json()["items"]
    assert resolved["since"] == resolved["resolved_at"] == "2026-11-20T10:02:20Z"
    assert [n["event"] for n in resolved["notifications"]] == ["firing", "resolved"]
    assert write_client.post(f"/api/v1/alerts/{item['id']}/ack").status_code == 409
    assert read_client.get("/api/v1/alerts?state=bogus").status_code == 422
    assert read_client.get(f"/api/v1/alerts/{item['id']}").json()["id"] == item["id"]
    assert read_client.get("/api/v1/alerts/99999").status_code == 404


def test_alert_paging(read_client: Client) -> None:
    rule = Rule.objects.create(name="r", kind="stuck", stage="posted")
    for i in range(5):
        Alert.objects.create(
            rule=rule,
            fingerprint=f"{i:032d}",
            state="resolved",
            started_at=T0,
            last_true_at=T0,
            last_eval_at=T0,
            resolved_at=T0,
        )
    first = read_client.get("/api/v1/alerts?limit=2").json()
    second = read_client.get(f"/api/v1/alerts?limit=2&cursor={first['next_cursor']}").json()
    third = read_client.get(f"/api/v1/alerts?limit=2&cursor={second['next_cursor']}").json()
    ids = [a["id"] for page in (first, second, third) for a in page["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert third["next_cursor"] is None


def test_admin_session_may_write(client: Client) -> None:
    user = get_user_model().objects.create_user("boss", password="x", is_staff=True)
    client.force_login(user)
    r = post(client, "/api/v1/alert-channels", {"name": "m", "kind": "email", "to": ["a@b.co"]})
    assert r.status_code == 201
    plain = get_user_model().objects.create_user("viewer", password="x")
    client.force_login(plain)
    r = post(client, "/api/v1/alert-channels", {"name": "n", "kind": "email", "to": ["a@b.co"]})
    assert r.status_code == 403


def test_openapi_documents_the_alert_routes(read_client: Client) -> None:
    paths = read_client.get("/api/v1/openapi.json").json()["paths"]
    for path in (
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/alert-channels",
        "/api/v1/alert-rules",
        "/api/v1/silences",
    ):
        assert path in paths
