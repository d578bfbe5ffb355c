"""The stitcher: attach waiting hops to transactions, set-based (issue 3, item 2).

``do_stitch`` claims hops from the queue the hop store fills (``hops.Waiting``) in
chunks, and for each chunk, in one database transaction:

1. claims the chunk (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), taking its hops out of the
   queue and logging them in ``hops.Stitched``;
2. loads the *raw components* the chunk's keys belong to: every hop sharing a linking
   key with them, transitively (stitch.py explains why whole components), with a couple
   of set-based queries per round of the closure, never a query per hop; waiting hops
   found there whose keys all lie inside are claimed too (they are resolved in full);
3. resolves those hops with the pure ``stitch.resolve`` and derives their stages with
   the pure ``stages.derive`` (status maps loaded once per pass);
4. writes the difference against what the database holds: new transactions, keys and
   memberships moved to the surviving transaction (the lowest old id of a group), losers
   marked ``merged_into`` with a ``Merge`` row, stage-reached events appended, the stage
   columns and figures of every touched transaction recomputed from its hops,
   ``Conflict`` rows for refused links, unknown statuses counted, hops marked stitched.

Re-running changes nothing: the result depends only on the set of hops, and only
differences are written. Several stitchers may run at once, and overlap: steps 1 to 3
read only the hop store, which the stitcher never changes, and claims skip each other's
rows, so they run side by side; step 4 reads what the transactions hold and writes, so on
PostgreSQL it takes a transaction-scoped advisory lock first, and chunks write one after
the other, each against everything committed before it (two chunks may resolve the same
order: a chunk reads whole components, including hops another worker claimed; the later
one then finds nothing to change). On SQLite the ``IMMEDIATE`` transaction serialises
whole chunks.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection, transaction

from observatory.hops.actions import do_record_arrivals
from observatory.hops.models import Hop, HopKey, Stitched, TouchedHour, Waiting
from observatory.lib import live, queues
from observatory.lib.clock import Clock, now
from observatory.transactions import stages as st
from observatory.transactions.models import (
    STAGE_COLUMNS,
    Conflict,
    Merge,
    StageReached,
    StatusMap,
    Touched,
    Transaction,
    TransactionHop,
    TransactionKey,
    UnknownStatus,
    stage_field,
)
from observatory.transactions.stitch import HopIn, KeyPair, links_and_fanouts, resolve
from tracing.conventions import ERROR, SHARED_KINDS

LIVE_TOPIC = "transactions.changed"
#: pg advisory lock id of the stitcher ("STITCH" in hex-ish); triage uses its own.
LOCK_ID = 0x57_17C4
_CHUNK = 900  # bound parameters per statement on SQLite

HOP_TABLE = Hop._meta.db_table
HOPKEY_TABLE = HopKey._meta.db_table
WAITING_TABLE = Waiting._meta.db_table
STITCHED_TABLE = Stitched._meta.db_table
TX_TABLE = Transaction._meta.db_table
TXKEY_TABLE = TransactionKey._meta.db_table
TXHOP_TABLE = TransactionHop._meta.db_table
STAGE_TABLE = StageReached._meta.db_table
UNKNOWN_TABLE = UnknownStatus._meta.db_table

#: Transaction columns the stitcher computes from hops (all of them but ids and times).
TX_COLUMNS: tuple[str, ...] = (
    "kind",
    "channel",
    "store_id",
    "current_stage",
    "amount",
    "currency",
    "first_hop_at",
    "last_hop_at",
    "hop_count",
    "failed_hop_count",
    *(stage_field(s) for s in STAGE_COLUMNS),
)
_STAGE_INDEX = {s: TX_COLUMNS.index(stage_field(s)) for s in STAGE_COLUMNS}
#: what a transaction merged away holds: nothing
_EMPTY_TX: tuple[Any, ...] = ("order", "", "", "", None, "", None, None, 0, 0) + (None,) * len(
    STAGE_COLUMNS
)


@dataclass
class StitchResult:
    """What one ``do_stitch`` pass did."""

    hops: int = 0
    transactions_created: int = 0
    merged: int = 0
    conflicts: int = 0
    #: live transactions created or changed
    touched: int = 0
    chunks: int = 0
    unknown_statuses: int = 0
    #: hops fed to the resolver (a hop counts again each time its component is redone)
    resolved_hops: int = 0


class _Hop(NamedTuple):
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


_HOP_FIELDS = _Hop._fields


def do_stitch(*, limit_chunk: int = 5000, clock: Clock = now) -> StitchResult:
    """Stitch every waiting hop, ``limit_chunk`` at a time; each chunk commits on its own.

    Stops when a claim comes back short (the backlog, as this worker sees it, is empty).
    Publishes ``transactions.changed`` after each commit that changed something.
    """
    total = StitchResult()
    maps = load_status_maps()
    while True:
        with transaction.atomic(), _no_cyclic_gc():
            claimed, chunk = _stitch_chunk(limit_chunk, clock, maps)
        if not claimed:
            break
        total.chunks += 1
        total.hops += chunk.hops
        total.transactions_created += chunk.transactions_created
        total.merged += chunk.merged
        total.conflicts += chunk.conflicts
        total.touched += chunk.touched
        total.unknown_statuses += chunk.unknown_statuses
        total.resolved_hops += chunk.resolved_hops
        if claimed < limit_chunk:
            break
    return total


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A chunk makes some hundred thousand small tuples, lists and dicts without cycles
    (refcounting frees them); the cyclic collector would walk them all again and again
    while they are alive, about a fifth of the chunk's Python time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_status_maps() -> st.StatusMaps:
    """The status maps as data, one query (first row by id wins on a repeated word)."""
    rows = StatusMap.objects.order_by("id").values_list(
        "system", "status", "stage", "transaction_kind"
    )
    return st.StatusMaps(rows)


# --- one chunk ------------------------------------------------------------------------------


def _stitch_chunk(limit: int, clock: Clock, maps: st.StatusMaps) -> tuple[int, StitchResult]:
    result = StitchResult()
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            # many small index lookups: JIT compiling them costs more than they do
            cur.execute("SET LOCAL jit = off")
    at = clock()
    claimed = _claim(limit, at)
    if not claimed:
        return 0, result
    first_claim = len(claimed)

    # 2. the raw components of the chunk's keys
    keys_of: dict[int, list[tuple[str, str, bool]]] = {h: [] for h in claimed}
    near = _hops_near(claimed, keys_of)  # the first round of the closure, from hop ids
    lf = {h: links_and_fanouts(keys) for h, keys in keys_of.items()}
    seeds: set[KeyPair] = set()
    for hop_id in claimed:
        link, fan = lf[hop_id]
        seeds.update(link)
        seeds.update(fan)
    component_keys, members = _closure(seeds, keys_of, lf, near)
    # Waiting hops of these components whose every key is inside them are resolved in
    # full here: claim them too, so a backlog resolves each order about once, not once
    # per chunk holding one of its hops.
    claimed_set = set(claimed)
    complete = [
        h
        for h in members
        if h not in claimed_set
        and all(k in component_keys for k in lf[h][0])
        and all(k in component_keys for k in lf[h][1])
    ]
    claimed.extend(_claim_these(complete, at))
    result.hops = len(claimed)
    hops = _load_hops(sorted(members | set(claimed)))

    # 3. resolve and derive
    inputs = [
        HopIn(h.id, h.uid, h.start_time, h.system, tuple(keys_of[h.id]))
        for h in hops.values()
        if h.id in members
    ]
    # each hop's keys cut down to these components (a fan-out hop also names orders of
    # other components, which are resolved when they are touched themselves)
    split = {
        h.id: (
            [k for k in lf[h.id][0] if k in component_keys],
            [k for k in lf[h.id][1] if k in component_keys],
        )
        for h in inputs
    }
    resolution = resolve(inputs, split)
    result.resolved_hops = len(inputs)
    # a chunk's hops say a few dozen different things: derive each once
    said: dict[tuple[str, str, str, str], st.Derived] = {}
    derived: dict[int, st.Derived] = {}
    for h in hops.values():
        what = (h.system, h.stage, h.platform_status, h.operation)
        d = said.get(what)
        if d is None:
            d = said[what] = st.derive(
                maps,
                system=h.system,
                stage=h.stage,
                platform_status=h.platform_status,
                operation=h.operation,
            )
        derived[h.id] = d

    # 4. write the difference, one chunk at a time: what the transactions hold is read
    # only now, under the lock, so it includes every chunk committed before
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])
    writer = _Writer(hops, derived, inputs, at, result)
    writer.apply(resolution, component_keys)
    _count_unknown(claimed, hops, derived, at, result)
    # hand the changed transactions, and the hours of the hops, to the stages that follow
    queues.enqueue(Touched, "transaction_id", writer.touched | writer.merged_away)
    queues.enqueue(TouchedHour, "hour", (_hour(hops[h].start_time) for h in claimed))
    # the streams' watermarks advance with what the sweep can now see
    do_record_arrivals(
        (h.system, h.store_id, h.start_time, h.received_at) for h in map(hops.__getitem__, claimed)
    )
    if writer.touched:
        ids = sorted(writer.touched)
        live.publish_on_commit(
            LIVE_TOPIC,
            {
                "transactions": ids[:500],
                "count": len(ids),
                "created": result.transactions_created,
                "merged": result.merged,
                "conflicts": result.conflicts,
            },
        )
    return first_claim, result


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _claim(limit: int, at: datetime) -> list[int]:
    """Claim up to ``limit`` waiting hops, oldest id first: take them out of the queue
    (put back if the chunk fails) and log them stitched at ``at``. PostgreSQL: one
    ``DELETE`` over a ``FOR UPDATE SKIP LOCKED`` sub-select, so concurrent claims skip
    each other's rows."""
    if connection.vendor == "postgresql":
        claimed = _dequeue("ORDER BY hop_id LIMIT %s", [limit])
    else:
        claimed = list(
            Waiting.objects.order_by("hop_id")
            .select_for_update(skip_locked=True)
            .values_list("hop_id", flat=True)[:limit]
        )
        _unqueue(claimed)
    _log_stitched(claimed, at)
    return claimed


