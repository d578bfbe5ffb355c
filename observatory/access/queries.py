"""Authentication lookups: which token a request carries, and what it may do."""

from __future__ import annotations

import time
from dataclasses import dataclass

from observatory.access import tokens
from observatory.access.models import ApiToken, IngestToken


@dataclass(frozen=True)
class Denied:
    """Why a request may not go on: 401 for no or unknown token, 403 for the wrong one."""

    status: int
    message: str


#: How long a process trusts a live ingest token it has looked up: a token revoked (or
#: deleted) elsewhere is refused at most this long after (docs/ingest.md, "Authentication").
#: A sender's requests then skip a query each (docs/performance.md, "Storing hops").
INGEST_TOKEN_TRUST_S = 2.0
_TRUSTED_MAX = 1024
#: digest -> (monotonic time until which it is trusted, the live token)
_trusted: dict[str, tuple[float, IngestToken]] = {}


def forget_ingest_tokens() -> None:
    """Trust no ingest token looked up before (this process revoked one)."""
    _trusted.clear()


def ingest_token(plain: str | None) -> IngestToken | Denied:
    """The live ingest token for ``plain``, or why it is refused (docs/ingest.md, "Authentication")."""
    if not plain:
        return Denied(401, "missing bearer token: send 'Authorization: Bearer <ingest token>'")
    digest = tokens.digest(plain)
    trusted = _trusted.get(digest)
    if trusted is not None and trusted[0] > time.monotonic():
        return trusted[1]
    row = _live_ingest_token(digest)
    if isinstance(row, IngestToken):
        if len(_trusted) >= _TRUSTED_MAX:
            _trusted.clear()
        _trusted[digest] = (time.monotonic() + INGEST_TOKEN_TRUST_S, row)
    return row


def _live_ingest_token(digest: str) -> IngestToken | Denied:
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
