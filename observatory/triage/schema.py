"""API shapes for the exception queue (and the exceptions shown inside an order)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from ninja import Field, Schema

from observatory.hops.api import trace_url
from observatory.hops.schema import ExceptionEventOut, SpanOut
from observatory.lib.params import DbId, Instant, Text32, Text64, Text256, one_of, text
from observatory.transactions.models import KINDS, STAGE_COLUMNS
from observatory.triage import sla
from observatory.triage.models import KINDS as ISSUE_KINDS
from observatory.triage.models import Issue
from observatory.triage.queries import STATE_GROUPS, AgeBuckets, issue_age_s


class ExceptionOut(Schema):
    id: int
    kind: str
    state: str
    owner: str
    system: str
    operation: str
    stage: str
    summary: str
    detail: dict[str, Any]
    transaction_id: int | None
    transaction_label: str
    hop_id: int | None
    event_at: datetime | None
    #: business time the problem began (a stuck order: its missed deadline)
    opened_at: datetime
    #: when triage found it (wall clock)
    detected_at: datetime | None
    #: seconds since the problem began, in business time (until resolved, once resolved)
    age_s: float
    #: under_1h | h1_to_4 | h4_to_24 | over_24h
    age_bucket: str
    acknowledged_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None
    resolved_by: str
    resolution: str
    #: the transaction's amount and currency, where it has one (the value affected)
    value: Decimal | None = None
    currency: str = ""
    #: a failed hop's: the last OpenTelemetry exception event of its latest failure
    exception: ExceptionEventOut | None = None
    #: the page of the trace of its hop (a failed hop's), "" when it has none
    trace_url: str = ""
    #: the person assigned (a username; "" for nobody): the team is ``owner``
    assignee: str = ""


class NoteOut(Schema):
    """One entry of an exception's history: a note, or a person's action."""

    id: int
    #: note | acknowledged | resolved | assigned
    kind: str
    at: datetime
    author: str
    text: str


class ExceptionDetailOut(ExceptionOut):
    #: notes and people's actions, oldest first
    history: list[NoteOut]


class NoteIn(Schema):
    text: Annotated[str, text(10_000, min_length=1)]


class AssignIn(Schema):
    assignee: Annotated[str, text(150)] | None = Field(
        None, description='a username; "" clears the person; absent leaves it'
    )
    team: Annotated[str, text(64)] | None = Field(
        None, description="the owning team; absent leaves it"
    )
    note: Annotated[str, text(255)] = ""


class BulkIn(AssignIn):
    ids: list[DbId] = Field(..., min_length=1, max_length=1000)
    #: acknowledge | resolve | assign
    action: Annotated[str, text(16, one_of(["acknowledge", "resolve", "assign"]), 1)]


class BulkOut(Schema):
    #: the exceptions the action changed
    changed: list[int]
    #: those it did not apply to (acknowledging a resolved one)
    unchanged: list[int]
    #: ids that name no exception
    missing: list[int]


def note_out(n: Any) -> NoteOut:
    return NoteOut(id=n.id, kind=n.kind, at=n.at, author=n.author, text=n.text)


class AgingOut(Schema):
    open: int
    under_1h: int
    h1_to_4: int
    h4_to_24: int
    over_24h: int
    oldest_s: float


class ExceptionPageOut(Schema):
    items: list[ExceptionOut]
    next_cursor: str | None
    #: the unresolved exceptions matching the same owner/kind/system filters, by age
    aging: AgingOut


class ResolveIn(Schema):
    note: Annotated[str, text(255)] = ""


def exception_out(issue: Issue, now: datetime, label: str | None = None) -> ExceptionOut:
    """An issue as the API shows it, built without validation as ``api.order_out``
    explains."""
    age = issue_age_s(issue, now)
    return ExceptionOut.model_construct(
        id=issue.id,
        kind=issue.kind,
        state=issue.state,
        owner=issue.owner,
        system=issue.system,
        operation=issue.operation,
        stage=issue.stage,
        summary=issue.summary,
        detail=issue.detail,
        transaction_id=issue.transaction_id,
        transaction_label=label if label is not None else getattr(issue, "transaction_label", ""),
        hop_id=issue.hop_id,
        event_at=issue.event_at,
        opened_at=issue.opened_at,
        detected_at=issue.detected_at,
        age_s=round(age, 3),
        age_bucket=sla.age_bucket(age),
        acknowledged_at=issue.acknowledged_at,
        acknowledged_by=issue.acknowledged_by,
        resolved_at=issue.resolved_at,
        resolved_by=issue.resolved_by,
        resolution=issue.resolution,
        value=getattr(issue, "tx_amount", None),
        currency=getattr(issue, "tx_currency", "") or "",
        exception=_exception(issue.detail.get("exception")),
        trace_url=trace_url(str(issue.detail.get("trace_id") or "")),
        assignee=_assignee(issue),
    )


def _exception(found: Any) -> ExceptionEventOut | None:
    return ExceptionEventOut.model_construct(**found) if isinstance(found, dict) else None


def _assignee(issue: Issue) -> str:
    """The assignee's username: annotated by the queue's query, else read (one issue)."""
    if hasattr(issue, "assignee_name"):
        return str(issue.assignee_name or "")
    return issue.assignee.get_username() if issue.assignee_id and issue.assignee else ""


def aging_out(b: AgeBuckets) -> AgingOut:
    return AgingOut(
        open=b.open,
        under_1h=b.under_1h,
        h1_to_4=b.h1_to_4,
        h4_to_24=b.h4_to_24,
        over_24h=b.over_24h,
        oldest_s=round(b.oldest_s, 3),
    )


class TxKeyOut(Schema):
    kind: str
    value: str


class SlaOut(Schema):
    """One SLA policy judged for this transaction, on business time."""

    policy: str
    policy_id: int
    from_stage: str
    to_stage: str
    #: on_time | late | pending | overdue | cancelled
    status: str
    from_at: datetime
    deadline_s: int
    deadline_at: datetime
    #: deadline plus the batch allowance: not reached after this, it is overdue
    overdue_after: datetime
    reached_at: datetime | None
    #: the stage that satisfied it: to_stage, or a later stage when the flow skipped it
    reached_stage: str
    #: seconds past the deadline (negative: to spare)
    late_by_s: float


class StageOut(Schema):
    stage: str
    at: datetime
    system: str
    platform_status: str
    hop_id: int
    #: the amount and currency the hop that reached it carried (for a batch posting
    #: naming many orders: the batch's), or null
    amount: Decimal | None = None
    currency: str = ""
    #: reached by a batch hop (a file or a batch posting)
    batch: bool
    #: false for a stage reached again after the first time
    first: bool
    sla: SlaOut | None


class DuplicateDeliveryOut(Schema):
    hop_id: int
    received_at: datetime


class OrderSummaryOut(Schema):
    id: int
    kind: str
    channel: str
    store_id: str
    current_stage: str
    keys: list[TxKeyOut]
    amount: Decimal | None
    currency: str
    created_at: datetime
    first_hop_at: datetime | None
    last_hop_at: datetime | None
    hop_count: int
    failed_hop_count: int
    open_exceptions: int
    stuck: bool


class OrderOut(Schema):
    id: int
    kind: str
    channel: str
    store_id: str
    current_stage: str
    amount: Decimal | None
    currency: str
    created_at: datetime
    updated_at: datetime
    first_hop_at: datetime | None
    last_hop_at: datetime | None
    keys: list[TxKeyOut]
    #: every stage-reached event in time order, each with its SLA judgement
    stages: list[StageOut]
    #: every applicable SLA policy judged
    sla: list[SlaOut]
    #: every hop in time order
    hops: list[SpanOut]
    exceptions: list[ExceptionOut]
    duplicate_deliveries: list[DuplicateDeliveryOut]


class OrderPageOut(Schema):
    items: list[OrderSummaryOut]
    #: pass as ``cursor`` for the next (older) page; null on the last page
    next_cursor: str | None


class CandidateOut(Schema):
    id: int
    kind: str
    channel: str
    current_stage: str
    created_at: datetime
    keys: list[TxKeyOut]


class AmbiguousOut(Schema):
    detail: str
    candidates: list[CandidateOut]


class ErrorOut(Schema):
    detail: str


IssueStates = Annotated[
    str,
    text(
        200,
        one_of(sorted(STATE_GROUPS), several=True),
    ),
]
IssueKinds = Annotated[
    str,
    text(
        200,
        one_of([k for k, _ in ISSUE_KINDS], several=True),
    ),
]
StageName = Annotated[str, text(32, one_of(STAGE_COLUMNS))]
TxKind = Annotated[str, text(32, one_of([k for k, _ in KINDS]))]


class OrderFilters(Schema):
    stage: StageName = Field("", description="current stage, e.g. posted")
    system: Text64 = Field("", description="only transactions with a hop of this system")
    stuck: bool | None = Field(None, description="true: with an unresolved stuck exception")
    channel: Text32 = ""
    kind: TxKind = Field("", description="order, return or inventory_update")
    since: Instant | None = Field(None, description="first seen at or after (RFC 3339)")
    until: Instant | None = Field(
        None, description="first seen before (RFC 3339); nothing when not after since"
    )
    limit: int = Field(50, ge=1, le=500)
    cursor: Text256 | None = Field(None, description="next_cursor of the previous page")


class TraceTransactionOut(Schema):
    id: int
    kind: str
    channel: str
    current_stage: str
    keys: list[TxKeyOut]
    #: the spans of this trace that belong to it
    span_ids: list[str]
    #: the path of its order page
    url: str = ""


class TraceOut(Schema):
    trace_id: str
    spans: list[SpanOut]
    transactions: list[TraceTransactionOut]
