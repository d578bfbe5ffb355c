"""Authentication for the read/write JSON API: a signed-in session or an API token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, django_auth

from observatory.access.models import ApiToken
from observatory.access.queries import Denied, api_token


class ApiTokenAuth(HttpBearer):
    """``Authorization: Bearer <API token>``; ingest tokens are refused with 403."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        row = api_token(token)
        if isinstance(row, Denied):
            raise HttpError(row.status, row.message)
        request.api_token = row  # type: ignore[attr-defined]  # read by the verbs' audit
        return row


def can_write(request: HttpRequest) -> bool:
    """Staff sessions and write-scoped API tokens may change configuration."""
    token: ApiToken | None = getattr(request, "api_token", None)
    if token is not None:
        return token.scope == ApiToken.WRITE
    user: Any = getattr(request, "user", None)
    return bool(user and user.is_authenticated and (user.is_staff or user.is_superuser))


def require_write(request: HttpRequest) -> None:
    if not can_write(request):
        raise HttpError(403, "this needs a write-scoped API token or an admin session")


#: Every /api/v1/ route takes either.
READ_AUTH: list[Any] = [ApiTokenAuth(), django_auth]
__all__ = ["READ_AUTH", "can_write", "require_write"]
