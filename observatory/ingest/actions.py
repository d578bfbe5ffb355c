"""The write edge's one verb: take decoded hops from an authenticated source."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from celery import current_app
from django.db import transaction

from observatory.access.models import IngestToken
from observatory.hops.actions import (
    do_count_dropped_logs,
    do_store_hops,
    do_store_snapshots,
    mask_hops,
)
from observatory.lib import live
from observatory.lib.clock import now
from tracing.records import DecodeResult, HopRecord, Rejection, SnapshotRecord

log = logging.getLogger(__name__)
_Item = TypeVar("_Item", HopRecord, SnapshotRecord)

#: The pipeline tick (``observatory.pipeline.tasks``), nudged after each commit.
PIPELINE_TICK = "observatory.pipeline.tasks.tick"
#: At most one stitcher nudge per this many seconds per process.
NUDGE_INTERVAL_S = 1.0
_nudge_lock = threading.Lock()
_nudge_at = float("-inf")  # monotonic time of the latest nudge sent or scheduled


class OutOfScope(Exception):
    """Every hop of the request belongs to a system the token may not send for (403)."""


@dataclass
class Ingested:
    #: (request position, record) of each hop stored now
    stored: list[tuple[int, HopRecord]] = field(default_factory=list)
    #: (request position, record) of each hop that was already stored
    duplicates: list[tuple[int, HopRecord]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: items not stored by design (log records without business keys), counted
    dropped: int = 0
    #: (request position, snapshot) of each inventory snapshot kept (docs/ingest.md)
    snapshots: list[tuple[int, SnapshotRecord]] = field(default_factory=list)


def do_ingest(decoded: DecodeResult, token: IngestToken) -> Ingested:
    """Store the good hops of one request; the bad ones were rejected by the decoder.

    Hops of a system outside the token's scope are rejected one by one; if that leaves
    nothing at all, the request as a whole is out of scope (``OutOfScope``, a 403).
    Returns once the stored hops are committed.
    """
    out = Ingested(rejected=list(decoded.rejected))
    snapshots = list(decoded.snapshots)
    refused = {r.index for r in decoded.rejected} | {i for i, _ in snapshots}
    positions = decoded.positions or (
        i for i in range(len(decoded.records) + len(refused)) if i not in refused
    )
    placed = list(zip(positions, decoded.records, strict=False))
    if token.system and snapshots:
        kept = _in_scope(snapshots, token, out, lambda s: str(s.extra.get("id", "")))
        if not kept and not any(r.system == token.system for _, r in placed):
            raise OutOfScope(out.rejected[-1].reason)
        snapshots = kept
    if snapshots:
        do_store_snapshots([s for _, s in snapshots], received_at=now())
        out.snapshots = snapshots
        transaction.on_commit(nudge_stitcher)  # the sweep compares them
    if token.system:
        inside = _in_scope(placed, token, out, lambda r: r.uid)
        if placed and not inside and not snapshots:
            raise OutOfScope(out.rejected[-1].reason)
        placed = inside
    out.rejected.sort(key=lambda r: r.index)
    if not placed:
        _count_dropped(decoded, token, out)
        return out
    records = [r for _, r in placed]
    mask_hops(records)  # before the transaction: it holds SQLite's write lock throughout
    received = now()
    # do_store_hops is the transaction (a nested one, a savepoint, would cost two more
    # round trips); what follows runs once it commits, or on the enclosing commit if any
    result = do_store_hops(records, received_at=received, masked=True)
    if result.stored:
        systems = Counter(r.system for _, r in placed if r.uid in result.stored)
        live.publish_on_commit("hops.stored", {"systems": dict(systems)}, coalesce=True)
        transaction.on_commit(nudge_stitcher)
    seen: set[str] = set()
    for i, r in placed:
        if r.uid in result.stored and r.uid not in seen:
            out.stored.append((i, r))
        else:
            out.duplicates.append((i, r))
        seen.add(r.uid)
    _count_dropped(decoded, token, out)
    return out


def _in_scope(
    items: list[tuple[int, _Item]], token: IngestToken, out: Ingested, ident: Callable[[_Item], str]
) -> list[tuple[int, _Item]]:
    """The (request position, item) of ``items`` in the system of ``token``; each other one
    is added to ``out.rejected``, named by ``ident``."""
    inside = []
    for i, x in items:
        if x.system == token.system:
            inside.append((i, x))
            continue
        out.rejected.append(
            Rejection(
                index=i,
                ident=ident(x),
                reason=f"system '{x.system}' is outside the scope of token "
                f"'{token.name}' (system '{token.system}')",
            )
        )
    return inside


def _count_dropped(decoded: DecodeResult, token: IngestToken, out: Ingested) -> None:
    """Count the items the decoder dropped by design (log records without keys), once the
    hops beside them are stored: a request refused with a 503 is counted when it is sent
    again."""
    if not decoded.dropped:
        return
    dropped = dict(decoded.dropped)
    if token.system:  # a token limited to a system speaks for that system only
        dropped = {token.system: sum(dropped.values())}
    out.dropped = sum(dropped.values())
    do_count_dropped_logs(dropped, now())


def nudge_stitcher() -> None:
    """Ask for a pipeline tick (stitch, then sweep) soon, at most once per ``NUDGE_INTERVAL_S`` in this process.

    Called after a commit that stored hops, so a quiet system stitches within about a
    second (the beat schedule covers everything else). A nudge inside the interval is
    not dropped but deferred to the interval's end, once: hops committed just after a
    stitch pass started still get one. A broker that cannot take the message never fails
    the ingest that already committed.
    """
    global _nudge_at
    t = time.monotonic()
    with _nudge_lock:
        if _nudge_at > t:
            return  # a deferred nudge is on its way and runs after this commit
        at = max(t, _nudge_at + NUDGE_INTERVAL_S)
        _nudge_at = at
    delay = at - t
    try:
        # by name: the write edge never imports the stages above it
        current_app.send_task(
            PIPELINE_TICK, countdown=delay if delay > 0.001 else None, retry=False
        )
    except Exception:
        log.warning("could not enqueue the stitcher nudge", exc_info=True)
