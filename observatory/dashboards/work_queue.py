"""The exception queue as a place to work (docs/architecture.md, "Pages"): the CSV of the
filtered queue, one exception with its history, and the people one may assign to.

Teams are the owners exceptions are routed to (``triage.models.OwnerRoute``, editable in
the admin); people are the active Django users. Assigning sets either or both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F

from observatory.dashboards import queries
from observatory.lib.clock import now as clock_now
from observatory.triage import queries as triage_queries
from observatory.triage.models import SYSTEM_ACTOR, OwnerRoute

CSV_LIMIT = 100_000
_CHUNK = 2000
CSV_COLUMNS = (
    "id",
    "kind",
    "state",
    "opened_at",
    "age_s",
    "order",
    "transaction_id",
    "system",
    "owner",
    "assignee",
    "value",
    "currency",
    "summary",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "time_to_resolve_s",
)


def csv_rows(
    f: queries.QueueFilters,
    at: datetime | None = None,
    opened: tuple[datetime | None, datetime] | None = None,
) -> Iterator[list[Any]]:
    """The filtered queue (every page, in the page's order; ``opened`` as the page's
    range) as CSV rows, numbers as numbers; two queries per chunk of ``_CHUNK`` (the rows,
    their orders' labels)."""
    at = at or clock_now()
    yield list(CSV_COLUMNS)
    qs = (
        queries.queue_issues(f, opened)
        .annotate(
            tx_amount=F("transaction__amount"),
            tx_currency=F("transaction__currency"),
            assignee_name=F("assignee__username"),
        )
        .order_by(*queries.QUEUE_SORTS[f.sort][1])
    )
    sent = 0
    while sent < CSV_LIMIT:
        chunk: list[Any] = list(qs[sent : sent + _CHUNK])
        if not chunk:
            return
        labels = triage_queries.transaction_labels(
            i.transaction_id for i in chunk if i.transaction_id
        )
        for i in chunk:
            row = queries.QueueRow(issue=i, label=labels.get(i.transaction_id, ""))
            yield [
                i.id,
                i.kind,
                i.state,
                i.opened_at.isoformat(),
                round(triage_queries.issue_age_s(i, at), 3),
                row.label,
                i.transaction_id or "",
                i.system,
                i.owner,
                i.assignee_name or "",
                "" if i.tx_amount is None else i.tx_amount,
                i.tx_currency or "",
                i.summary,
                i.acknowledged_by,
                i.resolved_at.isoformat() if i.resolved_at else "",
                i.resolved_by,
                "" if row.resolve_s is None else round(row.resolve_s, 3),
            ]
        sent += len(chunk)


@dataclass
class Entry:
    """A line of an exception's history."""

    at: datetime | None
    kind: str
    author: str
    text: str


@dataclass
class IssuePage:
    row: queries.QueueRow
    history: list[Entry]


def issue_page(issue_id: int) -> IssuePage | None:
    """One exception and its history: opened (by triage), people's notes and actions in
    time order, and its closing when triage closed it by itself. Three queries."""
    found = triage_queries.issue_with_history(issue_id)
    if found is None:
        return None
    issue, notes = found
    # opened when the problem began in business time (triage may have found it later)
    history = [Entry(issue.opened_at, "opened", "triage", issue.summary)]
    history += [Entry(n.at, n.kind, n.author, n.text) for n in notes]
    if issue.resolved_at and issue.resolved_by == SYSTEM_ACTOR:
        history.append(Entry(issue.resolved_at, issue.state, "triage", issue.resolution))
    label = getattr(issue, "transaction_label", "")
    return IssuePage(queries.QueueRow(issue=issue, label=label), history)


def people() -> list[str]:
    """Usernames one may assign exceptions to (active users). One query."""
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [str(u) for u in users.values_list("username", flat=True)]


def teams(owners: list[str] | None = None) -> list[str]:
    """The teams exceptions are routed to, and the ``owners`` unresolved ones have (read
    when not given). One or two queries."""
    routed = set(OwnerRoute.objects.values_list("team", flat=True))
    if owners is None:
        owners = triage_queries.queue_choices()["owners"]
    return sorted(routed | set(owners))
