"""The /reconciliation/ pages (docs/reconciliation.md, "Pages"). Thin: read through
``queries``. Everyone signed in reads them; every view is also a CSV (``?format=csv``).

* ``/reconciliation/``: per rule, its business days (newest first) with matched %, the
  gaps and the value at risk; a red day has counted gaps, an amber one gaps still within
  the rule's grace period. ``?rule=`` (one rule), ``?since=``, ``?until=`` (days).
* ``/reconciliation/<rule>/<day>/``: that day's figures and its unmatched transactions,
  each linking to its order page (``?matched=1`` lists the matched ones too).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from observatory.lib.download import csv_response
from observatory.reconciliation import queries
from observatory.reconciliation.models import Rule

RESULT_COLUMNS = (
    "rule",
    "day",
    "currency",
    "channel",
    "store_id",
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
    "rate",
    "mismatched_amount",
    "value_at_risk",
)
ITEM_COLUMNS = (
    "rule",
    "day",
    "transaction_id",
    "order",
    "status",
    "counted",
    "due_at",
    "currency",
    "channel",
    "store_id",
    "source_at",
    "source_amount",
    "source_docs",
    "target_at",
    "target_amount",
    "target_docs",
    "value_at_risk",
    "exception_id",
    "url",
)


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _csv_wanted(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


def _result_row(rule: Rule, r: Any) -> dict[str, Any]:
    rate = r.rate
    return {
        **{c: getattr(r, c) for c in RESULT_COLUMNS if c not in ("rule", "rate")},
        "rule": rule.name,
        "rate": "" if rate is None else f"{rate:.4f}",
    }


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Every rule with its business days."""
    wanted = (request.GET.get("rule") or "").strip()
    every = queries.rules()
    rules = [r for r in every if not wanted or r.name == wanted]
    since, until = queries.window(_day(request.GET.get("since")), _day(request.GET.get("until")))
    if since > until:
        since, until = until, since
    rows = queries.results([r.name for r in rules], since, until)
    if _csv_wanted(request):
        names = {r.id: r for r in rules}
        return csv_response(
            RESULT_COLUMNS,
            [_result_row(names[r.rule_id], r) for r in rows],
            f"reconciliation-{wanted or 'all'}-{since}-{until}.csv",
        )
    per_rule: dict[int, list[Any]] = {r.id: [] for r in rules}
    for row in rows:
        per_rule[row.rule_id].append(row)
    cards = []
    for rule in rules:
        days = queries.by_day(per_rule[rule.id])
        cards.append(
            {
                "rule": rule,
                "days": days,
                "red": sum(1 for d in days if d.state == "red"),
                "at_risk": _per_currency(days),
            }
        )
    return render(
        request,
        "reconciliation/index.html",
        {
            "cards": cards,
            "since": since,
            "until": until,
            "wanted": wanted,
            "all_rules": every,
            "csv_query": request.GET.urlencode(),
        },
    )


def _per_currency(days: list[queries.DayTotals]) -> list[tuple[str, Decimal]]:
    """Value at risk over the days shown, per currency (never summed across them)."""
    out: dict[str, Decimal] = {}
    for d in days:
        out[d.currency] = out.get(d.currency, Decimal("0")) + d.value_at_risk
    return sorted((c, v) for c, v in out.items() if v)


@require_GET
@login_required
def day(request: HttpRequest, rule: str, day: str) -> HttpResponse:
    """One rule's business day: its figures, and its transactions."""
    found = queries.rule_named(rule)
    when = _day(day)
    if found is None or when is None:
        raise Http404("no such rule or day")
    matched = request.GET.get("matched") in ("1", "true", "yes")
    rows = queries.results([found.name], when, when)
    items = queries.day_items(found, when, matched=matched)
    if _csv_wanted(request):
        return csv_response(
            ITEM_COLUMNS,
            [_item_row(found, when, v, request) for v in items],
            f"reconciliation-{found.name}-{when}.csv",
        )
    return render(
        request,
        "reconciliation/day.html",
        {
            "rule": found,
            "day": when,
            "totals": queries.by_day(rows),
            "rows": rows,
            "items": items,
            "matched": matched,
            "csv_query": request.GET.urlencode(),
        },
    )


def _item_row(rule: Rule, when: date, v: queries.ItemView, request: HttpRequest) -> dict[str, Any]:
    i = v.item
    return {
        "rule": rule.name,
        "day": when,
        "transaction_id": i.transaction_id,
        "order": v.label,
        "status": i.status,
        "counted": i.counted,
        "due_at": v.due_at,
        "currency": i.currency,
        "channel": i.channel,
        "store_id": i.store_id,
        "source_at": i.source_at,
        "source_amount": i.source_amount,
        "source_docs": i.source_docs,
        "target_at": i.target_at,
        "target_amount": i.target_amount,
        "target_docs": i.target_docs,
        "value_at_risk": v.value_at_risk,
        "exception_id": v.exception_id,
        "url": request.build_absolute_uri(reverse("dashboards:order", args=[i.transaction_id])),
    }
