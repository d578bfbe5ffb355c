"""The source readers the fill shares, and what every KPI read starts from: the minute
rollups' cutoff, the SLA deadlines by kind and channel, and whether a snapshot question is
asked about now (``is_live``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Subquery

from observatory.hops.models import DuplicateDelivery, Hop
from observatory.kpis import compute
from observatory.kpis.compute import HopFact, OrderFact
from observatory.kpis.queries.business_days import BusinessDays, cents
from observatory.lib import memo
from observatory.lib.clock import now as clock_now
from observatory.transactions.models import StageReached, Transaction, TransactionHop
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import DUPLICATE, REAL, Issue
from tracing import conventions as c
from tracing.conventions import ERROR

Range = tuple[datetime, datetime]

ORDER = compute.ORDER_KIND
INVENTORY = compute.INVENTORY_KIND
#: Snapshot questions asked at or after this long before "now" read the live state
#: (partial indexes on open stages); earlier ones rebuild the state as it was then.
LIVE_SLACK = timedelta(seconds=5)


def minute_retention_days() -> int:
    return int(settings.RETENTION_DAYS["minute_rollups"])


def minutes_from(at: datetime | None = None) -> datetime:
    """The first hour with minute rollups (older partial hours are read raw)."""
    return compute.minutes_cutoff(at or clock_now(), minute_retention_days())


def is_live(until: datetime, at: datetime) -> bool:
    return until >= at - LIVE_SLACK


class Deadlines:
    """The deadline (seconds) between two stages for a transaction kind and channel, from
    the active SLA policies (a channel's own policy over the every-channel one)."""

    def __init__(self, policies: Sequence[sla.Policy] | None = None) -> None:
        self.policies = list(triage_queries.policies() if policies is None else policies)
        self._cache: dict[tuple[str, str], dict[tuple[str, str], float]] = {}

    def get(self, kind: str, channel: str, from_stage: str, to_stage: str) -> float | None:
        table = self._cache.get((kind, channel))
        if table is None:
            table = {
                (p.from_stage, p.to_stage): float(p.deadline_s)
                for p in sla.applicable(self.policies, kind, channel)
            }
            self._cache[(kind, channel)] = table
        return table.get((from_stage, to_stage))


# --- source readers (shared with the fill) ---------------------------------------------------


def ranges_q(column: str, ranges: Sequence[Range]) -> Q:
    """``column`` inside any of the half-open ``ranges``."""
    q = Q()
    for a, b in ranges:
        q |= Q(**{f"{column}__gte": a, f"{column}__lt": b})
    return q


def _lag(end: datetime | None, start: datetime | None) -> float | None:
    if end is None or start is None:
        return None
    return compute.clamp((end - start).total_seconds())


def order_facts(ranges: Sequence[Range], deadlines: Deadlines | None = None) -> list[OrderFact]:
    """The live orders captured, and inventory updates adjusted, inside ``ranges``.

    One query: exceptions on the order, or on a transaction merged into it, and ERP
    double postings (triage's ``duplicate`` exceptions with ``posted_twice``) are EXISTS
    subqueries.
    """
    if not ranges:
        return []
    if deadlines is None:  # the active policies' deadlines: once per page (lib.memo)
        key = ("order_facts", tuple(ranges))
        return list(memo.once(key, lambda: tuple(_order_facts(ranges, Deadlines()))))
    return _order_facts(ranges, deadlines)


def _order_facts(ranges: Sequence[Range], deadlines: Deadlines) -> list[OrderFact]:
    days = BusinessDays()
    # withdrawn exceptions were never a problem
    on_tx = Issue.objects.filter(transaction_id=OuterRef("pk"), state__in=REAL)
    on_loser = Issue.objects.filter(transaction__merged_into_id=OuterRef("pk"), state__in=REAL)
    handed_over = (
        StageReached.objects.filter(
            transaction_id=OuterRef("pk"), stage="shipped", system__in=c.FULFILLMENT_SYSTEMS
        )
        .order_by("at")
        .values("at")[:1]
    )
    twice = Q(kind=DUPLICATE, detail__duplicate="posted_twice")
    qs = (
        Transaction.objects.filter(merged_into__isnull=True)
        .filter(
            (Q(kind=ORDER) & ranges_q("captured_at", ranges))
            | (Q(kind=INVENTORY) & ranges_q("inventory_adjusted_at", ranges))
        )
        .annotate(
            issue_here=Exists(on_tx),
            issue_merged=Exists(on_loser),
            twice_here=Exists(on_tx.filter(twice)),
            twice_merged=Exists(on_loser.filter(twice)),
            handed_over=Subquery(handed_over),
        )
        .values_list(
            "kind",
            "channel",
            "store_id",
            "captured_at",
            "posted_at",
            "handed_over",
            "fulfillment_synced_at",
            "inventory_adjusted_at",
            "inventory_published_at",
            "failed_hop_count",
            "issue_here",
            "issue_merged",
            "twice_here",
            "twice_merged",
            "amount",
            "currency",
        )
    )
    out = []
    for (
        kind,
        channel,
        store,
        captured,
        posted,
        shipped,
        synced,
        adjusted,
        published,
        failed,
        issue_here,
        issue_merged,
        twice_here,
        twice_merged,
        amount,
        currency,
    ) in qs.iterator(chunk_size=5000):
        if kind == ORDER:
            assert captured is not None  # the window's filter
            in_day, day_end = days.verdict(captured, posted, store)
            out.append(
                OrderFact(
                    kind=kind,
                    channel=channel,
                    store=store,
                    anchor=captured,
                    a2p_s=_lag(posted, captured),
                    a2p_deadline_s=deadlines.get(kind, channel, "captured", "posted"),
                    ful_s=_lag(synced, shipped),
                    ful_deadline_s=deadlines.get(kind, channel, "shipped", "fulfillment_synced"),
                    with_exception=bool(failed) or issue_here or issue_merged,
                    posted_twice=twice_here or twice_merged,
                    posted_in_day=in_day,
                    day_end=day_end,
                    cents=cents(amount),
                    currency=currency,
                )
            )
        else:
            assert adjusted is not None  # the window's filter
            out.append(
                OrderFact(
                    kind=kind,
                    channel=channel,
                    store=store,
                    anchor=adjusted,
                    inv_s=_lag(published, adjusted),
                    inv_deadline_s=deadlines.get(
                        kind, channel, "inventory_adjusted", "inventory_published"
                    ),
                )
            )
    return out


def hop_facts(ranges: Sequence[Range]) -> list[HopFact]:
    """The stitched hops that started inside ``ranges``: three queries (hops, their first
    transaction's channel and store, their duplicate deliveries)."""
    if not ranges:
        return []
    where = ranges_q("start_time", ranges)
    hops = list(
        Hop.objects.filter(where, stitched__isnull=False).values_list(
            "id",
            "start_time",
            "channel",
            "store_id",
            "system",
            "operation",
            "outcome",
            "retry_attempt",
            "replay",
            "duration_ms",
        )
    )
    if not hops:
        return []
    owner: dict[int, tuple[int, str, str]] = {}
    links = TransactionHop.objects.filter(
        ranges_q("hop__start_time", ranges), transaction__merged_into__isnull=True
    ).values_list("hop_id", "transaction_id", "transaction__channel", "transaction__store_id")
    for hop_id, tx_id, channel, store in links:
        held = owner.get(hop_id)
        if held is None or tx_id < held[0]:
            owner[hop_id] = (tx_id, channel, store)
    dups = dict(
        DuplicateDelivery.objects.filter(ranges_q("hop__start_time", ranges))
        .values("hop_id")
        .annotate(n=Count("id"))
        .values_list("hop_id", "n")
    )
    out = []
    for hop_id, start, channel, store, system, operation, outcome, attempt, replay, dur in hops:
        tx = owner.get(hop_id)
        out.append(
            HopFact(
                start=start,
                channel=channel or (tx[1] if tx else ""),
                store=store or (tx[2] if tx else ""),
                system=system,
                operation=operation,
                error=outcome == ERROR,
                retry=attempt > 0,
                replay=bool(replay),
                duplicates=int(dups.get(hop_id, 0)),
                duration_ms=compute.clamp(float(dur or 0.0)),
            )
        )
    return out
