"""The brute-force twin of every KPI: the same figures recounted straight from the stored
hops, transactions and exceptions, in plain Python, with exact quantiles.

Slow on purpose and shares nothing with the rollup path but the definitions (the quantile
rule of ``compute.exact_quantile``, the SLA rules of ``triage.sla``): tests compare the
two on realistic traffic, counts exactly, quantiles within the sketches' relative error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from observatory.hops.models import DuplicateDelivery, Hop, InventorySnapshot
from observatory.kpis import compute, registry
from observatory.kpis.models import AlertSeen
from observatory.kpis.queries import LIVE_SLACK
from observatory.lib.clock import now as clock_now
from observatory.reconciliation.models import StoreZone
from observatory.transactions.models import (
    STAGE_COLUMNS,
    StageReached,
    Transaction,
    TransactionHop,
)
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import DUPLICATE, RESOLVED, UNRESOLVED, WITHDRAWN, Issue
from tracing.conventions import ERROR, FULFILLMENT_SYSTEMS, LOCATION_ID, REROUTE


def _lag(end: datetime | None, start: datetime | None) -> float | None:
    if end is None or start is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _anchor(tx: Transaction) -> datetime | None:
    return {
        "order": tx.captured_at,
        "inventory_update": tx.inventory_adjusted_at,
        "return": tx.return_requested_at,
    }.get(tx.kind)


def _winner_of(every: list[Transaction]) -> Callable[[int | None], int | None]:
    parent = {t.id: t.merged_into_id for t in every}

    def final(tx_id: int | None) -> int | None:
        seen = 0
        while tx_id is not None and parent.get(tx_id) is not None and seen < 64:
            tx_id = parent[tx_id]
            seen += 1
        return tx_id

    return final


def _deadline(policies: list[sla.Policy], kind: str, channel: str, a: str, b: str) -> float | None:
    for p in sla.applicable(policies, kind, channel):
        if (p.from_stage, p.to_stage) == (a, b):
            return float(p.deadline_s)
    return None


def _quantiles(values: list[float], qs: tuple[float, ...]) -> list[float | None]:
    return [compute.exact_quantile(values, q) for q in qs]


def kpi_values(
    since: datetime,
    until: datetime,
    channel: str | None = None,
    system: str | None = None,
    store: str | None = None,
    *,
    at: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Every KPI of docs/kpis.md, recounted (same signature and answer as the rollup one)."""
    at = at or clock_now()
    live_state = until >= at - LIVE_SLACK
    channel, store, system = channel or None, store or None, system or None
    policies = triage_queries.policies()
    # each table read once, whole (the twin shares no read with the rollup path)
    every = list(Transaction.objects.all())
    winner = _winner_of(every)

    txs = [t for t in every if t.merged_into_id is None]
    tx_by_id = {t.id: t for t in txs}
    failed_tx: set[int] = set()
    first_tx: dict[int, int] = {}
    #: per transaction, the (start, uid, system, attributes) of each of its hops (reroutes)
    moves: dict[int, list[tuple[datetime, str, str, Any]]] = defaultdict(list)
    for tx_id, hop_id, outcome, start, uid, sys_name, attrs in TransactionHop.objects.values_list(
        "transaction_id",
        "hop_id",
        "hop__outcome",
        "hop__start_time",
        "hop__uid",
        "hop__system",
        "hop__attributes",
    ):
        moves[tx_id].append((start, uid, sys_name, attrs or {}))
        if tx_id not in tx_by_id:
            continue
        if outcome == ERROR:
            failed_tx.add(tx_id)
        if hop_id not in first_tx or tx_id < first_tx[hop_id]:
            first_tx[hop_id] = tx_id
    issues = list(Issue.objects.all())
    # a withdrawn exception never was a problem
    with_issue = {
        winner(i.transaction_id) for i in issues if i.transaction_id and i.state != WITHDRAWN
    }
    handed_over: dict[int, datetime] = {}
    #: per surviving transaction, the (stage, system) of each stage reached (cancellations)
    timeline: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for tx_id, stage_name, sys_name, when in StageReached.objects.values_list(
        "transaction_id", "stage", "system", "at"
    ):
        timeline[winner(tx_id) or tx_id].append((stage_name, sys_name))
        if stage_name != "shipped" or sys_name not in FULFILLMENT_SYSTEMS:
            continue
        if tx_id not in handed_over or when < handed_over[tx_id]:
            handed_over[tx_id] = when
    twice = {
        winner(i.transaction_id)
        for i in issues
        if i.transaction_id
        and i.state != WITHDRAWN
        and i.kind == DUPLICATE
        and i.detail.get("duplicate") == "posted_twice"
    }

    def in_scope(tx: Transaction) -> bool:
        return (channel is None or tx.channel == channel) and (
            store is None or tx.store_id == store
        )

    # --- per transaction -----------------------------------------------------------------
    a2p: list[float] = []
    a2p_within = 0
    ful: list[float] = []
    inv: list[float] = []
    orders = with_exception = posted_twice = 0
    for tx in txs:
        anchor = _anchor(tx)
        if anchor is None or not (since <= anchor < until) or not in_scope(tx):
            continue
        if tx.kind == "order":
            orders += 1
            if tx.id in failed_tx or tx.id in with_issue:
                with_exception += 1
            if tx.id in twice:
                posted_twice += 1
            lag = _lag(tx.posted_at, tx.captured_at)
            if lag is not None:
                a2p.append(lag)
                limit = _deadline(policies, "order", tx.channel, "captured", "posted")
                if limit is None or lag <= limit:
                    a2p_within += 1
            lag = _lag(tx.fulfillment_synced_at, handed_over.get(tx.id))
            if lag is not None:
                ful.append(lag)
        elif tx.kind == "inventory_update":
            lag = _lag(tx.inventory_published_at, tx.inventory_adjusted_at)
            if lag is not None:
                inv.append(lag)

    # --- per hop ---------------------------------------------------------------------------
    dups: dict[int, int] = defaultdict(int)
    for hop_id in DuplicateDelivery.objects.values_list("hop_id", flat=True):
        dups[hop_id] += 1
    per_op: dict[tuple[str, str], list[Hop]] = defaultdict(list)
    for hop in Hop.objects.filter(stitched__isnull=False):
        if not (since <= hop.start_time < until):
            continue
        owner = tx_by_id.get(first_tx.get(hop.id, -1))
        hop_channel = hop.channel or (owner.channel if owner else "")
        hop_store = hop.store_id or (owner.store_id if owner else "")
        if channel is not None and hop_channel != channel:
            continue
        if store is not None and hop_store != store:
            continue
        if system and hop.system != system:
            continue
        per_op[(hop.system, hop.operation[: compute.OPERATION_MAX])].append(hop)
    rows = []
    deliveries = duplicates = retries = replays = 0
    sources: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (sys_, op), hops in sorted(per_op.items()):
        durations = [max(0.0, float(h.duration_ms or 0.0)) for h in hops]
        p50, p95 = _quantiles(durations, (0.5, 0.95))
        errors = sum(1 for h in hops if h.outcome == ERROR)
        rows.append(
            {
                "system": sys_,
                "operation": op,
                "count": len(hops),
                "error_rate": errors / len(hops),
                "p50_ms": p50,
                "p95_ms": p95,
            }
        )
        d = sum(dups[h.id] for h in hops)
        deliveries += len(hops) + d
        duplicates += d
        sources[sys_][0] += len(hops) + d
        sources[sys_][1] += d
        retries += sum(1 for h in hops if h.retry_attempt > 0)
        replays += sum(1 for h in hops if h.replay)

    worst = max(
        ((d / n, sys_) for sys_, (n, d) in sources.items() if n >= registry.MIN_SOURCE_DELIVERIES),
        default=None,
    )

    # --- backlog -----------------------------------------------------------------------------
    overrides = settings.TRIAGE_STAGE_SYSTEMS
    by_stage: dict[str, set[int]] = defaultdict(set)
    for tx in txs:
        anchor = _anchor(tx)
        if anchor is None or not (since <= anchor < until) or not in_scope(tx):
            continue
        stages = {}
        for stage in STAGE_COLUMNS:
            t = getattr(tx, f"{stage}_at")
            if t is not None and (live_state or t <= until):
                stages[stage] = sla.Reached(at=t)
        for status in sla.overdue(policies, tx.kind, tx.channel, stages, until):
            if system and sla.stage_system(status.stage, overrides) != system:
                continue
            by_stage[status.stage].add(tx.id)
    stuck = set().union(*by_stage.values()) if by_stage else set()

    # --- exceptions ----------------------------------------------------------------------------
    every_tx = {t.id: (t.channel, t.store_id) for t in every}

    def issue_scope(i: Issue) -> bool:
        if system and i.system != system:
            return False
        if channel is None and store is None:
            return True
        held = every_tx.get(i.transaction_id) if i.transaction_id else None
        if held is None:
            return False
        return (channel is None or held[0] == channel) and (store is None or held[1] == store)

    aging = {"open": 0, "under_1h": 0, "h1_to_4": 0, "h4_to_24": 0, "over_24h": 0}
    oldest: datetime | None = None
    resolved: list[float] = []
    for i in issues:
        if not issue_scope(i):
            continue
        if live_state:
            is_open = i.state in UNRESOLVED and i.opened_at <= until
        else:
            is_open = i.opened_at <= until and (i.resolved_at is None or i.resolved_at > until)
        if is_open:
            aging["open"] += 1
            aging[sla.age_bucket((until - i.opened_at).total_seconds())] += 1
            oldest = i.opened_at if oldest is None or i.opened_at < oldest else oldest
        if since <= i.opened_at < until and i.state == RESOLVED and i.resolved_at is not None:
            resolved.append((i.resolved_at - i.opened_at).total_seconds())
    aging_out: dict[str, Any] = dict(aging)
    aging_out["oldest_s"] = (until - oldest).total_seconds() if oldest is not None else None

    # value at risk: every open exception's transaction, its amount summed per currency
    money = {t.id: (t.currency, t.amount, t.channel, t.store_id) for t in every}
    risk_orders: set[int] = set()
    risk_currency: dict[str, Decimal] = defaultdict(Decimal)
    risk_system: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    risk_stage: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    seen_system: set[tuple[str, int]] = set()
    seen_stage: set[tuple[str, int]] = set()
    for i in issues:
        if i.transaction_id is None or i.transaction_id not in money or i.state == WITHDRAWN:
            continue
        cur, amount, ch, st = money[i.transaction_id]
        if (channel is not None and ch != channel) or (store is not None and st != store):
            continue
        if system and i.system != system:
            continue
        if live_state:
            if i.state not in UNRESOLVED or i.opened_at > until:
                continue
        elif i.opened_at > until or (i.resolved_at is not None and i.resolved_at <= until):
            continue
        new = i.transaction_id not in risk_orders
        risk_orders.add(i.transaction_id)
        if amount is None or not cur:
            continue
        if new:
            risk_currency[cur] += amount
        sys_name = i.system or "unknown"
        if (sys_name, i.transaction_id) not in seen_system:
            seen_system.add((sys_name, i.transaction_id))
            risk_system[sys_name][cur] += amount
        stage_name = i.stage or i.kind
        if (stage_name, i.transaction_id) not in seen_stage:
            seen_stage.add((stage_name, i.transaction_id))
            risk_stage[stage_name][cur] += amount

    def floats(sums: dict[str, Decimal]) -> dict[str, float]:
        return {k: float(v) for k, v in sorted(sums.items())}

    # cancellations: each cancelled order's own timeline, read whole
    requested = succeeded = 0
    for tx in txs:
        if tx.kind != "order" or not in_scope(tx):
            continue
        if tx.cancelled_at is None or not since <= tx.cancelled_at < until:
            continue
        requested += 1
        events = timeline.get(tx.id, [])
        shipped = any(s == "shipped" for s, _ in events)
        downstream_ok = all(
            ("cancelled", sys_name) in events
            for sys_name in ("erp", "wms")
            if any(held == sys_name for _, held in events)
        )
        succeeded += not shipped and downstream_ok

    # reroutes: each shipped order's hops read whole, their attributes in Python
    shipments = rerouted = 0
    for tx in txs:
        if tx.kind != "order" or not in_scope(tx) or tx.shipped_at is None:
            continue
        if not since <= tx.shipped_at < until:
            continue
        shipments += 1
        where = ""
        for _, _, sys_name, attrs in sorted(moves.get(tx.id, []), key=lambda m: m[:2]):
            if str(attrs.get(REROUTE, "")).lower() in ("true", "1", "yes"):
                rerouted += 1
                break
            loc = attrs.get(LOCATION_ID)
            if sys_name == "wms" and loc:
                if where and str(loc) != where:
                    rerouted += 1
                    break
                where = str(loc)

    # inventory drift: every latest snapshot, paired in Python
    truth = settings.INVENTORY_SOURCE_OF_TRUTH
    window_s = settings.INVENTORY_DRIFT_WINDOW_S
    snaps = list(InventorySnapshot.objects.all())
    held = {(x.sku, x.location): x for x in snaps if x.system == truth}
    pairs = off = units_off = 0
    for x in snaps:
        src = held.get((x.sku, x.location))
        if x.system == truth or src is None or not since <= x.as_of < until:
            continue
        if (store is not None and x.location != store) or (system and x.system != system):
            continue
        if abs((src.as_of - x.as_of).total_seconds()) > window_s:
            continue
        pairs += 1
        if abs(x.quantity - src.quantity) > settings.INVENTORY_DRIFT_UNITS:
            off += 1
            units_off += abs(x.quantity - src.quantity)

    # refunds: each refunded transaction against its own policy's deadline
    refunds = refunds_ok = 0
    for tx in txs:
        if tx.kind not in ("order", "return") or not in_scope(tx) or tx.refunded_at is None:
            continue
        if not since <= tx.refunded_at < until:
            continue
        limit = _deadline(policies, tx.kind, tx.channel, "refunded", "refund_settled")
        settled_at = tx.refund_settled_at
        if settled_at is None and (limit is None or (at - tx.refunded_at).total_seconds() < limit):
            continue  # not due yet
        refunds += 1
        if settled_at is not None and (
            limit is None or (settled_at - tx.refunded_at).total_seconds() <= limit
        ):
            refunds_ok += 1

    # posting completeness: each captured order's business day, in its store's zone
    store_zone = dict(StoreZone.objects.values_list("store_id", "time_zone"))
    judged = posted_by_day_end = 0
    posting_money: dict[str, list[Decimal]] = {}
    for tx in txs:
        if tx.kind != "order" or not in_scope(tx) or tx.captured_at is None:
            continue
        if not since <= tx.captured_at < until:
            continue
        zone = ZoneInfo(store_zone.get(tx.store_id, settings.RECONCILIATION_TIME_ZONE))
        day = tx.captured_at.astimezone(zone).date()
        # posted before the day ended: posted on that local date (or, oddly, before it)
        in_time = tx.posted_at is not None and tx.posted_at.astimezone(zone).date() <= day
        if not in_time and at.astimezone(zone).date() <= day:
            continue  # its day is still running: not judged yet
        judged += 1
        posted_by_day_end += in_time
        if tx.amount is not None and tx.currency:
            sums = posting_money.setdefault(tx.currency, [Decimal(0), Decimal(0)])
            sums[0] += tx.amount
            if in_time:
                sums[1] += tx.amount

    at_risk = {
        "orders": len(risk_orders),
        "by_currency": floats(risk_currency),
        "by_system": {k: floats(v) for k, v in sorted(risk_system.items())},
        "by_stage": {k: floats(v) for k, v in sorted(risk_stage.items())},
    }

    alert_times: list[float] = []
    for a in AlertSeen.objects.all():
        labels = {"channel": a.channel, "store": a.store, "system": a.system}
        wanted = {"channel": channel, "store": store, "system": system}
        if any(v and labels.get(k) != v for k, v in wanted.items()):
            continue
        if a.resolved_at is not None and since <= a.fired_at < until:
            alert_times.append((a.resolved_at - a.fired_at).total_seconds())

    a50, a95, a99 = _quantiles(a2p, (0.5, 0.95, 0.99))
    f50, f95 = _quantiles(ful, (0.5, 0.95))
    i50, i95 = _quantiles(inv, (0.5, 0.95))
    out: dict[str, dict[str, Any]] = {
        "acceptance_to_posting": {
            "count": len(a2p),
            "p50_s": a50,
            "p95_s": a95,
            "p99_s": a99,
            "within_sla": (a2p_within / len(a2p)) if a2p else None,
        },
        "inventory_sync_lag": {
            "count": len(inv),
            "p50_s": i50,
            "p95_s": i95,
            "max_s": max(inv) if inv else None,
        },
        "fulfillment_propagation": {"count": len(ful), "p50_s": f50, "p95_s": f95},
        "exception_rate": {
            "orders": orders,
            "with_exception": with_exception,
            "rate": (with_exception / orders) if orders else None,
        },
        "duplicate_rate": {
            "deliveries": deliveries,
            "duplicates": duplicates,
            "rate": (duplicates / deliveries) if deliveries else None,
            "posted_twice": posted_twice,
            "by_source": {
                sys_: {"deliveries": n, "duplicates": d, "rate": d / n}
                for sys_, (n, d) in sorted(sources.items())
                if n
            },
            "worst_source_rate": worst[0] if worst else None,
            "worst_source": worst[1] if worst else "",
        },
        "reconciliation_backlog": {
            "total": len(stuck),
            "by_stage": {s: len(v) for s, v in sorted(by_stage.items()) if v},
        },
        "exception_aging": aging_out,
        "refund_reconciliation": {
            "refunds": refunds,
            "settled_within_sla": refunds_ok,
            "rate": (refunds_ok / refunds) if refunds else None,
        },
        "cancellation_success": {
            "requested": requested,
            "succeeded": succeeded,
            "rate": (succeeded / requested) if requested else None,
        },
        "posting_completeness": {
            "orders": judged,
            "posted": posted_by_day_end,
            "rate": (posted_by_day_end / judged) if judged else None,
            "by_currency": {
                cur: {"value": float(v), "value_posted": float(p)}
                for cur, (v, p) in sorted(posting_money.items())
            },
        },
        "reroute_rate": {
            "shipments": shipments,
            "rerouted": rerouted,
            "rate": (rerouted / shipments) if shipments else None,
        },
        "inventory_drift": {
            "pairs": pairs,
            "off": off,
            "rate": (off / pairs) if pairs else None,
            "units_off": units_off,
        },
        "value_at_risk": at_risk,
        "retries": {"retries": retries, "replays": replays},
        "hop_health": {"rows": rows},
        "resolution_time": {
            "alerts_mean_s": (sum(alert_times) / len(alert_times)) if alert_times else None,
            "exceptions_mean_s": (sum(resolved) / len(resolved)) if resolved else None,
        },
    }
    assert set(out) == set(registry.KPIS)
    return out


