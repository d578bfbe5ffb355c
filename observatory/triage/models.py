"""The exception queue (docs/api.md, "Exceptions"; docs/architecture.md, "Triage").

An ``Issue`` is one exception an operator must look at: a transaction stuck past its
stage SLA, a failed hop, a duplicate, or a conflict between two identities. (It is not
called ``Exception`` so that it never shadows the builtin.) It has an owner (a team,
routed from the system expected to act through ``OwnerRoute``), an age and a state:
open -> acknowledged -> resolved, or withdrawn when business time shows it never was a
problem (the awaited stage came in time; only its telemetry was late).

Its age counts from ``opened_at``: when the problem began in business time (the missed
deadline, the failed hop, the duplicate delivery), not when triage noticed it
(``detected_at``); data that arrives late is judged on the time it happened.

The sweep that opens and closes issues is idempotent: every issue carries a dedupe key
that is unique among the unresolved ones, so a sweep that runs twice, or two that race,
open it once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from observatory.hops.models import Hop
from observatory.transactions.models import Transaction

STUCK = "stuck"
FAILED_HOP = "failed_hop"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
SILENCE = "silence"
MISMATCH = "mismatch"
KINDS = [
    (STUCK, "stuck past its SLA"),
    (FAILED_HOP, "failed hop"),
    (DUPLICATE, "duplicate"),
    (CONFLICT, "conflict"),
    (SILENCE, "silent system"),
    (MISMATCH, "reconciliation gap"),
]

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
#: judged on business time, it never was a problem (the awaited stage came in time, its
#: telemetry late): left out of every KPI, alert count and the queue's default view
WITHDRAWN = "withdrawn"
STATES = [
    (OPEN, "open"),
    (ACKNOWLEDGED, "acknowledged"),
    (RESOLVED, "resolved"),
    (WITHDRAWN, "withdrawn"),
]
#: States that still need someone (the dedupe key is unique among these).
UNRESOLVED = (OPEN, ACKNOWLEDGED)
#: States that were a real problem at some time (everything but withdrawn).
REAL = (OPEN, ACKNOWLEDGED, RESOLVED)
#: States that are over.
CLOSED = (RESOLVED, WITHDRAWN)

#: Who closes an issue when its cause goes away by itself.
SYSTEM_ACTOR = "system"


class OwnerRoute(models.Model):
    """Data, editable in the admin: which team owns the issues of a system."""

    id = models.BigAutoField(primary_key=True)
    system = models.CharField(
        max_length=64, unique=True, help_text="a system, or * for every system without a row"
    )
    team = models.CharField(max_length=64)

    class Meta:
        ordering = ["system"]

    def __str__(self) -> str:
        return f"{self.system} -> {self.team}"


class Issue(models.Model):
    """One exception in the queue."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=KINDS)
    state = models.CharField(max_length=16, choices=STATES, default=OPEN)
    transaction = models.ForeignKey(
        Transaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="issues"
    )
    #: the failed or refused hop (hops are pruned sooner than exceptions: it may be gone)
    hop = models.ForeignKey(
        Hop,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
    )
    #: the system expected to act (stuck) or the one that failed / sent the bad hop
    system = models.CharField(max_length=64, blank=True)
    #: the operation of the failed hop (failed_hop)
    operation = models.CharField(max_length=255, blank=True)
    #: the stage that did not arrive in time (stuck)
    stage = models.CharField(max_length=32, blank=True)
    owner = models.CharField(max_length=64, blank=True, help_text="the team routed by system")
    summary = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255)
    #: business time of the fact behind it: the missed deadline, the failed hop's start
    event_at = models.DateTimeField(null=True, blank=True)
    #: business time the problem began (an overdue stage: its deadline): ages count from it
    opened_at = models.DateTimeField()
    #: wall-clock time triage found it
    detected_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolution = models.CharField(max_length=255, blank=True, help_text="why it was closed")
    #: the person working on it (a team is ``owner``; both are set by assigning)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )

    class Meta:
        verbose_name = "exception"
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(state__in=UNRESOLVED),
                name="issue_unresolved_once",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "opened_at"], name="issue_queue"),
            models.Index(fields=["kind", "state"], name="issue_kind_state"),
            models.Index(fields=["owner", "state"], name="issue_owner_state"),
            # GET /metrics: the unresolved ones by kind, system and owner, and the oldest
            # of each, from this index alone (docs/metrics.md)
            models.Index(
                fields=["kind", "system", "owner", "opened_at"],
                name="issue_unresolved_groups",
                condition=Q(state__in=UNRESOLVED),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state}): {self.summary}"

    @property
    def tx_id(self) -> int:
        """The transaction of an exception read with ``transaction__isnull=False``."""
        assert self.transaction_id is not None, self.id
        return self.transaction_id


NOTE = "note"
ASSIGNED = "assigned"
#: what a history entry records: a note, or a person's change of state or owner
NOTE_KINDS = [
    (NOTE, "note"),
    (ACKNOWLEDGED, "acknowledged"),
    (RESOLVED, "resolved"),
    (ASSIGNED, "assigned"),
]


class IssueNote(models.Model):
    """One entry of an exception's history: a note someone wrote, or an action someone
    took (acknowledged, resolved, assigned), with its author and time. Append-only."""

    id = models.BigAutoField(primary_key=True)
    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="notes")
    kind = models.CharField(max_length=16, choices=NOTE_KINDS, default=NOTE)
    at = models.DateTimeField()
    author = models.CharField(max_length=150)
    text = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["issue", "at"], name="issuenote_history")]

    def __str__(self) -> str:
        return f"{self.kind} on exception {self.issue_id} by {self.author}"


class TriagedHop(models.Model):
    """A failed hop triage has already looked at (its own marker: hops stay immutable).

    The hop's issues were opened for every transaction it belonged to when it was claimed;
    a fan-out hop's memberships are all written by the stitch that placed it.
    """

    hop = models.OneToOneField(
        Hop, primary_key=True, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"hop {self.hop_id} triaged at {self.at:%Y-%m-%d %H:%M:%S}"


class SweepMark(models.Model):
    """When a sweep last started (wall clock), so the next one rescans only what changed
    since, minus an overlap that covers transactions committed late."""

    name = models.CharField(max_length=32, primary_key=True)
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} sweep started {self.started_at:%Y-%m-%d %H:%M:%S}"
