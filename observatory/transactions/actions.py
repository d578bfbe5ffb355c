"""The stitcher: attach waiting hops to transactions, set-based (docs/architecture.md, "The stitcher").

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

Chunks are sized by time (``lib.pace``): as many hops as take about
``PIPELINE_CHUNK_S`` of wall time here, up to ``limit_chunk``; and a pass stops between
chunks when the worker's shutdown starts (``lib.shutdown``); a chunk that gets the lock
after that (SQLite's at BEGIN, which may wait for another chunk; PostgreSQL's advisory one
at step 4) rolls back instead of going on. Either way the rest stays waiting for the next
pass (docs/scaling.md, "Stopping").

Re-running changes nothing: the result depends only on the set of hops, and only
differences are written. Several stitchers may run at once, and overlap: steps 1 to 3
read only the hop store, which the stitcher never changes, and claims skip each other's
rows, so they run side by side; step 4 reads what the transactions hold and writes, so on
PostgreSQL it takes a transaction-scoped advisory lock first, and chunks write one after
the other, each against everything committed before it (two chunks may resolve the same
order: a chunk reads whole components, including hops another worker claimed; the later
one then finds nothing to change). A hop another worker stitched meanwhile may have
arrived after this chunk read its components: when the transactions it finds under the
lock hold a hop its reads did not see, it reads the components again, under the lock,
before writing (else it would take that hop out of its transaction). On SQLite the
``IMMEDIATE`` transaction serialises whole chunks.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from observatory.hops.actions import do_record_arrivals
from observatory.hops.models import Stitched, TouchedHour, Waiting
from observatory.lib import bulk, live, queues, shutdown
from observatory.lib.clock import Clock, now
from observatory.lib.pace import Pacer
from observatory.transactions import stages as st
from observatory.transactions.closure import (
    Hop,
    closure,
    hops_near,
    load_hops,
)
from observatory.transactions.models import StatusMap, Touched, UnknownStatus
from observatory.transactions.stitch import HopIn, KeyPair, Resolution, links_and_fanouts, resolve
from observatory.transactions.writer import Writer, read_held

LIVE_TOPIC = "transactions.changed"
#: pg advisory lock id of the stitcher ("STITCH" in hex-ish); triage uses its own.
LOCK_ID = 0x57_17C4

WAITING_TABLE = Waiting._meta.db_table
STITCHED_TABLE = Stitched._meta.db_table
UNKNOWN_TABLE = UnknownStatus._meta.db_table


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


#: Hops claimed per chunk, learnt per process from the chunks' times (``lib.pace``):
#: from a modest start, doubling while chunks are quick and full.
_PACE = Pacer(first=500, least=100)


class _Stopping(Exception):
    """The worker began to stop before this chunk had the write lock: roll it back."""


def do_stitch(*, limit_chunk: int = 5000, clock: Clock = now) -> StitchResult:
    """Stitch every waiting hop, at most ``limit_chunk`` at a time, each chunk as many
    hops as take about ``PIPELINE_CHUNK_S`` (``lib.pace``); each commits on its own.

    Stops when a claim comes back short (the backlog, as this worker sees it, is empty),
    or when the worker's shutdown starts (``lib.shutdown``: the rest stays waiting).
    Publishes ``transactions.changed`` after each commit that changed something.
    """
    total = StitchResult()
    maps = load_status_maps()
    while not shutdown.requested():
        try:
            # timed inside the transaction: on SQLite its BEGIN waits for the write lock
            with transaction.atomic(), _no_cyclic_gc(), _PACE.chunk(limit_chunk) as paced:
                claimed, chunk = _stitch_chunk(paced.size, clock, maps)
                paced.got = claimed
        except _Stopping:
            break
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
        if claimed < paced.size:
            break
    return total


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A chunk makes some hundred thousand small tuples, lists and dicts without cycles
    (refcounting frees them); the cyclic collector would walk them all again and again
    while they are alive (docs/performance.md, "Stitching")."""
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


@dataclass
class _Resolved:
    """A chunk's components as read from the hop store, resolved."""

    component_keys: set[KeyPair]
    members: set[int]
    hops: dict[int, Hop]
    inputs: list[HopIn]
    resolution: Resolution
    derived: dict[int, st.Derived]


