""" "Would this rule fire now, and for what?": an unsaved rule judged against the current
data with the same finders as the evaluation (``queries.findings``), plus the figure it
looked at, so that a rule that would not fire says how far it is (docs/alerts.md, "Rules").
Reads only: nothing is written, no alert starts, nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q

from observatory.alerts import queries, text, validation
from observatory.alerts.evaluate import Finding
from observatory.alerts.models import ERROR_RATE, KPI, SILENCE, STUCK, Rule
from observatory.hops.models import Hop
from observatory.triage import models as triage


@dataclass
class Preview:
    at: datetime
    #: what the rule finds true now: one alert each (empty: it would not fire)
    findings: list[Finding] = field(default_factory=list)
    #: the figure the rule looked at, in words ("3 orders stuck", "error rate 2 %")
    now: str = ""
    #: why it could not be judged ("" when it was)
    error: str = ""
    #: it would be pending this long before firing (the rule's ``for_s``)
    for_s: int = 0

    @property
    def fires(self) -> bool:
        return bool(self.findings) and not self.error


def preview(rule: Rule, at: datetime) -> Preview:
    """Judge ``rule`` (saved or not) at ``at``."""
    out = Preview(at=at, for_s=rule.for_s or 0)
    cache: dict[Any, Any] = {}
    try:
        out.findings = queries.findings(rule, at, cache)
        out.now = _figure(rule, at, cache)
    except queries.RuleUnavailable as exc:
        out.error = str(exc)
    except Exception as exc:  # a preview explains; it never breaks the form
        out.error = f"could not be judged: {type(exc).__name__}: {exc}"
    return out


def _figure(rule: Rule, at: datetime, cache: dict[Any, Any]) -> str:
    if rule.kind == KPI:
        window = int(rule.window_s or 3600)
        values = cache.get(("kpi", window, rule.channel, rule.system)) or {}
        value = validation.kpi_field_value(values, rule.kpi, rule.field)
        if value is None:
            return f"{rule.kpi}.{rule.field} has nothing to measure over the window"
        return f"{rule.kpi}.{rule.field} is {queries._kpi_value(rule.field, float(value))} now"
    if rule.kind == STUCK:
        qs = triage.Issue.objects.filter(
            kind=triage.STUCK, state__in=triage.UNRESOLVED, stage=rule.stage
        )
        if rule.channel:
            qs = qs.filter(transaction__channel=rule.channel)
        if rule.system:
            qs = qs.filter(system=rule.system)
        n = qs.values("transaction_id").distinct().count()
        return f"{text.orders_phrase(n, rule.channel)} stuck before {rule.stage} now"
    if rule.kind == ERROR_RATE:
        window = int(rule.window_s or 300)
        hops = Hop.objects.filter(
            system=rule.system, start_time__gt=at - timedelta(seconds=window), start_time__lte=at
        )
        if rule.operation:
            hops = hops.filter(operation=rule.operation)
        agg = hops.aggregate(total=Count("id"), failed=Count("id", filter=Q(outcome="error")))
        total, failed = int(agg["total"] or 0), int(agg["failed"] or 0)
        rate = text.percent(failed / total) if total else "no hop"
        return (
            f"{rule.system}: {failed:,} of {total:,} hops failed over the last "
            f"{text.duration(window)} ({rate})"
        )
    if rule.kind == SILENCE:
        last = Hop.objects.filter(system=rule.system, start_time__lte=at).aggregate(
            at=Max("start_time")
        )["at"]
        if last is None:
            return f"no hop from {rule.system} yet"
        ago = text.duration((at - last).total_seconds())
        return f"the last hop from {rule.system} started {ago} ago ({text.clock_time(last)})"
    return ""
