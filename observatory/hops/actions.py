"""Writes on the hop store."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import transaction

from observatory.hops.store import StoreResult, store_records
from observatory.lib.clock import now
from tracing.privacy import MaskPolicy
from tracing.records import HopRecord


@lru_cache(maxsize=1)
def mask_policy() -> MaskPolicy:
    return MaskPolicy(
        settings.PII_KEY_PATTERNS,
        settings.PII_VALUE_PATTERNS,
        settings.PII_SPARE_KEY_PATTERNS,
        # keys the digest that stands for a source with PII in the delivery identity
        digest_key=hashlib.sha256(f"pii-digest:{settings.SECRET_KEY}".encode()).digest(),
    )


def mask_hops(records: Sequence[HopRecord]) -> None:
    """Mask PII out of ``records`` in place (tracing/privacy.py).

    Call it before opening the write transaction: masking is pure CPU, and on SQLite the
    transaction holds the database's one write lock from its first statement.
    """
    policy = mask_policy()
    for r in records:
        policy.mask_record(r)


def do_store_hops(
    records: Sequence[HopRecord], *, received_at: datetime | None = None, masked: bool = False
) -> StoreResult:
    """Store the new ones of ``records``, idempotently, in one transaction.

    Records are masked first unless ``masked`` says :func:`mask_hops` did it already, so
    no caller can store unmasked PII. Re-sent hops are stored once and counted as duplicate
    deliveries. When this returns outside an enclosing transaction, everything it reports
    as stored is committed.
    """
    received_at = received_at or now()
    if not masked:
        mask_hops(records)
    with transaction.atomic():
        return store_records(records, received_at)
