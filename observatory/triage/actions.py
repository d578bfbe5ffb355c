"""Writes for triage: the sweep that opens and closes exceptions, and people's verbs.

``do_sweep`` reads what the stitcher wrote (stage columns, memberships, conflicts) and
keeps the queue true, with set-based queries: a fixed number of statements per SLA policy
and per stage, never one per transaction or hop.

* ``stuck``: a transaction past an SLA deadline (``sla.py`` rules, on business time) opens
  one, owned by the team of the system expected to act (``erp`` for ``posted``); it closes
  by itself when the stage (or a later one) arrives, or the transaction is cancelled. A
  transaction that was overdue while no sweep looked (history sent in bulk, a stopped
  worker, a stage arriving between two sweeps) gets one all the same, opened and resolved
  on business time: the exceptions do not depend on when the sweeps ran.
* ``failed_hop``: failed hops attached to a transaction open one per (transaction, system,
  operation), counting repeats; it closes when a later hop of the same system and
  operation on that transaction succeeds. Hops are claimed in ``TriagedHop`` so each is
  looked at once; only the failed hops of transactions the stitcher touched are scanned,
  through a partial index on failed hops that triage's migration adds to the hop table.
* ``duplicate``: the stitcher refuses to give a transaction two ERP sales orders; such a
  ``Conflict`` means the order was posted twice. Two ``captured`` stages from hops with
  different channel order ids mean it was captured twice.
* ``conflict``: every other refused link, naming both sides.

Exceptions on transactions that were merged away follow the merge.

Sweeps are idempotent (dedupe keys are unique among unresolved issues) and serialised
(an advisory lock on PostgreSQL; SQLite's write lock is taken at BEGIN).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery

from observatory.hops.actions import do_measure_streams
from observatory.hops.queries import settled, system_marks
from observatory.lib import bulk, live, queues
from observatory.lib.clock import Clock, now
from observatory.transactions.models import (
    Conflict,
    StageReached,
    Touched,
    Transaction,
    TransactionHop,
)
from observatory.triage import deadlines, queries
from observatory.triage.models import (
    ACKNOWLEDGED,
    CONFLICT,
    DUPLICATE,
    FAILED_HOP,
    OPEN,
    RESOLVED,
    STUCK,
    SYSTEM_ACTOR,
    UNRESOLVED,
    Issue,
    TriagedHop,
)
from tracing import conventions as c

log = logging.getLogger(__name__)

#: live topic for every change of the queue (payload: counts, or one issue's id and state)
LIVE_TOPIC = "exceptions.changed"
#: channel order ids: two captures of one transaction with two of these are a duplicate
CHANNEL_ORDER_KINDS = (c.ORDER_NUMBER, c.SHOPIFY_ORDER_ID, c.MARKETPLACE_ORDER_ID, c.POS_RECEIPT)
_LOCK_ID = 0x7472_6961_6765  # "triage"
#: triage's name on the stitcher's queue of touched transactions
CONSUMER = "triage"
_BATCH = 1000


@dataclass
class SweepResult:
    stuck_opened: int = 0
    stuck_closed: int = 0
    failed_opened: int = 0
    failed_closed: int = 0
    duplicates_opened: int = 0
    conflicts_opened: int = 0
    #: stuck exceptions whose stage turned out to have come in time
    withdrawn: int = 0
    silences_opened: int = 0
    #: unresolved issues moved onto the transaction theirs was merged into
    moved: int = 0
    #: another sweep held the lock; this one did nothing
    skipped: bool = False

    @property
    def changed(self) -> bool:
        return any(v for k, v in asdict(self).items() if k != "skipped")


class IssueNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """The issue is in a state the verb does not apply to (acknowledging a resolved one)."""


# --- people's verbs -------------------------------------------------------------------------


def do_acknowledge(issue_id: int, who: str, *, clock: Clock = now) -> Issue:
    """Mark an open issue acknowledged by ``who``. Acknowledging twice is a no-op;
    acknowledging a resolved issue raises InvalidTransition."""
    with transaction.atomic():
        changed = Issue.objects.filter(pk=issue_id, state=OPEN).update(
            state=ACKNOWLEDGED, acknowledged_at=clock(), acknowledged_by=who[:150]
        )
        issue = Issue.objects.filter(pk=issue_id).first()
        if issue is None:
            raise IssueNotFound(issue_id)
        if not changed and issue.state == RESOLVED:
            raise InvalidTransition(f"exception {issue_id} is already resolved")
        if changed:
            live.publish_on_commit(LIVE_TOPIC, {"id": issue.id, "state": issue.state})
    return issue


def do_resolve(issue_id: int, who: str, *, note: str = "", clock: Clock = now) -> Issue:
    """Resolve an open or acknowledged issue, recording ``who``. Resolving a resolved
    issue changes nothing. A resolved ``stuck`` issue is not reopened by later sweeps."""
    with transaction.atomic():
        changed = Issue.objects.filter(pk=issue_id, state__in=UNRESOLVED).update(
            state=RESOLVED,
            resolved_at=clock(),
            resolved_by=who[:150],
            resolution=(note or "resolved by hand")[:255],
        )
        issue = Issue.objects.filter(pk=issue_id).first()
        if issue is None:
            raise IssueNotFound(issue_id)
        if changed:
            live.publish_on_commit(LIVE_TOPIC, {"id": issue.id, "state": issue.state})
    return issue


# --- the pipeline ---------------------------------------------------------------------------


def do_sweep(*, clock: Clock = now, wall: Clock | None = None, full: bool = False) -> SweepResult:
    """Open and close exceptions from what the stitcher wrote, in one transaction.

    ``clock`` is the business "now" SLAs are judged against; ``wall`` the real time the
    reporting streams are read at (their watermarks say which deadlines are knowable:
    ``deadlines.py``). By default the real time; when only ``clock`` is given (judging
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
        if result.changed:
            live.publish_on_commit(LIVE_TOPIC, asdict(result))
    return result


def _try_lock() -> bool:
    return bulk.try_lock(_LOCK_ID)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _human(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s} s"


def _insert(rows: list[Issue]) -> int:
    """Insert new issues; a key already unresolved (a racing sweep) is skipped."""
    for i in range(0, len(rows), _BATCH):
        Issue.objects.bulk_create(rows[i : i + _BATCH], ignore_conflicts=True)
    return len(rows)


def _resolve(qs: Any, at: datetime, why: str) -> int:
    return int(
        qs.update(state=RESOLVED, resolved_at=at, resolved_by=SYSTEM_ACTOR, resolution=why[:255])
    )


# --- merges ---------------------------------------------------------------------------------


def _final_winners(ids: Iterable[int]) -> dict[int, int]:
    """tx id -> the live transaction it was (perhaps transitively) merged into."""
    ids = list(ids)
    parent: dict[int, int | None] = {}
    frontier = set(ids)
    for _ in range(32):  # merge chains are short; the bound guards against a cycle
        frontier -= set(parent)
        if not frontier:
            break
        rows = Transaction.objects.filter(id__in=list(frontier)).values_list("id", "merged_into")
        for pk, into in rows:
            parent[pk] = into
        frontier = {into for _, into in rows if into is not None}
    out = {}
    for start in ids:
        cur, hops = start, 0
        while parent.get(cur) is not None and hops < 32:
            cur = parent[cur]  # type: ignore[assignment]
            hops += 1
        out[start] = cur
    return out


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
    winners = _final_winners({i.transaction_id for i in stale if i.transaction_id})
    # stuck questions follow the merge in the deadline sweep: judged on the stage times
    # of the transaction they merged into
    movers = [i for i in stale if i.kind != STUCK]
    wanted = {
        i.id: _rekey(i.dedupe_key, i.transaction_id, winners[i.transaction_id]) for i in movers
    }
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
        issue.transaction_id = winners[issue.transaction_id]
        issue.dedupe_key = key
        moved.append(issue)
    _resolve(
        Issue.objects.filter(id__in=doubles), at, "the transaction it was merged into has the same"
    )
    Issue.objects.bulk_update(moved, ["transaction_id", "dedupe_key"], batch_size=_BATCH)
    result.moved += len(moved)


# --- failed hops ----------------------------------------------------------------------------


def _op_key(system: str, operation: str) -> str:
    raw = f"{system}:{operation}"
    if len(raw) <= 160:
        return raw
    return f"{system}:{hashlib.sha1(operation.encode()).hexdigest()}"


def _open_failed(
    at: datetime, touched: list[int] | None, owner: Callable[[str], str], result: SweepResult
) -> None:
    links = TransactionHop.objects.filter(
        hop__outcome=c.ERROR, transaction__merged_into__isnull=True
    ).exclude(Exists(TriagedHop.objects.filter(hop_id=OuterRef("hop_id"))))
    if touched is not None:
        links = links.filter(transaction_id__in=touched)
    rows = list(
        links.order_by("hop__start_time", "hop_id").values_list(
            "transaction_id",
            "hop_id",
            "hop__system",
            "hop__operation",
            "hop__start_time",
            "hop__status_message",
            "hop__retry_attempt",
        )
    )
    if not rows:
        return
    # per (transaction, system, operation): how many failed, and the latest failure
    groups: dict[str, dict[str, Any]] = {}
    for tx_id, hop_id, system, operation, start, message, attempt in rows:
        key = f"{FAILED_HOP}:{tx_id}:{_op_key(system, operation)}"
        g = groups.setdefault(
            key,
            {"tx": tx_id, "system": system, "operation": operation, "count": 0, "first": start},
        )
        g["count"] += 1
        g.update(hop=hop_id, at=start, message=message, attempt=attempt)  # rows are in time order
    held = {
        i.dedupe_key: i
        for i in Issue.objects.filter(state__in=UNRESOLVED, dedupe_key__in=list(groups))
    }
    labels = queries.transaction_labels(g["tx"] for k, g in groups.items() if k not in held)
    new, changed = [], []
    for key, g in groups.items():
        issue = held.get(key)
        if issue is not None:
            failures = int(issue.detail.get("failures", 1)) + g["count"]
            issue.detail = {**issue.detail, "failures": failures}
            if issue.event_at is None or g["at"] > issue.event_at:
                issue.hop_id = g["hop"]
                issue.event_at = g["at"]
                issue.detail.update(last_error=g["message"], retry_attempt=g["attempt"])
            issue.summary = _failed_summary(
                issue.summary.split(": ", 1)[0], g, failures, issue.detail["last_error"]
            )
            changed.append(issue)
            continue
        new.append(
            Issue(
                kind=FAILED_HOP,
                transaction_id=g["tx"],
                hop_id=g["hop"],
                system=g["system"],
                operation=g["operation"][:255],
                owner=owner(g["system"]),
                summary=_failed_summary(labels[g["tx"]], g, g["count"], g["message"]),
                detail={
                    "failures": g["count"],
                    "first_failed_at": g["first"].isoformat(),
                    "last_error": g["message"],
                    "retry_attempt": g["attempt"],
                },
                dedupe_key=key,
                event_at=g["at"],
                opened_at=g["first"],
                detected_at=at,
            )
        )
    Issue.objects.bulk_update(
        changed, ["hop_id", "event_at", "detail", "summary"], batch_size=_BATCH
    )
    result.failed_opened += _insert(new)
    claims = [TriagedHop(hop_id=hop_id, at=at) for hop_id in {r[1] for r in rows}]
    TriagedHop.objects.bulk_create(claims, ignore_conflicts=True, batch_size=_BATCH)


def _failed_summary(label: str, g: dict[str, Any], failures: int, message: str) -> str:
    times = f" ({failures} times)" if failures > 1 else ""
    why = f": {_short(message)}" if message else ""
    return f"{label}: {g['system']} {g['operation']} failed{times}{why}"


def _close_failed(result: SweepResult) -> None:
    """Resolve failed-hop exceptions a later attempt made good, at the business time of
    that attempt."""
    later_success = TransactionHop.objects.filter(
        transaction_id=OuterRef("transaction_id"),
        hop__system=OuterRef("system"),
        hop__operation=OuterRef("operation"),
        hop__outcome=c.OK,
        hop__start_time__gt=OuterRef("event_at"),
    )
    first = Subquery(later_success.order_by("hop__start_time").values("hop__start_time")[:1])
    result.failed_closed += int(
        Issue.objects.filter(kind=FAILED_HOP, state__in=UNRESOLVED)
        .filter(Exists(later_success))
        .update(
            state=RESOLVED,
            resolved_at=first,
            resolved_by=SYSTEM_ACTOR,
            resolution="a later attempt succeeded",
        )
    )


# --- duplicates and conflicts ---------------------------------------------------------------


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
        tx_ids = {x.transaction_id for x in batch} | {x.other_transaction_id for x in batch}
        tx_ids.discard(None)
        winners = _final_winners(tx_ids)
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


def _conflict_summary(label: str, system: str, operation: str, clashes: list[dict]) -> str:
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