def _claim_these(hop_ids: Sequence[int], at: datetime) -> list[int]:
    """Those of ``hop_ids`` still waiting, claimed and logged like :func:`_claim`."""
    if not hop_ids:
        return []
    if connection.vendor == "postgresql":
        out = _dequeue("WHERE hop_id = ANY(%s::bigint[])", [_ids(sorted(hop_ids))])
    else:
        out = []
        for chunk in _chunks(sorted(hop_ids), _CHUNK):
            out.extend(Waiting.objects.filter(hop_id__in=chunk).values_list("hop_id", flat=True))
        _unqueue(out)
    _log_stitched(out, at)
    return out


def _closure(
    seeds: set[KeyPair],
    keys_of: dict[int, list[tuple[str, str, bool]]],
    lf: dict[int, tuple[list[KeyPair], list[KeyPair]]],
    near: set[int] | None = None,
) -> tuple[set[KeyPair], set[int]]:
    """Every key of the raw components of ``seeds``, and every hop holding one of them.

    A hop reached through one of its linking keys brings all its linking keys in; a hop
    reached through a fan-out key brings nothing (fan-out never links). Fills ``keys_of``
    and ``lf`` (linking and fan-out keys) for every hop it meets; ``near``, when given,
    is the first round's answer (:func:`_hops_near`). A round per link
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
            matched = _hops_holding(frontier, keys_of)
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


def _hops_near(hop_ids: Sequence[int], keys_of: dict[int, list[tuple[str, str, bool]]]) -> set[int]:
    """Ids of ``hop_ids`` and of every hop sharing a non-shared key value with them;
    ``keys_of`` gets the full key list of each (one query on PostgreSQL)."""
    if connection.vendor != "postgresql":
        keys_of.update(_keys_by_hop(hop_ids))
        pairs = {(k, v) for h in hop_ids for k, v, _f in keys_of[h] if k not in SHARED_KINDS and v}
        return _hops_holding(pairs, keys_of) | set(hop_ids)
    # = ANY(ARRAY(...)) keeps the planner on the indexes (IN / OR made it scan)
    rows = _pg(
        f"SELECT hop_id, kind, value, fanout FROM {HOPKEY_TABLE} WHERE hop_id = ANY(ARRAY("
        "SELECT unnest(%s::bigint[]) UNION "
        f"SELECT n.hop_id FROM {HOPKEY_TABLE} n WHERE n.value = ANY(ARRAY("
        f"SELECT c.value::text FROM {HOPKEY_TABLE} c WHERE c.hop_id = ANY(%s::bigint[]) "
        "AND c.kind <> ALL(%s) AND c.value <> ''))))",
        [_ids(hop_ids), _ids(hop_ids), sorted(SHARED_KINDS)],
    )
    found: dict[int, list[tuple[str, str, bool]]] = {}
    for hop_id, kind, value, fanout in rows:
        found.setdefault(hop_id, []).append((kind, value, fanout))
    keys_of.update(found)
    return set(found) | set(hop_ids)


def _hops_holding(pairs: set[KeyPair], keys_of: dict[int, list[tuple[str, str, bool]]]) -> set[int]:
    """Ids of the hops holding a value of ``pairs`` (any kind: the caller checks kinds);
    ``keys_of`` gets the full key list of each one it did not know."""
    values = sorted({v for _, v in pairs})
    if connection.vendor == "postgresql":
        rows = _pg(
            f"SELECT hop_id, kind, value, fanout FROM {HOPKEY_TABLE} WHERE hop_id = ANY("
            f"ARRAY(SELECT hop_id FROM {HOPKEY_TABLE} WHERE value = ANY(%s::text[])))",
            [_texts(values)],
        )
        found: dict[int, list[tuple[str, str, bool]]] = {}
        for hop_id, kind, value, fanout in rows:
            found.setdefault(hop_id, []).append((kind, value, fanout))
        for hop_id, hop_keys in found.items():
            keys_of.setdefault(hop_id, hop_keys)
        return set(found)
    hop_ids = {r[0] for r in _select_in(HOPKEY_TABLE, "hop_id", "value", values)}
    unknown = sorted(h for h in hop_ids if h not in keys_of)
    if unknown:
        keys_of.update(_keys_by_hop(unknown))
    return hop_ids


class _Writer:
    """Turns a resolution into set-based writes against the existing rows."""

    def __init__(
        self,
        hops: dict[int, _Hop],
        derived: dict[int, st.Derived],
        inputs: list[HopIn],
        at: datetime,
        result: StitchResult,
    ) -> None:
        self.hops = hops
        self.derived = derived
        self.inputs = {h.id: h for h in inputs}
        self.at = at
        self.result = result
        self.touched: set[int] = set()
        #: transactions merged into another by this chunk (they hold nothing any more)
        self.merged_away: set[int] = set()

    def apply(self, resolution: Any, component_keys: set[KeyPair]) -> None:
        groups = resolution.groups
        old_key_rows = _txkeys_matching(component_keys)  # (kind, value, id, tx)
        old_tx_of: dict[KeyPair, int] = {(r[0], r[1]): r[3] for r in old_key_rows}
        old_ids = sorted(set(old_tx_of.values()))
        old_cols = _load_tx_columns(old_ids)
        old_links = _select_in(TXHOP_TABLE, "id, transaction_id, hop_id", "transaction_id", old_ids)
        old_stages = _select_in(
            STAGE_TABLE, "id, transaction_id, hop_id, stage", "transaction_id", old_ids
        )

        # which transaction id each group keeps (the lowest old one still free)
        cands = [sorted({old_tx_of[k] for k in g.keys if k in old_tx_of}) for g in groups]
        order = sorted(range(len(groups)), key=lambda i: (cands[i][0] if cands[i] else 0, i))
        tx_of_group: list[int | None] = [None] * len(groups)
        taken: set[int] = set()
        for i in order:
            free = [c for c in cands[i] if c not in taken]
            if free:
                tx_of_group[i] = free[0]
                taken.add(free[0])
        new_groups = [i for i, t in enumerate(tx_of_group) if t is None]
        for i, tx_id in zip(new_groups, _take_tx_ids(len(new_groups)), strict=True):
            tx_of_group[i] = tx_id
        final: list[int] = [t for t in tx_of_group if t is not None]
        assert len(final) == len(groups)
        self.result.transactions_created = len(new_groups)

        # losers: old transactions no group kept; each goes to the group holding most of
        # its keys
        old_keys_by_tx: dict[int, list[KeyPair]] = defaultdict(list)
        for kind, value, _id, tx in old_key_rows:
            old_keys_by_tx[tx].append((kind, value))
        losers: dict[int, int] = {}
        merges: list[Merge] = []
        for loser in sorted(set(old_ids) - taken):
            share = Counter(resolution.group_of(k) for k in old_keys_by_tx[loser])
            g = min(share, key=lambda i: (-share[i], i))
            winner = final[g]
            losers[loser] = winner
            merges.append(
                Merge(
                    winner_id=winner,
                    loser_id=loser,
                    hop_id=self._merging_hop(groups[g], set(old_keys_by_tx[loser])),
                    keys=sorted([list(k) for k in old_keys_by_tx[loser]]),
                )
            )
        self.result.merged = len(losers)

        # keys
        key_rows_new: list[tuple[Any, ...]] = []
        key_moves: list[tuple[Any, ...]] = []
        old_key_ids = {(r[0], r[1]): r[2] for r in old_key_rows}
        for i, g in enumerate(groups):
            tx = final[i]
            for key in g.keys:
                old = old_tx_of.get(key)
                if old is None:
                    key_rows_new.append((tx, key[0], key[1]))
                elif old != tx:
                    key_moves.append((tx, old_key_ids[key]))

        # memberships
        want_links = {(final[i], hop) for i, g in enumerate(groups) for hop in g.hops}
        have_links = {(r[1], r[2]): r[0] for r in old_links}
        link_deletes = [rid for pair, rid in have_links.items() if pair not in want_links]
        # in hop order: the foreign-key checks at commit then walk the hop table in order
        link_inserts = sorted(want_links - have_links.keys(), key=lambda p: (p[1], p[0]))

        # stage-reached events: append what is missing, move what changed hands
        want_stages: dict[tuple[int, int, str], None] = {}
        for i, g in enumerate(groups):
            for hop in g.hops:
                for stage in self.derived[hop].stages:
                    want_stages[(final[i], hop, stage)] = None
        members_of: dict[int, set[int]] = {final[i]: set(g.hops) for i, g in enumerate(groups)}
        where: dict[tuple[int, str], list[int]] = defaultdict(list)
        for tx, hop, stage in want_stages:
            where[(hop, stage)].append(tx)
        have_stages = {(r[1], r[2], r[3]): r[0] for r in old_stages}
        stage_moves: list[tuple[int, int]] = []
        stage_deletes: list[int] = []
        extra_stages: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for (tx, hop, stage), rid in have_stages.items():
            if (tx, hop, stage) in want_stages:
                continue
            target = next(
                (
                    t
                    for t in where.get((hop, stage), ())
                    if (t, hop, stage) in want_stages and (t, hop, stage) not in have_stages
                ),
                None,
            )
            if target is not None:
                stage_moves.append((target, rid))
                del want_stages[(target, hop, stage)]  # satisfied by the move
            elif hop in members_of.get(tx, ()):
                extra_stages[tx].append((hop, stage))  # a map changed since: history stays
            else:
                stage_deletes.append(rid)
        stage_inserts = [
            (tx, stage, self.hops[hop].start_time, self.hops[hop].system, hop)
            for (tx, hop, stage) in want_stages
            if (tx, hop, stage) not in have_stages
        ]

        # the transactions' own columns; updated_at moves whenever anything of theirs did
        changed = (
            {t for t, _ in key_moves}
            | {r[0] for r in key_rows_new}
            | {t for t, _ in link_inserts}
            | {t for t, _ in stage_moves}
            | {r[0] for r in stage_inserts}
        )
        tx_inserts: list[tuple[Any, ...]] = []
        tx_updates: list[tuple[Any, ...]] = []
        for i, g in enumerate(groups):
            tx = final[i]
            cols = self._columns(g, tx, extra_stages.get(tx, ()))
            if tx not in old_cols:
                tx_inserts.append((tx, *cols))
                self.touched.add(tx)
            elif old_cols[tx] != cols or tx in changed:
                tx_updates.append((*cols, tx))
                self.touched.add(tx)
        self.touched.update(losers.values())
        self.merged_away = set(losers)
        self.result.touched = len(self.touched)

        # conflicts, with the transactions on each side
        conflicts = [
            Conflict(
                hop_id=c.hop,
                kind=c.kind,
                value=c.value,
                existing_value=c.existing_value,
                transaction_id=_tx_for(resolution, final, (c.kind, c.existing_value)),
                other_transaction_id=_tx_for(resolution, final, (c.kind, c.value)),
            )
            for c in resolution.conflicts
        ]

        # --- the writes, each one statement (or one executemany) ---------------------------
        at = self.at
        if tx_inserts:
            _insert(
                TX_TABLE,
                ("id", *TX_COLUMNS, "created_at", "updated_at"),
                [(*row, at, at) for row in tx_inserts],
            )
        if tx_updates:
            _update(
                TX_TABLE, (*TX_COLUMNS, "updated_at"), [(*r[:-1], at, r[-1]) for r in tx_updates]
            )
        if losers:
            _update(
                TX_TABLE,
                ("merged_into_id", *TX_COLUMNS, "updated_at"),
                [(winner, *_EMPTY_TX, at, loser) for loser, winner in losers.items()],
            )
            # what was merged into a loser earlier now points at the winner: one hop to follow
            _executemany(
                f"UPDATE {TX_TABLE} SET merged_into_id = %s WHERE merged_into_id = %s",
                [(winner, loser) for loser, winner in losers.items()],
            )
        if key_moves:
            _update(TXKEY_TABLE, ("transaction_id",), key_moves)
        if key_rows_new:
            _insert(TXKEY_TABLE, ("transaction_id", "kind", "value"), key_rows_new)
        if link_deletes:
            _delete_ids(TXHOP_TABLE, link_deletes)
        if link_inserts:
            _insert(TXHOP_TABLE, ("transaction_id", "hop_id"), link_inserts)
        if stage_deletes:
            _delete_ids(STAGE_TABLE, stage_deletes)
        if stage_moves:
            _update(STAGE_TABLE, ("transaction_id",), stage_moves)
        if stage_inserts:
            stage_inserts.sort(key=lambda r: (r[4], r[0]))
            platform = {h: self.hops[h].platform_status for h in {r[4] for r in stage_inserts}}
            _insert(
                STAGE_TABLE,
                ("transaction_id", "stage", "at", "system", "platform_status", "hop_id"),
                [(tx, s, t, sys, platform[h][:128], h) for tx, s, t, sys, h in stage_inserts],
            )
        if merges:
            Merge.objects.bulk_create(merges)
        if conflicts:
            made = Conflict.objects.bulk_create(conflicts, ignore_conflicts=True)
            self.result.conflicts = len(made)

    def _merging_hop(self, group: Any, loser_keys: set[KeyPair]) -> int | None:
        """The first hop (canonical order) whose own links join the loser to the rest."""
        candidates = sorted(
            (self.inputs[h] for h in group.hops if h in self.inputs),
            key=lambda h: (h.start_time, h.uid),
        )
        for hop in candidates:
            link, _ = links_and_fanouts(hop.keys)
            if any(k in loser_keys for k in link) and any(k not in loser_keys for k in link):
                return hop.id
        return None

    def _columns(self, group: Any, tx: int, extra: Iterable[tuple[int, str]]) -> tuple[Any, ...]:
        hops = sorted((self.hops[h] for h in group.hops), key=lambda h: (h.start_time, h.uid))
        first: dict[str, datetime] = {}
        hints: list[str] = []
        for h in hops:
            d = self.derived[h.id]
            if d.kind_hint:
                hints.append(d.kind_hint)
            for stage in d.stages:
                if stage not in first or h.start_time < first[stage]:
                    first[stage] = h.start_time
        for hop_id, stage in extra:
            t = self.hops[hop_id].start_time
            if stage not in first or t < first[stage]:
                first[stage] = t
        channel = next((h.channel for h in hops if h.channel), "")
        store = next((h.store_id for h in hops if h.store_id), "")
        priced = next((h for h in hops if h.amount is not None), None)
        kind = st.transaction_kind((k[0] for k in group.keys), first, hints)
        cols: list[Any] = [
            kind,
            channel,
            store,
            st.current_stage(first),
            priced.amount if priced else None,
            priced.currency if priced else "",
            hops[0].start_time if hops else None,
            max(h.start_time for h in hops) if hops else None,
            len(hops),
            sum(1 for h in hops if h.outcome == ERROR),
        ]
        cols.extend(first.get(s) for s in STAGE_COLUMNS)
        return tuple(cols)


def _tx_for(resolution: Any, final: list[int], key: KeyPair) -> int | None:
    g = resolution.group_of(key)
    return final[g] if g is not None else None


def _count_unknown(
    claimed: Sequence[int],
    hops: dict[int, _Hop],
    derived: dict[int, st.Derived],
    at: datetime,
    result: StitchResult,
) -> None:
    """Count each newly stitched hop's unknown platform status once (upsert)."""
    counts = Counter(
        (hops[h].system, hops[h].platform_status[:128])
        for h in claimed
        if h in hops and derived[h].unknown_status
    )
    if not counts:
        return
    result.unknown_statuses = sum(counts.values())
    rows = [(s, status, n, at, at) for (s, status), n in sorted(counts.items())]
    _executemany(
        f"INSERT INTO {UNKNOWN_TABLE} (system, status, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (system, status) DO UPDATE SET "
        f"count = {UNKNOWN_TABLE}.count + excluded.count, last_seen = excluded.last_seen",
        rows,
    )


