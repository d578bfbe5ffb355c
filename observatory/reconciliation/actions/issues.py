"""Mismatch exceptions: every counted gap of a rule is one ``mismatch`` exception in
triage's queue (``detail.subkind`` says which gap), owned by the team of the system
expected to act; it resolves by itself when the gap closes (the target caught up, the
amounts agree) or becomes another gap (then that one opens). A missing side that comes
with a business time before the gap began was never missing, only its telemetry was late:
its exception is withdrawn, as a ``stuck`` one is (docs/reconciliation.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q

from observatory.hops.models import HopKey
from observatory.reconciliation.actions.sql import chunked
from observatory.reconciliation.compute import at_risk
from observatory.reconciliation.models import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_IN_SOURCE,
    MISSING_IN_TARGET,
    POSTED_TWICE,
    Batch,
    Item,
    Queued,
    Rule,
)
from observatory.triage import queries as triage_queries
from observatory.triage.deadlines import final_winners
from observatory.triage.models import (
    MISMATCH,
    RESOLVED,
    SYSTEM_ACTOR,
    UNRESOLVED,
    WITHDRAWN,
    Issue,
)
from tracing.conventions import BATCH_ID

_BATCH = 1000

#: why an exception of each subkind closed when its item matched
CLOSED_BECAUSE = {
    MISSING_IN_TARGET: "the target caught up",
    MISSING_IN_SOURCE: "the source caught up",
    AMOUNT_MISMATCH: "the amounts agree now",
    POSTED_TWICE: "the target holds one document now",
}
#: why an exception of a missing side is withdrawn: the side came in time after all
IN_TIME = "{side} in time (its telemetry came late)"
WAITING = "waiting again for the other side (a new document: the grace period runs anew)"
BATCH_CLOSED = "the batch posting adds up now (or names other transactions)"
GONE = "no longer under this rule (merged into another transaction, or out of its scope)"


def dedupe_key(rule_id: int, tx_id: int) -> str:
    """One unresolved mismatch per rule and transaction, whatever its subkind."""
    return f"{MISMATCH}:{rule_id}:tx:{tx_id}"


def batch_key(rule_id: int, hop_id: int) -> str:
    """One unresolved mismatch per rule and batch posting."""
    return f"{MISMATCH}:{rule_id}:batch:{hop_id}"


def _money(value: Decimal | None, currency: str) -> str:
    if value is None:
        return "no amount"
    return f"{currency} {value:,.2f}".strip()


def summary(rule: Rule, item: Item, label: str) -> str:
    """What the exception says, in business words."""
    cur = item.currency
    src, tgt = rule.source_label(), rule.target_label()
    if item.status == MISSING_IN_TARGET:
        if item.target_at is None:
            return f"{label}: {src} ({_money(item.source_amount, cur)}), not {tgt}"
        return (
            f"{label}: {item.source_docs} documents {src}, {item.target_docs} {tgt} "
            f"({_money(item.source_amount, cur)} against {_money(item.target_amount, cur)})"
        )
    if item.status == MISSING_IN_SOURCE:
        return f"{label}: {tgt} ({_money(item.target_amount, cur)}), never {src}"
    if item.status == AMOUNT_MISMATCH:
        gap = at_risk(item.status, item.source_amount, item.target_amount)
        return (
            f"{label}: {_money(item.source_amount, cur)} {src}, "
            f"{_money(item.target_amount, cur)} {tgt} ({_money(gap, cur)} apart)"
        )
    return (
        f"{label}: {tgt} {item.target_docs} times for {item.source_docs} {src} "
        f"({_money(item.target_amount, cur)} for {_money(item.source_amount, cur)})"
    )


def _where(rule: Rule, item: Item) -> tuple[str, str]:
    """(system, stage) expected to act: the source's for a missing source, else the
    target's."""
    if item.status == MISSING_IN_SOURCE:
        return rule.source_system, rule.source_stage
    return rule.target_system, rule.target_stage


def _opened(rule: Rule, item: Item) -> datetime:
    """When the gap began in business time: a missing side once the grace period passed,
    else when the target said what it said."""
    if item.waiting_since is not None:
        return item.waiting_since + timedelta(seconds=rule.grace_s)
    if item.status == POSTED_TWICE and item.target_last_at is not None:
        return item.target_last_at
    moments = [m for m in (item.source_at, item.target_at) if m is not None]
    return max(moments)


def _detail(rule: Rule, item: Item) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else f"{value:.2f}"

    return {
        "subkind": item.status,
        "rule": rule.name,
        "rule_id": rule.id,
        "day": item.day.isoformat(),
        "currency": item.currency,
        "source_system": rule.source_system,
        "source_stage": rule.source_stage,
        "source_amount": text(item.source_amount),
        "source_docs": item.source_docs,
        "target_system": rule.target_system,
        "target_stage": rule.target_stage,
        "target_amount": text(item.target_amount),
        "target_docs": item.target_docs,
        "value": text(at_risk(item.status, item.source_amount, item.target_amount)),
    }


