"""Writes on the hop store."""

from __future__ import annotations

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
    return MaskPolicy(settings.PII_KEY_PATTERNS, settings.PII_VALUE_PATTERNS)


def do_store_hops(
    records: Sequence[HopRecord], *, received_at: datetime | None = None
) -> StoreResult:
    """Mask PII out of ``records`` and store the new ones, idempotently, in one transaction.

    Re-sent hops are stored once and counted as duplicate deliveries. When this returns
    outside an enclosing transaction, everything it reports as stored is committed.
    """
    received_at = received_at or now()
    policy = mask_policy()
    for r in records:
        policy.mask_record(r)
    with transaction.atomic():
        return store_records(records, received_at)
