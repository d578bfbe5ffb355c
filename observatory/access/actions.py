"""Writes on tokens: issue and revoke."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from observatory.access import queries, tokens
from observatory.access.models import ApiToken, IngestToken
from observatory.lib.clock import now


def do_create_ingest_token(name: str, system: str = "") -> tuple[IngestToken, str]:
    """Issue an ingest token; the plain token is returned once and never stored."""
    plain = tokens.mint(tokens.INGEST_PREFIX)
    row = IngestToken.objects.create(
        name=name, system=system, prefix=plain[:12], digest=tokens.digest(plain)
    )
    return row, plain


def do_create_api_token(name: str, scope: str, username: str | None = None) -> tuple[ApiToken, str]:
    if scope not in (ApiToken.READ, ApiToken.WRITE):
        raise ValueError(f"scope must be 'read' or 'write', not {scope!r}")
    user = None
    if username:
        user = get_user_model().objects.get(username=username)
    plain = tokens.mint(tokens.API_PREFIX)
    row = ApiToken.objects.create(
        name=name, scope=scope, user=user, prefix=plain[:12], digest=tokens.digest(plain)
    )
    return row, plain


@transaction.atomic
def do_revoke_token(token: IngestToken | ApiToken) -> None:
    type(token).objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now())
    # refused at once by this process (others trust a live token a moment longer: queries)
    queries.forget_ingest_tokens()
    transaction.on_commit(queries.forget_ingest_tokens)  # and not looked up again meanwhile
