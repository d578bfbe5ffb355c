"""The orders list behind every number (docs/architecture.md, "Pages", "Drill-down").

A KPI tile, chart point, flow edge or backlog row links here with the filters that
reproduce what it counted, so the list's count is the figure: the window is the KPI
window (a transaction counts in the window of its anchor time: captured, stock adjusted,
return requested), and each ``condition`` is the very test the KPI rollup applies
(``observatory.kpis.queries.readers.order_facts``, the backlog's ``OpenStage`` rows).

Everything is one filtered queryset: the page reads its rows (``LIMIT``/``OFFSET``), one
``COUNT`` and the rows' keys and open exceptions (two queries), whatever the size; the
CSV reads the same queryset in chunks, one key query per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode

from observatory.dashboards.queries import order_rows
from observatory.kpis.models import OpenStage
from observatory.kpis.queries.backlog import anchor_q
from observatory.lib.clock import now as clock_now
from observatory.transactions.models import (
    KINDS,
    STAGE_COLUMNS,
    Transaction,
    TransactionHop,
    stage_field,
)
from observatory.triage import queries as triage_queries
from observatory.triage.models import DUPLICATE, REAL, Issue
from tracing.conventions import ERROR

PAGE_SIZE = 50
#: rows a CSV export holds at most (the filters narrow anything larger)
CSV_LIMIT = 100_000
_CHUNK = 2000

#: condition -> what it keeps, in words (the same test as the KPI it drills into)
CONDITIONS = {
    "problem": "with a failed step or an exception",
    "failed": "with a failed step",
    "late": "posted to the ERP after their deadline",
    "stuck": "waiting now for a step past its deadline",
    "duplicate": "posted to the ERP twice",
}
SORTS = {
    "newest": "newest first",
    "oldest": "oldest first",
    "value": "highest value first",
}
TX_KINDS = [k for k, _ in KINDS]
#: the time a transaction of each kind counts in (``kpis.queries.anchor_expr``), indexed
ANCHOR_COLUMNS = {
    "order": "captured_at",
    "inventory_update": "inventory_adjusted_at",
    "return": "return_requested_at",
}


def _when(raw: Any) -> datetime | None:
    """An ISO 8601 instant (``Z`` or an offset; a naive one is taken as UTC), or None."""
    text = str(raw or "").strip()[:40].replace(" ", "+")
    if not text:
        return None
    try:
        value = parse_datetime(text)
    except ValueError:
        return None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class OrderFilters:
    """The list's GET parameters, cleaned; ``errors`` names the ones that were ignored."""

    since: datetime | None = None
    until: datetime | None = None
    kind: str = ""
    channel: str = ""
    store: str = ""
    #: stages every listed transaction reached
    reached: tuple[str, ...] = ()
    #: the stage listed transactions wait for now, past its deadline (backlog by stage)
    awaiting: str = ""
    condition: str = ""
    #: with a failed step that started at or after this (the ops page's failed-steps tile)
    failed_since: datetime | None = None
    failed_until: datetime | None = None
    sort: str = "newest"
    errors: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Any) -> OrderFilters:
        errors: list[str] = []

        def pick(name: str, allowed: Iterable[str] | None = None, size: int = 64) -> str:
            value = str(params.get(name, "") or "").strip()[:size]
            if value and allowed is not None and value not in allowed:
                errors.append(f"{name}: '{value}' is not one of {', '.join(allowed)}")
                return ""
            return value

        def instant(name: str) -> datetime | None:
            raw = params.get(name, "")
            value = _when(raw)
            if raw and value is None:
                errors.append(f"{name}: '{str(raw)[:40]}' is not an ISO 8601 time")
            return value

        reached = []
        for part in pick("reached", size=200).split(","):
            part = part.strip()
            if part and part not in STAGE_COLUMNS:
                errors.append(f"reached: '{part}' is not a stage")
            elif part and part not in reached:
                reached.append(part)
        return cls(
            since=instant("since"),
            until=instant("until"),
            kind=pick("kind", TX_KINDS, 32),
            channel=pick("channel", size=32),
            store=pick("store"),
            reached=tuple(reached),
            awaiting=pick("awaiting", STAGE_COLUMNS, 32),
            condition=pick("condition", list(CONDITIONS), 16),
            failed_since=instant("failed_since"),
            failed_until=instant("failed_until"),
            sort=pick("sort", list(SORTS), 16) or "newest",
            errors=tuple(errors),
        )

    def params(self) -> dict[str, str]:
        """The filters as URL parameters (empty ones left out)."""
        out = {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "kind": self.kind,
            "channel": self.channel,
            "store": self.store,
            "reached": ",".join(self.reached),
            "awaiting": self.awaiting,
            "condition": self.condition,
            "failed_since": self.failed_since.isoformat() if self.failed_since else "",
            "failed_until": self.failed_until.isoformat() if self.failed_until else "",
            "sort": "" if self.sort == "newest" else self.sort,
        }
        return {k: v for k, v in out.items() if v}

    def query(self, **extra: Any) -> str:
        return urlencode({**self.params(), **{k: v for k, v in extra.items() if v}})

    @property
    def active(self) -> bool:
        return bool(set(self.params()) - {"sort"})

    def without(self, name: str) -> str:
        """The query string with one filter removed (the chips' "x")."""
        empty: Any = () if name == "reached" else ""
        if name in ("since", "until", "failed_since", "failed_until"):
            empty = None
        return replace(self, **{name: empty}).query()

    @property
    def chips(self) -> list[tuple[str, str, str]]:
        """(name, the filter in words, the query without it), for the list's header."""
        words = {
            "since": f"from {self.since:%Y-%m-%d %H:%M} UTC" if self.since else "",
            "until": f"until {self.until:%Y-%m-%d %H:%M} UTC" if self.until else "",
            "kind": self.kind.replace("_", " "),
            "channel": f"channel {self.channel}",
            "store": f"store {self.store}",
            "reached": "reached " + ", ".join(s.replace("_", " ") for s in self.reached),
            "awaiting": f"waiting for {self.awaiting.replace('_', ' ')}",
            "condition": CONDITIONS.get(self.condition, ""),
            "failed_since": (
                f"a step failed since {self.failed_since:%Y-%m-%d %H:%M} UTC"
                if self.failed_since
                else ""
            ),
            "failed_until": (
                f"failed before {self.failed_until:%Y-%m-%d %H:%M} UTC" if self.failed_until else ""
            ),
        }
        return [(n, words[n], self.without(n)) for n in self.params() if n in words]


