"""The reconciliation backlog: transactions past an SLA deadline and still missing the
stage, now or at the end of a past window, from the late stages the fill keeps
(``OpenStage``), or from the stage columns under explicit policies; and the per-policy
queries the fill builds those late stages from (``judged_by``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Case, CharField, Count, DateTimeField, F, Q, Value, When

from observatory.kpis.models import OpenStage
from observatory.kpis.queries.readers import INVENTORY, ORDER, is_live
from observatory.lib.clock import now as clock_now
from observatory.lib.routers import reads
from observatory.transactions.models import STAGE_COLUMNS, Transaction, stage_field
from observatory.triage import queries as triage_queries
from observatory.triage import sla


def anchor_q(since: datetime | None, until: datetime) -> Q:
    """Transactions counted in the window of their anchor time."""

    def rng(col: str) -> Q:
        q = Q(**{f"{col}__lt": until})
        if since is not None:
            q &= Q(**{f"{col}__gte": since})
        return q

    return (
        (Q(kind=ORDER) & rng("captured_at"))
        | (Q(kind=INVENTORY) & rng("inventory_adjusted_at"))
        | (Q(kind="return") & rng("return_requested_at"))
    )


def anchor_expr() -> Case:
    """A transaction's anchor time: the window it counts in."""
    return Case(
        When(kind=ORDER, then=F("captured_at")),
        When(kind=INVENTORY, then=F("inventory_adjusted_at")),
        When(kind="return", then=F("return_requested_at")),
        default=Value(None),
        output_field=DateTimeField(),
    )


def judged_by(
    policies: Sequence[sla.Policy] | None = None, *, system: str | None = None
) -> list[tuple[sla.Policy, Any, list[str]]]:
    """Per SLA policy (with stage columns for both ends; of ``system`` when given): the
    live transactions it judges that reached its ``from_stage`` (a channel's own policy
    over the every-channel one, ``triage.sla.applicable`` set-based), and the columns whose
    time reaches its ``to_stage`` (it, or a later stage of its sequence)."""
    policies = list(triage_queries.policies() if policies is None else policies)
    overrides = settings.TRIAGE_STAGE_SYSTEMS
    specific: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for p in policies:
        if p.channel:
            specific[(p.transaction_kind, p.from_stage, p.to_stage)].add(p.channel)
    columns = {f.name for f in Transaction._meta.get_fields()}
    out = []
    for p in policies:
        start = stage_field(p.from_stage)
        if start not in columns or stage_field(p.to_stage) not in columns:
            continue
        if system and sla.stage_system(p.to_stage, overrides) != system:
            continue
        qs = Transaction.objects.filter(
            merged_into__isnull=True, kind=p.transaction_kind, **{f"{start}__isnull": False}
        )
        if p.channel:
            qs = qs.filter(channel=p.channel)
        elif specific[(p.transaction_kind, p.from_stage, p.to_stage)]:
            qs = qs.exclude(channel__in=specific[(p.transaction_kind, p.from_stage, p.to_stage)])
        reaching = [stage_field(s_) for s_ in sla.satisfying(p) if stage_field(s_) in columns]
        out.append((p, qs, reaching))
    return out


def policy_branches(
    *,
    since: datetime | None,
    until: datetime | None,
    live: bool,
    policies: Sequence[sla.Policy] | None = None,
    system: str | None = None,
) -> list[tuple[sla.Policy, Any]]:
    """Per SLA policy, the live transactions it judges that miss its stage (as of
    ``until``, or now when ``live``), of the window when ``since``/``until`` are given,
    past its deadline when ``until`` is given (``triage.sla`` rules, set-based)."""
    out = []
    for p, qs, reaching in judged_by(policies, system=system):
        if until is not None:
            qs = qs.filter(
                anchor_q(since, until),
                **{f"{stage_field(p.from_stage)}__lt": sla.overdue_threshold(p, until)},
            )
        for col in reaching:
            if live or until is None:
                qs = qs.filter(**{f"{col}__isnull": True})
            else:
                qs = qs.filter(Q(**{f"{col}__isnull": True}) | Q(**{f"{col}__gt": until}))
        if live or until is None:
            qs = qs.filter(cancelled_at__isnull=True)
        else:
            qs = qs.filter(Q(cancelled_at__isnull=True) | Q(cancelled_at__gt=until))
        out.append((p, qs))
    return out


def _backlog_union(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None,
    store: str | None,
    system: str | None,
    at: datetime,
    policies: Sequence[sla.Policy] | None,
) -> Any:
    """The backlog as it stood at a past ``until``, from the stage columns: one UNION ALL
    branch per policy of (transaction, channel, store, missing stage)."""
    branches = []
    for p, qs in policy_branches(
        since=since, until=until, live=is_live(until, at), policies=policies, system=system
    ):
        if channel is not None:
            qs = qs.filter(channel=channel)
        if store is not None:
            qs = qs.filter(store_id=store)
        branches.append(
            qs.annotate(missing=Value(p.to_stage, output_field=CharField())).values_list(
                "id", "channel", "store_id", "missing"
            )
        )
    if not branches:
        return None
    return branches[0].union(*branches[1:], all=True)


