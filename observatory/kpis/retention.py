"""Retention of the KPI tables (docs/retention.md): minute rollups are kept
``RETENTION_DAYS["minute_rollups"]`` days, hour and day rollups, backlog samples and the
exceptions and alerts seen ``RETENTION_DAYS["hour_rollups"]``; the open-stage and bucket
rows of a transaction go with it. Runs before the transactions' prune.

The day rollups ``GET /metrics`` sums into counters are folded into ``RetiredTotal``
before they go, so those counters never go down (docs/metrics.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from observatory.kpis import queries
from observatory.kpis.compute import ALL, DAY
from observatory.kpis.models import (
    HOPS,
    MINUTE,
    ORDERS,
    AlertSeen,
    BacklogSample,
    HopRollup,
    IssueSeen,
    OpenStage,
    OrderRollup,
    RetiredTotal,
    TxBucket,
)
from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.lib.sketch import merge_encoded
from observatory.transactions.retention import TRANSACTIONS
from observatory.transactions.retention import cutoff as transactions_cutoff


def do_prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete the KPI rows past retention; yields (table, rows deleted) as it goes."""
    at = at or now()
    chunk = settings.PRUNE_CHUNK
    minutes = queries.minutes_from(at)
    hours = at - timedelta(days=settings.RETENTION_DAYS["hour_rollups"])
    gone = f"transaction_id IN (SELECT id FROM {TRANSACTIONS} WHERE updated_at < %s)"
    pruned_tx = transactions_cutoff(at)
    yield from _retire(hours)
    plan: list[tuple[str, str, list[object], str]] = [
        (OrderRollup._meta.db_table, "resolution = %s AND bucket < %s", [MINUTE, minutes], "id"),
        (HopRollup._meta.db_table, "resolution = %s AND bucket < %s", [MINUTE, minutes], "id"),
        (OrderRollup._meta.db_table, "bucket < %s", [hours], "id"),
        (HopRollup._meta.db_table, "bucket < %s", [hours], "id"),
        (BacklogSample._meta.db_table, "at < %s", [hours], "id"),
        (IssueSeen._meta.db_table, "opened_at < %s", [hours], "issue_id"),
        (AlertSeen._meta.db_table, "fired_at < %s", [hours], "alert_id"),
        (OpenStage._meta.db_table, gone, [pruned_tx], "id"),
        (TxBucket._meta.db_table, gone, [pruned_tx], "transaction_id"),
    ]
    for table, where, params, key in plan:
        for n in bulk.prune(table, where, params, chunk=chunk, key=key):
            yield (table, n)


#: a sketch column as the database hands it back
_Blob = bytes | memoryview | None


def _retire(before: datetime) -> Iterator[tuple[str, int]]:
    """Fold the day rollups before ``before`` that the totals read (hops of every channel
    and store, per system; orders of every store, per channel) into ``RetiredTotal``, and
    delete them, in one transaction: a prune stopped half way neither loses them nor
    counts them twice. A few rows a day: systems and operations, channels."""
    with transaction.atomic():
        hops = HopRollup.objects.filter(resolution=DAY, channel=ALL, store=ALL, bucket__lt=before)
        for system, n, errors, dups in (
            hops.values("system")
            .annotate(n=Sum("hops"), e=Sum("errors"), d=Sum("duplicates"))
            .order_by()
            .values_list("system", "n", "e", "d")
        ):
            total, _ = RetiredTotal.objects.select_for_update().get_or_create(
                family=HOPS, key=system
            )
            total.hops += n
            total.errors += errors
            total.duplicates += dups
            total.save()
        gone_hops = hops.delete()[0]
        orders = OrderRollup.objects.filter(resolution=DAY, store=ALL, bucket__lt=before).exclude(
            channel=ALL
        )
        by_channel: dict[str, list[tuple[int, _Blob, int, _Blob]]] = defaultdict(list)
        for channel, a2p, a2p_sketch, inv, inv_sketch in orders.values_list(
            "channel", "a2p_count", "a2p_sketch", "inv_count", "inv_sketch"
        ):
            by_channel[channel].append((a2p, a2p_sketch, inv, inv_sketch))
        for channel, rows in by_channel.items():
            total, _ = RetiredTotal.objects.select_for_update().get_or_create(
                family=ORDERS, key=channel
            )
            total.a2p_count += sum(r[0] for r in rows)
            total.a2p_sketch = merge_encoded([total.a2p_sketch, *(r[1] for r in rows)]).encode()
            total.inv_count += sum(r[2] for r in rows)
            total.inv_sketch = merge_encoded([total.inv_sketch, *(r[3] for r in rows)]).encode()
            total.save()
        gone_orders = orders.delete()[0]
    if gone_hops:
        yield (HopRollup._meta.db_table, gone_hops)
    if gone_orders:
        yield (OrderRollup._meta.db_table, gone_orders)
