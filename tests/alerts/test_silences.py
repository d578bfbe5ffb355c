"""Silences (maintenance windows) through the API: they start, match, and expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from django.test import Client

from observatory.alerts.actions import do_deliver, do_evaluate
from observatory.alerts.models import Alert, Channel, Notification, Rule
from observatory.lib.clock import now
from tests.alerts.helpers import only_rules, posting, send

pytestmark = pytest.mark.django_db


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, orjson.dumps(body), content_type="application/json")


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def evaluate(at: datetime) -> None:
    do_evaluate(clock=lambda: at)
    do_deliver(clock=lambda: at)


def sent_kinds() -> list[str]:
    return list(
        Notification.objects.filter(status="sent")
        .order_by("id")
        .values_list("event__kind", flat=True)
    )


def test_a_silence_starts_matches_and_expires(
    ingest_client: Client, write_client: Client, read_client: Client
) -> None:
    rule = Rule.objects.create(
        name="ERP errors", kind="error_rate", system="erp", threshold=0.05, window_s=3600,
        severity="critical",
    )  # fmt: skip
    only_rules(rule)
    Channel.objects.create(name="mail", kind="email", to=["ops@acme.test"])
    t = now().replace(microsecond=0)
    # a maintenance window on the ERP from t+60 s to t+600 s, made through the API
    r = post(
        write_client,
        "/api/v1/silences",
        {
            "matchers": {"system": "erp"},
            "starts_at": iso(t + timedelta(seconds=60)),
            "ends_at": iso(t + timedelta(seconds=600)),
            "comment": "ERP upgrade, ticket CHG-1234",
        },
    )
    assert r.status_code == 201, r.content
    silence = r.json()
    assert silence["state"] == "pending" and silence["created_by"] == "token:alerts-writer"
    assert silence["matchers"] == {"system": "erp"}
    # a silence on another system matches nothing here
    post(
        write_client,
        "/api/v1/silences",
        {"matchers": {"system": "wms"}, "ends_at": iso(t + timedelta(hours=1)), "comment": "x"},
    )

    # before it starts: the ERP fails and people hear about it
    send(ingest_client, posting(1, t, ok=False))
    evaluate(t + timedelta(seconds=10))
    assert sent_kinds() == ["firing"]
    Alert.objects.update(state="resolved", resolved_at=t)  # start over
    Notification.objects.all().delete()

    # inside the window: the alert fires, silenced, and nothing is sent
    send(ingest_client, posting(2, t + timedelta(seconds=70), ok=False))
    evaluate(t + timedelta(seconds=90))
    alert = Alert.objects.get(state="firing")
    assert alert.silenced_by_id == silence["id"]
    assert sent_kinds() == []
    item = read_client.get("/api/v1/alerts?state=firing").json()["items"][0]
    assert item["silenced_by"] == silence["id"] and item["notifications"] == []
    listed = read_client.get("/api/v1/silences").json()
    assert {s["comment"]: s["state"] for s in listed}["ERP upgrade, ticket CHG-1234"] in (
        "pending",
        "active",
    )

    # the window ends while the ERP still fails: now it is announced
    evaluate(t + timedelta(seconds=610))
    alert.refresh_from_db()
    assert alert.silenced_by_id is None
    assert sent_kinds() == ["firing"]


def test_expire_a_silence_early(write_client: Client, read_client: Client) -> None:
    t = now()
    created = post(
        write_client,
        "/api/v1/silences",
        {"matchers": {"rule": "x"}, "ends_at": iso(t + timedelta(hours=2)), "comment": "deploy"},
    ).json()
    assert created["state"] == "active"
    r = write_client.post(f"/api/v1/silences/{created['id']}/expire")
    assert r.status_code == 200 and r.json()["state"] == "expired"
    assert read_client.get("/api/v1/silences").json() == []
    assert len(read_client.get("/api/v1/silences?expired=true").json()) == 1
    assert read_client.post(f"/api/v1/silences/{created['id']}/expire").status_code == 403
    assert write_client.post("/api/v1/silences/9999/expire").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"matchers": {}, "comment": "x"}, "matchers"),
        ({"matchers": {"system": 3}, "comment": "x"}, "matchers"),
        ({"matchers": {"system": "erp"}, "comment": ""}, "comment"),
        ({"matchers": {"system": "erp"}, "comment": "x", "ends_at": "2020-01-01T00:00:00Z"},
         "ends_at"),
        ({"matchers": {"system": "erp"}, "comment": "x", "starts_at": "2099-01-02T00:00:00Z",
          "ends_at": "2099-01-01T00:00:00Z"}, "ends_at"),
    ],
)  # fmt: skip
def test_invalid_silences(write_client: Client, body: dict[str, Any], field: str) -> None:
    body.setdefault("ends_at", iso(now() + timedelta(hours=1)))
    r = post(write_client, "/api/v1/silences", body)
    assert r.status_code == 422, r.content
    assert field in r.content.decode()
