"""Stage SLAs, decided from plain values and a clock (no ORM: tested without a database).

A policy says: once a transaction of ``kind`` (and ``channel``, blank for every channel)
reaches ``from_stage``, it must reach ``to_stage`` within ``deadline_s``. Everything is
judged on business time: the time each stage was reached is the business time of the hop
that reached it, and ``now`` is the injected clock.

Rules (the sweep in the ``actions`` package applies the same ones as set-based SQL):

* **Which policy applies.** For each (kind, from_stage, to_stage), a policy for the
  transaction's own channel wins over the blank-channel one.
* **Reached.** ``to_stage`` counts as reached when it was reached, or, if the policy lets
  it be skipped (``skippable``), when a later stage of the same sequence was (an order can
  skip ``validated``: ``posted`` implies it happened somewhere). Stages that must not be
  skipped (``NEVER_SKIPPED``: an order shipped by the warehouse but never posted to the
  ERP is the worst case for finance) are reached only by themselves. ``cancelled`` ends
  every open question.
* **Knowable.** A deadline is judged only once the truth is knowable: the stream expected
  to report the awaited stage has reported past it (its watermark, ``hops.streams``), so a
  stage whose hop is still on its way is "not known yet", never "stuck".
* **Batch hops.** Some stages arrive in batches (a nightly file). A policy's
  ``batch_allowance_s`` is extra time for those: a stage reached by a batch hop is on time
  up to ``deadline + allowance``; a stage not reached yet is only overdue once
  ``deadline + allowance`` has passed (nobody can know yet whether it will come by batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tracing.conventions import INVENTORY_STAGES, ORDER_STAGES, RETURN_STAGES

CANCELLED: Final = "cancelled"

#: Stages in the order a transaction moves through them; a later stage implies the
#: earlier ones happened somewhere (docs/stages.md: a transaction can skip stages).
SEQUENCES: Final = (
    tuple(s for s in ORDER_STAGES if s != CANCELLED),
    RETURN_STAGES,
    INVENTORY_STAGES,
)

#: The system expected to act for a transaction to reach a stage: the owner of a
#: ``stuck`` exception is routed from it. Overridable by settings.TRIAGE_STAGE_SYSTEMS.
STAGE_SYSTEMS: Final[Mapping[str, str]] = {
    "captured": "shopify",
    "validated": "middleware",
    "payment_authorized": "payment",
    "reserved": "erp",
    "posted": "erp",
    "released": "erp",
    "picked": "wms",
    "shipped": "wms",
    "delivered": "carrier",
    "invoiced": "erp",
    "fulfillment_synced": "shopify",
    "return_requested": "shopify",
    "return_received": "wms",
    "refunded": "shopify",
    "refund_settled": "erp",
    "inventory_adjusted": "erp",
    "inventory_published": "shopify",
}

#: Stages no later stage may stand in for, by default (an SLA policy's ``skippable``).
NEVER_SKIPPED: Final = frozenset(
    {"posted", "fulfillment_synced", "invoiced", "refunded", "refund_settled"}
)

#: How a summary says a stage was not reached ("never posted to the ERP").
STAGE_PHRASES: Final[Mapping[str, str]] = {
    "posted": "posted to the ERP",
    "fulfillment_synced": "seen by Shopify",
    "invoiced": "invoiced by the ERP",
    "refunded": "refunded",
    "refund_settled": "settled by the ERP",
    "inventory_published": "published to a selling channel",
}


def default_skippable(to_stage: str) -> bool:
    """Whether a later stage may satisfy a deadline for ``to_stage``, by default."""
    return to_stage not in NEVER_SKIPPED


def human(seconds: float) -> str:
    """A deadline in words: ``1 min``, ``1 h``, ``15 min``, ``1.5 h``, ``45 s``."""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s} s"


def phrase(stage: str) -> str:
    return STAGE_PHRASES.get(stage, stage.replace("_", " "))


# per-stage statuses
ON_TIME: Final = "on_time"
LATE: Final = "late"
PENDING: Final = "pending"
OVERDUE: Final = "overdue"
MOOT: Final = "cancelled"  # the transaction was cancelled before the stage was due


@dataclass(frozen=True)
class Policy:
    id: int
    name: str
    transaction_kind: str
    channel: str
    from_stage: str
    to_stage: str
    deadline_s: int
    batch_allowance_s: int = 0
    skippable: bool = True

    @property
    def allowed(self) -> timedelta:
        """Deadline plus batch allowance: how long until a missing stage is overdue."""
        return timedelta(seconds=self.deadline_s + self.batch_allowance_s)


@dataclass(frozen=True)
class Reached:
    """When a stage was first reached, and whether a batch hop reached it."""

    at: datetime
    batch: bool = False
    system: str = ""


@dataclass(frozen=True)
class SlaStatus:
    """One policy judged for one transaction."""

    policy: Policy
    status: str  # ON_TIME | LATE | PENDING | OVERDUE | MOOT
    from_at: datetime
    #: from_at + deadline
    deadline_at: datetime
    #: the latest moment the stage may still arrive before the transaction is overdue
    overdue_after: datetime
    reached_at: datetime | None
    #: the stage that satisfied the policy (to_stage or a later one)
    reached_stage: str = ""

    @property
    def stage(self) -> str:
        return self.policy.to_stage

    def late_by_s(self, now: datetime) -> float:
        """Seconds past the deadline (negative: time left)."""
        end = self.reached_at or now
        return (end - self.deadline_at).total_seconds()


def satisfying_stages(to_stage: str) -> tuple[str, ...]:
    """``to_stage`` and the stages after it in its sequence, any of which satisfies it."""
    for seq in SEQUENCES:
        if to_stage in seq:
            return seq[seq.index(to_stage) :]
    return (to_stage,)


def satisfying(policy: Policy) -> tuple[str, ...]:
    """The stages that satisfy ``policy``: ``to_stage``, and the later stages of its
    sequence when the policy lets it be skipped."""
    if not policy.skippable:
        return (policy.to_stage,)
    return satisfying_stages(policy.to_stage)


def stage_system(stage: str, overrides: Mapping[str, str] | None = None) -> str:
    """The system expected to act for ``stage`` to be reached ("" if nobody knows)."""
    if overrides and stage in overrides:
        return overrides[stage]
    return STAGE_SYSTEMS.get(stage, "")


def applicable(policies: Iterable[Policy], kind: str, channel: str) -> list[Policy]:
    """The policies that judge a transaction of ``kind`` and ``channel``: per (from, to),
    the one for this channel if there is one, else the blank-channel one."""
    chosen: dict[tuple[str, str], Policy] = {}
    for p in policies:
        if p.transaction_kind != kind or (p.channel and p.channel != channel):
            continue
        pair = (p.from_stage, p.to_stage)
        held = chosen.get(pair)
        if held is None or (p.channel and not held.channel):
            chosen[pair] = p
    return sorted(chosen.values(), key=lambda p: (p.from_stage, p.to_stage, p.id))


def first_reached(stages: Mapping[str, Reached], policy: Policy) -> tuple[str, Reached] | None:
    """The earliest stage satisfying ``policy`` (``satisfying``), if any was reached."""
    found = [(s, stages[s]) for s in satisfying(policy) if s in stages]
    if not found:
        return None
    return min(found, key=lambda sr: sr[1].at)


def judge(policy: Policy, stages: Mapping[str, Reached], now: datetime) -> SlaStatus | None:
    """Judge one policy; None while ``from_stage`` has not been reached."""
    start = stages.get(policy.from_stage)
    if start is None:
        return None
    deadline_at = start.at + timedelta(seconds=policy.deadline_s)
    overdue_after = deadline_at + timedelta(seconds=policy.batch_allowance_s)
    hit = first_reached(stages, policy)
    if hit is not None:
        reached_stage, reached = hit
        allowed = overdue_after if reached.batch else deadline_at
        return SlaStatus(
            policy=policy,
            status=ON_TIME if reached.at <= allowed else LATE,
            from_at=start.at,
            deadline_at=deadline_at,
            overdue_after=overdue_after,
            reached_at=reached.at,
            reached_stage=reached_stage,
        )
    cancelled = stages.get(CANCELLED)
    if cancelled is not None:
        status = MOOT
    elif now > overdue_after:
        status = OVERDUE
    else:
        status = PENDING
    return SlaStatus(
        policy=policy,
        status=status,
        from_at=start.at,
        deadline_at=deadline_at,
        overdue_after=overdue_after,
        reached_at=None,
    )


def evaluate(
    policies: Iterable[Policy],
    kind: str,
    channel: str,
    stages: Mapping[str, Reached],
    now: datetime,
) -> list[SlaStatus]:
    """Every applicable policy judged, for one transaction."""
    out = []
    for p in applicable(policies, kind, channel):
        status = judge(p, stages, now)
        if status is not None:
            out.append(status)
    return out


def overdue(
    policies: Iterable[Policy],
    kind: str,
    channel: str,
    stages: Mapping[str, Reached],
    now: datetime,
) -> list[SlaStatus]:
    """The policies this transaction is past the deadline of (the ``stuck`` questions)."""
    return [s for s in evaluate(policies, kind, channel, stages, now) if s.status == OVERDUE]


def by_stage(statuses: Iterable[SlaStatus]) -> dict[str, SlaStatus]:
    """SLA status per stage for a timeline: keyed by the stage that was due (and by the
    later stage that satisfied it, when one did). When several policies end at one stage
    the worst wins (overdue > late > pending > on time)."""
    rank = {OVERDUE: 4, LATE: 3, PENDING: 2, ON_TIME: 1, MOOT: 0}
    out: dict[str, SlaStatus] = {}
    for s in statuses:
        for stage in {s.policy.to_stage, s.reached_stage} - {""}:
            held = out.get(stage)
            if held is None or rank[s.status] > rank[held.status]:
                out[stage] = s
    return out


def overdue_threshold(policy: Policy, now: datetime) -> datetime:
    """A transaction whose ``from_stage`` time is before this, and which has not reached
    ``to_stage``, is overdue (the same rule as ``judge``, for the set-based sweep)."""
    return now - timedelta(seconds=policy.deadline_s + policy.batch_allowance_s)


@dataclass(frozen=True)
class Verdict:
    """A policy judged for one transaction by the sweep, with what decided it."""

    #: ON_TIME (reached by the deadline), MOOT (cancelled by it), LATE (the stage or a
    #: cancellation came after it), OVERDUE (still missing), PENDING (not due, or not
    #: knowable yet)
    status: str
    deadline_at: datetime
    #: the deadline plus the batch allowance: from here on a missing stage is overdue
    overdue_after: datetime
    #: what ended the question (a satisfying stage or ``cancelled``) and when
    ended_at: datetime | None = None
    ended_by: str = ""

    @property
    def problem(self) -> bool:
        """Whether the transaction was, or is, past this deadline."""
        return self.status in (LATE, OVERDUE)


def verdict(
    policy: Policy,
    from_at: datetime,
    reached: Mapping[str, datetime | None],
    cancelled_at: datetime | None,
    now: datetime,
    cutoff: datetime | None = None,
) -> Verdict:
    """Judge ``policy`` for a transaction that reached ``from_stage`` at ``from_at``, on
    business time, whatever the moment it is asked.

    ``reached`` maps stages to their first time (stages that do not satisfy the policy
    are ignored; times after ``now`` have not happened yet). ``cutoff`` is the business
    time the truth is known up to (the watermark of the stream expected to report the
    stage): a deadline after it is PENDING, never OVERDUE, even when it has passed. A
    stage (or cancellation) that came by ``overdue_after`` makes the question ON_TIME
    (MOOT), whenever it became known: late telemetry is not a late order.
    """
    deadline_at = from_at + timedelta(seconds=policy.deadline_s)
    overdue_after = from_at + policy.allowed
    wanted = set(satisfying(policy))
    ends = [(at, s) for s, at in reached.items() if s in wanted and at is not None]
    if cancelled_at is not None:
        ends.append((cancelled_at, CANCELLED))
    first = min(ends) if ends else None
    if first is not None and first[0] <= overdue_after:
        status = MOOT if first[1] == CANCELLED else ON_TIME
        return Verdict(status, deadline_at, overdue_after, first[0], first[1])
    horizon = now if cutoff is None else min(now, cutoff)
    if overdue_after >= horizon:
        return Verdict(PENDING, deadline_at, overdue_after)
    if first is not None and first[0] <= now:
        return Verdict(LATE, deadline_at, overdue_after, first[0], first[1])
    return Verdict(OVERDUE, deadline_at, overdue_after)


#: Exception age buckets (the ``exception_aging`` KPI, docs/kpis.md), upper bounds in seconds.
AGE_BUCKETS: Final = (
    ("under_1h", 3600),
    ("h1_to_4", 4 * 3600),
    ("h4_to_24", 24 * 3600),
    ("over_24h", None),
)


def age_bucket(age_s: float) -> str:
    """The exception_aging bucket an age in seconds falls in."""
    for name, upper in AGE_BUCKETS:
        if upper is None or age_s < upper:
            return name
    return AGE_BUCKETS[-1][0]  # pragma: no cover