def link(**params: Any) -> str:
    """``/orders/?...`` for these filters (datetimes as ISO 8601): what every number on the
    dashboards links to."""
    clean = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in params.items()
        if v not in ("", None)
    }
    return f"{reverse('dashboards:orders')}?{urlencode(clean)}"


# --- the conditions, as the KPIs test them ---------------------------------------------------


def _issue_on(state_q: Q) -> Q:
    """An exception (matching ``state_q``) on the transaction or one merged into it."""
    here = Issue.objects.filter(state_q, transaction_id=OuterRef("pk"), state__in=REAL)
    merged = Issue.objects.filter(
        state_q, transaction__merged_into_id=OuterRef("pk"), state__in=REAL
    )
    return Q(Exists(here)) | Q(Exists(merged))


def _late_q() -> Q:
    """Posted later than the captured -> posted deadline of its channel (the
    ``acceptance_to_posting`` card's "within" share counts the others)."""
    policies = [
        p
        for p in triage_queries.policies()
        if (p.transaction_kind, p.from_stage, p.to_stage) == ("order", "captured", "posted")
    ]
    own = {p.channel for p in policies if p.channel}
    q = Q(pk__in=[])
    for p in policies:
        late = Q(
            kind="order",
            posted_at__isnull=False,
            posted_at__gt=F("captured_at") + timedelta(seconds=p.deadline_s),
        )
        q |= late & (Q(channel=p.channel) if p.channel else ~Q(channel__in=own))
    return q


def _stuck_ids(at: datetime, stage: str = "") -> Any:
    """Transactions with a stage overdue and still missing now (the backlog's rows)."""
    rows = OpenStage.objects.filter(closed_at__isnull=True, overdue_after__lt=at)
    if stage:
        rows = rows.filter(stage=stage)
    return rows.values("transaction_id")


