"""The deadline sweep: ``stuck`` and ``silence`` exceptions, judged on business time once
the truth is knowable (``docs/watermarks.md``). ``actions.do_sweep`` runs it inside its
transaction; everything here is set-based per SLA policy, never a query per transaction.

For each policy, the system expected to reach its stage (``sla.stage_system``: the ERP for
``posted``) has a *cutoff*: the business time its telemetry is complete up to (its
watermark, ``hops.queries.system_marks``), at most business "now". Then:

* **Open.** A transaction past a deadline before the cutoff and still without the stage
  opens a ``stuck`` exception, opened at the deadline (ages count from it), once the
  system has also had its maximum delay, counted from when the transaction's start
  arrived, to report the stage (history sent today about last week: the system's own
  old hops come in behind the first orders'). One whose stage
  (or cancellation) came after such a deadline before any sweep saw it missing (history
  sent in bulk, a stopped worker, a stage between two sweeps) gets one opened and resolved
  on business time: the exceptions do not depend on when the sweeps ran.
* **Re-judge.** Every unresolved ``stuck`` exception, and every one the system resolved
  whose transaction changed since, is judged again against its transaction's stage times
  (for a fragment merged into another transaction: the transaction it merged into). The
  stage came in time after all (only its telemetry was late) -> ``withdrawn``; it came
  late -> resolved at the business time it came; still missing with a later stage there
  (a skipped stage that may not be skipped) -> the summary says so ("shipped by wms, never
  posted to the ERP").
  When the system has not reported that far, a deadline is still judged once business
  now has passed it by the system's maximum telemetry delay, unless the system is
  catching up with old data (a backfill, an upload: the truth is on its way).
* **Silence.** When the system has stopped reporting altogether (nothing from it for
  longer than its maximum delay and ``SILENCE_AFTER_S``), the deadlines past its watermark
  are not opened one by one: they are counted under one ``silence`` exception for the
  system, which resolves when it reports again. Once it does, they are judged one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db.models import (
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)

from observatory.hops.queries import Mark
from observatory.transactions.models import STAGE_COLUMNS, StageReached, Transaction, stage_field
from observatory.triage import queries, sla
from observatory.triage.models import (
    REAL,
    RESOLVED,
    SILENCE,
    STUCK,
    SYSTEM_ACTOR,
    UNRESOLVED,
    WITHDRAWN,
    Issue,
    SweepMark,
)

_BATCH = 1000
_COLUMNS = frozenset(STAGE_COLUMNS)


class Tally(Protocol):
    stuck_opened: int
    stuck_closed: int
    withdrawn: int
    silences_opened: int


@dataclass
class Context:
    """What one sweep knows: business and wall-clock now, the streams, the policies."""

    at: datetime
    wall: datetime
    marks: Mapping[str, Mark]
    policies: list[sla.Policy]
    owner: Callable[[str], str]
    #: the transactions the stitcher touched since the last sweep (None: everything)
    touched: list[int] | None
    labels: dict[int, str] = field(default_factory=dict)

    def system(self, stage: str) -> str:
        return sla.stage_system(stage, settings.TRIAGE_STAGE_SYSTEMS)

    def cutoff(self, system: str) -> datetime | None:
        """Business time the truth about ``system``'s stages is known up to: its
        watermark, or, unless it is catching up with old data or has stopped reporting,
        business now less its maximum telemetry delay if that is later. None: nothing is
        known (it never reported)."""
        if not system:
            return self.at
        mark = self.marks.get(system)
        if mark is None:
            return None
        cut = mark.watermark
        if not mark.catching_up and not self.stopped(system):
            waited = self.at - timedelta(seconds=mark.max_delay_s)
            cut = waited if cut is None else max(cut, waited)
        return None if cut is None else min(self.at, cut)

    def delay(self, system: str) -> timedelta:
        mark = self.marks.get(system)
        return timedelta(seconds=mark.max_delay_s if mark else settings.TELEMETRY_DELAY_FLOOR_S)

    def stopped(self, system: str) -> bool:
        """Whether ``system`` has stopped reporting: nothing from it for longer than its
        maximum delay and settings.SILENCE_AFTER_S, or nothing ever."""
        mark = self.marks.get(system)
        if mark is None or mark.last_arrival_at is None:
            return True
        quiet = (self.wall - mark.last_arrival_at).total_seconds()
        return quiet > max(mark.max_delay_s, settings.SILENCE_AFTER_S)

    def label(self, tx_id: int) -> str:
        if tx_id not in self.labels:
            self.labels.update(queries.transaction_labels([tx_id]))
        return self.labels[tx_id]


def sweep(ctx: Context, result: Tally) -> None:
    _rejudge(ctx, result)
    _open(ctx, result)
    _silence(ctx, result)


# --- helpers --------------------------------------------------------------------------------


def _ends(p: sla.Policy) -> list[str]:
    return [s for s in sla.satisfying(p) if s in _COLUMNS]


def _usable(p: sla.Policy) -> bool:
    return p.from_stage in _COLUMNS and p.to_stage in _COLUMNS


def _scoped(p: sla.Policy, policies: Sequence[sla.Policy]) -> QuerySet[Transaction]:
    """Live transactions of the policy's kind and channel (a blank-channel policy leaves
    out the channels that have one of their own for the same stages)."""
    qs = Transaction.objects.filter(merged_into__isnull=True, kind=p.transaction_kind)
    if p.channel:
        return qs.filter(channel=p.channel)
    own = {
        q.channel
        for q in policies
        if q.channel and (q.transaction_kind, q.from_stage, q.to_stage) == _pair(p)
    }
    return qs.exclude(channel__in=own) if own else qs


def _pair(p: sla.Policy) -> tuple[str, str, str]:
    return (p.transaction_kind, p.from_stage, p.to_stage)


def _missing(qs: QuerySet[Transaction], p: sla.Policy) -> QuerySet[Transaction]:
    return qs.filter(
        cancelled_at__isnull=True, **{f"{stage_field(s)}__isnull": True for s in _ends(p)}
    )


def _summary(label: str, p: sla.Policy, channel: str, skipped: tuple[str, str] | None) -> str:
    scope = channel or p.transaction_kind
    due = f"{sla.human(p.deadline_s)} of {p.from_stage}"
    if skipped is not None:
        stage, system = skipped
        return (
            f"{label}: {stage} by {system or 'an unknown system'}, never "
            f"{sla.phrase(p.to_stage)} (due within {due}, {scope})"
        )
    return f"{label}: not {p.to_stage} within {due} ({scope})"


def _later_stages(tx_ids: Iterable[int], p: sla.Policy) -> dict[int, tuple[str, str]]:
    """For transactions still missing a stage that may not be skipped: the first later
    stage of its sequence they reached, and the system that reached it."""
    later = [s for s in sla.satisfying_stages(p.to_stage) if s != p.to_stage]
    ids = sorted(set(tx_ids))
    if p.skippable or not later or not ids:
        return {}
    out: dict[int, tuple[str, str]] = {}
    for i in range(0, len(ids), _BATCH):
        rows = (
            StageReached.objects.filter(transaction_id__in=ids[i : i + _BATCH], stage__in=later)
            .order_by("transaction_id", "at", "id")
            .values_list("transaction_id", "stage", "system")
        )
        for tx_id, stage, system in rows:
            out.setdefault(tx_id, (stage, system))
    return out


def _reached(tx: Any, p: sla.Policy) -> dict[str, datetime | None]:
    return {s: getattr(tx, stage_field(s)) for s in _ends(p)}


# --- re-judging what is held ----------------------------------------------------------------


def _winners(ids: Iterable[int]) -> dict[int, int]:
    """tx id -> the live transaction it was (perhaps transitively) merged into."""
    ids = list(ids)
    parent: dict[int, int | None] = {}
    frontier = set(ids)
    for _ in range(32):  # merge chains are short; the bound guards against a cycle
        frontier -= set(parent)
        if not frontier:
            break
        rows = list(
            Transaction.objects.filter(id__in=list(frontier)).values_list("id", "merged_into")
        )
        for pk, into in rows:
            parent[pk] = into
        frontier = {into for _, into in rows if into is not None}
    out = {}
    for start in ids:
        cur, steps = start, 0
        while parent.get(cur) is not None and steps < 32:
            cur = parent[cur]  # type: ignore[assignment]
            steps += 1
        out[start] = cur
    return out


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
    winners = _winners({i.transaction_id for i in held if i.transaction_id})
    txs = Transaction.objects.in_bulk(sorted(set(winners.values())))
    by_id = {p.id: p for p in ctx.policies}
    # one exception per (transaction, stage): the merged transaction's own one stands
    claimed: dict[tuple[int, str], int] = {}
    for i in sorted(held, key=lambda i: (winners[i.transaction_id] != i.transaction_id, i.id)):
        key = (winners[i.transaction_id], i.stage)
        if i.state != WITHDRAWN:
            claimed.setdefault(key, i.id)
    changed: list[Issue] = []
    skip_checks: dict[int, list[Issue]] = defaultdict(list)
    for issue in held:
        winner_id = winners[issue.transaction_id]
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
            i.transaction_id
            for issues in skip_checks.values()
            for i in issues
            if i.transaction_id not in ctx.labels
        )
    )
    for pid, issues in skip_checks.items():
        policy = by_id[pid]
        skipped = _later_stages([i.transaction_id for i in issues], policy)
        for issue in issues:
            tx = txs[issue.transaction_id]
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


def _close(issue: Issue, state: str, at: datetime, why: str) -> None:
    issue.state = state
    issue.resolved_at = at
    issue.resolved_by = SYSTEM_ACTOR
    issue.resolution = why[:255]


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


# --- opening --------------------------------------------------------------------------------


def _open(ctx: Context, result: Tally) -> None:
    planned: set[str] = set()
    marks = {m.name: m for m in SweepMark.objects.filter(name__startswith="sla:")}
    moved: list[SweepMark] = []
    for p in ctx.policies:
        if not _usable(p):
            continue
        cut = ctx.cutoff(ctx.system(p.to_stage))
        if cut is None:
            continue
        start = stage_field(p.from_stage)
        threshold = cut - p.allowed
        qs = _scoped(p, ctx.policies).filter(**{f"{start}__lt": threshold})
        qs = qs.exclude(
            Exists(
                Issue.objects.filter(
                    transaction_id=OuterRef("pk"), kind=STUCK, stage=p.to_stage, state__in=REAL
                )
            )
        )
        # and the system has had its maximum delay, since we heard the transaction begin,
        # to report the stage: a backfill's first orders arrive before the system's own
        # old hops about them do
        heard = ctx.wall - ctx.delay(ctx.system(p.to_stage))
        qs = qs.filter(
            Exists(
                StageReached.objects.filter(
                    transaction_id=OuterRef("pk"),
                    stage=p.from_stage,
                    hop__received_at__lte=heard,
                )
            )
        )
        ends = _ends(p)
        ended = Q(cancelled_at__isnull=False)
        for s in ends:
            ended |= Q(**{f"{stage_field(s)}__isnull": False})
        # ended, but not by the deadline (the verdict checks exactly which end came first)
        late = qs.filter(ended)
        for col in [*map(stage_field, ends), "cancelled_at"]:
            late = late.exclude(**{f"{col}__lte": _plus(start, p)})
        lo = _advance(marks, moved, p, threshold)
        if ctx.touched is not None:
            # what changed, and deadlines that became knowable since the last sweep
            recent = Q(pk__in=ctx.touched)
            if lo is not None:
                recent |= Q(**{f"{start}__gte": lo})
            late = late.filter(recent)
        columns = ["id", "channel", start, "cancelled_at", *map(stage_field, ends)]
        rows = [
            *_missing(qs, p).order_by(start, "id").values_list(*columns),
            *late.order_by(start, "id").values_list(*columns),
        ]
        found = []
        for pk, channel, from_at, cancelled_at, *reached in rows:
            v = sla.verdict(
                p, from_at, dict(zip(ends, reached, strict=True)), cancelled_at, ctx.at, cut
            )
            key = f"{STUCK}:{pk}:{p.to_stage}"
            if v.problem and key not in planned:
                planned.add(key)
                found.append((pk, channel, v))
        for i in range(0, len(found), _BATCH):
            chunk = found[i : i + _BATCH]
            ctx.labels.update(queries.transaction_labels(pk for pk, _, _ in chunk))
            skipped = _later_stages([pk for pk, _, v in chunk if v.status == sla.OVERDUE], p)
            rows_out = [
                _stuck_issue(ctx, p, pk, channel, v, skipped.get(pk)) for pk, channel, v in chunk
            ]
            Issue.objects.bulk_create(rows_out, ignore_conflicts=True)
            result.stuck_opened += len(rows_out)
            result.stuck_closed += sum(1 for r in rows_out if r.state == RESOLVED)
    SweepMark.objects.bulk_create([m for m in moved if m._state.adding])
    SweepMark.objects.bulk_update([m for m in moved if not m._state.adding], ["started_at"])


def _plus(start: str, p: sla.Policy) -> Any:
    return ExpressionWrapper(F(start) + p.allowed, output_field=DateTimeField())


def _advance(
    marks: dict[str, SweepMark], moved: list[SweepMark], p: sla.Policy, threshold: datetime
) -> datetime | None:
    """Remember where this sweep's knowable deadlines end for ``p``; return where the
    previous sweep's ended (None: never swept). Written by the caller, all at once."""
    name = f"sla:{p.id}"
    mark = marks.get(name)
    if mark is None:
        moved.append(SweepMark(name=name, started_at=threshold))
        return None
    if mark.started_at != threshold:
        before = mark.started_at
        mark.started_at = threshold
        moved.append(mark)
        return before
    return mark.started_at


