"""Reads for the pages, composed from the other apps' models and queries.

Every function here runs a fixed number of SQL statements whatever the size of its
answer (the page tests pin the counts): related rows are fetched in one query per kind
and joined in Python, never one query per row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q, QuerySet, Sum

from observatory.hops.models import Hop
from observatory.lib.clock import now as clock_now
from observatory.transactions import queries as tx_queries
from observatory.transactions.models import Transaction, TransactionKey
from observatory.triage import models as triage_models
from observatory.triage import queries as triage_queries
from observatory.triage import sla
from observatory.triage.models import ACKNOWLEDGED, OPEN, RESOLVED, UNRESOLVED, Issue
from observatory.triage.order_hops import HopTotals
from tracing import conventions as c
from tracing.conventions import INVENTORY_STAGES, ORDER_STAGES, RETURN_STAGES

#: The key kinds that name a transaction best, in the order a person would look for them
#: (triage names transactions in its summaries the same way).
TITLE_KINDS = (*triage_queries.LABEL_KINDS, c.SHIPMENT_ID, c.TRACKING_NUMBER)
ISSUE_KINDS = triage_models.KINDS
ISSUE_STATES = triage_models.STATES

#: Age buckets of the exception queue (the ``exception_aging`` KPI, docs/kpis.md).
AGE_BUCKETS: tuple[tuple[str, str, int, int | None], ...] = (
    ("under_1h", "Under 1 h", 0, 3600),
    ("h1_to_4", "1\u20134 h", 3600, 4 * 3600),
    ("h4_to_24", "4\u201324 h", 4 * 3600, 24 * 3600),
    ("over_24h", "Over 24 h", 24 * 3600, None),
)

SEARCH_LIMIT = 50
QUEUE_PAGE_SIZE = 50


# --- transactions as rows ---------------------------------------------------------------
@dataclass
class OrderRow:
    """One transaction as a line of a table: its keys, its stage, its open exceptions."""

    tx: Transaction
    keys: list[TransactionKey]
    open_issues: int = 0
    hits: set[tuple[str, str]] = field(default_factory=set)

    @property
    def title_key(self) -> TransactionKey | None:
        return title_key(self.keys)

    @property
    def other_keys(self) -> list[TransactionKey]:
        """Keys worth showing beside the title: the matching ones first, then the rest."""
        title = self.title_key
        rest = [k for k in self.keys if k is not title]
        return sorted(rest, key=lambda k: ((k.kind, k.value) not in self.hits, _kind_rank(k)))

    @property
    def hit_strings(self) -> set[str]:
        """The keys the search matched, as ``kind=value`` (for highlighting)."""
        return {f"{k}={v}" for k, v in self.hits}

    @property
    def since(self) -> datetime | None:
        return self.tx.captured_at or self.tx.first_hop_at or self.tx.created_at


def _kind_rank(key: TransactionKey) -> tuple[int, str, str]:
    rank = TITLE_KINDS.index(key.kind) if key.kind in TITLE_KINDS else len(TITLE_KINDS)
    return rank, key.kind, key.value


def title_key(keys: Iterable[TransactionKey]) -> TransactionKey | None:
    """The key that names a transaction best (an order number before a Shopify id)."""
    ranked = sorted(keys, key=_kind_rank)
    return ranked[0] if ranked else None


def _keys_by_tx(tx_ids: Iterable[int]) -> dict[int, list[TransactionKey]]:
    out: dict[int, list[TransactionKey]] = defaultdict(list)
    for key in TransactionKey.objects.filter(transaction_id__in=list(tx_ids)).order_by(
        "kind", "value"
    ):
        out[key.transaction_id].append(key)
    return out


def _open_issues_by_tx(tx_ids: Iterable[int]) -> dict[int, int]:
    rows = (
        Issue.objects.filter(transaction_id__in=list(tx_ids), state__in=UNRESOLVED)
        .values("transaction_id")
        .annotate(n=Count("id"))
    )
    return {r["transaction_id"]: r["n"] for r in rows}


def order_rows(
    txs: Sequence[Transaction], hits: dict[int, set[tuple[str, str]]] | None = None
) -> list[OrderRow]:
    """Table rows for ``txs``: two queries (keys, open exception counts) for any number."""
    ids = [t.id for t in txs]
    keys = _keys_by_tx(ids)
    issues = _open_issues_by_tx(ids)
    hits = hits or {}
    return [
        OrderRow(
            tx=t,
            keys=keys.get(t.id, []),
            open_issues=issues.get(t.id, 0),
            hits=hits.get(t.id, set()),
        )
        for t in txs
    ]


# --- search ------------------------------------------------------------------------------
@dataclass
class SearchResult:
    q: str
    rows: list[OrderRow]
    #: the one transaction the query names exactly (a whole key), if it names just one
    exact: Transaction | None = None
    #: True when more transactions matched than are shown
    truncated: bool = False


def search_orders(q: str, limit: int = SEARCH_LIMIT) -> SearchResult:
    """Transactions with a key value starting with ``q`` (``transactions.queries.search``:
    ``1001`` also finds ``#1001``, ``kind=value`` searches one kind), newest first, and
    the transaction ``q`` names exactly, if just one (``transactions.queries.lookup``).
    At most five queries, whatever matches."""
    q = q.strip()
    if not q:
        return SearchResult(q=q, rows=[])
    exact = tx_queries.lookup(q).transaction
    hits = tx_queries.search(q, limit=limit + 1)
    shown = hits[:limit]
    rows = order_rows(
        [h.transaction for h in shown],
        {h.transaction.id: {(h.kind, h.value)} for h in shown},
    )
    return SearchResult(q=q, rows=rows, exact=exact, truncated=len(hits) > limit)


def recent_orders(
    limit: int = 12, *, since: datetime | None = None, until: datetime | None = None
) -> list[OrderRow]:
    """The newest transactions (captured in ``[since, until)`` of business time when
    given, as the KPIs count them), as table rows. Three queries."""
    found = Transaction.objects.filter(merged_into__isnull=True)
    if since is not None:
        found = found.filter(captured_at__gte=since)
    if until is not None:
        found = found.filter(captured_at__lt=until)
    txs = list(found.order_by("-created_at", "-id")[:limit])
    return order_rows(txs)


# --- the ops summary (the ops dashboard's recent orders and 24-hour counts) ----------------
@dataclass
class HomeSummary:
    recent: list[OrderRow]
    orders_24h: int
    failed_hops_24h: int
    open_issues: int
    acknowledged_issues: int
    issues_by_kind: list[tuple[str, str, int]]
    buckets: list[AgeBucket]
    last_hop_at: datetime | None


def home_summary(
    now: datetime | None = None,
    recent: int = 12,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> HomeSummary:
    """What the root page shows: recent orders, the volume of ``[since, until)`` (the last
    24 hours by default), the exception backlog."""
    now = now or clock_now()
    day_ago = since or now - timedelta(hours=24)
    until = until or now
    # failed hops are few: the partial index triage keeps on them serves this count
    failed = Hop.objects.filter(
        outcome="error", start_time__gte=day_ago, start_time__lt=until
    ).count()
    # the newest stored hop, by primary key: no scan of the hop table
    last = Hop.objects.order_by("-id").values_list("received_at", flat=True).first()
    issue_stats = Issue.objects.filter(state__in=UNRESOLVED).aggregate(
        open=Count("id", filter=Q(state=OPEN)),
        acknowledged=Count("id", filter=Q(state=ACKNOWLEDGED)),
        **{f"kind_{k}": Count("id", filter=Q(kind=k)) for k, _ in ISSUE_KINDS},
    )
    return HomeSummary(
        recent=recent_orders(recent),
        orders_24h=Transaction.objects.filter(
            merged_into__isnull=True, captured_at__gte=day_ago, captured_at__lt=until
        ).count(),
        failed_hops_24h=failed,
        open_issues=issue_stats["open"],
        acknowledged_issues=issue_stats["acknowledged"],
        issues_by_kind=[(k, lbl, issue_stats[f"kind_{k}"]) for k, lbl in ISSUE_KINDS],
        buckets=age_buckets(None, now),
        last_hop_at=last,
    )


# --- one order -----------------------------------------------------------------------------
@dataclass
class StageRow:
    """A line of the stage timeline: a stage reached (or one that is due and missing)."""

    stage: str
    at: datetime | None
    system: str = ""
    platform_status: str = ""
    sla: sla.SlaStatus | None = None
    #: later reaches of the same stage by other hops (a re-post, a second scan)
    again: int = 0
    #: seconds past the SLA deadline (negative: time to spare)
    late_by: float = 0.0
    #: reached by a batch hop (a nightly file, an ERP batch posting)
    batch: bool = False
    #: what the system said the order was worth there (a batch posting: the batch's)
    amount: Decimal | None = None
    currency: str = ""

    @property
    def reached(self) -> bool:
        return self.at is not None

    @property
    def verdict(self) -> str:
        """``on_time``, ``late``, ``pending``, ``overdue``, ``cancelled`` or ``""``."""
        return self.sla.status if self.sla else ""


@dataclass
class RailStep:
    stage: str
    at: datetime | None
    verdict: str = ""


#: Hops shown on one page of an order (an order of 20,000 hops was a 25 MB page).
HOPS_PER_PAGE = 200


@dataclass
class OrderPage:
    """The order page: triage's read model of one transaction, arranged for reading."""

    view: triage_queries.OrderView
    stages: list[StageRow]
    rail: list[RailStep]
    #: hop id -> stages that hop reached (for the chart's labels)
    hop_stages: dict[int, list[str]]
    #: which page of hops (``HOPS_PER_PAGE`` each, in time order) is shown
    hop_page: int = 1

    @property
    def tx(self) -> Transaction:
        return self.view.tx

    @property
    def keys(self) -> list[TransactionKey]:
        return self.view.keys

    @property
    def hops(self) -> list[Hop]:
        return self.view.hops

    @property
    def issues(self) -> list[Issue]:
        """Unresolved first (open before acknowledged), newest first within a state."""
        rank = {OPEN: 0, ACKNOWLEDGED: 1, RESOLVED: 2}
        return sorted(
            self.view.issues, key=lambda i: (rank.get(i.state, 3), -i.opened_at.timestamp())
        )

    @property
    def duplicates(self) -> int:
        return len(self.view.duplicates)

    @property
    def title_key(self) -> TransactionKey | None:
        return title_key(self.keys)

    @property
    def label(self) -> str:
        """``order_number=#1001``, as triage names the transaction in its summaries."""
        return triage_queries.pick_label((k.kind, k.value) for k in self.keys)

    @property
    def issue_rows(self) -> list[QueueRow]:
        return [QueueRow(issue=i, label=self.label) for i in self.issues]

    @property
    def totals(self) -> HopTotals:
        """Every hop's count, failures, retries and systems (not only this page's)."""
        if self.view.hop_totals is not None:
            return self.view.hop_totals
        seen: dict[str, None] = {}
        for hop in self.hops:
            seen.setdefault(hop.system, None)
        return HopTotals(
            count=len(self.hops),
            failed=sum(1 for h in self.hops if h.outcome == "error"),
            retries=sum(1 for h in self.hops if h.retry_attempt > 0 or h.replay),
            systems=list(seen),
        )

    @property
    def systems(self) -> list[str]:
        return self.totals.systems

    @property
    def failed_hops(self) -> int:
        return self.totals.failed

    @property
    def retries(self) -> int:
        return self.totals.retries

    @property
    def hop_count(self) -> int:
        return self.totals.count

    @property
    def pruned_hops(self) -> int:
        """Hops this transaction had that retention has since removed (its timeline,
        keys and exceptions are kept longer: docs/retention.md)."""
        return max(0, self.tx.hop_count - self.hop_count)

    @property
    def hop_retention_days(self) -> int:
        return int(settings.RETENTION_DAYS["hops"])

    @property
    def hop_pages(self) -> int:
        return max(1, -(-self.hop_count // HOPS_PER_PAGE))

    @property
    def first_hop_number(self) -> int:
        return (self.hop_page - 1) * HOPS_PER_PAGE + 1

    @property
    def last_hop_number(self) -> int:
        return self.first_hop_number + len(self.hops) - 1

    @property
    def open_issues(self) -> list[Issue]:
        return [i for i in self.view.issues if i.state != RESOLVED]

    @property
    def sla_state(self) -> str:
        """The worst SLA verdict of the order: ``overdue``, ``late``, ``pending``,
        ``on_time`` or ``""`` (no policy applies)."""
        verdicts = {s.status for s in self.view.slas}
        for v in (sla.OVERDUE, sla.LATE, sla.PENDING, sla.ON_TIME):
            if v in verdicts:
                return v
        return ""


def transaction_or_winner(tx_id: int) -> Transaction | None:
    """The transaction ``tx_id``, or, if it was merged away, the one it now lives in."""
    return tx_queries.get_transaction(tx_id)


def _stage_sequence(kind: str) -> tuple[str, ...]:
    if kind == "return":
        return RETURN_STAGES
    if kind == "inventory_update":
        return INVENTORY_STAGES
    return tuple(s for s in ORDER_STAGES if s != sla.CANCELLED)


def order_page(tx: Transaction, now: datetime | None = None, hop_page: int = 1) -> OrderPage:
    """Everything the order page shows: ``triage.queries.order_view`` (a fixed number of
    queries, whatever the order's size) arranged as a timeline and a progress rail, with
    one page of its hops (``HOPS_PER_PAGE``; the stages and SLAs count every hop)."""
    now = now or clock_now()
    hop_page = max(1, hop_page)
    view = triage_queries.order_view(
        tx, now, hop_limit=HOPS_PER_PAGE, hop_offset=(hop_page - 1) * HOPS_PER_PAGE
    )
    per_stage = sla.by_stage(view.slas)
    hop_stages: dict[int, list[str]] = defaultdict(list)
    rows: dict[str, StageRow] = {}
    for sv in view.stages:
        r = sv.row
        hop_stages[r.hop_id].append(r.stage)
        if sv.first:
            status = per_stage.get(r.stage)
            rows[r.stage] = StageRow(
                stage=r.stage,
                at=r.at,
                system=r.system,
                platform_status=r.platform_status,
                sla=status,
                late_by=status.late_by_s(now) if status else 0.0,
                batch=sv.batch,
                amount=r.amount,
                currency=r.currency,
            )
        elif r.stage in rows:
            rows[r.stage].again += 1
    stages = list(rows.values())
    # a stage that is due and missing shows too, where it belongs in time: at its deadline
    for stage, status in per_stage.items():
        if stage not in rows and status.status in (sla.PENDING, sla.OVERDUE):
            stages.append(StageRow(stage=stage, at=None, sla=status, late_by=status.late_by_s(now)))
    stages.sort(key=lambda s: (s.at or (s.sla.deadline_at if s.sla else now), s.stage))

    rail = [
        RailStep(
            stage=s,
            at=rows[s].at if s in rows else None,
            verdict=per_stage[s].status if s in per_stage else "",
        )
        for s in _stage_sequence(tx.kind)
    ]
    if sla.CANCELLED in rows:
        rail.append(RailStep(stage=sla.CANCELLED, at=rows[sla.CANCELLED].at))
    return OrderPage(
        view=view, stages=stages, rail=rail, hop_stages=dict(hop_stages), hop_page=hop_page
    )


# --- the exception queue ---------------------------------------------------------------------
@dataclass
class AgeBucket:
    name: str
    label: str
    count: int


def age_buckets(issues: QuerySet[Issue] | None, now: datetime) -> list[AgeBucket]:
    """Unresolved ``issues`` per age bucket (``triage.queries.age_buckets``), one query."""
    counts = triage_queries.age_buckets(issues, now)
    return [AgeBucket(name, lbl, getattr(counts, name)) for name, lbl, _, _ in AGE_BUCKETS]


@dataclass(frozen=True)
class QueueFilters:
    """The queue's GET parameters, cleaned: unknown values are ignored, not errors."""

    kind: str = ""
    system: str = ""
    owner: str = ""
    #: "" means unresolved (open or acknowledged); "all" means every state
    state: str = ""
    age: str = ""
    #: an order number or any key, an owner, an assignee or words of the message
    q: str = ""
    assignee: str = ""
    #: age (oldest first), newest, value (highest first) or system
    sort: str = "age"

    @classmethod
    def from_params(cls, params: Any) -> QueueFilters:
        def pick(name: str, allowed: Iterable[str] | None = None) -> str:
            value = str(params.get(name, "") or "").strip()[:64]
            if allowed is not None and value not in allowed:
                return ""
            return value

        return cls(
            kind=pick("kind", [k for k, _ in ISSUE_KINDS]),
            system=pick("system"),
            owner=pick("owner"),
            state=pick("state", [s for s, _ in ISSUE_STATES] + ["all"]),
            age=pick("age", [b[0] for b in AGE_BUCKETS]),
            q=str(params.get("q", "") or "").strip()[:128],
            assignee=pick("assignee"),
            sort=pick("sort", list(QUEUE_SORTS)) or "age",
        )

    @property
    def active(self) -> bool:
        return any(
            (self.kind, self.system, self.owner, self.state, self.age, self.q, self.assignee)
        )

    @property
    def states(self) -> tuple[str, ...]:
        return triage_queries.parse_states(self.state or "unresolved")


#: the queue's orders: sort name -> (words, ORDER BY)
QUEUE_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "age": ("oldest first", ("opened_at", "id")),
    "newest": ("newest first", ("-opened_at", "-id")),
    "value": ("highest value first", (F("tx_amount").desc(nulls_last=True), "opened_at", "id")),
    "system": ("by system", ("system", "opened_at", "id")),
}


@dataclass
class QueueRow:
    issue: Issue
    #: ``order_number=#1001``: the key a person calls the transaction by
    label: str

    @property
    def label_kind(self) -> str:
        return self.label.partition("=")[0] if "=" in self.label else ""

    @property
    def label_value(self) -> str:
        return self.label.partition("=")[2] if "=" in self.label else self.label

    @property
    def summary(self) -> str:
        """The summary without the order's name in front (the row names the order)."""
        return strip_label(self.issue.summary, self.label)

    @property
    def resolve_s(self) -> float | None:
        """Seconds from the problem's start to its resolution (resolved ones only)."""
        i = self.issue
        if i.resolved_at is None:
            return None
        return max(0.0, (i.resolved_at - i.opened_at).total_seconds())

    @property
    def clash(self) -> dict[str, Any] | None:
        """A conflict's (or double posting's) two orders and the key they clash on."""
        d = self.issue.detail or {}
        if "existing_value" not in d:
            return None
        return {
            "kind": d.get("kind", ""),
            "value": d.get("value", ""),
            "existing_value": d.get("existing_value", ""),
            "transaction_id": d.get("transaction_id"),
            "other_transaction_id": d.get("other_transaction_id"),
        }


def strip_label(summary: str, label: str) -> str:
    """``order_number=#1001: not posted ...`` -> ``not posted ...``."""
    if label and summary.startswith(f"{label}: "):
        return summary[len(label) + 2 :]
    return summary


@dataclass
class Queue:
    filters: QueueFilters
    page: Page[Any]
    rows: list[QueueRow]
    buckets: list[AgeBucket]
    total: int
    kinds: list[tuple[str, str]]
    states: list[tuple[str, str]]
    systems: list[str]
    owners: list[str]
    now: datetime
    #: the filtered list's value: (currency, "12,340.00", orders) per currency, never summed
    #: across currencies; each order once however many of its exceptions are listed
    values: list[tuple[str, str, int]] = field(default_factory=list)


def queue_values(issues: QuerySet[Issue]) -> list[tuple[str, str, int]]:
    """The summed amount per currency of the orders behind ``issues``: one query."""
    rows = (
        Transaction.objects.filter(
            id__in=issues.filter(transaction__isnull=False).values("transaction_id"),
            amount__isnull=False,
        )
        .exclude(currency="")
        .values("currency")
        .annotate(total=Sum("amount"), n=Count("id"))
        .order_by("currency")
    )
    return [(r["currency"], f"{r['total']:,.2f}", int(r["n"])) for r in rows]


def queue_issues(
    filters: QueueFilters, opened: tuple[datetime | None, datetime] | None = None
) -> QuerySet[Issue]:
    """The exceptions the queue's filters keep (every age; not ordered); ``opened``: only
    those whose problem began in ``[since, until)``."""
    issues = triage_queries.issues(
        states=filters.states,
        kinds=(filters.kind,) if filters.kind else (),
        owner=filters.owner,
        system=filters.system,
        search=filters.q,
        assignee=filters.assignee,
    )
    if opened is not None:
        if opened[0] is not None:
            issues = issues.filter(opened_at__gte=opened[0])
        issues = issues.filter(opened_at__lt=opened[1])
    return issues


def exception_queue(
    filters: QueueFilters,
    page: int = 1,
    now: datetime | None = None,
    *,
    opened: tuple[datetime | None, datetime] | None = None,
) -> Queue:
    """The queue, sorted as asked (oldest first by default), filtered (``opened``: only
    those whose problem began in ``[since, until)``); the age buckets count the same
    filters (any age, unresolved only). A fixed number of queries for any page."""
    now = now or clock_now()
    issues = queue_issues(filters, opened)
    buckets = age_buckets(issues, now)
    if filters.age:
        _, _, lower, upper = next(b for b in AGE_BUCKETS if b[0] == filters.age)
        issues = issues.filter(opened_at__lte=now - timedelta(seconds=lower))
        if upper is not None:
            issues = issues.filter(opened_at__gt=now - timedelta(seconds=upper))
    values = queue_values(issues)
    issues = issues.annotate(
        tx_amount=F("transaction__amount"),
        tx_currency=F("transaction__currency"),
        assignee_name=F("assignee__username"),
    )
    paginator = Paginator(issues.order_by(*QUEUE_SORTS[filters.sort][1]), QUEUE_PAGE_SIZE)
    current = paginator.get_page(page)
    listed = list(current.object_list)
    labels = triage_queries.transaction_labels(i.transaction_id for i in listed if i.transaction_id)
    rows = [
        QueueRow(issue=i, label=labels.get(i.transaction_id, "") if i.transaction_id else "")
        for i in listed
    ]
    choices = triage_queries.queue_choices()
    # a filter value no unresolved issue has any more still shows as chosen
    systems = sorted(set(choices["systems"]) | ({filters.system} - {""}))
    owners = sorted(set(choices["owners"]) | ({filters.owner} - {""}))
    return Queue(
        filters=filters,
        page=current,
        rows=rows,
        buckets=buckets,
        total=paginator.count,
        kinds=list(ISSUE_KINDS),
        states=list(ISSUE_STATES),
        systems=systems,
        owners=owners,
        now=now,
        values=values,
    )
