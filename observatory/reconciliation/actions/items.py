"""The items of a rule, judged set-based: one statement inserts the items of every
transaction in scope (all of them, or those queued for the rule), judged as
``compute.judge`` says, placed on their business day in their zone.

The statement, in steps (common table expressions):

``scope``
    the live transactions of the rule's kind and channels (and, incrementally, queued);
``src_rows``, ``tgt_rows``
    their stage-reached rows of each side (the stage, by the side's system), each with
    its document (the value of the side's document key kind on the hop that reached
    it; "" without one) and its amount (none for a fan-out row: a batch's total);
``src``, ``tgt``
    per transaction: first and last time, documents (named ones; one when none is
    named), amount (per document the first reported amount, summed; rows without a
    document are left out when some row names one), currencies; on the target side the
    first hop and the batch hop;
``judged``
    the status, in ``compute.judge``'s order, leaving out a target with no source whose
    (first, not fan-out) hop also reached the target for a transaction that has the
    source (the second sales order of an order posted twice: it is counted there) and,
    when the rule exempts them, cancelled transactions missing in the target.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from observatory.lib import bulk
from observatory.reconciliation.actions.sql import (
    HOPKEYS,
    ITEMS,
    QUEUED,
    STAGES,
    TXHOPS,
    TXS,
    ZONES,
    literal,
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

COLUMNS = (
    "rule_id",
    "transaction_id",
    "day",
    "currency",
    "channel",
    "store_id",
    "status",
    "counted",
    "waiting_since",
    "source_at",
    "source_amount",
    "source_docs",
    "target_at",
    "target_last_at",
    "target_amount",
    "target_docs",
    "target_batch",
)


def _side(name: str, stage: str, system: str, key: str, params: dict[str, Any]) -> str:
    """The rows of one side, ranked per document, and their aggregate per transaction."""
    params[f"{name}_stage"] = stage
    system_sql = ""
    if system:
        params[f"{name}_system"] = system
        system_sql = f" AND s.system = %({name}_system)s"
    if key:
        params[f"{name}_key"] = key
        doc_join = f" LEFT JOIN {HOPKEYS} k ON k.hop_id = s.hop_id AND k.kind = %({name}_key)s"
        doc = "COALESCE(k.value, '')"
    else:
        doc_join, doc = "", "''"
    own = "(doc <> '' OR top_doc = '')"
    return f"""
{name}_rows AS (
  SELECT s.transaction_id AS tx, s.at, s.hop_id, s.fanout, s.currency,
         CASE WHEN s.fanout THEN NULL ELSE s.amount END AS amount, {doc} AS doc
  FROM {STAGES} s JOIN scope ON scope.id = s.transaction_id{doc_join}
  WHERE s.stage = %({name}_stage)s{system_sql}
),
{name}_ranked AS (
  SELECT r.*,
         ROW_NUMBER() OVER (PARTITION BY r.tx, r.doc
                            ORDER BY CASE WHEN r.amount IS NULL THEN 1 ELSE 0 END, r.at, r.hop_id)
           AS rn,
         MAX(r.doc) OVER (PARTITION BY r.tx) AS top_doc
  FROM {name}_rows r
),
{name} AS (
  SELECT tx, MIN(at) AS first_at, MAX(at) AS last_at,
         MIN(CASE WHEN NOT fanout THEN hop_id END) AS hop_id,
         COUNT(DISTINCT CASE WHEN doc <> '' THEN doc END) AS named,
         SUM(CASE WHEN rn = 1 AND {own} THEN amount END) AS amount,
         MIN(CASE WHEN rn = 1 AND {own} AND amount IS NOT NULL THEN currency END) AS cur_lo,
         MAX(CASE WHEN rn = 1 AND {own} AND amount IS NOT NULL THEN currency END) AS cur_hi,
         MIN(CASE WHEN fanout THEN hop_id END) AS batch,
         MIN(CASE WHEN fanout AND currency <> '' THEN currency END) AS batch_cur
  FROM {name}_ranked GROUP BY tx
)"""


def insert_items(rule: Rule, *, queued_only: bool, at: datetime) -> int:
    """Judge and insert the items of the rule's transactions in scope (those queued for
    it, or all); how many. The caller deleted their old items first."""
    params: dict[str, Any] = {
        "rule": rule.id,
        "zone": rule.zone,
        # a missing side counts once its other side is this old
        "cutoff": bulk.bind(at - timedelta(seconds=rule.grace_s)),
    }
    where = ["t.merged_into_id IS NULL"]
    if rule.transaction_kind:
        params["kind"] = rule.transaction_kind
        where.append("t.kind = %(kind)s")
    channels = rule.channel_list
    if channels:
        names = []
        for i, channel in enumerate(channels):
            params[f"channel{i}"] = channel
            names.append(f"%(channel{i})s")
        where.append(f"t.channel IN ({', '.join(names)})")
    if queued_only:
        where.append(
            f"t.id IN (SELECT q.transaction_id FROM {QUEUED} q WHERE q.rule_id = %(rule)s)"
        )
    src = _side("src", rule.source_stage, rule.source_system, rule.source_key, params)
    tgt = _side("tgt", rule.target_stage, rule.target_system, rule.target_key, params)
    other_system = " AND o.system = %(src_system)s" if rule.source_system else ""
    exempt = (
        " AND NOT (j.t_first IS NULL AND j.cancelled_at IS NOT NULL)"
        if rule.exempt_cancelled
        else ""
    )
    tolerance = bulk.greatest(
        literal(rule.tolerance_abs), f"{literal(rule.tolerance_rel)} * ABS(j.s_amount)"
    )
    if rule.store_time_zones:
        zone_join = f" LEFT JOIN {ZONES} z ON z.store_id = judged.store_id"
        zone = "COALESCE(z.time_zone, %(zone)s)"
    else:
        zone_join, zone = "", "%(zone)s"
    missing = f"('{MISSING_IN_TARGET}', '{MISSING_IN_SOURCE}')"
    sql = f"""
