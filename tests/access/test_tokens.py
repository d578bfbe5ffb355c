"""Tokens: printed once, stored as hashes, revocable, and each kind kept to its side."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from observatory.access import tokens
from observatory.access.actions import do_create_ingest_token, do_revoke_token
from observatory.access.models import ApiToken, IngestToken


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_ingest_token_prints_it_last_and_stores_only_a_hash() -> None:
    output = run("create_ingest_token", "erp-connector", "--system", "erp")
    plain = output.strip().splitlines()[-1]
    assert plain.startswith(tokens.INGEST_PREFIX)
    row = IngestToken.objects.get()
    assert row.system == "erp"
    assert row.digest == tokens.digest(plain)
    assert plain not in {row.digest, row.prefix, row.name}
    assert not IngestToken.objects.filter(digest__contains=plain).exists()


@pytest.mark.django_db
def test_create_api_token_for_a_user() -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("ana")
    plain = run("create_api_token", "dash", "--scope", "write", "--user", "ana").split()[-1]
    row = ApiToken.objects.get(digest=tokens.digest(plain))
    assert row.scope == "write" and row.user is not None and row.user.username == "ana"


@pytest.mark.django_db
def test_api_token_reads_ingest_token_does_not(api_token: str, ingest_token: str) -> None:
    url = "/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    assert Client(HTTP_AUTHORIZATION=f"Bearer {api_token}").get(url).status_code == 404
    refused = Client(HTTP_AUTHORIZATION=f"Bearer {ingest_token}").get(url)
    assert refused.status_code == 403
    assert "ingest tokens cannot read" in refused.json()["detail"]
    assert Client().get(url).status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer nope").get(url).status_code == 401


@pytest.mark.django_db
def test_revoked_api_token_is_403(api_token: str) -> None:
    do_revoke_token(ApiToken.objects.get())
    response = Client(HTTP_AUTHORIZATION=f"Bearer {api_token}").get(
        "/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert response.status_code == 403


@pytest.mark.django_db
def test_the_admin_revokes_through_the_access_action(admin_client: Client) -> None:
    live, _ = do_create_ingest_token("erp-connector", "erp")
    done, _ = do_create_ingest_token("old-bridge")
    do_revoke_token(done)
    before = IngestToken.objects.get(pk=done.pk).revoked_at
    response = admin_client.post(
        "/admin/access/ingesttoken/",
        {"action": "revoke", "_selected_action": [live.pk, done.pk]},
    )
    assert response.status_code == 302
    assert IngestToken.objects.get(pk=live.pk).revoked_at is not None
    # a token revoked before keeps the moment it was revoked
    assert IngestToken.objects.get(pk=done.pk).revoked_at == before
