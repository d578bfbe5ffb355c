"""Shared fixtures: tokens, signed clients, and a live server on loopback."""

from __future__ import annotations

import pytest
from django.test import Client

from observatory.access.actions import do_create_api_token, do_create_ingest_token


@pytest.fixture
def ingest_token(db: None) -> str:
    _, plain = do_create_ingest_token("test-source")
    return plain


@pytest.fixture
def api_token(db: None) -> str:
    _, plain = do_create_api_token("test-reader", "read")
    return plain


@pytest.fixture
def ingest_client(ingest_token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}")


@pytest.fixture
def api_client(api_token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")