def filtered(f: OrderFilters, at: datetime | None = None) -> QuerySet[Transaction]:
    """The live transactions matching ``f`` (not ordered)."""
    at = at or clock_now()
    qs = Transaction.objects.filter(merged_into__isnull=True)
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if (f.since or f.until) and f.kind in ANCHOR_COLUMNS:
        # one kind: a range of its own anchor column, on that column's index
        column = ANCHOR_COLUMNS[f.kind]
        qs = qs.filter(**{f"{column}__lt": f.until or at})
        if f.since:
            qs = qs.filter(**{f"{column}__gte": f.since})
    elif f.since or f.until:
        qs = qs.filter(anchor_q(f.since, f.until or at))
    if f.channel:
        qs = qs.filter(channel=f.channel)
    if f.store:
        qs = qs.filter(store_id=f.store)
    for stage in f.reached:
        qs = qs.filter(**{f"{stage_field(stage)}__isnull": False})
    if f.awaiting:
        qs = qs.filter(pk__in=_stuck_ids(at, f.awaiting))
    if f.failed_since or f.failed_until:
        failed = TransactionHop.objects.filter(transaction_id=OuterRef("pk"), hop__outcome=ERROR)
        if f.failed_since:
            failed = failed.filter(hop__start_time__gte=f.failed_since)
        if f.failed_until:
            failed = failed.filter(hop__start_time__lt=f.failed_until)
        qs = qs.filter(Exists(failed))
    if f.condition == "failed":
        qs = qs.filter(failed_hop_count__gt=0)
    elif f.condition == "problem":
        qs = qs.filter(Q(failed_hop_count__gt=0) | _issue_on(Q()))
    elif f.condition == "duplicate":
        qs = qs.filter(_issue_on(Q(kind=DUPLICATE, detail__duplicate="posted_twice")))
    elif f.condition == "late":
        qs = qs.filter(_late_q())
    elif f.condition == "stuck":
        qs = qs.filter(pk__in=_stuck_ids(at))
    return qs


def _anchor() -> Any:
    return Coalesce("captured_at", "inventory_adjusted_at", "return_requested_at", "created_at")


def ordered(qs: QuerySet[Transaction], sort: str, kind: str = "") -> QuerySet[Transaction]:
    """By anchor time (one kind: its own indexed column) or by value."""
    if sort == "value":
        return qs.order_by(F("amount").desc(nulls_last=True), "-id")
    qs = qs.annotate(anchor_at=F(ANCHOR_COLUMNS[kind]) if kind in ANCHOR_COLUMNS else _anchor())
    return qs.order_by("anchor_at", "id") if sort == "oldest" else qs.order_by("-anchor_at", "-id")


@dataclass
class OrderList:
    filters: OrderFilters
    rows: list[Any]
    total: int
    page: int
    pages: int
    at: datetime

    @property
    def first(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def order_list(f: OrderFilters, page: int = 1, at: datetime | None = None) -> OrderList:
    """One page of the list and the total: four queries (rows, count, keys, exceptions)."""
    at = at or clock_now()
    qs = filtered(f, at)
    total = qs.count()
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    txs = list(ordered(qs, f.sort, f.kind)[start : start + PAGE_SIZE]) if total else []
    return OrderList(f, order_rows(txs), total, page, pages, at)


CSV_COLUMNS = (
    "id",
    "label",
    "kind",
    "channel",
    "store_id",
    "current_stage",
    "anchor_at",
    "amount",
    "currency",
    "failed_hops",
    "created_at",
)


def csv_rows(f: OrderFilters, at: datetime | None = None) -> Iterator[list[Any]]:
    """The whole filtered list as CSV rows (header first), numbers as numbers; read in
    chunks of ``_CHUNK`` by keyset, one label query per chunk."""
    yield list(CSV_COLUMNS)
    qs = ordered(filtered(f, at), f.sort, f.kind).values_list(
        "id",
        "kind",
        "channel",
        "store_id",
        "current_stage",
        "captured_at",
        "inventory_adjusted_at",
        "return_requested_at",
        "amount",
        "currency",
        "failed_hop_count",
        "created_at",
    )
    sent = 0
    while sent < CSV_LIMIT:
        chunk = list(qs[sent : sent + _CHUNK])
        if not chunk:
            return
        labels = triage_queries.transaction_labels(r[0] for r in chunk)
        for tx_id, kind, ch, store, stage, cap, adj, req, amount, cur, failed, created in chunk:
            anchor = cap or adj or req or created
            yield [
                tx_id,
                labels.get(tx_id, ""),
                kind,
                ch,
                store,
                stage,
                anchor.isoformat(),
                "" if amount is None else amount,
                cur,
                failed,
                created.isoformat(),
            ]
        sent += len(chunk)


#: the stages offered in the form's choices
STAGE_CHOICES = [(s, s.replace("_", " ")) for s in STAGE_COLUMNS]