def compare(
    rollup: dict[str, dict[str, Any]],
    twin: dict[str, dict[str, Any]],
    *,
    rel: float = 0.01,
) -> list[str]:
    """Every disagreement between two answers: quantile fields (``p*``) within ``rel``
    relative, other numbers to float precision (means to the microsecond databases keep),
    structures exactly. Empty: they agree."""
    problems: list[str] = []

    def same(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if set(a) != set(b):
                problems.append(f"{path}: keys {sorted(a)} != {sorted(b)}")
            for k in set(a) & set(b):
                same(f"{path}.{k}", a[k], b[k])
            return
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                problems.append(f"{path}: {len(a)} rows != {len(b)}")
            for n, (x, y) in enumerate(zip(a, b, strict=False)):
                same(f"{path}[{n}]", x, y)
            return
        if a is None or b is None or isinstance(a, str) or isinstance(b, str):
            if a != b:
                problems.append(f"{path}: {a!r} != {b!r}")
            return
        leaf = path.rsplit(".", 1)[-1]
        tolerance = rel if leaf.startswith("p") and leaf[1:3].isdigit() else 1e-9
        # databases average durations in whole microseconds
        slack = 1e-6 if leaf.endswith("mean_s") else 1e-9
        if abs(float(a) - float(b)) > tolerance * abs(float(b)) + slack:
            problems.append(f"{path}: {a!r} != {b!r}")

    same("kpis", rollup, twin)
    return problems
