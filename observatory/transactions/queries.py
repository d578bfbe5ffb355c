"""Reads on the identity graph: lookup by any key, prefix search, an order's timeline.

Every function runs a fixed number of queries whatever the number of hops or keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Prefetch
from django.db.models.expressions import RawSQL

from observatory.hops.models import DuplicateDelivery, Hop
from observatory.lib import bulk
from observatory.lib.clock import Clock, now
from observatory.lib.rows import fetch
from observatory.transactions.models import (
    Conflict,
    Merge,
    StageReached,
    Transaction,
    TransactionKey,
)
from tracing.conventions import KEY_KIND_PATTERN

_KIND_RE = re.compile(KEY_KIND_PATTERN)
_TXKEY = TransactionKey._meta.db_table
#: How many merged_into steps are followed (merges are flattened, so one is the norm).
_MAX_FOLLOW = 8


@dataclass
class Lookup:
    """What a key identifies: one ``transaction``, or several ``candidates``, or neither
    (404)."""

    transaction: Transaction | None = None
    candidates: list[Transaction] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.transaction is not None


def parse_key(key: str) -> tuple[str | None, str]:
    """``"kind=value"`` -> (kind, value); a bare value -> (None, value).

    Only a lower_snake_case word before the first ``=`` makes a kind, so a value that
    itself holds ``=`` (a base64 id) stays a bare value.
    """
    key = key.strip()
    kind, sep, value = key.partition("=")
    if sep and value and _KIND_RE.match(kind):
        return kind, value.strip()
    return None, key


def bare_variants(value: str) -> list[str]:
    """The values a bare lookup tries: as given, and with or without a leading ``#``."""
    out = [value]
    if value.startswith("#"):
        out.append(value[1:])
    else:
        out.append(f"#{value}")
    return [v for v in out if v]


def lookup(key: str) -> Lookup:
    """The transaction ``key`` identifies (``GET /api/v1/orders/{key}``, docs/api.md).

    ``kind=value`` matches that kind exactly; a bare value matches any kind, as given or
    with/without a leading ``#`` (``1001`` and ``#1001`` both find order number
    ``#1001``). Transactions merged away are followed to the one they were merged into.
    One query (the keys are a subquery of it, written by hand as every lookup runs it:
    ``lib.rows``), and one more per step of merges followed.
    """
    kind, value = parse_key(key)
    if not value:
        return Lookup()
    if kind:
        keys, params = "value = %s AND kind = %s", [value, kind]
    else:
        params = bare_variants(value)
        keys = f"value IN ({', '.join(['%s'] * len(params))})"
    matched = fetch(
        Transaction, f"id IN (SELECT transaction_id FROM {_TXKEY} WHERE {keys})", params, "id"
    )
    found = _live(matched)
    if len(found) == 1:
        return Lookup(transaction=found[0])
    return Lookup(candidates=found)


def get_transaction(tx_id: int) -> Transaction | None:
    """A transaction by id, following ``merged_into`` to the live one."""
    found = _live(list(Transaction.objects.filter(id=tx_id)))
    return found[0] if found else None


def _live(matched: list[Transaction]) -> list[Transaction]:
    """The live transactions for ``matched`` (merged ones followed), by id, deduplicated."""
    by_id = {t.id: t for t in matched}
    for _ in range(_MAX_FOLLOW):
        pending = {t.merged_into_id for t in by_id.values() if t.merged_into_id}
        pending -= by_id.keys()
        if not pending:
            break
        by_id.update({t.id: t for t in Transaction.objects.filter(id__in=pending)})
    out: dict[int, Transaction] = {}
    for t0 in matched:
        t: Transaction | None = t0
        for _ in range(_MAX_FOLLOW):
            if t is None or not t.merged_into_id:
                break
            t = by_id.get(t.merged_into_id)
        if t is not None and not t.merged_into_id:
            out[t.id] = t
    return sorted(out.values(), key=lambda t: t.id)


