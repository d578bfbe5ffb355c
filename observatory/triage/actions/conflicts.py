"""Duplicates and conflicts: the links the stitcher refused (an order posted to the ERP
twice, captured twice, or a hop whose keys clash with its transaction's), and captures of
one transaction under two channel order ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from observatory.transactions.models import Conflict, StageReached
from observatory.triage import queries
from observatory.triage.actions.common import _BATCH, SweepResult, _insert
from observatory.triage.deadlines import final_winners
from observatory.triage.models import CONFLICT, DUPLICATE, Issue
from tracing import conventions as c

#: channel order ids: two captures of one transaction with two of these are a duplicate
CHANNEL_ORDER_KINDS = (c.ORDER_NUMBER, c.SHOPIFY_ORDER_ID, c.MARKETPLACE_ORDER_ID, c.POS_RECEIPT)


def _open_from_conflicts(at: datetime, owner: Callable[[str], str], result: SweepResult) -> None:
    while True:
        batch = list(
            Conflict.objects.filter(triaged_at__isnull=True)
            .select_related("hop")
            .order_by("id")[:_BATCH]
        )
        if not batch:
            return
        hop_ids = [x.hop_id for x in batch]
        captures = set(
            StageReached.objects.filter(hop_id__in=hop_ids, stage="captured").values_list(
                "hop_id", flat=True
            )
        )
        tx_ids = {
            t for x in batch for t in (x.transaction_id, x.other_transaction_id) if t is not None
        }
        winners = final_winners(tx_ids)
        labels = queries.transaction_labels(winners.values())
        captured_held = _held_keys(
            f"{DUPLICATE}:captured:{winners[x.transaction_id]}"
            for x in batch
            if x.transaction_id is not None
        )
        rows = []
        refusals: dict[str, list[dict[str, Any]]] = {}
        hops = {x.hop_id: x.hop for x in batch}
        for x in batch:
            tx = winners.get(x.transaction_id) if x.transaction_id else None
            other = winners.get(x.other_transaction_id) if x.other_transaction_id else None
            label = labels.get(tx, "") if tx else ""
            label = label or (labels.get(other, "") if other else "") or "unlinked hop"
            hop = x.hop
            sides = {
                "conflict_id": x.id,
                "kind": x.kind,
                "value": x.value,
                "existing_value": x.existing_value,
                "hop_id": x.hop_id,
                "system": hop.system,
                "operation": hop.operation,
                "transaction_id": tx,
                "other_transaction_id": other,
            }
            captured = hop.stage == "captured" or hop.id in captures
            if x.kind == c.ERP_SALES_ORDER:
                kind, key = DUPLICATE, f"{CONFLICT}:{x.id}"
                summary = (
                    f"{label}: posted to the ERP twice ({x.kind} {x.existing_value} and {x.value})"
                )
                sides["duplicate"] = "posted_twice"
            elif x.kind in CHANNEL_ORDER_KINDS and captured and tx is not None:
                kind, key = DUPLICATE, f"{DUPLICATE}:captured:{tx}"
                if key in captured_held:
                    continue
                captured_held.add(key)
                summary = f"{label}: captured twice ({x.kind} {x.existing_value} and {x.value})"
                sides["duplicate"] = "captured_twice"
            else:
                # one exception per refused link, however many kinds clash in it
                refusals.setdefault(f"{CONFLICT}:hop:{x.hop_id}", []).append(
                    {**sides, "label": label}
                )
                continue
            rows.append(
                Issue(
                    kind=kind,
                    transaction_id=tx,
                    hop_id=x.hop_id,
                    system=hop.system,
                    operation=hop.operation[:255],
                    owner=owner(hop.system),
                    summary=summary,
                    detail=sides,
                    dedupe_key=key,
                    event_at=hop.start_time,
                    opened_at=hop.start_time,
                    detected_at=at,
                )
            )
        _insert(rows)
        for r in rows:
            if r.kind == DUPLICATE:
                result.duplicates_opened += 1
        held = _held_keys(refusals)
        rows = []
        for key, clashes in refusals.items():
            if key in held:  # the rest of a refusal whose first rows an earlier batch took
                continue
            clashes.sort(key=_clash_rank)
            first = clashes[0]
            tx = first["transaction_id"]
            hop = hops[first["hop_id"]]
            rows.append(
                Issue(
                    kind=CONFLICT,
                    transaction_id=tx,
                    hop_id=hop.id,
                    system=hop.system,
                    operation=hop.operation[:255],
                    owner=owner(hop.system),
                    summary=_conflict_summary(first["label"], hop.system, hop.operation, clashes),
                    detail={
                        **{k: v for k, v in first.items() if k != "label"},
                        "clashes": [
                            {k: cl[k] for k in ("conflict_id", "kind", "value", "existing_value")}
                            for cl in clashes
                        ],
                    },
                    dedupe_key=key,
                    event_at=hop.start_time,
                    opened_at=hop.start_time,
                    detected_at=at,
                )
            )
        _insert(rows)
        result.conflicts_opened += len(rows)
        Conflict.objects.filter(id__in=[x.id for x in batch]).update(triaged_at=at)


def _clash_rank(clash: dict[str, Any]) -> tuple[int, str, int]:
    """Channel order ids first (what people name an order by), then by kind and id."""
    kind = clash["kind"]
    rank = CHANNEL_ORDER_KINDS.index(kind) if kind in CHANNEL_ORDER_KINDS else 99
    return (rank, kind, clash["conflict_id"])


def _conflict_summary(
    label: str, system: str, operation: str, clashes: list[dict[str, Any]]
) -> str:
    """``#1005: middleware validate carried order_number #1005, but the transaction already
    has #1004`` (and the other kinds that clashed on the same hop)."""
    first = clashes[0]
    text = (
        f"{label}: {system} {operation} carried {first['kind']} {first['value']}, "
        f"but the transaction already has {first['existing_value']}"
    )
    more = [f"{x['kind']} {x['existing_value']} vs {x['value']}" for x in clashes[1:]]
    return text + (f" (also {', '.join(more)})" if more else "")