def _stitch_chunk(limit: int, clock: Clock, maps: st.StatusMaps) -> tuple[int, StitchResult]:
    result = StitchResult()
    if shutdown.requested():  # it began while this chunk waited for SQLite's write lock
        return 0, result
    bulk.plan_for_many_small_lookups()
    at = clock()
    claimed = _claim(limit, at)
    if not claimed:
        return 0, result
    first_claim = len(claimed)
    work = _resolve_components(claimed, at, maps)

    # 4. write the difference, one chunk at a time: what the transactions hold is read
    # only now, under the lock, so it includes every chunk committed before
    bulk.lock(LOCK_ID)
    if bulk.postgresql() and shutdown.requested():  # (SQLite checked at its BEGIN, above)
        raise _Stopping  # the worker is stopping: what waited for the lock waits for the next
    held = read_held(work.component_keys)
    if not {hop for _, _, hop in held.links} <= work.members:
        # Another chunk committed, while this one resolved, hops of these components that
        # this one's reads did not see yet (they arrived meanwhile): writing the older
        # resolution would take them out of their transaction. Read the components again:
        # under the lock, every stitched hop is visible.
        work = _resolve_components(claimed, at, maps)
        held = read_held(work.component_keys)
    hops, derived = work.hops, work.derived
    result.hops = len(claimed)
    result.resolved_hops = len(work.inputs)
    writer = Writer(hops, derived, work.inputs, at)
    writer.apply(work.resolution, held)
    result.transactions_created = writer.created
    result.merged = len(writer.merged_away)
    result.conflicts = writer.conflicts
    result.touched = len(writer.touched)
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


def _resolve_components(claimed: list[int], at: datetime, maps: st.StatusMaps) -> _Resolved:
    """Steps 2 and 3 for the hops ``claimed`` (which grows by the waiting hops of their
    components that are resolved in full here)."""
    # 2. the raw components of the chunk's keys
    keys_of: dict[int, list[tuple[str, str, bool]]] = {h: [] for h in claimed}
    near = hops_near(claimed, keys_of)  # the first round of the closure, from hop ids
    lf = {h: links_and_fanouts(keys) for h, keys in keys_of.items()}
    seeds: set[KeyPair] = set()
    for hop_id in claimed:
        link, fan = lf[hop_id]
        seeds.update(link)
        seeds.update(fan)
    component_keys, members = closure(seeds, keys_of, lf, near)
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
    claimed.extend(_claim_these(complete, at))  # the caller's list grows
    hops = load_hops(sorted(members | set(claimed)))

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

    return _Resolved(component_keys, members, hops, inputs, resolution, derived)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _claim(limit: int, at: datetime) -> list[int]:
    """Claim up to ``limit`` waiting hops, oldest id first: take them out of the queue
    (put back if the chunk fails) and log them stitched at ``at``. PostgreSQL: one
    ``DELETE`` over a ``FOR UPDATE SKIP LOCKED`` sub-select, so concurrent claims skip
    each other's rows."""
    if bulk.postgresql():
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
    if bulk.postgresql():
        out = _dequeue("WHERE hop_id = ANY(%s::bigint[])", [bulk.int_array(sorted(hop_ids))])
    else:
        out = []
        for chunk in bulk.chunks(sorted(hop_ids)):
            out.extend(Waiting.objects.filter(hop_id__in=chunk).values_list("hop_id", flat=True))
        _unqueue(out)
    _log_stitched(out, at)
    return out


def _count_unknown(
    claimed: Sequence[int],
    hops: dict[int, Hop],
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
    bulk.executemany(
        f"INSERT INTO {UNKNOWN_TABLE} (system, status, count, first_seen, last_seen) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (system, status) DO UPDATE SET "
        f"count = {UNKNOWN_TABLE}.count + excluded.count, last_seen = excluded.last_seen",
        rows,
    )


def _dequeue(pick: str, params: Sequence[Any]) -> list[int]:
    """Take the waiting hops ``SELECT hop_id FROM <queue> <pick>`` chooses out of the
    queue, skipping those another claim holds (PostgreSQL); their ids, sorted.

    ``= ANY(ARRAY(...))``: with ``IN (...)`` the planner hash-joins against a scan of the
    whole queue, dead rows and all (docs/performance.md, "Stitching")."""
    rows = bulk.run(
        f"DELETE FROM {WAITING_TABLE} WHERE hop_id = ANY(ARRAY(SELECT hop_id FROM "
        f"{WAITING_TABLE} {pick} FOR UPDATE SKIP LOCKED)) RETURNING hop_id",
        params,
    )
    return sorted(r[0] for r in rows)


def _unqueue(hop_ids: Sequence[int]) -> None:
    for chunk in bulk.chunks(hop_ids):
        Waiting.objects.filter(hop_id__in=chunk).delete()


def _log_stitched(hop_ids: Sequence[int], at: datetime) -> None:
    """Log ``hop_ids`` stitched at ``at`` (a hop stitched again is logged at its latest
    time: readers of the log redo what it touched)."""
    if bulk.postgresql():
        bulk.run(
            f"INSERT INTO {STITCHED_TABLE} (hop_id, at) SELECT h, %s FROM "
            "unnest(%s::bigint[]) h ON CONFLICT (hop_id) DO UPDATE SET at = excluded.at",
            [at, bulk.int_array(hop_ids)],
        )
        return
    bulk.executemany(
        f"INSERT INTO {STITCHED_TABLE} (hop_id, at) VALUES (%s, %s) "
        "ON CONFLICT (hop_id) DO UPDATE SET at = excluded.at",
        [(h, at) for h in hop_ids],
    )


__all__ = ["LIVE_TOPIC", "StitchResult", "do_stitch", "load_status_maps"]
