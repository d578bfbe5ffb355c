"""Signed-in clients for the page tests, one per role, and the seeded orders."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from tests.dashboards import seed as seed_module

PASSWORD = "correct horse battery staple"


def make_user(username: str, *groups: str) -> object:
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    for name in groups:
        # get_or_create: a transactional test flushes the groups the migration made
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def ops_client(db: None) -> Client:
    client = Client()
    client.force_login(make_user("olivia", "ops"))
    return client


@pytest.fixture
def exec_client(db: None) -> Client:
    client = Client()
    client.force_login(make_user("evan", "executive"))
    return client


@pytest.fixture
def seeded(ingest_client: Client) -> datetime:
    """Both orders of ``seed.py``, sent through the ingest endpoints and stitched."""
    return seed_module.seed(ingest_client)
