"""``do_reconcile``: one reconciliation pass (docs/reconciliation.md, "Runs").

1. **Claim** (one transaction): the transactions the stitcher touched, from its queue
   (``transactions.Touched``, consumer ``reconciliation``), are queued again for every
   active rule (``Queued``): the one hand-off mechanism between stages, no wall-clock
   mark.
2. **Each rule that is due** (its ``every_s`` since it last ran; every rule with
   ``force``), in a transaction of its own:

   * the items of its queued transactions are deleted and judged again
     (``items.insert_items``), the days they were and are in noted; so are the batches
     they name;
   * gaps whose grace period has passed by business "now" are counted;
   * the batches and the day results of the noted days are rebuilt from the items
     (``days``), and the mismatch exceptions of the transactions concerned follow
     (``issues``);
   * the rule's queue is emptied.

   A rule whose definition changed since its items were judged (or a store's zone, for
   a rule that reads them) is rebuilt in full, as is every rule with ``full``.

Passes are serialised by an advisory lock on PostgreSQL (SQLite's write lock is taken at
BEGIN), so two workers never judge one rule at once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from django.db import transaction

from observatory.lib import bulk, live, shutdown
from observatory.lib.clock import Clock, now
from observatory.reconciliation.actions import days as days_
from observatory.reconciliation.actions import issues
from observatory.reconciliation.actions.items import insert_items
from observatory.reconciliation.actions.sql import (
    ITEMS,
    QUEUED,
    as_date,
    execute,
    write,
)
from observatory.reconciliation.models import Queued, Rule, StoreZone
from observatory.transactions.models import Touched
from observatory.triage.actions import LIVE_TOPIC as EXCEPTIONS_TOPIC

log = logging.getLogger(__name__)

#: the run's name on the stitcher's queue of touched transactions
CONSUMER = "reconciliation"
LIVE_TOPIC = "reconciliation.changed"
_LOCK_ID = 0x7265_636F_6E63  # "reconc"
TOUCHED = Touched._meta.db_table


@dataclass
class RuleRun:
    rule: str
    full: bool = False
    items: int = 0
    counted: int = 0
    days: int = 0
    opened: int = 0
    resolved: int = 0


@dataclass
class RunResult:
    claimed: int = 0
    rules: list[RuleRun] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.items or r.counted or r.opened or r.resolved for r in self.rules)

    def summary(self) -> str:
        ran = ", ".join(
            f"{r.rule}{' (full)' if r.full else ''}: {r.items:,} items, {r.days:,} day rows, "
            f"{r.opened:,} opened, {r.resolved:,} resolved"
            for r in self.rules
        )
        return f"claimed {self.claimed:,} transactions; {ran or 'no rule due'}"


def do_reconcile(
    *,
    clock: Clock = now,
    wall: Clock | None = None,
    full: bool = False,
    force: bool = False,
    only: str | None = None,
) -> RunResult:
    """One pass (module docstring). ``clock`` is business "now", against which grace
    periods are judged; ``wall`` the real time the schedule runs on (by default the
    real time); ``force`` runs every active rule whatever its schedule; ``full``
    rebuilds them all (or the rule named ``only``)."""
    at = clock()
    walled = (wall or now)()
    result = RunResult()
    with transaction.atomic():
        bulk.lock(_LOCK_ID)
        result.claimed = _claim()
    rules = Rule.objects.filter(active=True).order_by("name")
    if only is not None:
        rules = rules.filter(name=only)
    for rule in rules:
        if shutdown.requested():  # the worker is stopping: the rules left stay due, queued
            break
        if not (force or full or only or _due(rule, walled)):
            continue
        with transaction.atomic():
            bulk.lock(_LOCK_ID)
            run = _run_rule(rule, at=at, walled=walled, full=full)
        result.rules.append(run)
    if result.changed:
        live.publish(LIVE_TOPIC, {"rules": [asdict(r) for r in result.rules]})
        if any(r.opened or r.resolved for r in result.rules):
            live.publish(EXCEPTIONS_TOPIC, {"reconciliation": True})
    return result


def _due(rule: Rule, walled: datetime) -> bool:
    return rule.last_run_at is None or rule.last_run_at + timedelta(seconds=rule.every_s) <= walled


def _claim() -> int:
    """Move the stitcher's queue for reconciliation onto every active rule's queue."""
    active = list(Rule.objects.filter(active=True).values_list("id", flat=True))
    if bulk.postgresql():
        rows = execute(
            f"WITH claimed AS (DELETE FROM {TOUCHED} WHERE consumer = %s "
            "RETURNING transaction_id), "
            f"queued AS (INSERT INTO {QUEUED} (rule_id, transaction_id) "
            "SELECT r, c.transaction_id FROM claimed c CROSS JOIN unnest(%s::bigint[]) r "
            "ON CONFLICT DO NOTHING) SELECT COUNT(*) FROM claimed",
            [CONSUMER, active],
        )
        return int(rows[0][0])
    # SQLite: the transaction holds the write lock from BEGIN; nothing comes in between
    claimed = int(execute(f"SELECT COUNT(*) FROM {TOUCHED} WHERE consumer = %s", [CONSUMER])[0][0])
    for rule_id in active:
        write(
            f"INSERT INTO {QUEUED} (rule_id, transaction_id) SELECT %s, transaction_id "
            f"FROM {TOUCHED} WHERE consumer = %s ON CONFLICT DO NOTHING",
            [rule_id, CONSUMER],
        )
    write(f"DELETE FROM {TOUCHED} WHERE consumer = %s", [CONSUMER])
    return claimed


def digest(rule: Rule) -> str:
    """What a rule's items were judged with: its definition, and the stores' zones when
    it reads them. When it changes, the rule is rebuilt in full."""
    parts = [
        rule.source_system,
        rule.source_stage,
        rule.source_key,
        rule.target_system,
        rule.target_stage,
        rule.target_key,
        rule.transaction_kind,
        ",".join(rule.channel_list),
        rule.zone,
        str(rule.store_time_zones),
        str(rule.group_by_channel),
        str(rule.group_by_store),
        str(rule.tolerance_abs),
        str(rule.tolerance_rel),
        str(rule.grace_s),
        str(rule.exempt_cancelled),
    ]
    if rule.store_time_zones:
        parts += [f"{s}={z}" for s, z in StoreZone.objects.values_list("store_id", "time_zone")]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _run_rule(rule: Rule, *, at: datetime, walled: datetime, full: bool) -> RuleRun:
    bulk.plan_for_many_small_lookups()
    fingerprint = digest(rule)
    full = full or fingerprint != rule.built_digest
    run = RuleRun(rule=rule.name, full=full)
    (_rebuild if full else _incremental)(rule, run, at, walled)
    Rule.objects.filter(id=rule.id).update(last_run_at=walled, built_digest=fingerprint)
    return run


def _rebuild(rule: Rule, run: RuleRun, at: datetime, walled: datetime) -> None:
    """Every item, batch, day result and exception of the rule, judged again."""
    Queued.objects.filter(rule=rule).delete()
    write(f"DELETE FROM {ITEMS} WHERE rule_id = %s", [rule.id])
    run.items = insert_items(rule, queued_only=False, at=at)
    days_.rebuild_batches(rule, None)
    run.days = days_.rebuild_results(rule, None, walled)
    run.opened, run.resolved = issues.sync(rule, None, None, at=at, found_at=walled)


def _incremental(rule: Rule, run: RuleRun, at: datetime, walled: datetime) -> None:
    """The items of the transactions queued for the rule judged again, the gaps whose
    grace period passed counted, and the batches, days and exceptions they concern."""
    queued_ids = f"SELECT transaction_id FROM {QUEUED} WHERE rule_id = %s"
    mine = f"rule_id = %s AND transaction_id IN ({queued_ids})"
    queued = bool(execute(f"{queued_ids} LIMIT 1", [rule.id]))
    days: set[date] = set()
    batches: set[int] = set()
    if queued:
        days |= _days(f"SELECT DISTINCT day FROM {ITEMS} WHERE {mine}", rule)
        write(f"DELETE FROM {ITEMS} WHERE {mine}", [rule.id, rule.id])
        run.items = insert_items(rule, queued_only=True, at=at)
        days |= _days(f"SELECT DISTINCT day FROM {ITEMS} WHERE {mine}", rule)
        batches = days_.batch_hops(rule, queued_ids, [rule.id])
    came_due = _count_due(rule, at, days)
    run.counted = len(came_due)
    days |= days_.rebuild_batches(rule, batches)
    run.days = days_.rebuild_results(rule, days, walled) if days else 0
    run.opened, run.resolved = issues.sync(
        rule, issues.Scope(rule, frozenset(came_due)), batches, at=at, found_at=walled
    )
    Queued.objects.filter(rule=rule).delete()


def _days(sql: str, rule: Rule) -> set[date]:
    return {as_date(r[0]) for r in execute(sql, [rule.id, rule.id])}


def _count_due(rule: Rule, at: datetime, touched_days: set[date]) -> set[int]:
    """Count the gaps whose grace period has passed by ``at``; their transactions (their
    days join ``touched_days``)."""
    cutoff = bulk.bind(at - timedelta(seconds=rule.grace_s))
    waiting = "rule_id = %s AND NOT counted AND waiting_since <= %s"
    rows = execute(f"SELECT transaction_id, day FROM {ITEMS} WHERE {waiting}", [rule.id, cutoff])
    if not rows:
        return set()
    touched_days.update(as_date(r[1]) for r in rows)
    write(f"UPDATE {ITEMS} SET counted = {bulk.true()} WHERE {waiting}", [rule.id, cutoff])
    return {int(r[0]) for r in rows}