def _open_stages(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None,
    store: str | None,
    system: str | None,
    live: bool = True,
) -> Any:
    """The backlog at ``until`` from ``OpenStage`` (kept by the fill): stages overdue by
    ``until`` of transactions anchored in the window, still missing (``live``: now, one
    partial index), or at a past ``until`` not reached by then (a range of anchors)."""
    qs = OpenStage.objects.filter(overdue_after__lt=until, anchor__lt=until)
    if live:
        qs = qs.filter(closed_at__isnull=True)
    else:
        qs = qs.filter(Q(closed_at__isnull=True) | Q(closed_at__gt=until))
    if since is not None:
        qs = qs.filter(anchor__gte=since)
    if channel is not None:
        qs = qs.filter(channel=channel)
    if store is not None:
        qs = qs.filter(store=store)
    if system:
        qs = qs.filter(stage__in=_system_stages(system))
    return qs


def _system_stages(system: str) -> set[str]:
    """The stages ``system`` is expected to reach (none for a system that reaches none:
    the POS, a marketplace, any unknown name)."""
    overrides = settings.TRIAGE_STAGE_SYSTEMS
    return {s for s in STAGE_COLUMNS if sla.stage_system(s, overrides) == system}


def backlog_members(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
    policies: Sequence[sla.Policy] | None = None,
) -> dict[str, set[tuple[int, str, str]]]:
    """Stage -> (transaction, channel, store) of every transaction of the window past the
    deadline for that stage at ``until`` and still missing it (one statement).

    From ``OpenStage`` (``until`` at about now: the stages still open; earlier: those not
    reached by ``until``); with explicit ``policies``, from the stage columns.
    """
    at = at or clock_now()
    out: dict[str, set[tuple[int, str, str]]] = defaultdict(set)
    if policies is None:
        if system and not _system_stages(system):
            return {}
        rows = _open_stages(
            since,
            until,
            channel=channel,
            store=store,
            system=system,
            live=is_live(until, at),
        )
        for tx_id, tx_channel, tx_store, stage in rows.values_list(
            "transaction_id", "channel", "store", "stage"
        ):
            out[stage].add((tx_id, tx_channel, tx_store))
        return dict(out)
    union = _backlog_union(
        since, until, channel=channel, store=store, system=system, at=at, policies=policies
    )
    if union is not None:
        for tx_id, tx_channel, tx_store, stage in union:
            out[stage].add((tx_id, tx_channel, tx_store))
    return dict(out)


def backlog(
    since: datetime | None,
    until: datetime,
    *,
    channel: str | None = None,
    store: str | None = None,
    system: str | None = None,
    at: datetime | None = None,
    policies: Sequence[sla.Policy] | None = None,
) -> dict[str, Any]:
    """``{"total", "by_stage"}``, counted in the database in one statement over
    ``OpenStage``: about now, one pass over a covering index of the open stages (the
    total counts each transaction's ``lead`` row; with a system filter, distinct
    transactions); at an earlier ``until``, a range of anchors. With explicit
    ``policies``, from the stage columns as they stood at ``until``."""
    at = at or clock_now()
    if policies is None:
        if system and not _system_stages(system):
            return {"total": 0, "by_stage": {}}  # no backlog can wait on it
        live = is_live(until, at)
        rows = _open_stages(since, until, channel=channel, store=store, system=system, live=live)
        if live and not system:
            by_stage: dict[str, int] = {}
            total = 0
            for stage, n, leads in (
                rows.values("stage")
                # (columns of the covering index only: an index-only scan)
                .annotate(n=Count("stage"), leads=Count("stage", filter=Q(lead=True)))
                .values_list("stage", "n", "leads")
            ):
                if n:
                    by_stage[stage] = int(n)
                total += int(leads)
            return {"total": total, "by_stage": dict(sorted(by_stage.items()))}
        # one row per (transaction, stage): distinct transactions for the total only
        sql, params = rows.values_list("transaction_id", "stage").query.sql_with_params()
        return _stage_counts(
            f"SELECT stage, COUNT(*) FROM ({sql}) u GROUP BY stage "
            f"UNION ALL SELECT NULL, COUNT(DISTINCT transaction_id) FROM ({sql}) v",
            (*params, *params),
        )
    union = _backlog_union(
        since, until, channel=channel, store=store, system=system, at=at, policies=policies
    )
    if union is None:
        return {"total": 0, "by_stage": {}}
    sql, params = union.query.sql_with_params()
    return _stage_counts(
        f"WITH u(id, channel, store, stage) AS ({sql}) "
        "SELECT stage, COUNT(DISTINCT id) FROM u GROUP BY stage "
        "UNION ALL SELECT NULL, COUNT(DISTINCT id) FROM u",
        params,
    )


def _stage_counts(sql: str, params: Sequence[Any]) -> dict[str, Any]:
    """``{"total", "by_stage"}`` from one statement's (stage, count) rows, the total's
    stage NULL."""
    by_stage: dict[str, int] = {}
    total = 0
    with reads(OpenStage).cursor() as cur:
        cur.execute(sql, params)
        for stage, n in cur.fetchall():
            if stage is None:
                total = int(n)
            elif n:
                by_stage[str(stage)] = int(n)
    return {"total": total, "by_stage": dict(sorted(by_stage.items()))}
