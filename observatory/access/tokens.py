"""Pure token helpers: minting and hashing (no ORM)."""

from __future__ import annotations

import hashlib
import secrets

INGEST_PREFIX = "obs_in_"
API_PREFIX = "obs_api_"


def mint(prefix: str) -> str:
    """A new random token with a recognisable prefix (secret scanners can match it)."""
    return prefix + secrets.token_urlsafe(24)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