INSERT INTO {ITEMS} ({", ".join(COLUMNS)})
WITH scope AS (
  SELECT t.id, t.channel, t.store_id, t.cancelled_at FROM {TXS} t WHERE {" AND ".join(where)}
),{src},{tgt},
joined AS (
  SELECT scope.id AS tx, scope.channel, scope.store_id, scope.cancelled_at,
         src.first_at AS s_first, src.last_at AS s_last, src.amount AS s_amount,
         src.cur_lo AS s_lo, src.cur_hi AS s_hi,
         CASE WHEN src.named > 0 THEN src.named ELSE 1 END AS s_docs,
         tgt.first_at AS t_first, tgt.last_at AS t_last, tgt.amount AS t_amount,
         tgt.cur_lo AS t_lo, tgt.cur_hi AS t_hi,
         CASE WHEN tgt.named > 0 THEN tgt.named ELSE 1 END AS t_docs,
         tgt.hop_id AS t_hop, tgt.batch AS t_batch, tgt.batch_cur AS t_batch_cur
  FROM scope LEFT JOIN src ON src.tx = scope.id LEFT JOIN tgt ON tgt.tx = scope.id
  WHERE src.tx IS NOT NULL OR tgt.tx IS NOT NULL
),
judged AS (
  SELECT j.*,
    CASE
      WHEN j.s_first IS NULL THEN '{MISSING_IN_SOURCE}'
      WHEN j.t_first IS NULL THEN '{MISSING_IN_TARGET}'
      WHEN j.t_docs > j.s_docs THEN '{POSTED_TWICE}'
      WHEN j.t_docs < j.s_docs THEN '{MISSING_IN_TARGET}'
      WHEN j.s_amount IS NOT NULL AND j.t_amount IS NOT NULL AND (
             j.s_lo <> j.s_hi OR j.t_lo <> j.t_hi OR j.s_lo <> j.t_lo
             OR ROUND(ABS(j.s_amount - j.t_amount), 2) > {tolerance})
        THEN '{AMOUNT_MISMATCH}'
      ELSE '{MATCHED}'
    END AS status,
    CASE WHEN j.s_first IS NULL THEN j.t_first ELSE j.s_last END AS waits
  FROM joined j
  WHERE NOT (j.s_first IS NULL AND EXISTS (
      SELECT 1 FROM {TXHOPS} l JOIN {STAGES} o
        ON o.transaction_id = l.transaction_id AND o.stage = %(src_stage)s{other_system}
      WHERE l.hop_id = j.t_hop AND l.transaction_id <> j.tx)){exempt}
)
SELECT %(rule)s, judged.tx,
       {bulk.day_in_zone("COALESCE(judged.s_first, judged.t_first)", zone)},
       COALESCE(judged.s_lo, judged.t_lo, judged.t_batch_cur, ''), judged.channel, judged.store_id, judged.status,
       CASE WHEN judged.status IN {missing} AND judged.waits > %(cutoff)s THEN {bulk.false()}
            ELSE {bulk.true()} END,
       CASE WHEN judged.status IN {missing} THEN judged.waits END,
       judged.s_first, ROUND(judged.s_amount, 2), CASE WHEN judged.s_first IS NULL THEN 0 ELSE judged.s_docs END,
       judged.t_first, judged.t_last, ROUND(judged.t_amount, 2),
       CASE WHEN judged.t_first IS NULL THEN 0 ELSE judged.t_docs END, judged.t_batch
FROM judged{zone_join}
"""
    return write(sql, params)