def _dequeue(pick: str, params: Sequence[Any]) -> list[int]:
    """Take the waiting hops ``SELECT hop_id FROM <queue> <pick>`` chooses out of the
    queue, skipping those another claim holds (PostgreSQL); their ids, sorted.

    ``= ANY(ARRAY(...))``: with ``IN (...)`` the planner hash-joins against a scan of the
    whole queue, dead rows and all (131 ms a claim at 1M waiting, against 12)."""
    rows = _pg(
        f"DELETE FROM {WAITING_TABLE} WHERE hop_id = ANY(ARRAY(SELECT hop_id FROM "
        f"{WAITING_TABLE} {pick} FOR UPDATE SKIP LOCKED)) RETURNING hop_id",
        params,
    )
    return sorted(r[0] for r in rows)


def _unqueue(hop_ids: Sequence[int]) -> None:
    for chunk in _chunks(hop_ids, _CHUNK):
        Waiting.objects.filter(hop_id__in=chunk).delete()


def _log_stitched(hop_ids: Sequence[int], at: datetime) -> None:
    """Log ``hop_ids`` stitched at ``at`` (a hop stitched again is logged at its latest
    time: readers of the log redo what it touched)."""
    if connection.vendor == "postgresql":
        _pg(
            f"INSERT INTO {STITCHED_TABLE} (hop_id, at) SELECT h, %s FROM "
            "unnest(%s::bigint[]) h ON CONFLICT (hop_id) DO UPDATE SET at = excluded.at",
            [at, _ids(hop_ids)],
        )
        return
    _executemany(
        f"INSERT INTO {STITCHED_TABLE} (hop_id, at) VALUES (%s, %s) "
        "ON CONFLICT (hop_id) DO UPDATE SET at = excluded.at",
        [(h, at) for h in hop_ids],
    )


