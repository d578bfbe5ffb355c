"""Ingest and API tokens, stored only as hashes (docs/ingest.md and docs/api.md, "Authentication")."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TokenBase(models.Model):
    name = models.CharField(max_length=100)
    #: The first characters of the token, shown so people can tell tokens apart.
    prefix = models.CharField(max_length=16)
    #: SHA-256 of the whole token. Tokens are 190 random bits, so a fast hash is enough.
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.name} {self.prefix}…{state}"


class IngestToken(TokenBase):
    """Lets one source send hops in; cannot read. Optionally limited to one system."""

    system = models.CharField(
        max_length=64, blank=True, help_text="If set, only hops of this system are accepted."
    )


class ApiToken(TokenBase):
    """Lets a script read the API (scope read) or also change configuration (write)."""

    READ = "read"
    WRITE = "write"
    SCOPES = [(READ, "read"), (WRITE, "read and write")]

    scope = models.CharField(max_length=8, choices=SCOPES, default=READ)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
