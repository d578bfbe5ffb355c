"""Silence: the deadlines past the watermark of a system that stopped reporting, counted
under one ``silence`` exception for the system, resolved when it reports again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Min, OuterRef, Sum

from observatory.hops.queries import Mark
from observatory.transactions.models import StageReached, stage_field
from observatory.triage.deadlines.common import Context, Tally, _close, _missing, _scoped, _usable
from observatory.triage.models import RESOLVED, SILENCE, UNRESOLVED, Issue


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
