"""The SLA deadlines the ground truth judges each transaction by (:mod:`.truth`).

The product's seeded default policies, mirrored here (the simulator talks to Observatory
over HTTP only, so it keeps its own copy), and the rule the ground truth applies: on
business time, with the end of the run as now. It differs from a live sweep in what it
knows: ``posted`` is missed when the ERP never had the order even if the goods left (no
later stage stands in for it), and a stage is judged by when it really happened, not by
when its telemetry arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tracing.conventions import INVENTORY_STAGES, ORDER_STAGES, RETURN_STAGES


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    kind: str
    channel: str
    from_stage: str
    to_stage: str
    deadline_s: int
    batch_allowance_s: int = 0


#: The product's seeded default SLA policies (its migrations seed the same rows).
POLICIES: Final = (
    Policy("web order posted", "order", "web", "captured", "posted", 60),
    Policy("POS sale posted", "order", "pos", "captured", "posted", 3600, 900),
    Policy("fulfillment seen by Shopify", "order", "web", "shipped", "fulfillment_synced", 900),
    Policy(
        "inventory published",
        "inventory_update",
        "",
        "inventory_adjusted",
        "inventory_published",
        300,
    ),
    Policy("refund settled", "order", "", "refunded", "refund_settled", 86400),
    Policy("refund settled (return)", "return", "", "refunded", "refund_settled", 86400),
)

#: Stages only they themselves reach: a later stage does not stand in for them.
NOT_SKIPPABLE: Final = frozenset(
    {"posted", "fulfillment_synced", "invoiced", "refunded", "refund_settled"}
)
SEQUENCES: Final = (
    tuple(s for s in ORDER_STAGES if s != "cancelled"),
    RETURN_STAGES,
    INVENTORY_STAGES,
)


@dataclass(frozen=True, slots=True)
class Reached:
    at: datetime
    batch: bool = False


@dataclass(frozen=True, slots=True)
class Missed:
    stage: str
    policy: str
    deadline: datetime
    reached: datetime | None
    late_by_s: float | None


def applicable(kind: str, channel: str, policies: Iterable[Policy] = POLICIES) -> list[Policy]:
    """Per (from, to) stage pair, the policy for ``channel`` if any, else the blank one."""
    chosen: dict[tuple[str, str], Policy] = {}
    for p in policies:
        if p.kind != kind or (p.channel and p.channel != channel):
            continue
        held = chosen.get((p.from_stage, p.to_stage))
        if held is None or (p.channel and not held.channel):
            chosen[(p.from_stage, p.to_stage)] = p
    return list(chosen.values())


def satisfying(stage: str) -> tuple[str, ...]:
    """The stages that reach ``stage``: itself, and for a skippable one the later ones."""
    if stage in NOT_SKIPPABLE:
        return (stage,)
    for seq in SEQUENCES:
        if stage in seq:
            return seq[seq.index(stage) :]
    return (stage,)


def missed(
    kind: str,
    channel: str,
    stages: dict[str, Reached],
    now: datetime,
    policies: Iterable[Policy] = POLICIES,
) -> list[Missed]:
    """The deadlines missed as of ``now``; ``stages`` holds what was reached by then.

    A deadline (from-stage time + ``deadline_s``) counts when it is before ``now``, the
    to-stage was not reached by it (by deadline + ``batch_allowance_s`` when a batch hop
    reached it: the POS batch posting) and the transaction was not cancelled by then. A
    to-stage not reached at all is missed only once deadline + allowance is before
    ``now`` too: a batch could still bring it in time. See :func:`satisfying` for which
    stages reach a to-stage.
    """
    out = []
    cancelled = stages.get("cancelled")
    for p in applicable(kind, channel, policies):
        start = stages.get(p.from_stage)
        if start is None:
            continue
        deadline = start.at + timedelta(seconds=p.deadline_s)
        allowance = timedelta(seconds=p.batch_allowance_s)
        if deadline >= now:
            continue
        if cancelled is not None and cancelled.at <= deadline:
            continue
        found = [stages[s] for s in satisfying(p.to_stage) if s in stages]
        reached = min(found, key=lambda r: r.at) if found else None
        if reached is None:
            if deadline + allowance >= now:
                continue
            out.append(Missed(p.to_stage, p.name, deadline, None, None))
            continue
        if reached.at <= deadline + (allowance if reached.batch else timedelta(0)):
            continue
        late = (reached.at - deadline).total_seconds()
        out.append(Missed(p.to_stage, p.name, deadline, reached.at, late))
    return out
