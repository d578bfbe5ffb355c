"""A page of an order's hops: what all its hops add up to, and which hops of its reached
stages belong to a batch, each in one query, for ``queries.order_view`` when it reads
only a page of hops (the order page of a transaction with thousands of them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from observatory.hops.models import Hop, HopKey
from observatory.lib.routers import reads
from observatory.transactions.models import StageReached, TransactionHop

_TXHOP = TransactionHop._meta.db_table


@dataclass
class HopTotals:
    """What every hop of a transaction adds up to, when only a page of them is read."""

    count: int
    failed: int
    retries: int
    #: systems in the order the transaction first met them
    systems: list[str]


def hop_totals(tx_id: int) -> HopTotals:
    """Count, failures, retries and systems of every hop of a transaction (one query)."""
    sql = (
        "SELECT h.system, COUNT(*), "
        "SUM(CASE WHEN h.outcome = 'error' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN h.retry_attempt > 0 OR h.replay THEN 1 ELSE 0 END), "
        f"MIN(h.start_time) FROM {Hop._meta.db_table} h "
        f"WHERE h.id IN (SELECT hop_id FROM {_TXHOP} WHERE transaction_id = %s) "
        "GROUP BY h.system ORDER BY MIN(h.start_time), h.system"
    )
    with reads(Hop).cursor() as cur:
        cur.execute(sql, [tx_id])
        rows = cur.fetchall()
    return HopTotals(
        count=sum(int(r[1]) for r in rows),
        failed=sum(int(r[2] or 0) for r in rows),
        retries=sum(int(r[3] or 0) for r in rows),
        systems=[r[0] for r in rows],
    )


def batch_stage_hops(tx_id: int, batch_kinds: Iterable[str]) -> set[int]:
    """The hops of a transaction's reached stages that belong to a batch (one query)."""
    kinds = sorted(batch_kinds)
    marks = ", ".join(["%s"] * len(kinds))
    sql = (
        f"SELECT DISTINCT k.hop_id FROM {HopKey._meta.db_table} k WHERE k.hop_id IN "
        f"(SELECT hop_id FROM {StageReached._meta.db_table} WHERE transaction_id = %s) "
        f"AND (k.fanout OR k.kind IN ({marks}))"
    )
    with reads(Hop).cursor() as cur:
        cur.execute(sql, [tx_id, *kinds])
        return {row[0] for row in cur.fetchall()}
