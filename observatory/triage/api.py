"""Read API of triage (docs/api.md): orders by any key with their timeline, SLA status and
exceptions; the order list; one trace and its transactions; the exception queue with
acknowledge and resolve. The order read model composes transactions and triage, so it
lives here, in the layer above both.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.params.functions import Path  # typed: a default, not an annotation

from observatory.access.auth import require_write
from observatory.hops.api import span_out
from observatory.hops.queries import trace_spans
from observatory.lib.answers import answers
from observatory.lib.clock import now
from observatory.lib.params import MAX_INT64, NO_NUL, DbId, Text64, Text256, text
from observatory.transactions.models import Transaction, TransactionKey
from observatory.transactions.queries import lookup
from observatory.triage import queries, sla
from observatory.triage.actions import (
    NOBODY,
    InvalidTransition,
    IssueNotFound,
    do_acknowledge,
    do_add_note,
    do_bulk,
    do_resolve,
)
from observatory.triage.models import Issue
from observatory.triage.queries import BadRequest, OrderView
from observatory.triage.schema import (
    AmbiguousOut,
    AssignIn,
    BulkIn,
    BulkOut,
    CandidateOut,
    DuplicateDeliveryOut,
    ErrorOut,
    ExceptionDetailOut,
    ExceptionOut,
    ExceptionPageOut,
    IssueKinds,
    IssueStates,
    NoteIn,
    NoteOut,
    OrderFilters,
    OrderOut,
    OrderPageOut,
    OrderSummaryOut,
    ResolveIn,
    SlaOut,
    StageOut,
    TraceOut,
    TraceTransactionOut,
    TxKeyOut,
    aging_out,
    exception_out,
    note_out,
)

router = Router(tags=["exceptions"])


class ExceptionFilters(Schema):
    state: IssueStates = Field(
        "",
        description="open, acknowledged, resolved, withdrawn, unresolved (the default: "
        "open and acknowledged) or all (withdrawn included); several joined with commas",
    )
    owner: Text64 = ""
    kind: IssueKinds = Field(
        "",
        description="stuck, failed_hop, duplicate, conflict, silence or mismatch (or several)",
    )
    system: Text64 = ""
    transaction: DbId | None = Field(None, description="only this transaction's exceptions")
    q: Text256 = Field(
        "", description="an order number or any key (its start), an owner, an assignee or words"
    )
    assignee: Annotated[str, text(150)] = Field("", description="a username")
    limit: int = Field(50, ge=1, le=500)
    cursor: Text256 | None = Field(None, description="next_cursor of the previous page")


def actor(request: HttpRequest) -> str:
    """Who is acting: the signed-in user, or the API token (its user, if it has one)."""
    token: Any = getattr(request, "api_token", None)
    if token is not None:
        return token.user.get_username() if token.user_id else f"token:{token.name}"
    user: Any = getattr(request, "user", None)
    return user.get_username() if user is not None else "unknown"


@router.get(
    "/exceptions",
    response=answers({200: ExceptionPageOut}),
    summary="The exception queue, oldest first",
)
def list_exceptions(request: HttpRequest, filters: Query[ExceptionFilters]) -> ExceptionPageOut:
    states = queries.parse_states(filters.state)
    kinds = queries.parse_kinds(filters.kind)
    page = queries.exception_queue(
        states=states,
        kinds=kinds,
        owner=filters.owner,
        system=filters.system,
        transaction_id=filters.transaction,
        limit=filters.limit,
        cursor=filters.cursor,
        search=filters.q,
        assignee=filters.assignee,
    )
    at = now()
    aging = queries.age_buckets(
        queries.issues(
            kinds=kinds,
            owner=filters.owner,
            system=filters.system,
            transaction_id=filters.transaction,
        ),
        at,
    )
    return ExceptionPageOut(
        items=[exception_out(i, at) for i in page.items],
        next_cursor=page.next_cursor,
        aging=aging_out(aging),
    )


def _act(issue_id: int, verb: Any, **kwargs: Any) -> ExceptionOut:
    try:
        issue = verb(issue_id, **kwargs)
    except IssueNotFound:
        raise HttpError(404, f"no exception {issue_id}") from None
    except InvalidTransition as exc:
        raise HttpError(409, str(exc)) from None
    return exception_out(issue, now(), label="")


#: a row id in a path: 1 to 2^63 - 1
PATH_ID = Path(..., ge=1, le=MAX_INT64)


def _user(username: str | None) -> Any:
    """The user a username names (None: leave the person as is); 422 naming ``assignee``
    when nobody has it. ``""`` clears the person (``NOBODY``)."""
    if username is None:
        return None
    if username == "":
        return NOBODY
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise BadRequest("assignee", f"no active user is called {username!r}", "body")
    return user


@router.get(
    "/exceptions/{int:issue_id}",
    response=answers({200: ExceptionDetailOut}, 404),
    summary="One exception with its history (notes and people's actions)",
)
def get_exception(request: HttpRequest, issue_id: int = PATH_ID) -> ExceptionDetailOut:
    found = queries.issue_with_history(issue_id)
    if found is None:
        raise HttpError(404, f"no exception {issue_id}")
    issue, history = found
    out = exception_out(issue, now())
    return ExceptionDetailOut(**out.model_dump(), history=[note_out(n) for n in history])


@router.post(
    "/exceptions/bulk",
    response=answers({200: BulkOut}, body=True),
    summary="Acknowledge, resolve or assign many exceptions at once (write scope)",
)
def bulk(request: HttpRequest, body: BulkIn) -> BulkOut:
    require_write(request)
    assignee = _user(body.assignee) if body.action == "assign" else None
    if body.action == "assign" and assignee is None and body.team is None:
        raise BadRequest("assignee", "assign needs an assignee, a team or both", "body")
    result = do_bulk(
        body.ids, body.action, actor(request), note=body.note, assignee=assignee, team=body.team
    )
    return BulkOut(changed=result.changed, unchanged=result.unchanged, missing=result.missing)


@router.post(
    "/exceptions/{issue_id}/assign",
    response=answers({200: ExceptionOut}, 404, body=True),
    summary="Assign an exception to a person, a team or both (write scope)",
)
def assign(request: HttpRequest, body: AssignIn, issue_id: int = PATH_ID) -> ExceptionOut:
    require_write(request)
    assignee = _user(body.assignee)
    if assignee is None and body.team is None:
        raise BadRequest("assignee", "give an assignee, a team or both", "body")
    result = do_bulk(
        [issue_id], "assign", actor(request), note=body.note, assignee=assignee, team=body.team
    )
    if result.missing:
        raise HttpError(404, f"no exception {issue_id}")
    issue = Issue.objects.select_related("assignee").get(pk=issue_id)
    return exception_out(issue, now(), label="")


@router.post(
    "/exceptions/{issue_id}/notes",
    response=answers({201: NoteOut}, 404, body=True),
    summary="Add a note to an exception's history (write scope)",
)
def add_note(request: HttpRequest, body: NoteIn, issue_id: int = PATH_ID) -> Status[NoteOut]:
    require_write(request)
    try:
        entry = do_add_note(issue_id, actor(request), body.text)
    except IssueNotFound:
        raise HttpError(404, f"no exception {issue_id}") from None
    except ValueError as exc:
        raise BadRequest("text", str(exc), "body") from None
    return Status(201, note_out(entry))


@router.post(
    "/exceptions/{issue_id}/ack",
    response=answers({200: ExceptionOut}, 404, 409),
    summary="Acknowledge an exception (write scope or an admin session)",
)
def acknowledge(request: HttpRequest, issue_id: int = PATH_ID) -> ExceptionOut:
    require_write(request)
    return _act(issue_id, do_acknowledge, who=actor(request))


@router.post(
    "/exceptions/{issue_id}/resolve",
    response=answers({200: ExceptionOut}, 404, 409, body=True),
    summary="Resolve an exception (write scope or an admin session)",
)
def resolve(
    request: HttpRequest, issue_id: int = PATH_ID, body: ResolveIn | None = None
) -> ExceptionOut:
    require_write(request)
    note = body.note if body is not None else ""
    return _act(issue_id, do_resolve, who=actor(request), note=note)


orders_router = Router(tags=["orders"])
_TRACE_ID_PATTERN = r"^[0-9a-fA-F]{32}$"
KEYS_IN_ORDER = TransactionKey.objects.order_by("kind", "value")


def _keys(tx: Transaction) -> list[TxKeyOut]:
    return _key_outs(tx.keys.all())


def _key_outs(keys: Iterable[TransactionKey]) -> list[TxKeyOut]:
    return [TxKeyOut.model_construct(kind=k.kind, value=k.value) for k in keys]


def sla_out(s: sla.SlaStatus, at: datetime) -> SlaOut:
    return SlaOut.model_construct(
        policy=s.policy.name,
        policy_id=s.policy.id,
        from_stage=s.policy.from_stage,
        to_stage=s.policy.to_stage,
        status=s.status,
        from_at=s.from_at,
        deadline_s=s.policy.deadline_s,
        deadline_at=s.deadline_at,
        overdue_after=s.overdue_after,
        reached_at=s.reached_at,
        reached_stage=s.reached_stage,
        late_by_s=round(s.late_by_s(at), 3),
    )


def order_out(view: OrderView) -> OrderOut:
    """The answer of ``GET /api/v1/orders/{key}``, built without validation: its values
    come typed from the database, and validating some fifty nested models (ninja validates
    each through a wrapper, and again inside every model that holds it) is costly
    (docs/performance.md, "Reading orders"). tests/transactions/test_api_orders.py checks
    that validation would change nothing."""
    tx, at = view.tx, view.now
    label = queries.pick_label((k.kind, k.value) for k in view.keys)
    return OrderOut.model_construct(
        id=tx.id,
        kind=tx.kind,
        channel=tx.channel,
        store_id=tx.store_id,
        current_stage=tx.current_stage,
        amount=tx.amount,
        currency=tx.currency,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
        first_hop_at=tx.first_hop_at,
        last_hop_at=tx.last_hop_at,
        keys=_key_outs(view.keys),
        stages=[
            StageOut.model_construct(
                stage=s.row.stage,
                at=s.row.at,
                system=s.row.system,
                platform_status=s.row.platform_status,
                hop_id=s.row.hop_id,
                amount=s.row.amount,
                currency=s.row.currency,
                batch=s.batch,
                first=s.first,
                sla=sla_out(s.sla, at) if s.sla else None,
            )
            for s in view.stages
        ],
        sla=[sla_out(s, at) for s in view.slas],
        hops=[span_out(h) for h in view.hops],
        exceptions=[exception_out(i, at, label=label) for i in view.issues],
        duplicate_deliveries=[
            DuplicateDeliveryOut.model_construct(hop_id=d.hop_id, received_at=d.received_at)
            for d in view.duplicates
        ],
    )


@orders_router.get(
    "/orders/{path:key}",
    response=answers({200: OrderOut, 404: ErrorOut, 409: AmbiguousOut}),
    summary="The transaction any key identifies",
    description="A bare value (`#1001`, `1001`, `SO-48213`, a tracking number) is looked "
    "up in every key kind, with and without a leading `#`; `kind=value` is exact. "
    "404 when no key matches; 409 with the candidates when a bare value matches several.",
)
def get_order(
    request: HttpRequest, key: str = Path(..., min_length=1, max_length=300, pattern=NO_NUL)
) -> Status[Any]:
    found = lookup(key)
    if found.transaction is not None:
        return Status(200, order_out(queries.order_view(found.transaction, now())))
    if not found.candidates:
        return Status(404, ErrorOut(detail=f"no transaction has the key {key!r}"))
    candidates = found.candidates
    prefetch_related_objects(candidates, Prefetch("keys", queryset=KEYS_IN_ORDER))
    return Status(
        409,
        AmbiguousOut(
            detail=f"{key!r} matches {len(candidates)} transactions: ask again with kind=value",
            candidates=[
                CandidateOut(
                    id=tx.id,
                    kind=tx.kind,
                    channel=tx.channel,
                    current_stage=tx.current_stage,
                    created_at=tx.created_at,
                    keys=_keys(tx),
                )
                for tx in candidates
            ],
        ),
    )


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@orders_router.get(
    "/orders", response=answers({200: OrderPageOut}), summary="Transactions, newest first"
)
def list_orders(request: HttpRequest, filters: Query[OrderFilters]) -> OrderPageOut:
    since, until = filters.since, filters.until
    if since and until and since >= until:
        # an empty window: nothing was first seen in it (schema-valid, so not an error)
        return OrderPageOut(items=[], next_cursor=None)
    page = queries.orders(
        stage=filters.stage,
        system=filters.system,
        stuck=filters.stuck,
        channel=filters.channel,
        kind=filters.kind,
        since=since,
        until=until,
        limit=filters.limit,
        cursor=filters.cursor,
    )
    return OrderPageOut(
        items=[
            OrderSummaryOut(
                id=tx.id,
                kind=tx.kind,
                channel=tx.channel,
                store_id=tx.store_id,
                current_stage=tx.current_stage,
                keys=_keys(tx),
                amount=tx.amount,
                currency=tx.currency,
                created_at=tx.created_at,
                first_hop_at=tx.first_hop_at,
                last_hop_at=tx.last_hop_at,
                hop_count=tx.hop_count,
                failed_hop_count=tx.failed_hop_count,
                open_exceptions=tx.open_exceptions,
                stuck=tx.stuck,
            )
            for tx in page.items
        ],
        next_cursor=page.next_cursor,
    )


@orders_router.get(
    "/traces/{trace_id}",
    response=answers({200: TraceOut}, 404),
    tags=["traces"],
    summary="The spans of one trace, and the transactions they belong to",
)
def get_trace(
    request: HttpRequest,
    trace_id: str = Path(..., description="32 hexadecimal characters", pattern=_TRACE_ID_PATTERN),
) -> TraceOut:
    trace_id = trace_id.lower()
    spans = trace_spans(trace_id)
    if not spans:
        raise HttpError(404, f"no spans stored for trace {trace_id}")
    txs, held = queries.trace_transactions([h.id for h in spans])
    span_of = {h.id: h.span_id for h in spans}
    return TraceOut(
        trace_id=trace_id,
        spans=[span_out(h) for h in spans],
        transactions=[
            TraceTransactionOut(
                id=tx.id,
                kind=tx.kind,
                channel=tx.channel,
                current_stage=tx.current_stage,
                keys=_keys(tx),
                span_ids=sorted(span_of[h] for h in held[tx.id]),
                url=reverse("dashboards:order", args=[tx.id]),
            )
            for tx in txs
        ],
    )