# --- set-based reads ------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pg(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` on PostgreSQL with parameters bound on the server and rows returned in
    binary (the rows, or ``[]`` for a statement that returns none).

    Django's cursors bind on the client, quoting every array parameter into the SQL text,
    and read rows as text: for the stitcher's arrays of thousands of ids and values and its
    thousands of timestamps, that was a fifth of its time.
    """
    from psycopg import Cursor

    connection.ensure_connection()
    with Cursor(connection.connection) as raw:
        raw.execute(sql, params, binary=True)
        return list(raw.fetchall()) if raw.description else []


def _ids(ids: Iterable[int]) -> str:
    """A ``bigint[]`` parameter as its text literal (cast it in the SQL: ``%s::bigint[]``).
    psycopg adapts a list element by element in Python, 3 µs each; this is a join."""
    return "{" + ",".join(map(str, ids)) + "}"


def _texts(values: Iterable[str]) -> str:
    """A ``text[]`` parameter as its text literal (``%s::text[]``), every element quoted."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def _select_in(table: str, cols: str, column: str, ids: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``SELECT cols FROM table WHERE column IN ids`` (one statement on PostgreSQL)."""
    if not ids:
        return []
    if connection.vendor == "postgresql":
        if isinstance(ids[0], int):
            return _pg(
                f"SELECT {cols} FROM {table} WHERE {column} = ANY(%s::bigint[])", [_ids(ids)]
            )
        return _pg(f"SELECT {cols} FROM {table} WHERE {column} = ANY(%s::text[])", [_texts(ids)])
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cur:
        for chunk in _chunks(ids, _CHUNK):
            marks = ", ".join(["%s"] * len(chunk))
            cur.execute(f"SELECT {cols} FROM {table} WHERE {column} IN ({marks})", list(chunk))
            out.extend(cur.fetchall())
    return out


