"""Reads of reconciliation: the rules, the day results, and one day's items with their
transactions' keys and open exceptions (docs/reconciliation.md). A fixed number of
queries per call, whatever the number of rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from observatory.lib import bulk
from observatory.lib.clock import now
from observatory.reconciliation import compute
from observatory.reconciliation.actions.issues import dedupe_key
from observatory.reconciliation.models import GAPS, MATCHED, Item, Result, Rule
from observatory.transactions.models import TransactionKey
from observatory.triage import queries as triage_queries
from observatory.triage.models import UNRESOLVED, Issue

#: days shown when a question names none: the last four weeks and a few days
DEFAULT_DAYS = 31


def rules(*, active_only: bool = False) -> list[Rule]:
    qs = Rule.objects.order_by("name")
    return list(qs.filter(active=True) if active_only else qs)


def rule_named(name: str) -> Rule | None:
    return Rule.objects.filter(name=name).first()


def window(
    since: date | None, until: date | None, *, today: date | None = None
) -> tuple[date, date]:
    """The business days asked for, both ends included: by default the last
    ``DEFAULT_DAYS`` up to today (UTC); one end alone reaches ``DEFAULT_DAYS`` from it."""
    today = today or now().date()
    span = timedelta(days=DEFAULT_DAYS - 1)
    if until is None:
        until = _shift(since, span) if since else today
    if since is None:
        since = _shift(until, -span)
    return since, until


def _shift(day: date, by: timedelta) -> date:
    """``day + by``, held to the days a date can be."""
    try:
        return day + by
    except OverflowError:
        return date.max if by > timedelta(0) else date.min


def results(names: Sequence[str], since: date, until: date) -> list[Result]:
    """Day results of the rules named (all when none), newest day first, per rule."""
    qs = Result.objects.select_related("rule").filter(day__gte=since, day__lte=until)
    if names:
        qs = qs.filter(rule__name__in=names)
    return list(qs.order_by("rule__name", "-day", "currency", "channel", "store_id"))


@dataclass
class DayTotals:
    """One rule's figures over a business day (per currency: never summed across
    currencies), added up over its channel and store rows."""

    day: date
    currency: str
    source_count: int = 0
    source_total: Decimal = Decimal("0")
    target_count: int = 0
    target_total: Decimal = Decimal("0")
    matched: int = 0
    missing_in_target: int = 0
    missing_in_source: int = 0
    amount_mismatch: int = 0
    posted_twice: int = 0
    pending: int = 0
    mismatched_amount: Decimal = Decimal("0")
    value_at_risk: Decimal = Decimal("0")
    rows: list[Result] = field(default_factory=list)

    def add(self, r: Result) -> None:
        self.rows.append(r)
        for name in (
            "source_count",
            "source_total",
            "target_count",
            "target_total",
            "matched",
            "missing_in_target",
            "missing_in_source",
            "amount_mismatch",
            "posted_twice",
            "pending",
            "mismatched_amount",
            "value_at_risk",
        ):
            setattr(self, name, getattr(self, name) + getattr(r, name))

    @property
    def missing(self) -> int:
        return self.missing_in_target + self.missing_in_source

    @property
    def gaps(self) -> int:
        return self.missing + self.amount_mismatch + self.posted_twice

    @property
    def rate(self) -> float | None:
        judged = self.matched + self.gaps
        return self.matched / judged if judged else None

    @property
    def state(self) -> str:
        """``red`` with a counted gap, ``amber`` with gaps still in their grace period,
        else ``ok``."""
        if self.gaps:
            return "red"
        return "amber" if self.pending else "ok"


def by_day(rows: Iterable[Result]) -> list[DayTotals]:
    """Results added up per day and currency, newest day first."""
    out: dict[tuple[date, str], DayTotals] = {}
    for r in rows:
        key = (r.day, r.currency)
        if key not in out:
            out[key] = DayTotals(day=r.day, currency=r.currency)
        out[key].add(r)
    return sorted(out.values(), key=lambda d: (-d.day.toordinal(), d.currency))


@dataclass
class ItemView:
    """One item of a day, as the pages and the API show it."""

    item: Item
    label: str
    keys: list[tuple[str, str]]
    exception_id: int | None
    #: when a gap still in its grace period counts
    due_at: datetime | None

    @property
    def value_at_risk(self) -> Decimal:
        return compute.at_risk(self.item.status, self.item.source_amount, self.item.target_amount)


def day_items(rule: Rule, day: date, *, matched: bool = False) -> list[ItemView]:
    """The rule's items of ``day`` (gaps, counted or not; the matched ones too with
    ``matched``), gaps first and the most money first: four queries."""
    qs = Item.objects.filter(rule=rule, day=day)
    if not matched:
        qs = qs.exclude(status=MATCHED)
    items = list(qs)
    order = {s: n for n, s in enumerate(GAPS)}
    items.sort(
        key=lambda i: (
            i.status == MATCHED,
            not i.counted,
            order.get(i.status, 9),
            -compute.at_risk(i.status, i.source_amount, i.target_amount),
            i.transaction_id,
        )
    )
    ids = [i.transaction_id for i in items]
    keys: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for chunk in bulk.chunks(ids):
        for tx, kind, value in (
            TransactionKey.objects.filter(transaction_id__in=chunk)
            .order_by("kind", "value")
            .values_list("transaction_id", "kind", "value")
        ):
            keys[tx].append((kind, value))
    wanted = {dedupe_key(rule.id, t): t for t in ids}
    issues: dict[int, int] = {}
    for chunk in bulk.chunks(ids):
        # by transaction alone (its index: a few exceptions each), then by key and state
        for key, issue_id, state in Issue.objects.filter(transaction_id__in=chunk).values_list(
            "dedupe_key", "id", "state"
        ):
            if key in wanted and state in UNRESOLVED:
                issues[wanted[key]] = issue_id
    grace = timedelta(seconds=rule.grace_s)
    return [
        ItemView(
            item=i,
            label=triage_queries.pick_label(keys[i.transaction_id])
            or f"transaction {i.transaction_id}",
            keys=keys[i.transaction_id],
            exception_id=issues.get(i.transaction_id),
            due_at=i.waiting_since + grace if i.waiting_since is not None else None,
        )
        for i in items
    ]
