"""Authentication lookups: which token a request carries, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass

from observatory.access import tokens
from observatory.access.models import ApiToken, IngestToken


@dataclass(frozen=True)
class Denied:
    """Why a request may not go on: 401 for no or unknown token, 403 for the wrong one."""

    status: int
    message: str


def ingest_token(plain: str | None) -> IngestToken | Denied:
    """The live ingest token for ``plain``, or why it is refused (docs/ingest.md, "Authentication")."""
    if not plain:
        return Denied(401, "missing bearer token: send 'Authorization: Bearer <ingest token>'")
    digest = tokens.digest(plain)
    row = IngestToken.objects.filter(digest=digest).first()
    if row is None:
        if ApiToken.objects.filter(digest=digest).exists():
            return Denied(403, "this is an API token: API tokens cannot ingest")
        return Denied(401, "unknown bearer token")
    if row.revoked_at is not None:
        return Denied(403, f"ingest token '{row.name}' has been revoked")
    return row


def api_token(plain: str | None) -> ApiToken | Denied:
    """The live API token for ``plain``, or why it is refused (docs/api.md, "Authentication and scopes")."""
    if not plain:
        return Denied(401, "missing bearer token")
    digest = tokens.digest(plain)
    # its user only matters to writes (who acted): loaded then, not on every read
    row = ApiToken.objects.filter(digest=digest).first()
    if row is None:
        if IngestToken.objects.filter(digest=digest).exists():
            return Denied(403, "this is an ingest token: ingest tokens cannot read")
        return Denied(401, "unknown bearer token")
    if row.revoked_at is not None:
        return Denied(403, f"API token '{row.name}' has been revoked")
    return row
