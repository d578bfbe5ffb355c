"""The open stages behind the live backlog (``OpenStage``): rewritten for the
transactions the fill collects, or all of them when the SLA policies change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    CharField,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Least

from observatory.kpis import queries
from observatory.kpis.actions.rows import in_chunks, insert_rows
from observatory.kpis.models import OpenStage
from observatory.lib import bulk
from observatory.transactions.models import stage_field
from observatory.triage import sla


def refresh_open_stages(
    tx_ids: Sequence[int] | None = None, policies: Sequence[sla.Policy] | None = None
) -> None:
    """Rewrite the ``OpenStage`` rows of these transactions (None: of all), set-based: one
    INSERT ... SELECT per SLA policy (and chunk of ids) on PostgreSQL, then one UPDATE
    marking each transaction's ``lead`` row.

    A row per (transaction, stage due under a policy judging it) that was ever overdue:
    ``from_stage`` reached, and the stage due (or a later one) not reached, nor the
    transaction cancelled, by ``from_stage`` + deadline + batch allowance
    (``overdue_after``; two policies ending at one stage: the earlier); ``closed_at`` is the
    first of those times, if any (``triage.sla``: the backlog at a moment T is the rows
    overdue before T and not closed by T)."""
    table = OpenStage._meta.db_table
    columns = (
        "transaction_id",
        "stage",
        "anchor",
        "channel",
        "store",
        "overdue_after",
        "closed_at",
    )
    chunks: list[Sequence[int] | None]
    if tx_ids is None:
        OpenStage.objects.all().delete()
        chunks = [None]
    else:
        some = list(in_chunks(sorted(set(tx_ids))))
        for ids in some:
            OpenStage.objects.filter(transaction_id__in=ids).delete()
        chunks = list(some)
    judged = queries.judged_by(policies)
    for chunk in chunks:
        found: dict[tuple[int, str], tuple[Any, ...]] = {}
        for policy, qs, reaching in judged:
            if chunk is not None:
                qs = qs.filter(id__in=chunk)
            allowed = timedelta(seconds=policy.deadline_s + policy.batch_allowance_s)
            start = stage_field(policy.from_stage)
            ends = [*reaching, "cancelled_at"]
            if bulk.postgresql():
                # one INSERT ... SELECT there (a full rebuild is minutes at a million
                # orders otherwise); LEAST skips NULLs there: the first end reached, NULL when none was
                closed = Least(*[F(c) for c in ends]) if len(ends) > 1 else F(ends[0])
                rows = (
                    qs.annotate(
                        missing=Value(policy.to_stage, output_field=CharField()),
                        anchor_at=queries.anchor_expr(),
                        due=ExpressionWrapper(
                            F(start) + Value(allowed), output_field=DateTimeField()
                        ),
                        closed=ExpressionWrapper(closed, output_field=DateTimeField()),
                    )
                    .filter(Q(closed__isnull=True) | Q(closed__gt=F("due")))
                    .values_list(
                        "id", "missing", "anchor_at", "channel", "store_id", "due", "closed"
                    )
                )
                sql, params = rows.query.sql_with_params()
                with connection.cursor() as cur:
                    cur.execute(
                        f"INSERT INTO {table} ({', '.join(columns)}) {sql} "
                        "ON CONFLICT (transaction_id, stage) DO UPDATE SET overdue_after = "
                        f"LEAST({table}.overdue_after, EXCLUDED.overdue_after)",
                        params,
                    )
                continue
            # SQLite: its datetime arithmetic yields text of another shape, and MIN() of
            # several values is NULL when any is: computed here
            for pk, anchor, channel, store, from_at, *times in qs.annotate(
                anchor_at=queries.anchor_expr()
            ).values_list("id", "anchor_at", "channel", "store_id", start, *ends):
                due = from_at + allowed
                reached = [t for t in times if t is not None]
                end = min(reached) if reached else None
                if end is not None and end <= due:
                    continue
                held = found.get((pk, policy.to_stage))
                if held is None or due < held[5]:
                    found[(pk, policy.to_stage)] = (
                        pk,
                        policy.to_stage,
                        anchor,
                        channel,
                        store,
                        due,
                        end,
                    )
        if found:
            insert_rows(OpenStage, columns, found.values())
        _mark_leads(chunk)


def _mark_leads(tx_ids: Sequence[int] | None) -> None:
    """Mark each transaction's open row that fell due first (ties: by stage)."""
    earlier = OpenStage.objects.filter(
        transaction_id=OuterRef("transaction_id"), closed_at__isnull=True
    ).filter(
        Q(overdue_after__lt=OuterRef("overdue_after"))
        | Q(overdue_after=OuterRef("overdue_after"), stage__lt=OuterRef("stage"))
    )
    rows = OpenStage.objects.filter(closed_at__isnull=True)
    if tx_ids is not None:
        rows = rows.filter(transaction_id__in=tx_ids)
    rows.exclude(Exists(earlier)).update(lead=True)


def policies_digest(policies: Sequence[sla.Policy]) -> str:
    """What the open stages and the within-deadline counts are built under: the active SLA
    policies (a change of any of them is a change of this)."""
    text = repr(sorted(repr(p) for p in policies))
    return hashlib.sha256(text.encode()).hexdigest()
