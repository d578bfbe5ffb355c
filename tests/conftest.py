"""Shared fixtures: tokens, signed clients, and a live server on loopback."""

from __future__ import annotations

import pytest
from django.test import Client

from observatory.access.actions import do_create_api_token, do_create_ingest_token


@pytest.fixture(scope="session", autouse=True)
def _collected_static() -> None:
    """Pages name their static files by content hash (settings.STORAGES): collect them,
    compressed, as a deployment does, before any page is rendered or served."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


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


# Reference data that data migrations seed (status maps, SLA policies, owner routes,
# default alert rules, groups). A transactional test's flush empties those tables; rather
# than serialized_rollback (whose reload collides with the content types a previous flush
# re-created), every transactional test gets them back from the same seed functions.
#: model whose emptiness says the data is gone -> the data migrations' functions, in order
_SEEDS = {
    "transactions.StatusMap": [
        ("transactions", "0002_seed_status_maps_and_slas", "seed"),
        ("transactions", "0005_fulfillment_sla_for_web_orders", "web_only"),
        ("transactions", "0006_sla_skippable", "not_skippable"),
    ],
    "triage.OwnerRoute": [("triage", "0002_owner_routes_and_failed_hop_index", "seed")],
    "alerts.Rule": [
        ("alerts", "0002_default_rules", "add_rules"),
        ("alerts", "0004_duplicate_rule_watches_worst_source", "worst_source"),
        ("alerts", "0006_error_rate_min_failed", "ship"),
    ],
    "auth.Group": [("dashboards", "0001_groups", "create_groups")],
    "reconciliation.Rule": [("reconciliation", "0002_default_rules", "add_rules")],
}


def _reseed() -> None:
    import importlib

    from django.apps import apps

    for model, steps in _SEEDS.items():
        if apps.get_model(model).objects.exists():
            continue
        for app, migration, function in steps:
            module = importlib.import_module(f"observatory.{app}.migrations.{migration}")
            getattr(module, function)(apps, None)


@pytest.fixture(autouse=True)
def _reference_data(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        _reseed()
