"""The corpus client: a server error comes back as a 500, not as the exception."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def client(ingest_token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}", raise_request_exception=False)