def sync(
    rule: Rule,
    scope: Scope | None,
    batch_hops: Iterable[int] | None,
    *,
    at: datetime,
    found_at: datetime,
) -> tuple[int, int]:
    """Open and resolve the rule's mismatch exceptions of the transactions in ``scope``
    and of the batch postings ``batch_hops`` (None: all of them) to match its items and
    batches; (opened, resolved)."""
    owner = triage_queries.owner_router()
    opened, resolved = _sync_items(rule, scope, at=at, found_at=found_at, owner=owner)
    if batch_hops is None or batch_hops:
        more = _sync_batches(rule, batch_hops, at=at, found_at=found_at, owner=owner)
        opened, resolved = opened + more[0], resolved + more[1]
    return opened, resolved


@dataclass(frozen=True)
class Scope:
    """The transactions a run concerns: those queued for the rule (a subquery, never a
    list of ten thousand parameters) and a few more (gaps whose grace period passed)."""

    rule: Rule
    also: frozenset[int] = frozenset()

    def where(self, field: str = "transaction_id") -> Q:
        queued = Queued.objects.filter(rule=self.rule).values("transaction_id")
        return Q(**{f"{field}__in": queued}) | Q(**{f"{field}__in": sorted(self.also)})


def _sync_items(
    rule: Rule,
    scope: Scope | None,
    *,
    at: datetime,
    found_at: datetime,
    owner: Callable[[str], str],
) -> tuple[int, int]:
    """The exceptions of the items of ``scope`` (None: all)."""
    gaps = Item.objects.filter(rule=rule, counted=True).exclude(status=MATCHED)
    # an exception moved onto the transaction its own was merged into keeps its key
    held_q = Issue.objects.filter(
        kind=MISMATCH, state__in=UNRESOLVED, dedupe_key__startswith=f"{MISMATCH}:{rule.id}:tx:"
    ).only("id", "dedupe_key", "detail", "opened_at")
    if scope is not None:
        gaps = gaps.filter(scope.where())
        held_q = held_q.filter(scope.where())
    wanted = {dedupe_key(rule.id, i.transaction_id): i for i in gaps}
    held = list(held_q)
    closing: dict[tuple[str, str], list[int]] = defaultdict(list)
    kept: set[str] = set()
    gone: list[Issue] = []
    for issue in held:
        now_gap = wanted.get(issue.dedupe_key)
        if now_gap is None:
            gone.append(issue)
        elif now_gap.status == issue.detail.get("subkind"):
            kept.add(issue.dedupe_key)
        else:
            why = f"now {now_gap.status.replace('_', ' ')}"
            closing[_closed(rule, issue, now_gap, why)].append(issue.id)
    now_ = _items(rule, (_tx_of(i) for i in gone))
    # a fragment merged into its order: the order's item says whether the side came in time
    winners = final_winners({_tx_of(i) for i in gone if _tx_of(i) not in now_})
    into = _items(rule, {w for t, w in winners.items() if w != t})
    for issue in gone:
        item = now_.get(_tx_of(issue))
        if item is None:
            merged = into.get(winners.get(_tx_of(issue), 0))
            closing[_closed(rule, issue, merged, GONE)].append(issue.id)
        elif item.status == MATCHED:
            why = CLOSED_BECAUSE.get(issue.detail.get("subkind", ""), GONE)
            closing[_closed(rule, issue, item, why)].append(issue.id)
        else:  # a gap again, waited for: the grace period runs anew
            closing[RESOLVED, WAITING].append(issue.id)
    resolved = 0
    for (state, why), ids in closing.items():
        for i in range(0, len(ids), _BATCH):
            resolved += Issue.objects.filter(id__in=ids[i : i + _BATCH]).update(
                state=state, resolved_at=at, resolved_by=SYSTEM_ACTOR, resolution=why[:255]
            )
    fresh = [item for key, item in wanted.items() if key not in kept]
    labels = triage_queries.transaction_labels(i.transaction_id for i in fresh)
    rows = []
    for item in fresh:
        system, stage = _where(rule, item)
        opened = _opened(rule, item)
        rows.append(
            Issue(
                kind=MISMATCH,
                transaction_id=item.transaction_id,
                system=system,
                stage=stage,
                owner=owner(system),
                summary=summary(rule, item, labels[item.transaction_id]),
                detail=_detail(rule, item),
                dedupe_key=dedupe_key(rule.id, item.transaction_id),
                event_at=item.source_at or item.target_at,
                opened_at=opened,
                detected_at=found_at,
            )
        )
    for i in range(0, len(rows), _BATCH):
        Issue.objects.bulk_create(rows[i : i + _BATCH], ignore_conflicts=True)
    return len(rows), resolved


