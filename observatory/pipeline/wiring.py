"""The pipeline in order, in one place: each stage reads what the stage below wrote.

``tick`` is what the worker runs every ``PIPELINE_TICK_S`` (and ingest nudges after a
commit): stitch every waiting hop into transactions, then sweep the exception queue. The
reconciliation rules, the KPI fill and the alert evaluation and delivery run on their own
beats (``CELERY_BEAT_SCHEDULE`` in settings); ``once`` runs one pass of all of it, in
order, for ``manage.py pipeline``, scripts and cron. ``prune`` applies retention, each stage to
its own tables, in order (``manage.py prune`` and the worker's hourly task).

Only this module (and the settings' schedule) knows the order; the stages never import
the stages above them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from observatory.alerts import retention as alerts_retention
from observatory.alerts.actions import (
    DeliverResult,
    EvaluateResult,
    do_deliver,
    do_evaluate,
)
from observatory.hops import retention as hops_retention
from observatory.kpis import retention as kpis_retention
from observatory.kpis.actions import FillResult, do_fill_rollups
from observatory.lib import shutdown
from observatory.lib.clock import Clock, now
from observatory.reconciliation import retention as reconciliation_retention
from observatory.reconciliation.actions import RunResult, do_reconcile
from observatory.transactions import retention as transactions_retention
from observatory.transactions.actions import StitchResult, do_stitch
from observatory.triage import retention as triage_retention
from observatory.triage.actions import SweepResult, do_sweep


@dataclass
class TickResult:
    stitched: StitchResult
    swept: SweepResult


def tick(*, clock: Clock = now, wall: Clock | None = None, full: bool = False) -> TickResult:
    """Stitch every waiting hop, then sweep. ``clock`` is business "now" for the sweep,
    ``wall`` the real time the streams are read at (``triage.actions.do_sweep``); ``full``
    rescans every transaction instead of the ones the stitcher just touched."""
    stitched = do_stitch()
    if shutdown.requested():  # stopping: the next tick sweeps (the queue keeps its work)
        return TickResult(stitched=stitched, swept=SweepResult(skipped=True))
    swept = do_sweep(clock=clock, wall=wall, full=full)
    return TickResult(stitched=stitched, swept=swept)


@dataclass
class OnceResult:
    tick: TickResult
    reconciled: RunResult
    filled: FillResult
    evaluated: EvaluateResult
    delivered: DeliverResult


def once(*, clock: Clock = now, wall: Clock | None = None, full: bool = False) -> OnceResult:
    """One pass of everything the worker's schedule does, in order: stitch, sweep, run
    every reconciliation rule (whatever its schedule), fill the KPI rollups, evaluate the
    alert rules, deliver what they queued."""
    ticked = tick(clock=clock, wall=wall, full=full)
    reconciled = do_reconcile(clock=clock, wall=wall, force=True, full=full)
    filled = do_fill_rollups()
    evaluated = do_evaluate(clock=clock)
    delivered = do_deliver(clock=clock)
    return OnceResult(
        tick=ticked, reconciled=reconciled, filled=filled, evaluated=evaluated, delivered=delivered
    )


#: Each stage prunes its own tables. The hops go first (nothing holds on to one), so the
#: stages above can remove their rows naming a pruned hop in the same pass; then the
#: stages whose rows name transactions, before the transactions go.
PRUNERS = (
    hops_retention.do_prune,
    alerts_retention.do_prune,
    reconciliation_retention.do_prune,
    triage_retention.do_prune,
    kpis_retention.do_prune,
    transactions_retention.do_prune,
)


def prune(*, at: datetime | None = None) -> Iterator[tuple[str, int]]:
    """Delete everything past its retention (``settings.RETENTION_DAYS``,
    docs/retention.md), in chunks, then make the hop partitions ahead; yields (table,
    rows deleted) per chunk as it goes."""
    at = at or now()
    for pruner in PRUNERS:
        yield from pruner(at=at)
    hops_retention.do_make_partitions(at=at)