def _keys_by_hop(hop_ids: Sequence[int]) -> dict[int, list[tuple[str, str, bool]]]:
    out: dict[int, list[tuple[str, str, bool]]] = {h: [] for h in hop_ids}
    for hop_id, kind, value, fanout in _select_in(
        HOPKEY_TABLE, "hop_id, kind, value, fanout", "hop_id", hop_ids
    ):
        out[hop_id].append((kind, value, bool(fanout)))
    return out


def _txkeys_matching(pairs: set[KeyPair]) -> list[tuple[str, str, int, int]]:
    """Transaction key rows (kind, value, id, transaction) for ``pairs``."""
    values = sorted({v for _, v in pairs})
    rows = _select_in(TXKEY_TABLE, "kind, value, id, transaction_id", "value", values)
    return [r for r in rows if (r[0], r[1]) in pairs]


def _load_hops(hop_ids: Sequence[int]) -> dict[int, _Hop]:
    out: dict[int, _Hop] = {}
    if connection.vendor == "postgresql":  # psycopg gives aware datetimes and Decimals
        for row in _select_in(HOP_TABLE, ", ".join(_HOP_FIELDS), "id", hop_ids):
            out[row[0]] = _Hop(*row)
        return out
    for chunk in _chunks(hop_ids, _CHUNK):
        for row in Hop.objects.filter(id__in=chunk).values_list(*_HOP_FIELDS):
            out[row[0]] = _Hop(*row)
    return out


