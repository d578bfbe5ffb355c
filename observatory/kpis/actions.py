"""Writes for KPIs: the incremental, resumable rollup fill, and retention.

``do_fill_rollups`` does three things, each in its own database transaction(s):

1. **Collect** (one transaction): find the hour buckets that changes since the last
   collection touched, and queue them as ``DirtyHour`` rows. The stages below hand their
   changes over in queues the fill claims (``lib.queues``: no wall-clock mark):

   * transactions the stitcher touched (``transactions.Touched``): the hour of their
     anchor time now and the hour ``TxBucket`` says they were counted in before (a merge
     empties the loser; a late capture moves the anchor); when their channel or store
     changed, or they won a merge, the hours of all their hops too (hops are counted
     under their channel);
   * the business hours of hops stitched, or delivered again (``hops.TouchedHour``);
   * exceptions opened, or moved to another transaction by a merge, which ``IssueSeen``
     has not counted where they now are: their transactions' hours (``IssueSeen`` also
     keeps each exception's channel and store, which follow its transaction's);
   * the SLA policies, when they changed since the last collection (a digest in
     ``FillState``): every order hour (within-deadline counts), and the late stages
     (``OpenStage``) of every transaction are rebuilt.

   The first collection (or ``full=True``) queues every hour that has data or rollups.
2. **Work off** the queue in chunks, each its own transaction: recompute every queued
   hour from the source rows (minute rows too, for recent hours), replace its rows, and
   rebuild the day rows of its days from their hours. Recomputing is idempotent, so a
   crash mid-way loses nothing: the rows stay queued and the next fill takes them.
3. **Sample** the reconciliation backlog once an hour (a gauge, for the trend chart).

Fills are serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite's write
lock is taken at BEGIN), so two workers never rebuild one day from half-written hours.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Least, TruncHour

from observatory.hops.models import Hop, TouchedHour
from observatory.kpis import compute, queries
from observatory.kpis.compute import DAY, HOUR, MINUTE
from observatory.kpis.models import (
    HOPS,
    ORDERS,
    BacklogSample,
    DirtyHour,
    FillState,
    HopRollup,
    IssueSeen,
    OpenStage,
    OrderRollup,
    TxBucket,
)
from observatory.lib import bulk, live, queues
from observatory.lib.clock import now
from observatory.transactions.models import (
    Merge,
    Touched,
    Transaction,
    TransactionHop,
    stage_field,
)
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import WITHDRAWN, Issue

log = logging.getLogger(__name__)

LIVE_TOPIC = "kpis.changed"
_LOCK_ID = 0x6B_7069_6673  # "kpifs"
#: the fill's name on the stitcher's queues (touched transactions, hours of hops)
CONSUMER = "kpis"
_STATE = "rollups"
_IN = 900  # ids per IN (...) on SQLite
HOUR_STEP = timedelta(hours=1)


def chunk_hours() -> int:
    return int(getattr(settings, "KPIS_FILL_CHUNK_HOURS", 48))


@dataclass
class FillResult:
    queued: dict[str, int] = field(default_factory=lambda: {ORDERS: 0, HOPS: 0})
    recomputed: dict[str, int] = field(default_factory=lambda: {ORDERS: 0, HOPS: 0})
    chunks: int = 0
    remaining: int = 0
    backlog_sampled: bool = False
    full: bool = False

    @property
    def changed(self) -> bool:
        return any(self.recomputed.values()) or self.backlog_sampled


def do_fill_rollups(
    *, full: bool = False, max_chunks: int | None = None, at: datetime | None = None
) -> FillResult:
    """Bring the rollups up to date with the source rows (see the module docstring).

    ``full`` requeues every hour. ``max_chunks`` bounds the work of one call (the rest
    stays queued). ``at`` is "now" for retention and the backlog gauge (default: the
    clock); change detection always runs on the wall clock, as the stitcher stamps.
    """
    result = FillResult(full=full)
    with transaction.atomic():
        _lock()
        _collect(full, result)
    while max_chunks is None or result.chunks < max_chunks:
        with transaction.atomic():
            _lock()
            if not _work_chunk(at or now(), result):
                break
        result.chunks += 1
    result.remaining = DirtyHour.objects.count()
    with transaction.atomic():
        _lock()
        result.backlog_sampled = _sample_backlog(at or now())
    if result.changed:
        live.publish(
            LIVE_TOPIC,
            {"orders_hours": result.recomputed[ORDERS], "hops_hours": result.recomputed[HOPS]},
        )
    return result


def _lock() -> None:
    bulk.lock(_LOCK_ID)


def _chunks(items: Sequence[Any], size: int = _IN) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _hour(at: datetime | None) -> datetime | None:
    return compute.floor_to(at, HOUR) if at is not None else None


def _anchor_expr() -> Case:
    return Case(
        When(kind=compute.ORDER_KIND, then=F("captured_at")),
        When(kind=compute.INVENTORY_KIND, then=F("inventory_adjusted_at")),
        default=Value(None),
        output_field=DateTimeField(),
    )


def _anchor(kind: str, captured: datetime | None, adjusted: datetime | None) -> datetime | None:
    if kind == compute.ORDER_KIND:
        return captured
    if kind == compute.INVENTORY_KIND:
        return adjusted
    return None


# --- 1. collect -----------------------------------------------------------------------------


def _collect(full: bool, result: FillResult) -> None:
    started = now()
    state, _ = FillState.objects.select_for_update().get_or_create(name=_STATE)
    policies = triage_queries.policies()
    digest = policies_digest(policies)
    orders: set[datetime] = set()
    hops: set[datetime] = set()
    if full or state.marker is None:
        result.full = True
        # everything is read afresh: what was queued for the fill is in it
        queues.clear(Touched, CONSUMER)
        queues.clear(TouchedHour, CONSUMER)
        _collect_all(orders, hops, policies)
    else:
        _collect_claimed(orders, hops, policies)
        if state.fingerprint != digest:
            # the SLA policies changed: who is late for what, and every within-deadline
            # count, are to be judged again
            refresh_open_stages(None, policies)
            orders.update(_order_hours())
    _queue(ORDERS, orders)
    _queue(HOPS, hops)
    result.queued = {ORDERS: len(orders), HOPS: len(hops)}
    FillState.objects.filter(name=_STATE).update(
        marker=started, state=FillState.DONE, fingerprint=digest, last_modified=started
    )


def _queue(family: str, hours: Iterable[datetime]) -> None:
    rows = [DirtyHour(family=family, hour=h) for h in sorted(set(hours))]
    DirtyHour.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)


def _insert_select(table: str, columns: Sequence[str], qs: Any) -> None:
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {table} ({', '.join(columns)}) {sql}", params)


def _order_hours() -> set[datetime]:
    """Every hour with orders, or with order rollups."""
    hours = set(
        TxBucket.objects.filter(hour__isnull=False).values_list("hour", flat=True).distinct()
    )
    hours.update(
        OrderRollup.objects.filter(resolution=HOUR).values_list("bucket", flat=True).distinct()
    )
    return hours


def _collect_all(
    orders: set[datetime], hops: set[datetime], policies: Sequence[sla.Policy]
) -> None:
    """Every hour with data or rollups; the per-transaction and per-exception memory is
    rebuilt set-based (INSERT ... SELECT)."""
    TxBucket.objects.all().delete()
    _insert_select(
        TxBucket._meta.db_table,
        ("transaction_id", "hour", "channel", "store"),
        Transaction.objects.filter(merged_into__isnull=True)
        .annotate(anchor_hour=TruncHour(_anchor_expr(), tzinfo=UTC))
        .values_list("id", "anchor_hour", "channel", "store_id"),
    )
    IssueSeen.objects.all().delete()
    _insert_select(
        IssueSeen._meta.db_table,
        (
            "issue_id",
            "transaction_id",
            "channel",
            "store",
            "state",
            "system",
            "opened_at",
            "resolved_at",
        ),
        _issue_values()
        .annotate(
            tx_channel=Coalesce("transaction__channel", Value("")),
            tx_store=Coalesce("transaction__store_id", Value("")),
        )
        .values_list(
            "id", "tx", "tx_channel", "tx_store", "state", "system", "opened_at", "resolved_at"
        ),
    )
    orders.update(_order_hours())
    hops.update(
        Hop.objects.filter(stitched__isnull=False)
        .annotate(h=TruncHour("start_time", tzinfo=UTC))
        .values_list("h", flat=True)
        .distinct()
    )
    hops.update(
        HopRollup.objects.filter(resolution=HOUR).values_list("bucket", flat=True).distinct()
    )
    refresh_open_stages(None, policies)


def _collect_claimed(
    orders: set[datetime], hops: set[datetime], policies: Sequence[sla.Policy]
) -> None:
    """Claim what the stitcher (and the hop store) handed over since the last fill: the
    transactions it touched and the business hours of the hops it took or saw again."""
    reattribute: set[int] = set()
    claimed = queues.claim(Touched, "transaction_id", CONSUMER)
    touched: list[tuple[Any, ...]] = []
    for chunk in _chunks(claimed):
        touched.extend(
            Transaction.objects.filter(id__in=chunk).values_list(
                "id",
                "kind",
                "captured_at",
                "inventory_adjusted_at",
                "channel",
                "store_id",
                "merged_into_id",
            )
        )
    for chunk in _chunks(touched):
        ids = [r[0] for r in chunk]
        old = {b.transaction_id: b for b in TxBucket.objects.filter(transaction_id__in=ids)}
        fresh = []
        for tx_id, kind, captured, adjusted, channel, store, merged_into in chunk:
            before = old.get(tx_id)
            if before is not None and before.hour is not None:
                orders.add(before.hour)
            if merged_into is not None:
                continue
            hour = _hour(_anchor(kind, captured, adjusted))
            if hour is not None:
                orders.add(hour)
            if before is not None and (before.channel, before.store) != (channel, store):
                reattribute.add(tx_id)
            fresh.append(TxBucket(transaction_id=tx_id, hour=hour, channel=channel, store=store))
        TxBucket.objects.filter(transaction_id__in=ids).delete()
        TxBucket.objects.bulk_create(fresh)
    if touched:
        refresh_open_stages([r[0] for r in touched], policies)
    moved = set(reattribute)
    for chunk in _chunks(claimed):
        # transactions that took over another one just now: their hops change hands
        reattribute.update(
            Merge.objects.filter(winner_id__in=chunk, loser_id__in=claimed).values_list(
                "winner_id", flat=True
            )
        )
    for chunk in _chunks(sorted(moved)):
        # their exceptions are counted under the channel and store they have now
        of_tx = Transaction.objects.filter(pk=OuterRef("transaction_id"))
        IssueSeen.objects.filter(transaction_id__in=chunk).update(
            channel=Subquery(of_tx.values("channel")[:1]),
            store=Subquery(of_tx.values("store_id")[:1]),
        )
    for chunk in _chunks(sorted(reattribute)):
        hops.update(
            TransactionHop.objects.filter(transaction_id__in=chunk)
            .annotate(h=TruncHour("hop__start_time", tzinfo=UTC))
            .values_list("h", flat=True)
            .distinct()
        )
    # the hours of hops stitched, or delivered again
    hops.update(queues.claim(TouchedHour, "hour", CONSUMER))
    _collect_issues(orders)


#: Stands for "not resolved" where NULLs are compared (no exception is resolved then).
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _issue_values() -> Any:
    """Exceptions as ``IssueSeen`` keeps them (no transaction: 0)."""
    return Issue.objects.annotate(
        tx=Coalesce("transaction_id", Value(0)),
        resolved=Coalesce("resolved_at", Value(_NEVER)),
    )


def _collect_issues(orders: set[datetime]) -> None:
    """Exceptions ``IssueSeen`` does not hold as they are now (new ones, ones a merge
    moved, ones acknowledged or resolved): an anti-join, whatever their clocks say. Their
    rows are rewritten; the orders hours of those counted on another transaction than
    before are queued."""
    seen_here = IssueSeen.objects.annotate(resolved=Coalesce("resolved_at", Value(_NEVER))).filter(
        issue_id=OuterRef("pk"),
        transaction_id=OuterRef("tx"),
        state=OuterRef("state"),
        resolved=OuterRef("resolved"),
        opened_at=OuterRef("opened_at"),
    )
    changed = list(
        _issue_values()
        .filter(~Exists(seen_here))
        .values_list("id", "tx", "state", "system", "opened_at", "resolved_at")
    )
    if not changed:
        return
    txs: set[int] = set()
    for chunk in _chunks(changed):
        ids = [row[0] for row in chunk]
        before = {
            issue_id: (tx, state)
            for issue_id, tx, state in IssueSeen.objects.filter(issue_id__in=ids).values_list(
                "issue_id", "transaction_id", "state"
            )
        }
        scope = {
            pk: (channel, store)
            for pk, channel, store in Transaction.objects.filter(
                id__in={row[1] for row in chunk if row[1]}
            ).values_list("id", "channel", "store_id")
        }
        for issue_id, tx, state, *_ in chunk:
            old_tx, old_state = before.get(issue_id, (None, None))
            # new, moved (counted on another order), or withdrawn (no longer a problem)
            if old_tx != tx or (old_state == WITHDRAWN) != (state == WITHDRAWN):
                txs.update(t for t in (tx, old_tx) if t)
        IssueSeen.objects.filter(issue_id__in=ids).delete()
        IssueSeen.objects.bulk_create(
            [
                IssueSeen(
                    issue_id=issue_id,
                    transaction_id=tx,
                    channel=scope.get(tx, ("", ""))[0],
                    store=scope.get(tx, ("", ""))[1],
                    state=state,
                    system=system,
                    opened_at=opened,
                    resolved_at=resolved,
                )
                for issue_id, tx, state, system, opened, resolved in chunk
            ]
        )
    winners: set[int] = set()
    for chunk in _chunks(sorted(txs)):
        for tx_id, merged_into in Transaction.objects.filter(id__in=chunk).values_list(
            "id", "merged_into_id"
        ):
            winners.add(merged_into or tx_id)
    for chunk in _chunks(sorted(winners)):
        orders.update(
            h
            for h in TxBucket.objects.filter(transaction_id__in=chunk).values_list(
                "hour", flat=True
            )
            if h is not None
        )


# --- the open stages behind the live backlog ---------------------------------------------------


def refresh_open_stages(
    tx_ids: Sequence[int] | None = None, policies: Sequence[sla.Policy] | None = None
) -> None:
    """Rewrite the ``OpenStage`` rows of these transactions (None: of all), set-based: one
    INSERT ... SELECT per SLA policy (and chunk of ids) on PostgreSQL, then one UPDATE
    marking each transaction's ``lead`` row.

    A row per (transaction, stage due under a policy judging it) that was ever overdue:
    ``from_stage`` reached, and the stage due (or a later one) not reached, nor the
    transaction cancelled, by ``from_stage`` + deadline + batch allowance
    (``overdue_after``; two policies ending at one stage: the earlier); ``closed_at`` is the
    first of those times, if any (``triage.sla``: the backlog at a moment T is the rows
    overdue before T and not closed by T)."""
    table = OpenStage._meta.db_table
    columns = (
        "transaction_id",
        "stage",
        "anchor",
        "channel",
        "store",
        "overdue_after",
        "closed_at",
    )
    chunks: list[Sequence[int] | None]
    if tx_ids is None:
        OpenStage.objects.all().delete()
        chunks = [None]
    else:
        chunks = list(_chunks(sorted(set(tx_ids))))
        for chunk in chunks:
            OpenStage.objects.filter(transaction_id__in=chunk).delete()
    judged = queries.judged_by(policies)
    for chunk in chunks:
        found: dict[tuple[int, str], tuple[Any, ...]] = {}
        for policy, qs, reaching in judged:
            if chunk is not None:
                qs = qs.filter(id__in=chunk)
            allowed = timedelta(seconds=policy.deadline_s + policy.batch_allowance_s)
            start = stage_field(policy.from_stage)
            ends = [*reaching, "cancelled_at"]
            if bulk.postgresql():
                # one INSERT ... SELECT there (a full rebuild is minutes at a million
                # orders otherwise); LEAST skips NULLs there: the first end reached, NULL when none was
                closed = Least(*[F(c) for c in ends]) if len(ends) > 1 else F(ends[0])
                rows = (
                    qs.annotate(
                        missing=Value(policy.to_stage, output_field=CharField()),
                        anchor_at=queries.anchor_expr(),
                        due=ExpressionWrapper(
                            F(start) + Value(allowed), output_field=DateTimeField()
                        ),
                        closed=ExpressionWrapper(closed, output_field=DateTimeField()),
                    )
                    .filter(Q(closed__isnull=True) | Q(closed__gt=F("due")))
                    .values_list(
                        "id", "missing", "anchor_at", "channel", "store_id", "due", "closed"
                    )
                )
                sql, params = rows.query.sql_with_params()
                with connection.cursor() as cur:
                    cur.execute(
                        f"INSERT INTO {table} ({', '.join(columns)}) {sql} "
                        "ON CONFLICT (transaction_id, stage) DO UPDATE SET overdue_after = "
                        f"LEAST({table}.overdue_after, EXCLUDED.overdue_after)",
                        params,
                    )
                continue
            # SQLite: its datetime arithmetic yields text of another shape, and MIN() of
            # several values is NULL when any is: computed here
            for pk, anchor, channel, store, from_at, *times in qs.annotate(
                anchor_at=queries.anchor_expr()
            ).values_list("id", "anchor_at", "channel", "store_id", start, *ends):
                due = from_at + allowed
                reached = [t for t in times if t is not None]
                end = min(reached) if reached else None
                if end is not None and end <= due:
                    continue
                held = found.get((pk, policy.to_stage))
                if held is None or due < held[5]:
                    found[(pk, policy.to_stage)] = (
                        pk,
                        policy.to_stage,
                        anchor,
                        channel,
                        store,
                        due,
                        end,
                    )
        if found:
            _insert_rows(OpenStage, columns, found.values())
        _mark_leads(chunk)


def _mark_leads(tx_ids: Sequence[int] | None) -> None:
    """Mark each transaction's open row that fell due first (ties: by stage)."""
    earlier = OpenStage.objects.filter(
        transaction_id=OuterRef("transaction_id"), closed_at__isnull=True
    ).filter(
        Q(overdue_after__lt=OuterRef("overdue_after"))
        | Q(overdue_after=OuterRef("overdue_after"), stage__lt=OuterRef("stage"))
    )
    rows = OpenStage.objects.filter(closed_at__isnull=True)
    if tx_ids is not None:
        rows = rows.filter(transaction_id__in=tx_ids)
    rows.exclude(Exists(earlier)).update(lead=True)


