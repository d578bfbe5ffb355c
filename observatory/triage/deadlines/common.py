"""What the parts of the deadline sweep share: its context (business and wall-clock now,
the streams' marks, the policies), the policy helpers, and merge chains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db.models import QuerySet

from observatory.hops.queries import Mark
from observatory.transactions.models import STAGE_COLUMNS, StageReached, Transaction, stage_field
from observatory.triage import queries, sla
from observatory.triage.models import SYSTEM_ACTOR, Issue

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
        return quiet > max(float(mark.max_delay_s), float(settings.SILENCE_AFTER_S))

    def label(self, tx_id: int) -> str:
        if tx_id not in self.labels:
            self.labels.update(queries.transaction_labels([tx_id]))
        return self.labels[tx_id]


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


def final_winners(ids: Iterable[int]) -> dict[int, int]:
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


def _close(issue: Issue, state: str, at: datetime, why: str) -> None:
    issue.state = state
    issue.resolved_at = at
    issue.resolved_by = SYSTEM_ACTOR
    issue.resolution = why[:255]
