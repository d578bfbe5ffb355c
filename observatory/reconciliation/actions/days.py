"""A rule's batches and day results, rebuilt set-based from its items for the business
days a run touched (or for all of them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from observatory.reconciliation.actions.sql import (
    BATCHES,
    ITEMS,
    RESULTS,
    STAGES,
    as_date,
    bind,
    chunked,
    execute,
    marks,
    write,
)
from observatory.reconciliation.models import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_IN_SOURCE,
    MISSING_IN_TARGET,
    POSTED_TWICE,
    Rule,
)


def batch_days(rule: Rule, hops: Iterable[int]) -> set[date]:
    """The days the batches ``hops`` of the rule are counted in now."""
    out: set[date] = set()
    for chunk in chunked(hops):
        rows = execute(
            f"SELECT DISTINCT day FROM {BATCHES} WHERE rule_id = %s AND hop_id IN ({marks(len(chunk))})",
            [rule.id, *chunk],
        )
        out.update(as_date(r[0]) for r in rows)
    return out


def rebuild_batches(rule: Rule, hops: Iterable[int] | None) -> set[date]:
    """Make the batch rows of ``hops`` (None: of every batch) again from the items that
    name them; the days they were and are counted in."""
    chosen = None if hops is None else sorted(set(hops))
    if chosen is not None and not chosen:
        return set()
    days = set() if chosen is None else batch_days(rule, chosen)
    select = f"""
INSERT INTO {BATCHES} (rule_id, hop_id, amount, currency, day, channel, store_id)
SELECT i.rule_id, i.target_batch, MIN(s.amount), MIN(s.currency), MIN(i.day), MIN(i.channel),
       MIN(i.store_id)
FROM {ITEMS} i JOIN {STAGES} s
  ON s.transaction_id = i.transaction_id AND s.hop_id = i.target_batch AND s.stage = %s
WHERE i.rule_id = %s AND i.target_batch IS NOT NULL{{where}}
GROUP BY i.rule_id, i.target_batch"""
    if chosen is None:
        write(f"DELETE FROM {BATCHES} WHERE rule_id = %s", [rule.id])
        write(select.format(where=""), [rule.target_stage, rule.id])
        return days
    for chunk in chunked(chosen):
        write(
            f"DELETE FROM {BATCHES} WHERE rule_id = %s AND hop_id IN ({marks(len(chunk))})",
            [rule.id, *chunk],
        )
        write(
            select.format(where=f" AND i.target_batch IN ({marks(len(chunk))})"),
            [rule.target_stage, rule.id, *chunk],
        )
    return days | batch_days(rule, chosen)


def rebuild_results(rule: Rule, days: Iterable[date] | None, at: datetime) -> int:
    """Make the rule's results of ``days`` (None: of every day) again from its items and
    batches: one row per day, currency, and channel and store where the rule groups by
    them. Returns how many rows were written."""
    channel = "channel" if rule.group_by_channel else "''"
    store = "store_id" if rule.group_by_store else "''"
    gap = f"counted AND status <> '{MATCHED}'"
    diff = "ABS(COALESCE(source_amount, 0) - COALESCE(target_amount, 0))"

    def count(status: str) -> str:
        return f"CASE WHEN counted AND status = '{status}' THEN 1 ELSE 0 END"

    rows = f"""
  SELECT day, currency, {channel} AS ch, {store} AS st,
         CASE WHEN source_at IS NULL THEN 0 ELSE 1 END AS sc,
         COALESCE(source_amount, 0) AS stot,
         CASE WHEN target_at IS NULL THEN 0 ELSE 1 END AS tc,
         COALESCE(target_amount, 0) AS ttot,
         CASE WHEN status = '{MATCHED}' THEN 1 ELSE 0 END AS m,
         {count(MISSING_IN_TARGET)} AS mit, {count(MISSING_IN_SOURCE)} AS mis,
         {count(AMOUNT_MISMATCH)} AS am, {count(POSTED_TWICE)} AS pt,
         CASE WHEN counted THEN 0 ELSE 1 END AS pend,
         CASE WHEN counted AND status = '{AMOUNT_MISMATCH}' THEN {diff} ELSE 0 END AS mm,
         CASE WHEN {gap} THEN {diff} ELSE 0 END AS var
  FROM {ITEMS} WHERE rule_id = %s{{where}}
  UNION ALL
  SELECT day, currency, {channel}, {store}, 0, 0, 0, COALESCE(amount, 0), 0, 0, 0, 0, 0, 0, 0, 0
  FROM {BATCHES} WHERE rule_id = %s{{where}}"""
    insert = f"""
INSERT INTO {RESULTS} (rule_id, day, currency, channel, store_id, source_count, source_total,
  target_count, target_total, matched, missing_in_target, missing_in_source, amount_mismatch,
  posted_twice, pending, mismatched_amount, value_at_risk, computed_at)
SELECT %s, day, currency, ch, st, SUM(sc), ROUND(SUM(stot), 2), SUM(tc), ROUND(SUM(ttot), 2),
       SUM(m), SUM(mit), SUM(mis), SUM(am), SUM(pt), SUM(pend), ROUND(SUM(mm), 2),
       ROUND(SUM(var), 2), %s
FROM ({rows}) x
GROUP BY day, currency, ch, st"""
    stamp = bind(at)
    if days is None:
        write(f"DELETE FROM {RESULTS} WHERE rule_id = %s", [rule.id])
        return write(insert.format(where=""), [rule.id, stamp, rule.id, rule.id])
    written = 0
    for chunk in chunked(days):
        values = [bind(d) for d in chunk]
        where = f" AND day IN ({marks(len(chunk))})"
        write(f"DELETE FROM {RESULTS} WHERE rule_id = %s{where}", [rule.id, *values])
        params: list[Any] = [rule.id, stamp, rule.id, *values, rule.id, *values]
        written += write(insert.format(where=where), params)
    return written
