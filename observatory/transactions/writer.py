"""The stitcher's write step: a resolution (``stitch.resolve``) turned into set-based
writes against what the transactions hold, only the difference (``actions.py`` runs it
under the write lock, after reading what the transactions hold).

The steps, each a method: read what is held of the components' transactions; give each
group a transaction id (the lowest old one still free, else a new one); find the losers
of merges (old transactions no group kept: each goes to the group holding most of its
keys) and record the merges; move or add keys, memberships and stage-reached rows; compute
every group's transaction columns from its hops; record refused links as conflicts; and
write it all, one statement (or one COPY) per kind of change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from observatory.lib import bulk
from observatory.transactions import stages as st
from observatory.transactions.closure import Hop, txkeys_matching
from observatory.transactions.models import (
    STAGE_COLUMNS,
    Conflict,
    Merge,
    StageReached,
    Transaction,
    TransactionHop,
    TransactionKey,
    stage_field,
)
from observatory.transactions.stitch import Group, HopIn, KeyPair, Resolution, links_and_fanouts
from tracing.conventions import ERROR

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
    "rerouted_at",
)
#: what a transaction merged away holds: nothing
EMPTY_TX: tuple[Any, ...] = ("order", "", "", "", None, "", None, None, 0, 0) + (None,) * (
    len(STAGE_COLUMNS) + 1
)
#: the warehouse systems whose hops say where an order is fulfilled
LOCATION_SYSTEMS = frozenset({"wms"})
_TRUE = frozenset({"true", "1", "yes"})

TRANSACTIONS = bulk.Table.of(Transaction, ("id", *TX_COLUMNS, "created_at", "updated_at"))
TX_TABLE = TRANSACTIONS.name
KEYS = bulk.Table.of(TransactionKey, ("transaction_id", "kind", "value"))
LINKS = bulk.Table.of(TransactionHop, ("transaction_id", "hop_id"))
STAGES = bulk.Table.of(
    StageReached,
    (
        "transaction_id",
        "stage",
        "at",
        "system",
        "platform_status",
        "hop_id",
        "amount",
        "currency",
        "fanout",
    ),
)


@dataclass
class Held:
    """What the transactions of the components hold now."""

    #: (kind, value, key row id, transaction id)
    key_rows: list[tuple[str, str, int, int]]
    tx_of: dict[KeyPair, int]
    ids: list[int]
    columns: dict[int, tuple[Any, ...]]
    #: (row id, transaction id, hop id)
    links: list[tuple[int, int, int]]
    #: (row id, transaction id, hop id, stage)
    stages: list[tuple[int, int, int, str]]


@dataclass
class Changes:
    """Every write of one chunk."""

    tx_inserts: list[tuple[Any, ...]] = field(default_factory=list)
    tx_updates: list[tuple[Any, ...]] = field(default_factory=list)
    #: loser -> winner
    losers: dict[int, int] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)
    key_inserts: list[tuple[Any, ...]] = field(default_factory=list)
    key_moves: list[tuple[int, int]] = field(default_factory=list)
    link_deletes: list[int] = field(default_factory=list)
    link_inserts: list[tuple[int, int]] = field(default_factory=list)
    stage_deletes: list[int] = field(default_factory=list)
    stage_moves: list[tuple[int, int]] = field(default_factory=list)
    #: (transaction, stage, at, system, hop, whether the hop joined through a fan-out key)
    stage_inserts: list[tuple[int, str, datetime, str, int, bool]] = field(default_factory=list)
    #: transaction -> stage-reached rows kept although no hop derives them now
    extra_stages: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


def read_held(component_keys: set[KeyPair]) -> Held:
    """What the transactions holding any of ``component_keys`` hold now."""
    key_rows = txkeys_matching(component_keys)
    tx_of = {(r[0], r[1]): r[3] for r in key_rows}
    ids = sorted(set(tx_of.values()))
    links = bulk.select_in(LINKS.name, "id, transaction_id, hop_id", "transaction_id", ids)
    stages = bulk.select_in(STAGES.name, "id, transaction_id, hop_id, stage", "transaction_id", ids)
    return Held(
        key_rows=key_rows,
        tx_of=tx_of,
        ids=ids,
        columns=load_tx_columns(ids),
        links=[(r[0], r[1], r[2]) for r in links],
        stages=[(r[0], r[1], r[2], r[3]) for r in stages],
    )


class Writer:
    """Turns a resolution into set-based writes against the existing rows."""

    def __init__(
        self,
        hops: dict[int, Hop],
        derived: dict[int, st.Derived],
        inputs: list[HopIn],
        at: datetime,
    ) -> None:
        self.hops = hops
        self.derived = derived
        self.inputs = {h.id: h for h in inputs}
        self.at = at
        #: live transactions created or changed
        self.touched: set[int] = set()
        #: transactions merged into another by this chunk (they hold nothing any more)
        self.merged_away: set[int] = set()
        self.created = 0
        self.conflicts = 0

    def apply(self, resolution: Resolution, held: Held) -> None:
        """Write ``resolution`` against ``held`` (:func:`read_held`, read under the lock)."""
        final = self.assign_ids(resolution.groups, held)
        ch = Changes()
        self.find_losers(resolution, held, final, ch)
        self.keys(resolution.groups, held, final, ch)
        self.links(resolution.groups, held, final, ch)
        self.stage_rows(resolution.groups, held, final, ch)
        self.transaction_rows(resolution.groups, held, final, ch)
        self.refused(resolution, final, ch)
        self.write(ch)

    # --- the steps ----------------------------------------------------------------------

    def assign_ids(self, groups: Sequence[Group], held: Held) -> list[int]:
        """The transaction id each group keeps: the lowest old one still free, else new."""
        cands = [sorted({held.tx_of[k] for k in g.keys if k in held.tx_of}) for g in groups]
        order = sorted(range(len(groups)), key=lambda i: (cands[i][0] if cands[i] else 0, i))
        tx_of_group: list[int | None] = [None] * len(groups)
        taken: set[int] = set()
        for i in order:
            free = [c for c in cands[i] if c not in taken]
            if free:
                tx_of_group[i] = free[0]
                taken.add(free[0])
        new_groups = [i for i, t in enumerate(tx_of_group) if t is None]
        for i, tx_id in zip(new_groups, bulk.take_ids(TX_TABLE, len(new_groups)), strict=True):
            tx_of_group[i] = tx_id
        final = [t for t in tx_of_group if t is not None]
        assert len(final) == len(groups)
        self.created = len(new_groups)
        return final

    def find_losers(
        self, resolution: Resolution, held: Held, final: list[int], ch: Changes
    ) -> None:
        """Old transactions no group kept: each goes to the group holding most of its keys."""
        old_keys_by_tx: dict[int, list[KeyPair]] = defaultdict(list)
        for kind, value, _id, tx in held.key_rows:
            old_keys_by_tx[tx].append((kind, value))
        for loser in sorted(set(held.ids) - set(final)):
            share = Counter(
                g for k in old_keys_by_tx[loser] if (g := resolution.group_of(k)) is not None
            )
            g = min(share, key=lambda i: (-share[i], i))
            winner = final[g]
            ch.losers[loser] = winner
            ch.merges.append(
                Merge(
                    winner_id=winner,
                    loser_id=loser,
                    hop_id=self._merging_hop(resolution.groups[g], set(old_keys_by_tx[loser])),
                    keys=sorted([list(k) for k in old_keys_by_tx[loser]]),
                )
            )
        self.merged_away = set(ch.losers)

    def keys(self, groups: Sequence[Group], held: Held, final: list[int], ch: Changes) -> None:
        old_key_ids = {(r[0], r[1]): r[2] for r in held.key_rows}
        for i, g in enumerate(groups):
            tx = final[i]
            for key in g.keys:
                old = held.tx_of.get(key)
                if old is None:
                    ch.key_inserts.append((tx, key[0], key[1]))
                elif old != tx:
                    ch.key_moves.append((tx, old_key_ids[key]))

    def links(self, groups: Sequence[Group], held: Held, final: list[int], ch: Changes) -> None:
        want = {(final[i], hop) for i, g in enumerate(groups) for hop in g.hops}
        have = {(tx, hop): rid for rid, tx, hop in held.links}
        ch.link_deletes = [rid for pair, rid in have.items() if pair not in want]
        # in hop order: the pages the COPY writes stay in hop order too
        ch.link_inserts = sorted(want - have.keys(), key=lambda p: (p[1], p[0]))

    def stage_rows(
        self, groups: Sequence[Group], held: Held, final: list[int], ch: Changes
    ) -> None:
        """Append what is missing, move what changed hands; a stage no hop derives any more
        (a map changed since) stays in its transaction's history."""
        want: dict[tuple[int, int, str], None] = {}
        fanout = {(final[i], hop) for i, g in enumerate(groups) for hop in g.fanout_hops}
        for i, g in enumerate(groups):
            for hop in g.hops:
                for stage in self.derived[hop].stages:
                    want[(final[i], hop, stage)] = None
        members_of = {final[i]: set(g.hops) for i, g in enumerate(groups)}
        where: dict[tuple[int, str], list[int]] = defaultdict(list)
        for tx, hop, stage in want:
            where[(hop, stage)].append(tx)
        have = {(tx, hop, stage): rid for rid, tx, hop, stage in held.stages}
        extra: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for (tx, hop, stage), rid in have.items():
            if (tx, hop, stage) in want:
                continue
            target = next(
                (
                    t
                    for t in where.get((hop, stage), ())
                    if (t, hop, stage) in want and (t, hop, stage) not in have
                ),
                None,
            )
            if target is not None:
                ch.stage_moves.append((target, rid))
                del want[(target, hop, stage)]  # satisfied by the move
            elif hop in members_of.get(tx, ()):
                extra[tx].append((hop, stage))
            else:
                ch.stage_deletes.append(rid)
        ch.extra_stages = dict(extra)
        ch.stage_inserts = [
            (tx, stage, self.hops[hop].start_time, self.hops[hop].system, hop, (tx, hop) in fanout)
            for (tx, hop, stage) in want
            if (tx, hop, stage) not in have
        ]

    def transaction_rows(
        self, groups: Sequence[Group], held: Held, final: list[int], ch: Changes
    ) -> None:
        """Every group's columns from its hops; ``updated_at`` moves whenever anything of
        a transaction did."""
        changed = (
            {t for t, _ in ch.key_moves}
            | {r[0] for r in ch.key_inserts}
            | {t for t, _ in ch.link_inserts}
            | {t for t, _ in ch.stage_moves}
            | {r[0] for r in ch.stage_inserts}
        )
        for i, g in enumerate(groups):
            tx = final[i]
            cols = self._columns(g, ch.extra_stages.get(tx, ()))
            if tx not in held.columns:
                ch.tx_inserts.append((tx, *cols))
                self.touched.add(tx)
            elif held.columns[tx] != cols or tx in changed:
                ch.tx_updates.append((*cols, tx))
                self.touched.add(tx)
        self.touched.update(ch.losers.values())

    def refused(self, resolution: Resolution, final: list[int], ch: Changes) -> None:
        """Links refused (two values of a one-per-transaction kind), with each side."""
        ch.conflicts = [
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

    def write(self, ch: Changes) -> None:
        """Every change, each kind one statement (or one executemany, or one COPY)."""
        at = self.at
        if ch.tx_inserts:
            bulk.insert(TRANSACTIONS, [(*row, at, at) for row in ch.tx_inserts])
        if ch.tx_updates:
            bulk.update(
                TX_TABLE, (*TX_COLUMNS, "updated_at"), [(*r[:-1], at, r[-1]) for r in ch.tx_updates]
            )
        if ch.losers:
            bulk.update(
                TX_TABLE,
                ("merged_into_id", *TX_COLUMNS, "updated_at"),
                [(winner, *EMPTY_TX, at, loser) for loser, winner in ch.losers.items()],
            )
            # what was merged into a loser earlier now points at the winner: one hop to follow
            bulk.executemany(
                f"UPDATE {TX_TABLE} SET merged_into_id = %s WHERE merged_into_id = %s",
                [(winner, loser) for loser, winner in ch.losers.items()],
            )
        if ch.key_moves:
            bulk.update(KEYS.name, ("transaction_id",), ch.key_moves)
        if ch.key_inserts:
            bulk.insert(KEYS, ch.key_inserts)
        bulk.delete_ids(LINKS.name, ch.link_deletes)
        if ch.link_inserts:
            bulk.insert(LINKS, ch.link_inserts)
        bulk.delete_ids(STAGES.name, ch.stage_deletes)
        if ch.stage_moves:
            bulk.update(STAGES.name, ("transaction_id",), ch.stage_moves)
        if ch.stage_inserts:
            rows = sorted(ch.stage_inserts, key=lambda r: (r[4], r[0]))
            hops = self.hops
            bulk.insert(
                STAGES,
                [
                    (
                        tx,
                        s,
                        t,
                        sys,
                        hops[h].platform_status[:128],
                        h,
                        hops[h].amount,
                        hops[h].currency,
                        fan,
                    )
                    for tx, s, t, sys, h, fan in rows
                ],
            )
        if ch.merges:
            Merge.objects.bulk_create(ch.merges)
        if ch.conflicts:
            self.conflicts = len(Conflict.objects.bulk_create(ch.conflicts, ignore_conflicts=True))

    # --- helpers ------------------------------------------------------------------------

    def _merging_hop(self, group: Group, loser_keys: set[KeyPair]) -> int | None:
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

    def _columns(self, group: Group, extra: Iterable[tuple[int, str]]) -> tuple[Any, ...]:
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
        cols.append(rerouted_at(hops))
        return tuple(cols)


def rerouted_at(hops: Sequence[Hop]) -> datetime | None:
    """When the order's fulfilling location first changed (``reroute_rate``,
    docs/kpis.md): the first hop saying ``retail.reroute``, or the first warehouse hop
    whose ``retail.location_id`` differs from the warehouse's earlier one. ``hops`` in
    canonical order."""
    seen = ""
    for h in hops:
        if h.reroute is not None and str(h.reroute).strip().lower() in _TRUE:
            return h.start_time
        if h.system in LOCATION_SYSTEMS and h.location:
            if seen and h.location != seen:
                return h.start_time
            seen = h.location
    return None


def _tx_for(resolution: Resolution, final: list[int], key: KeyPair) -> int | None:
    g = resolution.group_of(key)
    return final[g] if g is not None else None


def load_tx_columns(tx_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """tx id -> its ``TX_COLUMNS``, as Python values (both databases alike)."""
    out: dict[int, tuple[Any, ...]] = {}
    if bulk.postgresql():  # psycopg gives aware datetimes and Decimals
        for row in bulk.select_in(TX_TABLE, ", ".join(("id", *TX_COLUMNS)), "id", tx_ids):
            out[row[0]] = tuple(row[1:])
        return out
    for chunk in bulk.chunks(tx_ids):
        for row in Transaction.objects.filter(id__in=chunk).values_list("id", *TX_COLUMNS):
            out[row[0]] = tuple(row[1:])
    return out