def _stuck_issue(
    ctx: Context,
    p: sla.Policy,
    pk: int,
    channel: str,
    v: sla.Verdict,
    skipped: tuple[str, str] | None,
) -> Issue:
    system = ctx.system(p.to_stage)
    issue = Issue(
        kind=STUCK,
        transaction_id=pk,
        system=system,
        stage=p.to_stage,
        owner=ctx.owner(system),
        summary=_summary(ctx.label(pk), p, channel, skipped),
        detail={
            "policy_id": p.id,
            "policy": p.name,
            "from_stage": p.from_stage,
            "from_at": (v.deadline_at - timedelta(seconds=p.deadline_s)).isoformat(),
            "to_stage": p.to_stage,
            "deadline_s": p.deadline_s,
            "batch_allowance_s": p.batch_allowance_s,
            "skippable": p.skippable,
            "deadline_at": v.deadline_at.isoformat(),
            "channel": channel,
        },
        dedupe_key=f"{STUCK}:{pk}:{p.to_stage}",
        event_at=v.deadline_at,
        opened_at=v.overdue_after,
        detected_at=ctx.wall,
    )
    if v.status == sla.LATE:
        # overdue while no sweep looked: opened and resolved on business time, when a
        # sweep running all along would have opened and closed it
        assert v.ended_at is not None
        why = "the order was cancelled" if v.ended_by == sla.CANCELLED else f"{v.ended_by} reached"
        _close(issue, RESOLVED, v.ended_at, why)
        issue.detail["found_after"] = True
    return issue


