"""Reads for triage: the exception queue with ages, owner routing, and the order read
model (one transaction with its timeline, SLA statuses, hops and exceptions) that the
orders API and the order page share.

Every function here runs a fixed number of queries whatever the number of rows.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    Field,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce

from observatory.hops.models import DuplicateDelivery, Hop, HopKey
from observatory.lib import memo
from observatory.lib.rows import column_of, fetch
from observatory.transactions.models import (
    SlaPolicy,
    StageReached,
    Transaction,
    TransactionHop,
    TransactionKey,
)
from observatory.triage import sla
from observatory.triage.models import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    STUCK,
    UNRESOLVED,
    WITHDRAWN,
    Issue,
    IssueNote,
    OwnerRoute,
)
from observatory.triage.order_hops import HopTotals, batch_stage_hops, hop_totals
from tracing import conventions as c

_CHUNK = 500
_TX = Transaction._meta.db_table
_TXHOP = TransactionHop._meta.db_table

#: Key kinds that name a transaction to a person, most telling first.
LABEL_KINDS = (
    c.ORDER_NUMBER,
    c.POS_RECEIPT,
    c.MARKETPLACE_ORDER_ID,
    c.SHOPIFY_ORDER_ID,
    c.RETURN_ID,
    c.INVENTORY_UPDATE_ID,
    c.ERP_SALES_ORDER,
    c.CORRELATION_ID,
)

#: Kinds that mark a hop as part of a batch (a nightly file, an ERP batch posting).
BATCH_KINDS = frozenset({c.BATCH_ID, c.FILE})


class BadRequest(ValueError):
    """A request parameter that cannot be used; ``field`` names it, ``location`` says
    where it is (``query``, ``path``, ``body``). The API answers 422 naming it."""

    def __init__(self, field_name: str, message: str, location: str = "query") -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.location = location


# --- owners ---------------------------------------------------------------------------------


def owner_router() -> Callable[[str], str]:
    """system -> owning team, from the OwnerRoute table (one query), then its ``*`` row,
    then settings.TRIAGE_DEFAULT_OWNER."""
    routes = dict(OwnerRoute.objects.values_list("system", "team"))
    fallback = routes.get("*") or settings.TRIAGE_DEFAULT_OWNER

    def route(system: str) -> str:
        return routes.get(system) or fallback

    return route


# --- labels ---------------------------------------------------------------------------------


def pick_label(keys: Iterable[tuple[str, str]]) -> str:
    """The key a person would call a transaction by, as ``kind=value``."""
    held: dict[str, str] = {}
    for kind, value in keys:
        held.setdefault(kind, value)
    for kind in LABEL_KINDS:
        if kind in held:
            return f"{kind}={held[kind]}"
    if held:
        kind = sorted(held)[0]
        return f"{kind}={held[kind]}"
    return ""


def transaction_labels(ids: Iterable[int]) -> dict[int, str]:
    """tx id -> its label (``order_number=#1001``; ``transaction 7`` without keys)."""
    ids = sorted(set(ids))
    keys: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for i in range(0, len(ids), _CHUNK):
        rows = TransactionKey.objects.filter(
            transaction_id__in=ids[i : i + _CHUNK], kind__in=LABEL_KINDS
        ).values_list("transaction_id", "kind", "value")
        for tx_id, kind, value in rows:
            keys[tx_id].append((kind, value))
    return {i: pick_label(keys[i]) or f"transaction {i}" for i in ids}


# --- policies -------------------------------------------------------------------------------


def _column(name: str) -> str:
    field = SlaPolicy._meta.get_field(name)
    assert isinstance(field, Field)
    return column_of(field)


#: the active policies, their columns in the order of ``sla.Policy``'s fields
_POLICIES_SQL = "SELECT {} FROM {} WHERE {} = %s ORDER BY {}".format(
    ", ".join(_column(f.name) for f in fields(sla.Policy)),
    SlaPolicy._meta.db_table,
    SlaPolicy._meta.get_field("active").column,
    SlaPolicy._meta.pk.column,
)


def policies() -> list[sla.Policy]:
    """The active SLA policies, as plain values for ``sla``.

    Read afresh every time, so an edit in the admin counts at once (once per page inside
    ``memo.reads_once()``); as plain SQL because every order lookup reads them, and
    building the ORM query cost more than running it.
    """
    return list(memo.once("sla_policies", _read_policies))


def _read_policies() -> tuple[sla.Policy, ...]:
    with connection.cursor() as cur:
        cur.execute(_POLICIES_SQL, [True])
        return tuple(sla.Policy(*row) for row in cur.fetchall())


# --- paging ---------------------------------------------------------------------------------


def encode_cursor(at: datetime, pk: int) -> str:
    raw = orjson.dumps([at.isoformat(), pk])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (time, id) a cursor stands for; BadRequest('cursor') if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_s, pk = orjson.loads(raw)
        at = datetime.fromisoformat(at_s)
        if at.tzinfo is None or not isinstance(pk, int) or not 0 < pk <= 2**63 - 1:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("cursor", "not a cursor this API handed out") from None
    return at, pk


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


# --- the exception queue --------------------------------------------------------------------

STATE_GROUPS = {
    "unresolved": UNRESOLVED,
    "open": (OPEN,),
    "acknowledged": (ACKNOWLEDGED,),
    "resolved": (RESOLVED,),
    # judged on business time, never a problem: only when asked for by name, or "all"
    "withdrawn": (WITHDRAWN,),
    "all": (OPEN, ACKNOWLEDGED, RESOLVED, WITHDRAWN),
}
KIND_NAMES = {k for k, _ in Issue._meta.get_field("kind").choices or []}


def parse_states(state: str | None) -> tuple[str, ...]:
    """``open``, ``acknowledged``, ``resolved``, ``withdrawn``, ``unresolved`` (open +
    acknowledged, the default) or ``all`` (withdrawn included); several may be joined with
    commas."""
    if not state:
        return UNRESOLVED
    out: list[str] = []
    for part in state.split(","):
        group = STATE_GROUPS.get(part.strip().lower())
        if group is None:
            raise BadRequest("state", f"'{part}' is not one of {', '.join(sorted(STATE_GROUPS))}")
        out.extend(s for s in group if s not in out)
    return tuple(out)


def parse_kinds(kind: str | None) -> tuple[str, ...]:
    if not kind:
        return ()
    kinds = tuple(k.strip().lower() for k in kind.split(","))
    for k in kinds:
        if k not in KIND_NAMES:
            raise BadRequest("kind", f"'{k}' is not one of {', '.join(sorted(KIND_NAMES))}")
    return kinds


def issues(
    *,
    states: Sequence[str] = UNRESOLVED,
    kinds: Sequence[str] = (),
    owner: str = "",
    system: str = "",
    transaction_id: int | None = None,
    search: str = "",
    assignee: str = "",
) -> QuerySet[Issue]:
    """The exception queue, filtered (no ordering applied). ``search`` finds an order
    number or any key (its start, as the orders search: ``1001`` finds ``#1001``; or
    ``kind=value``), an owner, an assignee or words of the message; ``assignee`` is a
    username."""
    qs = Issue.objects.filter(state__in=list(states))
    if search:
        qs = qs.filter(search_q(search))
    if assignee:
        qs = qs.filter(assignee__username=assignee)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    if owner:
        qs = qs.filter(owner=owner)
    if system:
        qs = qs.filter(system=system)
    if transaction_id is not None:
        qs = qs.filter(transaction_id=transaction_id)
    return qs


def search_q(text: str) -> Q:
    """Exceptions whose order has a key starting with ``text`` (``kind=value``: of that
    kind), or whose owner, assignee or summary holds it."""
    text = text.strip()[:256]
    kind, sep, value = text.partition("=")
    if sep and kind and value and kind.replace("_", "").isalnum():
        keys = TransactionKey.objects.filter(kind=kind, value__startswith=value)
    else:
        values = {text, text.lstrip("#"), "#" + text.lstrip("#")}
        by_value = Q()
        for v in values:
            by_value |= Q(value__startswith=v)
        keys = TransactionKey.objects.filter(by_value)
    return (
        Q(transaction_id__in=keys.values("transaction_id"))
        | Q(owner__icontains=text)
        | Q(assignee__username__icontains=text)
        | Q(summary__icontains=text)
    )


def exception_queue(
    *,
    states: Sequence[str] = UNRESOLVED,
    kinds: Sequence[str] = (),
    owner: str = "",
    system: str = "",
    transaction_id: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
    search: str = "",
    assignee: str = "",
) -> Page:
    """One page of the exception queue, oldest first (keyset on opened_at, id), each
    issue with ``transaction_label`` and ``assignee_name`` set. Two queries."""
    qs = issues(
        states=states,
        kinds=kinds,
        owner=owner,
        system=system,
        transaction_id=transaction_id,
        search=search,
        assignee=assignee,
    )
    if cursor:
        at, pk = decode_cursor(cursor)
        qs = qs.filter(Q(opened_at__gt=at) | Q(opened_at=at, id__gt=pk))
    rows: list[Any] = list(
        qs.annotate(
            tx_amount=F("transaction__amount"),
            tx_currency=F("transaction__currency"),
            assignee_name=F("assignee__username"),
        ).order_by("opened_at", "id")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    labels = transaction_labels(r.transaction_id for r in rows if r.transaction_id)
    for r in rows:
        r.transaction_label = labels.get(r.transaction_id, "") if r.transaction_id else ""
    nxt = encode_cursor(rows[-1].opened_at, rows[-1].id) if more and rows else None
    return Page(items=rows, next_cursor=nxt)


def issue_with_history(issue_id: int) -> tuple[Issue, list[IssueNote]] | None:
    """One exception (with its order's amount, its assignee and its order's label) and its
    history, oldest first. Three queries."""
    issue = (
        Issue.objects.filter(pk=issue_id)
        .annotate(
            tx_amount=F("transaction__amount"),
            tx_currency=F("transaction__currency"),
            assignee_name=F("assignee__username"),
        )
        .first()
    )
    if issue is None:
        return None
    tx = issue.transaction_id
    issue.transaction_label = transaction_labels([tx])[tx] if tx else ""  # type: ignore[attr-defined]
    return issue, list(IssueNote.objects.filter(issue_id=issue_id).order_by("at", "id"))


def issue_age_s(issue: Issue, now: datetime) -> float:
    """Seconds the issue has been (or was, once resolved) waiting; never negative."""
    end = issue.resolved_at or now
    return max(0.0, (end - issue.opened_at).total_seconds())


@dataclass
class AgeBuckets:
    """Unresolved exceptions by age (the fields of the ``exception_aging`` KPI, docs/kpis.md)."""

    open: int = 0
    under_1h: int = 0
    h1_to_4: int = 0
    h4_to_24: int = 0
    over_24h: int = 0
    oldest_s: float = 0.0


def age_buckets(qs: QuerySet[Issue] | None, now: datetime) -> AgeBuckets:
    """Count the unresolved issues of ``qs`` (default: all) by age. One query."""
    qs = (qs if qs is not None else Issue.objects.all()).filter(state__in=list(UNRESOLVED))
    h = timedelta(hours=1)
    agg = qs.aggregate(
        open=Count("id"),
        under_1h=Count("id", filter=Q(opened_at__gt=now - h)),
        h1_to_4=Count("id", filter=Q(opened_at__lte=now - h, opened_at__gt=now - 4 * h)),
        h4_to_24=Count("id", filter=Q(opened_at__lte=now - 4 * h, opened_at__gt=now - 24 * h)),
        over_24h=Count("id", filter=Q(opened_at__lte=now - 24 * h)),
        oldest=Min("opened_at"),
    )
    oldest = agg.pop("oldest")
    return AgeBuckets(**agg, oldest_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def queue_choices() -> dict[str, list[str]]:
    """The owners and systems that unresolved issues have, for filter drop-downs."""
    rows = Issue.objects.filter(state__in=list(UNRESOLVED)).values_list("owner", "system")
    owners, systems = set(), set()
    for owner, system in rows.distinct():
        owners.add(owner)
        systems.add(system)
    return {"owners": sorted(owners - {""}), "systems": sorted(systems - {""})}


# --- the order list -------------------------------------------------------------------------


def _stuck_subquery() -> Exists:
    return Exists(
        Issue.objects.filter(transaction_id=OuterRef("pk"), kind=STUCK, state__in=list(UNRESOLVED))
    )


def orders(
    *,
    stage: str = "",
    system: str = "",
    stuck: bool | None = None,
    channel: str = "",
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Transactions, newest first (keyset on created_at, id), each with its keys, the
    number of unresolved exceptions and whether it is stuck. Three queries.

    ``stage`` is the current stage; ``system`` keeps transactions with a hop of that
    system; ``since``/``until`` bound when Observatory first saw the transaction."""
    qs = Transaction.objects.filter(merged_into__isnull=True)
    if stage:
        qs = qs.filter(current_stage=stage)
    if channel:
        qs = qs.filter(channel=channel)
    if kind:
        qs = qs.filter(kind=kind)
    if system:
        qs = qs.filter(
            Exists(TransactionHop.objects.filter(transaction_id=OuterRef("pk"), hop__system=system))
        )
    if stuck is not None:
        qs = qs.filter(_stuck_subquery()) if stuck else qs.exclude(_stuck_subquery())
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if cursor:
        at, pk = decode_cursor(cursor)
        qs = qs.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    # correlated subqueries, not a join and GROUP BY: computed for the page's rows only
    open_count = (
        Issue.objects.filter(transaction_id=OuterRef("pk"), state__in=list(UNRESOLVED))
        .order_by()
        .values("transaction_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    qs = qs.annotate(
        open_exceptions=Coalesce(Subquery(open_count), 0),
        stuck=_stuck_subquery(),
    ).prefetch_related(Prefetch("keys", queryset=TransactionKey.objects.order_by("kind", "value")))
    rows = list(qs.order_by("-created_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return Page(items=rows, next_cursor=nxt)


# --- one order ------------------------------------------------------------------------------


@dataclass
class StageView:
    """One stage-reached event of the timeline, with its SLA judgement (if a policy
    ends at this stage)."""

    row: StageReached
    batch: bool
    sla: sla.SlaStatus | None
    first: bool  # the first time this stage was reached (later ones are repeats)


@dataclass
class OrderView:
    """Everything the order API and the order page show for one transaction."""

    tx: Transaction
    keys: list[TransactionKey]
    stages: list[StageView]
    slas: list[sla.SlaStatus]
    hops: list[Hop]
    issues: list[Issue]
    duplicates: list[DuplicateDelivery]
    now: datetime
    stage_systems: dict[str, str] = field(default_factory=dict)
    #: with a page of hops (``hop_limit``): what all of them add up to
    hop_totals: HopTotals | None = None


def order_view(
    tx: Transaction, now: datetime, *, hop_limit: int | None = None, hop_offset: int = 0
) -> OrderView:
    """The read model of one transaction (found with ``transactions.queries.lookup`` or
    ``get_transaction``). Seven queries whatever its size, written as plain WHERE clauses
    (``lib.rows.fetch``): every order lookup runs them, and compiling them through the ORM
    cost more than running them.

    With ``hop_limit``, only that many hops from ``hop_offset`` (in time order) are read,
    with their keys, and ``hop_totals`` says what all of them add up to (two queries
    more): an order of 20,000 hops is not read whole for a page that shows a few hundred.
    """
    keys = fetch(TransactionKey, "transaction_id = %s", [tx.id], "kind, value, id")
    stage_rows = fetch(StageReached, "transaction_id = %s", [tx.id], "at, id")
    members = f"SELECT hop_id FROM {_TXHOP} WHERE transaction_id = %s"
    totals = None
    if hop_limit is None:
        hops = fetch(Hop, f"id IN ({members})", [tx.id], "start_time, id")
        hop_keys = fetch(HopKey, f"hop_id IN ({members})", [tx.id], "kind, value, id")
    else:
        page = f"start_time, id LIMIT {max(0, int(hop_limit))} OFFSET {max(0, int(hop_offset))}"
        hops = fetch(Hop, f"id IN ({members})", [tx.id], page)
        ids = [h.id for h in hops] or [0]
        marks = ", ".join(["%s"] * len(ids))
        hop_keys = fetch(HopKey, f"hop_id IN ({marks})", ids, "kind, value, id")
        totals = hop_totals(tx.id)
    keys_of: dict[int, list[HopKey]] = defaultdict(list)
    for k in hop_keys:
        keys_of[k.hop_id].append(k)
    for h in hops:
        # what prefetch_related would leave: hop.keys.all() answers from it
        cache = {"keys": keys_of.get(h.id, [])}
        h._prefetched_objects_cache = cache  # type: ignore[attr-defined]
    if hop_limit is None:
        batch_hops = {
            h.id for h in hops if any(k.kind in BATCH_KINDS or k.fanout for k in h.keys.all())
        }
    else:
        batch_hops = batch_stage_hops(tx.id, BATCH_KINDS)
    reached: dict[str, sla.Reached] = {}
    for s in stage_rows:
        held = reached.get(s.stage)
        if held is None or s.at < held.at:
            reached[s.stage] = sla.Reached(at=s.at, batch=s.hop_id in batch_hops, system=s.system)
    slas = sla.evaluate(policies(), tx.kind, tx.channel, reached, now)
    per_stage = sla.by_stage(slas)
    seen: set[str] = set()
    stages = []
    for s in stage_rows:
        first = s.stage not in seen
        seen.add(s.stage)
        stages.append(
            StageView(
                row=s,
                batch=s.hop_id in batch_hops,
                sla=per_stage.get(s.stage) if first else None,
                first=first,
            )
        )
    # with those closed on transactions merged into this one (open ones follow the merge):
    # the transactions are a subquery (two index scans, OR-ed), where an OR across the
    # join read both tables whole
    merged = f"SELECT id FROM {_TX} WHERE id = %s OR merged_into_id = %s"
    tx_issues = fetch(Issue, f"transaction_id IN ({merged})", [tx.id, tx.id], "opened_at, id")
    duplicates = fetch(DuplicateDelivery, f"hop_id IN ({members})", [tx.id], "received_at, id")
    return OrderView(
        tx=tx,
        keys=keys,
        stages=stages,
        slas=slas,
        hops=hops,
        issues=tx_issues,
        duplicates=duplicates,
        now=now,
        hop_totals=totals,
    )


def trace_transactions(hop_ids: Sequence[int]) -> tuple[list[Transaction], dict[int, list[int]]]:
    """The live transactions a set of hops belongs to, with their keys, and which hops
    each holds (tx id -> hop ids). Two queries."""
    links = list(
        TransactionHop.objects.filter(hop_id__in=list(hop_ids)).values_list(
            "transaction_id", "hop_id"
        )
    )
    held: dict[int, list[int]] = defaultdict(list)
    for tx_id, hop_id in links:
        held[tx_id].append(hop_id)
    txs = list(
        Transaction.objects.filter(id__in=list(held), merged_into__isnull=True)
        .prefetch_related(Prefetch("keys", queryset=TransactionKey.objects.order_by("kind")))
        .order_by("id")
    )
    return txs, held


def hop_keys_of(hop_ids: Sequence[int], kinds: Iterable[str]) -> dict[int, list[tuple[str, str]]]:
    """hop id -> its (kind, value) keys of the given kinds. One query per 500 hops."""
    out: dict[int, list[tuple[str, str]]] = defaultdict(list)
    ids = list(hop_ids)
    kinds = list(kinds)
    for i in range(0, len(ids), _CHUNK):
        rows = HopKey.objects.filter(hop_id__in=ids[i : i + _CHUNK], kind__in=kinds)
        for hop_id, kind, value in rows.values_list("hop_id", "kind", "value"):
            out[hop_id].append((kind, value))
    return out