def _load_tx_columns(tx_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    out: dict[int, tuple[Any, ...]] = {}
    if connection.vendor == "postgresql":
        for row in _select_in(TX_TABLE, ", ".join(("id", *TX_COLUMNS)), "id", tx_ids):
            out[row[0]] = tuple(row[1:])
        return out
    for chunk in _chunks(tx_ids, _CHUNK):
        for row in Transaction.objects.filter(id__in=chunk).values_list("id", *TX_COLUMNS):
            out[row[0]] = tuple(row[1:])
    return out


# --- set-based writes -----------------------------------------------------------------------


def _adapt(value: Any) -> Any:
    """Python values as the backend takes them in raw SQL (SQLite needs datetimes and
    decimals as text; psycopg adapts them itself)."""
    if connection.vendor == "postgresql":
        return value
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _executemany(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if not rows:
        return
    if connection.vendor != "postgresql":
        rows = [tuple(_adapt(v) for v in row) for row in rows]
    with connection.cursor() as cur:
        cur.executemany(sql, rows)


def _insert(table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (binary COPY on PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as wrapper:
            cur = wrapper.cursor
            types = _column_types(cur, table, tuple(cols))
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(cols))
    _executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)


_types: dict[tuple[str, tuple[str, ...]], list[int]] = {}


def _column_types(cur: Any, table: str, cols: tuple[str, ...]) -> list[int]:
    """The type oids of ``cols`` of ``table``, for binary COPY (read once per process)."""
    key = (table, cols)
    if key not in _types:
        cur.execute(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = ANY(%s)",
            [table, list(cols)],
        )
        oid = dict(cur.fetchall())
        _types[key] = [oid[c] for c in cols]
    return _types[key]


def _update(table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE table SET cols = row[:-1] WHERE id = row[-1]`` for each row."""
    sets = ", ".join(f"{c} = %s" for c in cols)
    _executemany(f"UPDATE {table} SET {sets} WHERE id = %s", rows)


def _delete_ids(table: str, ids: Sequence[int]) -> None:
    if connection.vendor == "postgresql":
        _pg(f"DELETE FROM {table} WHERE id = ANY(%s::bigint[])", [_ids(ids)])
        return
    with connection.cursor() as cur:
        for chunk in _chunks(ids, _CHUNK):
            cur.execute(
                f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(chunk))})", chunk
            )


def _take_tx_ids(n: int) -> list[int]:
    """Ids for ``n`` new transactions: from the sequence on PostgreSQL; past the highest id
    under SQLite's write lock (held since ``BEGIN IMMEDIATE``)."""
    if n == 0:
        return []
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [TX_TABLE, n],
            )
            return [r[0] for r in cur.fetchall()]
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {TX_TABLE}")
        top = cur.fetchone()[0]
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [TX_TABLE])
        seq = cur.fetchone()
        top = max(top, seq[0] if seq else 0)
        return list(range(top + 1, top + 1 + n))


__all__ = ["LIVE_TOPIC", "StitchResult", "do_stitch", "load_status_maps"]
