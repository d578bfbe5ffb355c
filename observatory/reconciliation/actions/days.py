"""A rule's batches and day results, rebuilt set-based from its items for the business
days a run touched (or for all of them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from observatory.lib import bulk
from observatory.reconciliation.actions.sql import (
    BATCHES,
    ITEMS,
    RESULTS,
    STAGES,
    TXHOPS,
    as_date,
    chunked,
    execute,
    literal,
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


def batch_hops(rule: Rule, scope_sql: str, params: list[Any]) -> set[int]:
    """The batch postings (fan-out hops reaching the rule's target) of the transactions
    ``scope_sql`` selects (a subquery of transaction ids)."""
    system = " AND s.system = %s" if rule.target_system else ""
    rows = execute(
        f"SELECT DISTINCT s.hop_id FROM {STAGES} s WHERE s.transaction_id IN ({scope_sql}) "
        f"AND s.stage = %s AND s.fanout{system}",
        [*params, rule.target_stage, *([rule.target_system] if rule.target_system else [])],
    )
    return {int(r[0]) for r in rows}


def rebuild_batches(rule: Rule, hops: Iterable[int] | None) -> set[date]:
    """Make the batch rows of ``hops`` (None: of every batch) again from the items they
    name (one receipt may be in two batches: posted twice), each judged: its total against
    the sum of its items' source amounts, within the rule's tolerance. Returns the days
    they were and are counted in."""
    chosen = None if hops is None else sorted(set(hops))
    if chosen is not None and not chosen:
        return set()
    days = set() if chosen is None else batch_days(rule, chosen)
    tolerance = bulk.greatest(
        literal(rule.tolerance_abs), f"{literal(rule.tolerance_rel)} * ABS(x.source_total)"
    )
    system = " AND s.system = %s" if rule.target_system else ""
    system_params = [rule.target_system] if rule.target_system else []
    select = f"""
INSERT INTO {BATCHES} (rule_id, hop_id, amount, currency, items, source_total, transaction_id,
  status, day, channel, store_id)
SELECT %s, x.hop_id, x.amount, x.currency, x.items, x.source_total, x.tx,
       CASE WHEN x.amount IS NOT NULL AND x.source_total IS NOT NULL AND (
              x.cur_lo <> x.cur_hi OR x.cur_lo <> x.currency
              OR ROUND(ABS(x.amount - x.source_total), 2) > {tolerance})
         THEN '{AMOUNT_MISMATCH}' ELSE '{MATCHED}' END,
       x.day, x.channel, x.store_id
FROM (
  SELECT s.hop_id, MIN(s.amount) AS amount, MIN(s.currency) AS currency,
         COUNT(*) AS items,
         -- a transaction never reported by the source adds nothing; one reported without
         -- an amount leaves nothing to compare
         CASE WHEN SUM(CASE WHEN i.source_at IS NOT NULL AND i.source_amount IS NULL
                            THEN 1 ELSE 0 END) > 0 THEN NULL
              ELSE ROUND(COALESCE(SUM(i.source_amount), 0), 2) END AS source_total,
         MIN(i.transaction_id) AS tx,
         MIN(CASE WHEN i.source_amount IS NOT NULL THEN i.currency END) AS cur_lo,
         MAX(CASE WHEN i.source_amount IS NOT NULL THEN i.currency END) AS cur_hi,
         MIN(i.day) AS day, MIN(i.channel) AS channel, MIN(i.store_id) AS store_id
  FROM {{rows}}
  GROUP BY s.hop_id
) x"""
    every = (
        f"{ITEMS} i JOIN {STAGES} s ON s.transaction_id = i.transaction_id "
        f"AND s.stage = %s AND s.fanout{system} WHERE i.rule_id = %s"
    )
    if chosen is None:
        write(f"DELETE FROM {BATCHES} WHERE rule_id = %s", [rule.id])
        write(
            select.format(rows=every),
            [rule.id, rule.target_stage, *system_params, rule.id],
        )
        return days
    for chunk in chunked(chosen):
        write(
            f"DELETE FROM {BATCHES} WHERE rule_id = %s AND hop_id IN ({marks(len(chunk))})",
            [rule.id, *chunk],
        )
        # the transactions of these hops through the membership index, not a scan of stages
        some = (
            f"{TXHOPS} l JOIN {ITEMS} i ON i.rule_id = %s AND i.transaction_id = l.transaction_id "
            f"JOIN {STAGES} s ON s.transaction_id = l.transaction_id AND s.hop_id = l.hop_id "
            f"AND s.stage = %s AND s.fanout{system} WHERE l.hop_id IN ({marks(len(chunk))})"
        )
        write(
            select.format(rows=some),
            [rule.id, rule.id, rule.target_stage, *system_params, *chunk],
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
    batch_gap = f"CASE WHEN status = '{AMOUNT_MISMATCH}' THEN 1 ELSE 0 END"
    batch_diff = "ABS(COALESCE(amount, 0) - COALESCE(source_total, 0))"

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
  SELECT day, currency, {channel}, {store}, 0, 0, 0, COALESCE(amount, 0), 0, 0, 0,
         {batch_gap}, 0, 0, {batch_gap} * {batch_diff}, {batch_gap} * {batch_diff}
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
    stamp = bulk.bind(at)
    if days is None:
        write(f"DELETE FROM {RESULTS} WHERE rule_id = %s", [rule.id])
        return write(insert.format(where=""), [rule.id, stamp, rule.id, rule.id])
    written = 0
    for chunk in chunked(days):
        values = [bulk.bind(d) for d in chunk]
        where = f" AND day IN ({marks(len(chunk))})"
        write(f"DELETE FROM {RESULTS} WHERE rule_id = %s{where}", [rule.id, *values])
        params: list[Any] = [rule.id, stamp, rule.id, *values, rule.id, *values]
        written += write(insert.format(where=where), params)
    return written
