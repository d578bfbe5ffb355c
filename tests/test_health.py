"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


def test_healthz() -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_broker() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_broker(settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert "broker" in response.json()["checks"]
    assert response.json()["checks"]["broker"] != "ok"
