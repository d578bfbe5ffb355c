"""Re-judging what is held: every unresolved ``stuck`` exception, and every one the system
resolved whose transaction changed since, judged again against its transaction's stage
times (the package docstring says how).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from django.db.models import Q

from observatory.transactions.models import Transaction, stage_field
from observatory.triage import queries, sla
from observatory.triage.deadlines.common import (
    _BATCH,
    Context,
    Tally,
    _close,
    _later_stages,
    _pair,
    _reached,
    _summary,
    _usable,
    final_winners,
)
from observatory.triage.models import RESOLVED, STUCK, SYSTEM_ACTOR, UNRESOLVED, WITHDRAWN, Issue


def _rejudge(ctx: Context, result: Tally) -> None:
    held_q = Q(state__in=UNRESOLVED)
    resolved_by_us = Q(state=RESOLVED, resolved_by=SYSTEM_ACTOR)
    if ctx.touched is None:
        held_q |= resolved_by_us
    else:
        held_q |= resolved_by_us & Q(transaction_id__in=ctx.touched)
    held = list(Issue.objects.filter(held_q, kind=STUCK, transaction__isnull=False))
    gone = Issue.objects.filter(kind=STUCK, state__in=UNRESOLVED, transaction__isnull=True)
    result.stuck_closed += gone.update(
        state=RESOLVED,
        resolved_at=ctx.at,
        resolved_by=SYSTEM_ACTOR,
        resolution="its transaction is gone",
    )
    if not held:
        return
    winners = final_winners({i.transaction_id for i in held if i.transaction_id})
    txs = Transaction.objects.in_bulk(sorted(set(winners.values())))
    by_id = {p.id: p for p in ctx.policies}
    # one exception per (transaction, stage): the merged transaction's own one stands
    claimed: dict[tuple[int, str], int] = {}
    for i in sorted(held, key=lambda i: (winners[i.tx_id] != i.transaction_id, i.id)):
        key = (winners[i.tx_id], i.stage)
        if i.state != WITHDRAWN:
            claimed.setdefault(key, i.id)
    changed: list[Issue] = []
    skip_checks: dict[int, list[Issue]] = defaultdict(list)
    for issue in held:
        winner_id = winners[issue.tx_id]
        tx = txs.get(winner_id)
        unresolved = issue.state in UNRESOLVED
        if tx is None:
            continue
        if winner_id != issue.transaction_id:
            owner_id = claimed.get((winner_id, issue.stage))
            if owner_id is not None and owner_id != issue.id:
                if unresolved:
                    _close(issue, RESOLVED, ctx.at, "merged into a transaction with its own")
                    result.stuck_closed += 1
                    changed.append(issue)
                continue
            issue.transaction_id = winner_id
            issue.dedupe_key = f"{STUCK}:{winner_id}:{issue.stage}"
            changed.append(issue)
        policy = _policy_for(issue, tx, by_id, ctx.policies)
        if policy is None or getattr(tx, stage_field(policy.from_stage)) is None:
            if unresolved:
                _close(issue, WITHDRAWN, ctx.at, "no SLA applies to it any more")
                result.withdrawn += 1
                _add(changed, issue)
            continue
        from_at = getattr(tx, stage_field(policy.from_stage))
        v = sla.verdict(
            policy,
            from_at,
            _reached(tx, policy),
            tx.cancelled_at,
            ctx.at,
            ctx.cutoff(ctx.system(policy.to_stage)),
        )
        if v.status in (sla.ON_TIME, sla.MOOT):
            why = (
                "cancelled before its deadline"
                if v.status == sla.MOOT
                else f"{v.ended_by} reached in time (its telemetry came late)"
            )
            _close(issue, WITHDRAWN, ctx.at, why)
            result.withdrawn += 1
            _add(changed, issue)
        elif v.status == sla.LATE:
            assert v.ended_at is not None
            why = (
                "the order was cancelled"
                if v.ended_by == sla.CANCELLED
                else f"{v.ended_by} reached"
            )
            if unresolved or issue.resolved_at != v.ended_at:
                result.stuck_closed += int(unresolved)
                _close(issue, RESOLVED, v.ended_at, why)
                _add(changed, issue)
        elif v.status == sla.OVERDUE and unresolved:
            if issue.opened_at != v.overdue_after:
                issue.opened_at, issue.event_at = v.overdue_after, v.deadline_at
                _add(changed, issue)
            skip_checks[policy.id].append(issue)
    ctx.labels.update(
        queries.transaction_labels(
            i.tx_id
            for issues in skip_checks.values()
            for i in issues
            if i.transaction_id not in ctx.labels
        )
    )
    for pid, issues in skip_checks.items():
        policy = by_id[pid]
        skipped = _later_stages([i.tx_id for i in issues], policy)
        for issue in issues:
            tx = txs[issue.tx_id]
            text = _summary(ctx.label(tx.id), policy, tx.channel, skipped.get(tx.id))
            if issue.summary != text:
                issue.summary = text
                _add(changed, issue)
    Issue.objects.bulk_update(
        changed,
        [
            "state",
            "transaction_id",
            "dedupe_key",
            "opened_at",
            "event_at",
            "resolved_at",
            "resolved_by",
            "resolution",
            "summary",
        ],
        batch_size=_BATCH,
    )


def _add(changed: list[Issue], issue: Issue) -> None:
    if not changed or changed[-1] is not issue:
        changed.append(issue)


def _policy_for(
    issue: Issue, tx: Transaction, by_id: Mapping[int, sla.Policy], policies: Sequence[sla.Policy]
) -> sla.Policy | None:
    """The policy that judges ``tx`` for the issue's deadline now (the transaction's
    channel may have changed with a merge)."""
    held = by_id.get(int(issue.detail.get("policy_id") or 0))
    pair = _pair(held) if held else (tx.kind, str(issue.detail.get("from_stage", "")), issue.stage)
    for p in sla.applicable(policies, tx.kind, tx.channel):
        if _pair(p) == pair and _usable(p):
            return p
    return None