# --- silence --------------------------------------------------------------------------------


@dataclass
class _Waiting:
    count: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    value: dict[str, Decimal] = field(default_factory=dict)
    oldest: datetime | None = None


def _silence(ctx: Context, result: Tally) -> None:
    waiting: dict[str, _Waiting] = {}
    for p in ctx.policies:
        if not _usable(p):
            continue
        system = ctx.system(p.to_stage)
        if not system:
            continue
        if not ctx.stopped(system):
            continue
        start = stage_field(p.from_stage)
        upper = ctx.at - ctx.delay(system) - p.allowed
        qs = _missing(_scoped(p, ctx.policies), p).filter(**{f"{start}__lt": upper})
        cut = ctx.cutoff(system)
        if cut is not None:
            qs = qs.filter(**{f"{start}__gte": cut - p.allowed})
        if system not in ctx.marks:
            # never heard from at all: silent only once orders have waited on it as long
            # as a system that stopped would have been quiet (at start-up the first hops
            # of a backfill arrive before the system's own)
            quiet = ctx.wall - timedelta(seconds=settings.SILENCE_AFTER_S)
            qs = qs.filter(
                Exists(
                    StageReached.objects.filter(
                        transaction_id=OuterRef("pk"),
                        stage=p.from_stage,
                        hop__received_at__lte=quiet,
                    )
                )
            )
        agg = qs.aggregate(n=Count("id"), oldest=Min(start))
        if not agg["n"]:
            continue
        w = waiting.setdefault(system, _Waiting())
        w.count += agg["n"]
        w.by_stage[p.to_stage] = w.by_stage.get(p.to_stage, 0) + agg["n"]
        first = agg["oldest"] + p.allowed
        w.oldest = first if w.oldest is None else min(w.oldest, first)
        for currency, total in (
            qs.filter(amount__isnull=False)
            .values_list("currency")
            .annotate(total=Sum("amount"))
            .values_list("currency", "total")
        ):
            w.value[currency] = w.value.get(currency, Decimal(0)) + total
    held = {i.system: i for i in Issue.objects.filter(kind=SILENCE, state__in=UNRESOLVED)}
    new, changed = [], []
    for system, w in sorted(waiting.items()):
        issue = held.pop(system, None)
        text, detail = _silence_text(system, w, ctx.marks.get(system))
        if issue is None:
            assert w.oldest is not None
            new.append(
                Issue(
                    kind=SILENCE,
                    system=system,
                    owner=ctx.owner(system),
                    summary=text,
                    detail=detail,
                    dedupe_key=f"{SILENCE}:{system}",
                    event_at=w.oldest,
                    opened_at=w.oldest,
                    detected_at=ctx.wall,
                )
            )
        elif issue.summary != text or issue.detail != detail:
            issue.summary, issue.detail = text, detail
            changed.append(issue)
    Issue.objects.bulk_create(new, ignore_conflicts=True)
    result.silences_opened += len(new)
    Issue.objects.bulk_update(changed, ["summary", "detail"])
    for system, issue in held.items():
        why = (
            f"nothing waits on {system} any more"
            if ctx.stopped(system)
            else f"{system} reported again"
        )
        _close(issue, RESOLVED, ctx.at, why)
        issue.save(update_fields=["state", "resolved_at", "resolved_by", "resolution"])


def _silence_text(system: str, w: _Waiting, mark: Mark | None) -> tuple[str, dict[str, Any]]:
    value = sorted((c, v) for c, v in w.value.items())
    worth = ", ".join(f"{c or '?'} {v:,.2f}" for c, v in value)
    heard = (
        f"nothing received since {mark.last_arrival_at:%Y-%m-%d %H:%M:%S} UTC"
        if mark is not None and mark.last_arrival_at is not None
        else "no telemetry received yet"
    )
    orders = f"{w.count:,} {'order' if w.count == 1 else 'orders'}"
    text = f"{system} silent: {heard}; {orders} waiting on it" + (f" ({worth})" if worth else "")
    detail: dict[str, Any] = {
        "waiting": w.count,
        "by_stage": dict(sorted(w.by_stage.items())),
        "value": [{"currency": c, "value": f"{v:.2f}"} for c, v in value],
        "oldest_deadline": w.oldest.isoformat() if w.oldest else None,
    }
    if mark is not None:
        detail.update(
            watermark=mark.watermark.isoformat() if mark.watermark else None,
            last_arrival_at=mark.last_arrival_at.isoformat() if mark.last_arrival_at else None,
            max_delay_s=mark.max_delay_s,
        )
    return text, detail
