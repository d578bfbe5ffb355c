"""Opening: a ``stuck`` exception for each transaction past a deadline before its
system's cutoff and still without the stage, or one opened and resolved on business time
when the stage came late while no sweep looked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import DateTimeField, Exists, ExpressionWrapper, F, OuterRef, Q

from observatory.transactions.models import StageReached, stage_field
from observatory.triage import queries, sla
from observatory.triage.deadlines.common import (
    _BATCH,
    Context,
    Tally,
    _close,
    _ends,
    _later_stages,
    _missing,
    _scoped,
    _summary,
    _usable,
)
from observatory.triage.models import REAL, RESOLVED, STUCK, Issue, SweepMark


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
        # a stage that came after the deadline is known late as soon as it is here: not
        # held back below, or a transaction touched before that wait ran out (history
        # streamed in, an upload) would never be looked at again
        known = qs
        # a missing stage waits until the system has had its maximum delay, since we heard
        # the transaction begin, to report it: a backfill's first orders arrive before the
        # system's own old hops about them do
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
        late = known.filter(ended)
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
