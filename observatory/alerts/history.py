"""Alerts found in history: incidents that began and ended before their data arrived.

A backfill, an offline store's upload or a webhook retried hours later can show that
orders were stuck past their deadline at a time long gone, and posted since. Triage
records those as ``stuck`` exceptions opened and resolved on business time ("found
after"). Nothing about them is still true now, so no alert fires and nothing is sent; but
the incident happened, and ``/alerts/`` shows it: each evaluation groups the problems of
a ``stuck`` rule found since its previous look into incidents (overlapping spans of
business time) and records each as a resolved alert ``found_in_history``, extending one
that overlaps it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from observatory.alerts import text
from observatory.alerts.evaluate import alert_labels, fingerprint
from observatory.alerts.models import RESOLVED, STUCK, Alert, HistoryMark, Rule
from observatory.triage import models as triage


@dataclass
class _Incident:
    begin: datetime
    end: datetime
    orders: set[int] = field(default_factory=set)
    value: dict[str, Decimal] = field(default_factory=dict)


def record(rules: Sequence[Rule], specs: dict[int, object], at: datetime, wall: datetime) -> int:
    """Record the history incidents of ``rules`` found since their previous look; returns
    how many alerts were created or extended. A few queries per stuck rule."""
    marks = {m.rule_id: m for m in HistoryMark.objects.filter(rule__in=rules)}
    touched = 0
    for rule in rules:
        if rule.kind != STUCK:
            continue
        mark = marks.get(rule.id)
        found = triage.Issue.objects.filter(
            kind=triage.STUCK,
            state=triage.RESOLVED,
            stage=rule.stage,
            detail__found_after=True,
            transaction__isnull=False,
        )
        if mark is not None:
            found = found.filter(detected_at__gt=mark.scanned_at)
        if rule.channel:
            found = found.filter(transaction__channel=rule.channel)
        if rule.system:
            found = found.filter(system=rule.system)
        rows = list(
            found.order_by("opened_at").values_list(
                "system",
                "transaction_id",
                "opened_at",
                "resolved_at",
                "transaction__amount",
                "transaction__currency",
            )
        )
        HistoryMark.objects.update_or_create(rule=rule, defaults={"scanned_at": wall})
        if rows:
            touched += _record_rule(rule, specs[rule.id], rows, at)
    return touched


def _incidents(rows: list[tuple[Any, ...]]) -> dict[str, list[_Incident]]:
    """Per system, the union of the problems' spans of business time."""
    out: dict[str, list[_Incident]] = defaultdict(list)
    for system, tx, begin, end, amount, currency in rows:
        spans = out[system]
        if spans and begin <= spans[-1].end:
            inc = spans[-1]
            inc.end = max(inc.end, end)
        else:
            inc = _Incident(begin, end)
            spans.append(inc)
        inc.orders.add(tx)
        if amount is not None:
            inc.value[currency] = inc.value.get(currency, Decimal(0)) + amount
    return out


def _record_rule(rule: Rule, spec: object, rows: list[tuple[Any, ...]], at: datetime) -> int:
    touched = 0
    for system, spans in _incidents(rows).items():
        labels = {"system": system, "stage": rule.stage}
        if rule.channel:
            labels["channel"] = rule.channel
        labels = alert_labels(spec, labels)  # type: ignore[arg-type]
        print_ = fingerprint(rule.id, {**labels, "history": "true"})
        held = list(Alert.objects.filter(rule=rule, found_in_history=True, labels__system=system))
        for inc in spans:
            alert = next(
                (
                    a
                    for a in held
                    if a.started_at <= inc.end and inc.begin <= (a.resolved_at or a.started_at)
                ),
                None,
            )
            orders = len(inc.orders)
            value = dict(inc.value)
            if alert is not None:
                orders += int(alert.detail.get("orders", 0))
                for c, v in (alert.detail.get("value") or {}).items():
                    value[c] = value.get(c, Decimal(0)) + Decimal(v)
                inc.begin = min(inc.begin, alert.started_at)
                inc.end = max(inc.end, alert.resolved_at or inc.end)
            else:
                alert = Alert(
                    rule=rule,
                    fingerprint=print_,
                    labels={**labels, "history": "true"},
                    state=RESOLVED,
                    found_in_history=True,
                )
                held.append(alert)
            worth = text.totals(
                [{"currency": c, "value": f"{v:.2f}"} for c, v in sorted(value.items())]
            )
            alert.started_at = alert.fired_at = inc.begin
            alert.resolved_at = alert.last_true_at = inc.end
            alert.last_eval_at = at
            alert.value = float(orders)
            alert.summary = (
                f"found in history: {text.orders_phrase(orders, rule.channel)} were stuck "
                f"before {rule.stage} between {text.clock_time(inc.begin)} and "
                f"{text.clock_time(inc.end)}{' (' + worth + ')' if worth else ''}; "
                f"waiting on {system or '?'}, over before the data arrived (not sent)"
            )
            alert.detail = {
                "orders": orders,
                "value": {c: f"{v:.2f}" for c, v in sorted(value.items())},
                "found_in_history": True,
            }
            alert.save()
            touched += 1
    return touched
