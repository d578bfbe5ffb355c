"""People's verbs on exceptions: acknowledge, resolve, assign (to a person, a team or
both), write a note; one at a time or many at once. Each change a person makes is kept
as an ``IssueNote`` (author, time, what) beside the notes: the exception's history.

The bulk verbs are set-based whatever the number of exceptions: one locking read of the
ones the verb applies to, one UPDATE, one INSERT of their history entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from observatory.lib import live
from observatory.lib.clock import Clock, now
from observatory.triage.actions.common import LIVE_TOPIC
from observatory.triage.models import (
    ACKNOWLEDGED,
    ASSIGNED,
    NOTE,
    OPEN,
    RESOLVED,
    UNRESOLVED,
    Issue,
    IssueNote,
)

#: the verbs ``do_bulk`` takes
BULK_VERBS = ("acknowledge", "resolve", "assign")
MAX_NOTE = 10_000


class _Nobody:
    """Assigning to ``NOBODY`` clears the person."""

    def get_username(self) -> str:
        return "nobody"


NOBODY = _Nobody()


class IssueNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """The issue is in a state the verb does not apply to (acknowledging a resolved one)."""


def do_acknowledge(issue_id: int, who: str, *, clock: Clock = now) -> Issue:
    """Mark an open issue acknowledged by ``who``. Acknowledging twice is a no-op;
    acknowledging a resolved issue raises InvalidTransition."""
    with transaction.atomic():
        result = do_bulk([issue_id], "acknowledge", who, clock=clock)
        issue = Issue.objects.filter(pk=issue_id).first()
        if issue is None:
            raise IssueNotFound(issue_id)
        if not result.changed and issue.state == RESOLVED:
            raise InvalidTransition(f"exception {issue_id} is already resolved")
    return issue


def do_resolve(issue_id: int, who: str, *, note: str = "", clock: Clock = now) -> Issue:
    """Resolve an open or acknowledged issue, recording ``who``. Resolving a resolved
    issue changes nothing. A resolved ``stuck`` issue is not reopened by later sweeps."""
    with transaction.atomic():
        do_bulk([issue_id], "resolve", who, note=note, clock=clock)
        issue = Issue.objects.filter(pk=issue_id).first()
        if issue is None:
            raise IssueNotFound(issue_id)
    return issue


@dataclass
class BulkResult:
    """What a bulk verb did: the exceptions it changed, those it left as they were (a
    resolved one acknowledged), and ids that name no exception."""

    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


def do_bulk(
    ids: Iterable[int],
    verb: str,
    who: str,
    *,
    note: str = "",
    assignee: Any = None,
    team: str | None = None,
    clock: Clock = now,
) -> BulkResult:
    """Apply ``verb`` (``acknowledge``, ``resolve`` or ``assign``) to every exception of
    ``ids`` it applies to: acknowledge the open ones, resolve the unresolved ones, assign
    the unresolved ones to ``assignee`` (a user, ``NOBODY`` to clear, None to leave it) and
    ``team`` (the owner; None leaves it). ``note`` goes into each one's history entry
    (and, resolving, into its resolution)."""
    if verb not in BULK_VERBS:
        raise ValueError(f"verb must be one of {', '.join(BULK_VERBS)}")
    wanted = sorted({int(i) for i in ids})
    who = who[:150]
    at = clock()
    result = BulkResult()
    with transaction.atomic():
        rows = dict(
            Issue.objects.select_for_update()
            .filter(pk__in=wanted)
            .order_by("pk")
            .values_list("pk", "state")
        )
        result.missing = [i for i in wanted if i not in rows]
        states = (OPEN,) if verb == "acknowledge" else UNRESOLVED
        targets = [i for i in wanted if rows.get(i) in states]
        changes: dict[str, Any]
        if verb == "acknowledge":
            changes = {"state": ACKNOWLEDGED, "acknowledged_at": at, "acknowledged_by": who}
            kind, text = ACKNOWLEDGED, note
        elif verb == "resolve":
            changes = {
                "state": RESOLVED,
                "resolved_at": at,
                "resolved_by": who,
                "resolution": (note or "resolved by hand")[:255],
            }
            kind, text = RESOLVED, note
        else:
            changes = {}
            if assignee is not None:
                changes["assignee"] = None if assignee is NOBODY else assignee
            if team is not None:
                changes["owner"] = team[:64]
            kind, text = ASSIGNED, _assignment_words(assignee, team, note)
            if not changes:
                targets = []
        if targets:
            Issue.objects.filter(pk__in=targets).update(**changes)
            _history(targets, kind, who, text, at)
            for i in targets:
                live.publish_on_commit(LIVE_TOPIC, {"id": i, "state": changes.get("state", "")})
        result.changed = targets
        result.unchanged = [i for i in wanted if i in rows and i not in targets]
    return result


def _assignment_words(assignee: Any, team: str | None, note: str) -> str:
    parts = []
    if assignee is not None:
        parts.append(f"to {assignee.get_username()}")
    if team is not None:
        parts.append(f"to the team {team}" if team else "to no team")
    words = " and ".join(parts)
    return f"{words}: {note}" if note else words


def _history(ids: list[int], kind: str, who: str, text: str, at: datetime) -> None:
    IssueNote.objects.bulk_create(
        [IssueNote(issue_id=i, kind=kind, at=at, author=who, text=text[:MAX_NOTE]) for i in ids]
    )


def do_add_note(issue_id: int, who: str, text: str, *, clock: Clock = now) -> IssueNote:
    """Add a note to an exception's history (any state: a resolved one too)."""
    text = text.strip()
    if not text:
        raise ValueError("a note needs some text")
    with transaction.atomic():
        if not Issue.objects.filter(pk=issue_id).exists():
            raise IssueNotFound(issue_id)
        entry = IssueNote.objects.create(
            issue_id=issue_id, kind=NOTE, at=clock(), author=who[:150], text=text[:MAX_NOTE]
        )
        live.publish_on_commit(LIVE_TOPIC, {"id": issue_id, "note": entry.id})
    return entry