def policies_digest(policies: Sequence[sla.Policy]) -> str:
    """What the open stages and the within-deadline counts are built under: the active SLA
    policies (a change of any of them is a change of this)."""
    text = repr(sorted(repr(p) for p in policies))
    return hashlib.sha256(text.encode()).hexdigest()


# --- 2. work off ----------------------------------------------------------------------------


def _work_chunk(at: datetime, result: FillResult) -> bool:
    # concurrent fills skip each other's rows (PostgreSQL; SQLite runs them one at a time)
    claim = DirtyHour.objects.order_by("family", "hour").select_for_update(skip_locked=True)
    rows = list(claim.values_list("id", "family", "hour")[: chunk_hours()])
    if not rows:
        return False
    by_family: dict[str, list[datetime]] = defaultdict(list)
    for _, family, hour in rows:
        by_family[family].append(hour)
    cutoff = queries.minutes_from(at)
    if by_family[ORDERS]:
        recompute_order_hours(by_family[ORDERS], cutoff)
        result.recomputed[ORDERS] += len(by_family[ORDERS])
    if by_family[HOPS]:
        recompute_hop_hours(by_family[HOPS], cutoff)
        result.recomputed[HOPS] += len(by_family[HOPS])
    DirtyHour.objects.filter(id__in=[r[0] for r in rows]).delete()
    return True


