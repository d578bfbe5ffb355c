"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


def test_healthz() -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}


@pytest.fixture
def staff_client(db: None) -> Client:
    user = get_user_model().objects.create_user("probe-admin", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_readyz_checks_database_and_broker(staff_client: Client) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}
    detailed = staff_client.get("/readyz").json()
    assert detailed["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_broker(settings: Any, staff_client: Client) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"]
    # an anonymous caller learns only that it is unavailable: no host, port or driver text
    assert response.json() == {"status": "unavailable"}
    assert "127.0.0.1" not in response.content.decode()
    checks = staff_client.get("/readyz").json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] != "ok"
