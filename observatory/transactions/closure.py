"""The stitcher's reads: whole raw components of keys, and the hops and transaction keys
they hold (``actions.py`` claims the hops, resolves, and hands the write to ``writer.py``).

Components are read set-based, a couple of statements per round of the closure (one per
link distance, usually two to five), never a query per hop; on PostgreSQL the big arrays
go as text literals bound on the server and rows come back in binary (``lib.bulk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db.models.fields.json import KeyTextTransform

from observatory.hops.models import Hop as HopRow
from observatory.hops.models import HopKey
from observatory.lib import bulk
from observatory.transactions.models import TransactionKey
from observatory.transactions.stitch import KeyPair, links_and_fanouts
from tracing import conventions
from tracing.conventions import SHARED_KINDS

HOP_TABLE = HopRow._meta.db_table
HOPKEY_TABLE = HopKey._meta.db_table
TXKEY_TABLE = TransactionKey._meta.db_table


class Hop(NamedTuple):
    """What the stitcher reads of a hop."""

    id: int
    uid: str
    start_time: datetime
    system: str
    operation: str
    stage: str
    platform_status: str
    outcome: str
    channel: str
    store_id: str
    amount: Decimal | None
    currency: str
    received_at: datetime
    #: ``retail.location_id`` as sent (where a warehouse fulfils), from the attributes
    location: str | None = None
    #: ``retail.reroute`` as sent: a truthy value says the hop moved the order elsewhere
    reroute: Any = None


#: the hop columns read; ``location`` and ``reroute`` come out of the attributes
HOP_FIELDS = Hop._fields[:-2]
_ATTRS = (conventions.LOCATION_ID, conventions.REROUTE)


def closure(
    seeds: set[KeyPair],
    keys_of: dict[int, list[tuple[str, str, bool]]],
    lf: dict[int, tuple[list[KeyPair], list[KeyPair]]],
    near: set[int] | None = None,
) -> tuple[set[KeyPair], set[int]]:
    """Every key of the raw components of ``seeds``, and every hop holding one of them.

    A hop reached through one of its linking keys brings all its linking keys in; a hop
    reached through a fan-out key brings nothing (fan-out never links). Fills ``keys_of``
    and ``lf`` (linking and fan-out keys) for every hop it meets; ``near``, when given,
    is the first round's answer (:func:`hops_near`). A round per link
    distance (usually two to five): one query on PostgreSQL, two on SQLite. (A recursive
    CTE was tried: the planner cannot size its work table and scans the value index.)
    """
    frontier = {k for k in seeds if k[0] not in SHARED_KINDS}
    keys: set[KeyPair] = set()
    members: set[int] = set()
    while frontier:
        keys |= frontier
        if near is not None:  # already fetched: the hops sharing a value with the seeds
            matched, near = near, None
        else:
            matched = hops_holding(frontier, keys_of)
        nxt: set[KeyPair] = set()
        for hop_id in matched:
            if hop_id not in lf:
                lf[hop_id] = links_and_fanouts(keys_of[hop_id])
            link, fan = lf[hop_id]
            if any(k in frontier for k in link):
                members.add(hop_id)
                nxt.update(k for k in link if k not in keys)
            elif any(k in frontier for k in fan):
                members.add(hop_id)
        frontier = nxt
    return keys, members


def hops_near(hop_ids: Sequence[int], keys_of: dict[int, list[tuple[str, str, bool]]]) -> set[int]:
    """Ids of ``hop_ids`` and of every hop sharing a non-shared key value with them;
    ``keys_of`` gets the full key list of each (one query on PostgreSQL)."""
    if not bulk.postgresql():
        keys_of.update(keys_by_hop(hop_ids))
        pairs = {(k, v) for h in hop_ids for k, v, _f in keys_of[h] if k not in SHARED_KINDS and v}
        return hops_holding(pairs, keys_of) | set(hop_ids)
    # = ANY(ARRAY(...)) keeps the planner on the indexes (IN / OR made it scan)
    rows = bulk.run(
        f"SELECT hop_id, kind, value, fanout FROM {HOPKEY_TABLE} WHERE hop_id = ANY(ARRAY("
        "SELECT unnest(%s::bigint[]) UNION "
        f"SELECT n.hop_id FROM {HOPKEY_TABLE} n WHERE n.value = ANY(ARRAY("
        f"SELECT c.value::text FROM {HOPKEY_TABLE} c WHERE c.hop_id = ANY(%s::bigint[]) "
        "AND c.kind <> ALL(%s) AND c.value <> ''))))",
        [bulk.int_array(hop_ids), bulk.int_array(hop_ids), sorted(SHARED_KINDS)],
    )
    found: dict[int, list[tuple[str, str, bool]]] = {}
    for hop_id, kind, value, fanout in rows:
        found.setdefault(hop_id, []).append((kind, value, fanout))
    keys_of.update(found)
    return set(found) | set(hop_ids)


def hops_holding(pairs: set[KeyPair], keys_of: dict[int, list[tuple[str, str, bool]]]) -> set[int]:
    """Ids of the hops holding a value of ``pairs`` (any kind: the caller checks kinds);
    ``keys_of`` gets the full key list of each one it did not know."""
    values = sorted({v for _, v in pairs})
    if bulk.postgresql():
        rows = bulk.run(
            f"SELECT hop_id, kind, value, fanout FROM {HOPKEY_TABLE} WHERE hop_id = ANY("
            f"ARRAY(SELECT hop_id FROM {HOPKEY_TABLE} WHERE value = ANY(%s::text[])))",
            [bulk.text_array(values)],
        )
        found: dict[int, list[tuple[str, str, bool]]] = {}
        for hop_id, kind, value, fanout in rows:
            found.setdefault(hop_id, []).append((kind, value, fanout))
        for hop_id, hop_keys in found.items():
            keys_of.setdefault(hop_id, hop_keys)
        return set(found)
    hop_ids = {r[0] for r in bulk.select_in(HOPKEY_TABLE, "hop_id", "value", values)}
    unknown = sorted(h for h in hop_ids if h not in keys_of)
    if unknown:
        keys_of.update(keys_by_hop(unknown))
    return hop_ids


def keys_by_hop(hop_ids: Sequence[int]) -> dict[int, list[tuple[str, str, bool]]]:
    out: dict[int, list[tuple[str, str, bool]]] = {h: [] for h in hop_ids}
    for hop_id, kind, value, fanout in bulk.select_in(
        HOPKEY_TABLE, "hop_id, kind, value, fanout", "hop_id", hop_ids
    ):
        out[hop_id].append((kind, value, bool(fanout)))
    return out


def txkeys_matching(pairs: set[KeyPair]) -> list[tuple[str, str, int, int]]:
    """Transaction key rows (kind, value, id, transaction) for ``pairs``."""
    values = sorted({v for _, v in pairs})
    rows = bulk.select_in(TXKEY_TABLE, "kind, value, id, transaction_id", "value", values)
    return [(r[0], r[1], r[2], r[3]) for r in rows if (r[0], r[1]) in pairs]


def load_hops(hop_ids: Sequence[int]) -> dict[int, Hop]:
    out: dict[int, Hop] = {}
    if bulk.postgresql():  # psycopg gives aware datetimes and Decimals
        cols = ", ".join((*HOP_FIELDS, *(f"attributes->>'{a}'" for a in _ATTRS)))
        for row in bulk.select_in(HOP_TABLE, cols, "id", hop_ids):
            out[row[0]] = Hop(*row)
        return out
    extracted = {f"_a{i}": KeyTextTransform(a, "attributes") for i, a in enumerate(_ATTRS)}
    for chunk in bulk.chunks(hop_ids):
        rows = HopRow.objects.filter(id__in=chunk).annotate(**extracted)
        for row in rows.values_list(*HOP_FIELDS, *extracted):
            out[row[0]] = Hop(*row)
    return out