def _hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for h in sorted(set(hours)):
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + HOUR_STEP)
        else:
            out.append((h, h + HOUR_STEP))
    return out


def _resolutions(cutoff: datetime) -> Any:
    def pick(t: datetime) -> tuple[str, ...]:
        return (MINUTE, HOUR) if compute.floor_to(t, HOUR) >= cutoff else (HOUR,)

    return pick


def _bucket_q(resolutions: Sequence[str], ranges: Sequence[tuple[datetime, datetime]]) -> Any:
    return queries.ranges_q("bucket", ranges) & Q(resolution__in=list(resolutions))


ORDER_COLUMNS = (
    "resolution",
    "bucket",
    "channel",
    "store",
    "orders",
    "with_exception",
    "posted_twice",
    "a2p_count",
    "a2p_within",
    "a2p_sketch",
    "ful_count",
    "ful_within",
    "ful_sketch",
    "inv_updates",
    "inv_count",
    "inv_within",
    "inv_max",
    "inv_sketch",
    "digest",
)
HOP_COLUMNS = (
    "resolution",
    "bucket",
    "channel",
    "store",
    "system",
    "operation",
    "hops",
    "errors",
    "retries",
    "replays",
    "duplicates",
    "dur_sketch",
    "digest",
)


def _insert_rows(model: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert plain tuples (no model objects: a day of store-level rollups is thousands of
    rows), by ``lib.bulk``: binary COPY on PostgreSQL."""
    bulk.insert(bulk.Table.of(model, columns), list(rows))


def _blob(sketch: compute.Sketch) -> bytes | None:
    return sketch.encode() if sketch else None


def _order_tuple(key: compute.OrderKey, agg: compute.OrderAgg) -> tuple[Any, ...]:
    res, bucket, ch, st = key
    return (
        res,
        bucket,
        ch,
        st,
        agg.orders,
        agg.with_exception,
        agg.posted_twice,
        agg.a2p.count,
        agg.a2p.within,
        _blob(agg.a2p.finish()),
        agg.ful.count,
        agg.ful.within,
        _blob(agg.ful.finish()),
        agg.inv_updates,
        agg.inv.count,
        agg.inv.within,
        agg.inv.maximum,
        _blob(agg.inv.finish()),
        agg.digest,
    )


def recompute_order_hours(hours: Sequence[datetime], cutoff: datetime) -> None:
    """Replace the minute and hour rows of ``hours`` from the source, then their days."""
    ranges = _hour_ranges(hours)
    aggs = compute.aggregate_orders(queries.order_facts(ranges), _resolutions(cutoff))
    OrderRollup.objects.filter(_bucket_q((MINUTE, HOUR), ranges)).delete()
    _insert_rows(OrderRollup, ORDER_COLUMNS, (_order_tuple(k, a) for k, a in aggs.items()))
    _rebuild_order_days({compute.floor_to(h, DAY) for h in hours})


def _rebuild_order_days(days: set[datetime]) -> None:
    ranges = [(d, d + timedelta(days=1)) for d in sorted(days)]
    totals: dict[tuple[datetime, str, str], queries.OrderTotal] = defaultdict(queries.OrderTotal)
    digests: dict[tuple[datetime, str, str], int] = defaultdict(int)
    for row in OrderRollup.objects.filter(_bucket_q((HOUR,), ranges)):
        key = (compute.floor_to(row.bucket, DAY), row.channel, row.store)
        totals[key].add_row(row)
        digests[key] = (digests[key] + row.digest) & compute.DIGEST_MASK
    OrderRollup.objects.filter(_bucket_q((DAY,), ranges)).delete()
    rows = [
        (
            DAY,
            day,
            ch,
            st,
            t.orders,
            t.with_exception,
            t.posted_twice,
            t.a2p.count,
            t.a2p.within,
            _blob(t.a2p.sketch),
            t.ful.count,
            t.ful.within,
            _blob(t.ful.sketch),
            t.inv_updates,
            t.inv.count,
            t.inv.within,
            t.inv.maximum,
            _blob(t.inv.sketch),
            digests[(day, ch, st)],
        )
        for (day, ch, st), t in totals.items()
    ]
    _insert_rows(OrderRollup, ORDER_COLUMNS, rows)


def recompute_hop_hours(hours: Sequence[datetime], cutoff: datetime) -> None:
    ranges = _hour_ranges(hours)
    aggs = compute.aggregate_hops(queries.hop_facts(ranges), _resolutions(cutoff))
    HopRollup.objects.filter(_bucket_q((MINUTE, HOUR), ranges)).delete()
    _insert_rows(
        HopRollup,
        HOP_COLUMNS,
        (
            (
                *key,
                a.hops,
                a.errors,
                a.retries,
                a.replays,
                a.duplicates,
                _blob(a.dur.finish()),
                a.digest,
            )
            for key, a in aggs.items()
        ),
    )
    _rebuild_hop_days({compute.floor_to(h, DAY) for h in hours})


def _rebuild_hop_days(days: set[datetime]) -> None:
    ranges = [(d, d + timedelta(days=1)) for d in sorted(days)]
    totals: dict[tuple[datetime, str, str, str, str], queries.HopTotal] = defaultdict(
        queries.HopTotal
    )
    digests: dict[tuple[datetime, str, str, str, str], int] = defaultdict(int)
    for (
        bucket,
        ch,
        st,
        system,
        op,
        n,
        errors,
        retries,
        replays,
        dups,
        blob,
        digest,
    ) in HopRollup.objects.filter(_bucket_q((HOUR,), ranges)).values_list(
        "bucket",
        "channel",
        "store",
        "system",
        "operation",
        "hops",
        "errors",
        "retries",
        "replays",
        "duplicates",
        "dur_sketch",
        "digest",
    ):
        key = (compute.floor_to(bucket, DAY), ch, st, system, op)
        totals[key].add(n, errors, retries, replays, dups, queries.sketch_of(blob))
        digests[key] = (digests[key] + digest) & compute.DIGEST_MASK
    HopRollup.objects.filter(_bucket_q((DAY,), ranges)).delete()
    _insert_rows(
        HopRollup,
        HOP_COLUMNS,
        (
            (DAY, *key, t.hops, t.errors, t.retries, t.replays, t.duplicates,
             _blob(t.dur.sketch), digests[key])
            for key, t in totals.items()
        ),
    )  # fmt: skip


# --- 3. the backlog gauge ---------------------------------------------------------------------


def backlog_sample_every() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "KPIS_BACKLOG_SAMPLE_S", 3600)))


def _sample_backlog(at: datetime, *, force: bool = False) -> bool:
    """Record the live backlog by (channel, store) grouping and stage, at most once per
    ``KPIS_BACKLOG_SAMPLE_S``. Reads the partial indexes on open stages: milliseconds."""
    latest = BacklogSample.objects.aggregate(m=Max("at"))["m"]
    if not force and latest is not None and at - latest < backlog_sample_every():
        return False
    counts: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for stage, members in queries.backlog_members(None, at, at=at).items():
        for tx_id, channel, store in members:
            for ch, st in compute.groupings(channel, store):
                counts[(ch, st, stage)].add(tx_id)
                counts[(ch, st, compute.ALL)].add(tx_id)
    for st_ in (compute.ALL,):
        counts.setdefault((compute.ALL, compute.ALL, st_), set())
    BacklogSample.objects.bulk_create(
        [
            BacklogSample(at=at, channel=ch, store=st, stage=stage, count=len(ids))
            for (ch, st, stage), ids in counts.items()
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return True