def _held_keys(keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` any issue, resolved or not, already has."""
    keys = list(set(keys))
    held: set[str] = set()
    for i in range(0, len(keys), _BATCH):
        held.update(
            Issue.objects.filter(dedupe_key__in=keys[i : i + _BATCH]).values_list(
                "dedupe_key", flat=True
            )
        )
    return held


def _open_captured_twice(
    at: datetime, touched: list[int] | None, owner: Callable[[str], str], result: SweepResult
) -> None:
    stages = StageReached.objects.filter(stage="captured", transaction__merged_into__isnull=True)
    if touched is not None:
        stages = stages.filter(transaction_id__in=touched)
    hops_of: dict[int, dict[int, tuple[str, datetime]]] = defaultdict(dict)
    for tx_id, hop_id, system, when in stages.values_list(
        "transaction_id", "hop_id", "system", "at"
    ):
        hops_of[tx_id][hop_id] = (system, when)
    several = {tx: hs for tx, hs in hops_of.items() if len(hs) > 1}
    if not several:
        return
    keys = queries.hop_keys_of([h for hs in several.values() for h in hs], CHANNEL_ORDER_KINDS)
    found: dict[int, tuple[str, list[str], int, str]] = {}
    for tx, hs in several.items():
        values: dict[str, dict[str, int]] = defaultdict(dict)
        for hop_id in sorted(hs, key=lambda h: hs[h][1]):
            for kind, value in keys.get(hop_id, []):
                values[kind].setdefault(value, hop_id)
        for kind in CHANNEL_ORDER_KINDS:
            if len(values.get(kind, {})) > 1:
                last_hop = list(values[kind].values())[-1]
                found[tx] = (kind, list(values[kind]), last_hop, hs[last_hop][0])
                break
    held = _held_keys(f"{DUPLICATE}:captured:{tx}" for tx in found)
    fresh = {tx: f for tx, f in found.items() if f"{DUPLICATE}:captured:{tx}" not in held}
    labels = queries.transaction_labels(fresh)
    rows = []
    for tx, (kind, seen, hop_id, system) in fresh.items():
        rows.append(
            Issue(
                kind=DUPLICATE,
                transaction_id=tx,
                hop_id=hop_id,
                system=system,
                owner=owner(system),
                summary=f"{labels[tx]}: captured twice ({kind} {' and '.join(seen)})",
                detail={"duplicate": "captured_twice", "kind": kind, "values": seen},
                dedupe_key=f"{DUPLICATE}:captured:{tx}",
                event_at=several[tx][hop_id][1],
                opened_at=several[tx][hop_id][1],
                detected_at=at,
            )
        )
    result.duplicates_opened += _insert(rows)
