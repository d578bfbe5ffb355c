"""Step 1 of the fill, collect: the hours that changes since the last collection touched,
queued as ``DirtyHour`` rows, from what the stages below handed over (the package's
docstring lists what); and the per-transaction and per-exception memory the fill keeps
(``TxBucket``, ``IssueSeen``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce, TruncHour

from observatory.hops.models import Hop, TouchedHour
from observatory.kpis import compute
from observatory.kpis.actions.open_stages import policies_digest, refresh_open_stages
from observatory.kpis.actions.rows import in_chunks
from observatory.kpis.compute import HOUR
from observatory.kpis.models import (
    HOPS,
    ORDERS,
    DirtyHour,
    FillState,
    HopRollup,
    IssueSeen,
    OrderRollup,
    TxBucket,
)
from observatory.kpis.queries.business_days import zones_digest
from observatory.lib import queues
from observatory.lib.clock import now
from observatory.transactions.models import Merge, Touched, Transaction, TransactionHop
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import WITHDRAWN, Issue

if TYPE_CHECKING:
    from observatory.kpis.actions.fill import FillResult


#: the fill's name on the stitcher's queues (touched transactions, hours of hops)
CONSUMER = "kpis"
_STATE = "rollups"


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


#: What the orders rollup keeps of a transaction, versioned: a fill after an upgrade that
#: changes it counts every hour again (2: posting completeness).
ORDER_FACTS = "2"


def fill_digest(policies: Sequence[sla.Policy]) -> str:
    """What every order hour of the rollup is built under: the SLA policies, the business
    days' zones and ``ORDER_FACTS``; a change of any of them is a change of this."""
    text = f"{policies_digest(policies)}|{zones_digest()}|{ORDER_FACTS}"
    return hashlib.sha256(text.encode()).hexdigest()


def collect(full: bool, result: FillResult) -> None:
    started = now()
    state, _ = FillState.objects.select_for_update().get_or_create(name=_STATE)
    policies = triage_queries.policies()
    digest = fill_digest(policies)
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
            # count, are to be judged again; or the stores' zones did, and with them whose
            # posting came by the end of its business day; or what a rollup row keeps
            # of an order (ORDER_FACTS)
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
    hours = {
        h
        for h in TxBucket.objects.filter(hour__isnull=False)
        .values_list("hour", flat=True)
        .distinct()
        if h is not None
    }
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
    for chunk in in_chunks(claimed):
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
    for chunk in in_chunks(touched):
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
    for chunk in in_chunks(claimed):
        # transactions that took over another one just now: their hops change hands
        reattribute.update(
            Merge.objects.filter(winner_id__in=chunk, loser_id__in=claimed).values_list(
                "winner_id", flat=True
            )
        )
    for chunk in in_chunks(sorted(moved)):
        # their exceptions are counted under the channel and store they have now
        of_tx = Transaction.objects.filter(pk=OuterRef("transaction_id"))
        IssueSeen.objects.filter(transaction_id__in=chunk).update(
            channel=Subquery(of_tx.values("channel")[:1]),
            store=Subquery(of_tx.values("store_id")[:1]),
        )
    for chunk in in_chunks(sorted(reattribute)):
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
    for chunk in in_chunks(changed):
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
    for chunk in in_chunks(sorted(txs)):
        for tx_id, merged_into in Transaction.objects.filter(id__in=chunk).values_list(
            "id", "merged_into_id"
        ):
            winners.add(merged_into or tx_id)
    for chunk in in_chunks(sorted(winners)):
        orders.update(
            h
            for h in TxBucket.objects.filter(transaction_id__in=chunk).values_list(
                "hour", flat=True
            )
            if h is not None
        )
