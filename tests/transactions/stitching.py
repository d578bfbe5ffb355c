"""Helpers for the stitcher tests: post hops through the real ingest endpoints, read the
identity graph back as plain sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.test import Client

from observatory.hops.models import Hop
from observatory.transactions.models import Transaction, TransactionHop, TransactionKey
from observatory.transactions.stitch import HopIn

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def event(
    eid: str,
    keys: dict[str, Any],
    *,
    system: str = "erp",
    t: float = 0,
    type: str = "com.acme.test",
    **data: Any,
) -> dict[str, Any]:
    """One structured CloudEvent; ``data`` extras go into ``data`` (stage, platform_status,
    operation, outcome, channel, amount, currency, ...)."""
    return {
        "specversion": "1.0",
        "id": eid,
        "source": "urn:test:stitcher",
        "type": type,
        "time": at(t),
        "data": {"system": system, "keys": keys, **data},
    }


def post_events(client: Client, *events: dict[str, Any]) -> None:
    response = client.post(
        "/api/v1/events",
        orjson.dumps(list(events)),
        content_type="application/cloudevents-batch+json",
    )
    assert response.status_code == 200, response.content
    answer = orjson.loads(response.content)
    assert not answer["rejected"], answer


def live() -> list[Transaction]:
    return list(Transaction.objects.filter(merged_into__isnull=True).order_by("id"))


def partition() -> set[tuple[frozenset[tuple[str, str]], frozenset[int]]]:
    """The live transactions as (keys, hop ids) sets, comparable with
    ``Resolution.partition()``."""
    keys: dict[int, set[tuple[str, str]]] = {}
    for tx, kind, value in TransactionKey.objects.values_list("transaction_id", "kind", "value"):
        keys.setdefault(tx, set()).add((kind, value))
    hops: dict[int, set[int]] = {}
    for tx, hop in TransactionHop.objects.values_list("transaction_id", "hop_id"):
        hops.setdefault(tx, set()).add(hop)
    ids = {t.id for t in live()}
    assert set(keys) <= ids and set(hops) <= ids, "rows on merged-away transactions"
    return {(frozenset(keys.get(i, ())), frozenset(hops.get(i, ()))) for i in ids}


def hop_inputs() -> list[HopIn]:
    """Every stored hop as the pure resolver takes it."""
    out = []
    for h in Hop.objects.prefetch_related("keys").order_by("id"):
        keys = tuple((k.kind, k.value, k.fanout) for k in h.keys.all())
        out.append(HopIn(h.id, h.uid, h.start_time, h.system, keys))
    return out


def tx_of(kind: str, value: str) -> Transaction:
    return (
        TransactionKey.objects.select_related("transaction").get(kind=kind, value=value).transaction
    )


def assert_consistent() -> None:
    """Each live transaction's timeline, columns and memberships agree with each other."""
    from observatory.transactions.models import STAGE_COLUMNS, StageReached, stage_field

    links: dict[int, set[int]] = {}
    for tx, hop in TransactionHop.objects.values_list("transaction_id", "hop_id"):
        links.setdefault(tx, set()).add(hop)
    firsts: dict[int, dict[str, datetime]] = {}
    for tx, hop, stage, t in StageReached.objects.values_list(
        "transaction_id", "hop_id", "stage", "at"
    ):
        assert hop in links.get(tx, set()), f"stage {stage} of hop {hop} outside transaction {tx}"
        got = firsts.setdefault(tx, {})
        got[stage] = min(got.get(stage, t), t)
    for t in Transaction.objects.all():
        if t.merged_into_id:
            assert t.hop_count == 0 and not links.get(t.id) and not firsts.get(t.id)
            continue
        assert t.hop_count == len(links.get(t.id, ()))
        for stage in STAGE_COLUMNS:
            assert getattr(t, stage_field(stage)) == firsts.get(t.id, {}).get(stage), (t.id, stage)
