"""The weekly executive summary e-mail (docs/kpis.md, "Weekly summary"): last week's cards
and service levels, as text and HTML, to ``settings.EXECUTIVE_SUMMARY_RECIPIENTS`` through
Django's e-mail backend. The Celery beat schedule sends it (``tasks.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from observatory.dashboards import executive, slo
from observatory.dashboards.executive_charts import period_start
from observatory.lib import memo
from observatory.lib.clock import now

#: the summary covers the last seven days, as the executive page's 7-day period
DAYS = 7


@dataclass
class Summary:
    at: datetime
    since: datetime
    cards: list[executive.Card]
    service_levels: list[slo.Objective]
    url: str

    @property
    def subject(self) -> str:
        missed = sum(1 for o in self.service_levels if o.status == "missed")
        verdict = f"{missed} promise{'s' if missed != 1 else ''} missed" if missed else "all kept"
        return f"Observatory weekly summary, {self.since:%b %-d} to {self.at:%b %-d}: {verdict}"


def weekly_summary(at: datetime | None = None) -> Summary:
    """The figures of the week up to ``at``: the executive page's, same rollups."""
    at = at or now()
    f = executive.Filters(days=DAYS)
    totals = executive.order_totals(at)
    base = str(settings.OBSERVATORY_BASE_URL).rstrip("/")
    with memo.reads_once():  # the page's reads, once each as on the page
        return Summary(
            at=at,
            since=period_start(f, at),
            cards=executive.cards(f, at, totals),
            service_levels=executive.service_levels(f, at, totals),
            url=f"{base}/executive/?{f.query()}",
        )


def message(summary: Summary, to: list[str]) -> EmailMultiAlternatives:
    context = {"s": summary, "slo_target": slo.SLO_TARGET}
    text = render_to_string("dashboards/email/weekly_summary.txt", context)
    html = render_to_string("dashboards/email/weekly_summary.html", context)
    mail = EmailMultiAlternatives(
        summary.subject,
        text,
        settings.DEFAULT_FROM_EMAIL,
        to,
        headers={"Auto-Submitted": "auto-generated"},
    )
    mail.attach_alternative(html, "text/html")
    return mail


def send_weekly_summary(at: datetime | None = None) -> int:
    """Send the summary to every configured recipient (one message, every address in To).
    The number of recipients; 0, and nothing read, when none is configured."""
    to = [a for a in settings.EXECUTIVE_SUMMARY_RECIPIENTS if a]
    if not to:
        return 0
    message(weekly_summary(at), to).send()
    return len(to)
