"""People's verbs on an exception: acknowledge, resolve."""

from __future__ import annotations

from django.db import transaction

from observatory.lib import live
from observatory.lib.clock import Clock, now
from observatory.triage.actions.common import LIVE_TOPIC
from observatory.triage.models import ACKNOWLEDGED, OPEN, RESOLVED, UNRESOLVED, Issue


class IssueNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """The issue is in a state the verb does not apply to (acknowledging a resolved one)."""


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
