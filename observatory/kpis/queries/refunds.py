"""``refund_reconciliation`` (docs/kpis.md): of the refunds of a window whose settlement is
due, those the ERP settled (a credit memo: ``refund_settled``) within the SLA.

One aggregate over the window's refunds (a partial index on ``refunded_at``): the deadline
of each transaction kind and channel is the SLA policies' ``refunded -> refund_settled``,
a channel's own over the every-channel one, written into the statement as one condition
per deadline, so nothing is read row by row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from django.db.models import Count, F, Q

from observatory.kpis import compute
from observatory.transactions.models import Transaction
from observatory.triage import queries as triage_queries

FROM_STAGE: Final = "refunded"
TO_STAGE: Final = "refund_settled"
KINDS: Final = ("order", "return")


def _deadlines() -> list[tuple[str, str | None, frozenset[str], float | None]]:
    """(kind, channel or None for every other channel, channels with their own policy,
    deadline seconds or None: no policy) for every case the policies make."""
    policies = [
        p for p in triage_queries.policies() if (p.from_stage, p.to_stage) == (FROM_STAGE, TO_STAGE)
    ]
    out: list[tuple[str, str | None, frozenset[str], float | None]] = []
    for kind in KINDS:
        own = {p.channel: float(p.deadline_s) for p in policies if p.transaction_kind == kind}
        channels = frozenset(c for c in own if c)
        for channel in sorted(channels):
            out.append((kind, channel, channels, own[channel]))
        out.append((kind, None, channels, own.get("")))
    return out


def refund_reconciliation(
    since: datetime,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    at: datetime,
) -> dict[str, Any]:
    """``refunds``: transactions refunded in ``[since, until)`` that are settled or whose
    deadline has passed by ``at`` (a refund still inside its deadline is not judged yet);
    ``settled_within_sla``: of those, settled no later than the deadline after the refund
    (any settlement, where no policy sets a deadline)."""
    qs = Transaction.objects.filter(
        kind__in=KINDS,
        merged_into__isnull=True,
        refunded_at__gte=since,
        refunded_at__lt=until,
    )
    if channel is not None:
        qs = qs.filter(channel=channel)
    if store is not None:
        qs = qs.filter(store_id=store)
    settled = Q(refund_settled_at__isnull=False)
    judged = Q()
    within = Q()
    for kind, own_channel, channels, deadline in _deadlines():
        case = Q(kind=kind) & (
            Q(channel=own_channel) if own_channel is not None else ~Q(channel__in=channels)
        )
        if deadline is None:
            judged |= case & settled
            within |= case & settled
            continue
        allowed = timedelta(seconds=deadline)
        judged |= case & (settled | Q(refunded_at__lte=at - allowed))
        within |= case & Q(refund_settled_at__lte=F("refunded_at") + allowed)
    row = qs.filter(judged).aggregate(refunds=Count("pk"), within=Count("pk", filter=within))
    refunds, ok = int(row["refunds"]), int(row["within"])
    return {"refunds": refunds, "settled_within_sla": ok, "rate": compute.rate(ok, refunds)}
