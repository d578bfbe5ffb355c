"""The sweep: ``do_sweep`` runs the deadline sweep and the passes over failed hops,
duplicates and conflicts in one transaction, after moving the exceptions of merged
transactions onto the transaction they merged into.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime

from django.conf import settings
from django.db import transaction

from observatory.hops.actions import do_measure_streams
from observatory.hops.queries import settled, system_marks
from observatory.lib import bulk, live, queues
from observatory.lib.clock import Clock, now
from observatory.transactions.models import Touched
from observatory.triage import deadlines, queries
from observatory.triage.actions.common import _BATCH, LIVE_TOPIC, SweepResult, _resolve
from observatory.triage.actions.conflicts import _open_captured_twice, _open_from_conflicts
from observatory.triage.actions.drift import _sweep_drift
from observatory.triage.actions.failed import _close_failed, _open_failed
from observatory.triage.deadlines import final_winners
from observatory.triage.models import DUPLICATE, FAILED_HOP, STUCK, UNRESOLVED, Issue

log = logging.getLogger(__name__)

_LOCK_ID = 0x7472_6961_6765  # "triage"
#: triage's name on the stitcher's queue of touched transactions
CONSUMER = "triage"


def do_sweep(*, clock: Clock = now, wall: Clock | None = None, full: bool = False) -> SweepResult:
    """Open and close exceptions from what the stitcher wrote, in one transaction.

    ``clock`` is the business "now" SLAs are judged against; ``wall`` the real time the
    reporting streams are read at (their watermarks say which deadlines are knowable:
    ``deadlines``). By default the real time; when only ``clock`` is given (judging
    "as of" a business time), a moment after everything sent so far, so that no stream
    counts as still catching up (``hops.queries.settled``). Only the transactions the
    stitcher touched since (claimed from triage's queue, ``transactions.Touched``) are
    rescanned for new failed hops, double captures and stages that came late, unless
    ``full``; open deadlines are always all checked (index scans on the stage columns).
    """
    at = clock()
    if wall is None:
        wall = now if clock is now else (lambda: settled(now()))
    result = SweepResult()
    with transaction.atomic():
        if not _try_lock():
            result.skipped = True
            return result
        if full:
            queues.clear(Touched, CONSUMER)
            touched: list[int] | None = None
        else:
            touched = queues.claim(Touched, "transaction_id", CONSUMER, settings.TRIAGE_CLAIM)
        owner = queries.owner_router()
        walled = wall()
        do_measure_streams(wall=lambda: walled)
        _follow_merges(at, result)
        deadlines.sweep(
            deadlines.Context(
                at=at,
                wall=walled,
                marks=system_marks(walled),
                policies=queries.policies(),
                owner=owner,
                touched=touched,
            ),
            result,
        )
        found_at = walled
        _open_failed(found_at, touched, owner, result)
        _close_failed(result)
        _open_from_conflicts(found_at, owner, result)
        _open_captured_twice(found_at, touched, owner, result)
        _sweep_drift(found_at, owner, result)
        if result.changed:
            live.publish_on_commit(LIVE_TOPIC, asdict(result))
    return result


def _try_lock() -> bool:
    return bulk.try_lock(_LOCK_ID)


def _rekey(key: str, old: int, new: int) -> str:
    for prefix in (f"{FAILED_HOP}:{old}:", f"{DUPLICATE}:captured:{old}"):
        if key.startswith(prefix):
            return prefix.replace(str(old), str(new)) + key[len(prefix) :]
    return key


def _follow_merges(at: datetime, result: SweepResult) -> None:
    stale = list(
        Issue.objects.filter(state__in=UNRESOLVED, transaction__merged_into__isnull=False).only(
            "id", "kind", "transaction_id", "dedupe_key"
        )
    )
    if not stale:
        return
    winners = final_winners({i.transaction_id for i in stale if i.transaction_id})
    # stuck questions follow the merge in the deadline sweep: judged on the stage times
    # of the transaction they merged into
    movers = [i for i in stale if i.kind != STUCK]
    wanted = {i.id: _rekey(i.dedupe_key, i.tx_id, winners[i.tx_id]) for i in movers}
    taken = set(
        Issue.objects.filter(state__in=UNRESOLVED, dedupe_key__in=set(wanted.values()))
        .exclude(id__in=list(wanted))
        .values_list("dedupe_key", flat=True)
    )
    moved, doubles = [], []
    for issue in movers:
        key = wanted[issue.id]
        if key in taken:
            doubles.append(issue.id)
            continue
        taken.add(key)
        issue.transaction_id = winners[issue.tx_id]
        issue.dedupe_key = key
        moved.append(issue)
    _resolve(
        Issue.objects.filter(id__in=doubles), at, "the transaction it was merged into has the same"
    )
    Issue.objects.bulk_update(moved, ["transaction_id", "dedupe_key"], batch_size=_BATCH)
    result.moved += len(moved)