def _tx_of(issue: Issue) -> int:
    return int(issue.dedupe_key.rsplit(":", 1)[1])


def _items(rule: Rule, tx_ids: Iterable[int]) -> dict[int, Item]:
    """tx id -> its item under the rule (status and side times), for those that have one."""
    out: dict[int, Item] = {}
    for chunk in chunked(tx_ids):
        rows = Item.objects.filter(rule=rule, transaction_id__in=chunk).only(
            "transaction_id", "status", "source_at", "target_last_at"
        )
        out.update((i.transaction_id, i) for i in rows)
    return out


def _closed(rule: Rule, issue: Issue, item: Item | None, why: str) -> tuple[str, str]:
    """(state, reason) of an exception whose gap is gone or changed, ``item`` its
    transaction's item now: withdrawn when the side it waited for is there with a business
    time no later than the gap's start (the exception's opening: the end of the grace
    period), since the side was never missing, only its telemetry came late; else resolved,
    for ``why``."""
    subkind = issue.detail.get("subkind")
    if item is not None and subkind in (MISSING_IN_SOURCE, MISSING_IN_TARGET):
        source = subkind == MISSING_IN_SOURCE
        # (fewer target documents than source ones: the last target document to come)
        came = item.source_at if source else item.target_last_at
        if came is not None and came <= issue.opened_at:
            side = rule.source_label() if source else rule.target_label()
            return WITHDRAWN, IN_TIME.format(side=side)
    return RESOLVED, why


def _sync_batches(
    rule: Rule,
    hops: Iterable[int] | None,
    *,
    at: datetime,
    found_at: datetime,
    owner: Callable[[str], str],
) -> tuple[int, int]:
    """The exceptions of the batch postings ``hops`` (None: all): one per batch whose
    total differs from its items'."""
    mismatched = Batch.objects.filter(rule=rule, status=AMOUNT_MISMATCH)
    open_ = Issue.objects.filter(kind=MISMATCH, state__in=UNRESOLVED).only("id", "dedupe_key")
    wanted: dict[str, Batch] = {}
    held: list[Issue] = []
    if hops is None:
        wanted = {batch_key(rule.id, b.hop_id): b for b in mismatched}
        held = list(open_.filter(dedupe_key__startswith=f"{MISMATCH}:{rule.id}:batch:"))
    else:
        for chunk in chunked(hops):
            wanted.update(
                (batch_key(rule.id, b.hop_id), b) for b in mismatched.filter(hop_id__in=chunk)
            )
            held.extend(open_.filter(dedupe_key__in=[batch_key(rule.id, h) for h in chunk]))
    kept = {i.dedupe_key for i in held if i.dedupe_key in wanted}
    stale = [i.id for i in held if i.dedupe_key not in wanted]
    resolved = (
        Issue.objects.filter(id__in=stale).update(
            state=RESOLVED, resolved_at=at, resolved_by=SYSTEM_ACTOR, resolution=BATCH_CLOSED
        )
        if stale
        else 0
    )
    fresh = [b for key, b in wanted.items() if key not in kept]
    if not fresh:
        return 0, resolved
    names = dict(
        HopKey.objects.filter(hop_id__in=[b.hop_id for b in fresh], kind=BATCH_ID).values_list(
            "hop_id", "value"
        )
    )
    posted = dict(
        Item.objects.filter(
            rule=rule, transaction_id__in=[b.transaction_id for b in fresh]
        ).values_list("transaction_id", "target_at")
    )
    system = rule.target_system
    rows = []
    for b in fresh:
        label = f"batch {names.get(b.hop_id, b.hop_id)}"
        gap = abs((b.amount or Decimal(0)) - (b.source_total or Decimal(0)))
        when = posted.get(b.transaction_id) or at
        rows.append(
            Issue(
                kind=MISMATCH,
                transaction_id=b.transaction_id,
                hop_id=b.hop_id,
                system=system,
                stage=rule.target_stage,
                owner=owner(system),
                summary=(
                    f"{label}: {_money(b.amount, b.currency)} {rule.target_label()} for "
                    f"{b.items} {rule.source_label()} of {_money(b.source_total, b.currency)} "
                    f"({_money(gap, b.currency)} apart)"
                ),
                detail={
                    "subkind": AMOUNT_MISMATCH,
                    "rule": rule.name,
                    "rule_id": rule.id,
                    "day": b.day.isoformat(),
                    "currency": b.currency,
                    "batch_hop_id": b.hop_id,
                    "batch": names.get(b.hop_id, ""),
                    "items": b.items,
                    "target_amount": None if b.amount is None else f"{b.amount:.2f}",
                    "source_amount": None if b.source_total is None else f"{b.source_total:.2f}",
                    "value": f"{gap:.2f}",
                },
                dedupe_key=batch_key(rule.id, b.hop_id),
                event_at=when,
                opened_at=when,
                detected_at=found_at,
            )
        )
    Issue.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows), resolved