@dataclass
class SearchHit:
    """One transaction matching a search, through one of its keys."""

    transaction: Transaction
    kind: str
    value: str
    stage: str
    #: since its first hop (business time); None when it has no hop
    age: timedelta | None


def search(prefix: str, limit: int = 20, *, clock: Clock = now) -> list[SearchHit]:
    """Transactions with a key value starting with ``prefix`` (``kind=`` narrows the kind),
    tried with and without a leading ``#``; newest first, one hit per transaction.

    One query (a prefix range scan on the key-value index, joined to the transaction).
    """
    kind, value = parse_key(prefix)
    if not value:
        return []
    qs = TransactionKey.objects.select_related("transaction")
    if kind:
        qs = qs.filter(kind=kind)
    variants = bare_variants(value)
    if bulk.postgresql():
        # (a plan for PostgreSQL's planner) each variant's first rows in the order of the value index, which it serves
        # without reading further: "ORDER BY value" over "a% OR b%" sorted every match
        # (a million for "INV-" at a million orders: a second; bench/lookup.py)
        cond = qs.filter(id__in=_first_ids(kind, variants, limit * 4))
    else:
        cond = qs.filter(value__startswith=variants[0])
        for v in variants[1:]:
            cond = cond | qs.filter(value__startswith=v)
    rows = list(cond.order_by("value")[: limit * 4])
    at = clock()
    hits: dict[int, SearchHit] = {}
    for row in rows:
        t = row.transaction
        if t.id in hits or t.merged_into_id:
            continue
        age = at - t.first_hop_at if t.first_hop_at else None
        hits[t.id] = SearchHit(t, row.kind, row.value, t.current_stage, age)
    ordered = sorted(
        hits.values(),
        key=lambda h: (h.transaction.first_hop_at is not None, h.transaction.first_hop_at or at),
        reverse=True,
    )
    return ordered[:limit]


def _first_ids(kind: str | None, variants: list[str], n: int) -> RawSQL:
    """The ids of the first ``n`` keys (in the order of the ``txkey_value`` index) whose
    value starts with each of ``variants``, as a subquery (PostgreSQL)."""
    arms, params = [], []
    for v in variants:
        like = v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        arms.append(
            f"(SELECT id FROM {_TXKEY} WHERE value LIKE %s"
            + (" AND kind = %s" if kind else "")
            + " ORDER BY value USING ~<~ LIMIT %s)"
        )
        params += [like, kind, n] if kind else [like, n]
    return RawSQL(" UNION ALL ".join(arms), params)


@dataclass
class Timeline:
    """Everything the order page and ``GET /api/v1/orders/{key}`` show of a transaction
    (exceptions are triage's and come from there)."""

    transaction: Transaction
    keys: list[TransactionKey]
    stages: list[StageReached]
    #: every member hop in business-time order, each with ``keys`` prefetched
    hops: list[Hop]
    duplicates: list[DuplicateDelivery]
    merges: list[Merge]
    conflicts: list[Conflict]


def timeline(tx: Transaction) -> Timeline:
    """The timeline data of ``tx``: six queries, however many hops and keys it has."""
    keys = list(tx.keys.order_by("kind", "value"))
    stages = list(StageReached.objects.filter(transaction=tx).order_by("at", "id"))
    hops = list(
        Hop.objects.filter(transaction_links__transaction=tx)
        .order_by("start_time", "uid")
        .prefetch_related(Prefetch("keys"))
    )
    duplicates = list(
        DuplicateDelivery.objects.filter(hop__transaction_links__transaction=tx).order_by(
            "received_at", "id"
        )
    )
    merges = list(Merge.objects.filter(winner=tx).order_by("at", "id"))
    conflicts = list(
        Conflict.objects.filter(transaction=tx).union(Conflict.objects.filter(other_transaction=tx))
    )
    conflicts.sort(key=lambda c: (c.at, c.id))
    return Timeline(tx, keys, stages, hops, duplicates, merges, conflicts)
