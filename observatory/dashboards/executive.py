"""Executive KPI pages at ``/executive/`` (docs/kpis.md): cards with the figure, the change
against the previous period and how often the promise to customers was kept; charts of
the trends; the data of every chart as CSV; a layout that prints.

Every figure comes from the KPI rollups (``observatory.kpis``), the same ones behind
``GET /api/v1/kpis``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from observatory.dashboards import business, order_list, series, slo
from observatory.dashboards import kpi_figures as figs
from observatory.dashboards.executive_charts import CHART_KEYS, chart_builders, period_start
from observatory.dashboards.kpi_figures import to_json as figure_json
from observatory.kpis import queries
from observatory.kpis.compute import ALL, rate
from observatory.kpis.models import BacklogSample
from observatory.lib import memo
from observatory.lib.clock import now
from observatory.lib.download import attach, csv_text
from observatory.lib.timerange import range_or_default
from observatory.triage import queries as triage_queries
from observatory.triage import sla

WINDOWS = (7, 30, 90)
DEFAULT_DAYS = 30
SLO_TARGET = slo.SLO_TARGET


@dataclass(frozen=True)
class Filters:
    days: int = DEFAULT_DAYS
    channel: str = ""
    store: str = ""

    @classmethod
    def from_params(cls, params: Any) -> Filters:
        try:
            days = int(params.get("window", DEFAULT_DAYS))
        except (TypeError, ValueError):
            days = DEFAULT_DAYS
        if params.get("range"):  # the range picker: the page counts whole days
            tr, _ = range_or_default(params, at=now(), default=f"{DEFAULT_DAYS}d")
            span = tr.span or timedelta(days=DEFAULT_DAYS)
            days = min(400, max(1, math.ceil(span / timedelta(days=1))))
        elif not 1 <= days <= 400:
            days = DEFAULT_DAYS
        return cls(
            days=days,
            channel=str(params.get("channel", "") or "").strip()[:32],
            store=str(params.get("store", "") or "").strip()[:64],
        )

    def query(self, **extra: Any) -> str:
        params = {"window": self.days, "channel": self.channel, "store": self.store, **extra}
        return urlencode({k: v for k, v in params.items() if v not in ("", None)})

    @property
    def scope(self) -> str:
        """The filters in words: ``web orders at store ST-12``."""
        what = f"{self.channel} orders" if self.channel else "all channels"
        return what + (f" at store {self.store}" if self.store else "")


@dataclass
class Card:
    key: str
    title: str
    question: str
    value: str
    previous: str = ""
    change: float | None = None
    lower_is_better: bool = True
    slo: float | None = None
    slo_words: str = ""
    note: str = ""
    testid: str = ""
    #: the figures as numbers, for the CSV: ``value`` and ``previous`` in ``unit``
    raw: float | None = None
    raw_previous: float | None = None
    #: ``count``, ``s`` (seconds) or ``ratio`` (0..1)
    unit: str = ""
    #: the orders behind the figure (order_list.py), or the exceptions
    href: str = ""

    @property
    def trend(self) -> str:
        """``better``, ``worse`` or ``same`` against the previous period."""
        if self.change is None or abs(self.change) < 0.005:
            return "same"
        improved = (self.change < 0) == self.lower_is_better
        return "better" if improved else "worse"

    @property
    def slo_met(self) -> bool | None:
        return None if self.slo is None else self.slo >= SLO_TARGET


def _change(current: float | None, previous: float | None) -> float | None:
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def _p95(total: queries.LagTotal) -> float | None:
    return total.quantiles((0.95,))[0]


def _backlog_then(at: datetime, channel: str, store: str) -> int | None:
    """The sampled backlog nearest before ``at`` (None when none was taken)."""
    row = (
        BacklogSample.objects.filter(
            channel=channel or ALL, store=store or ALL, stage=ALL, at__lte=at
        )
        .order_by("-at")
        .values_list("count", flat=True)
        .first()
    )
    return None if row is None else int(row)


def posting_deadlines() -> dict[str, int]:
    """Channel ("" for every other channel) -> the captured -> posted deadline, seconds."""
    return {
        p.channel: p.deadline_s
        for p in triage_queries.policies()
        if (p.transaction_kind, p.from_stage, p.to_stage) == ("order", "captured", "posted")
    }


def order_totals(at: datetime) -> slo.Totals:
    """``queries.order_total`` at ``at``: the cards, the service levels and the weekly
    summary read the same totals, once per page (``lib.memo``)."""

    def total(
        since: datetime, until: datetime, channel: str | None, store: str | None
    ) -> queries.OrderTotal:
        return queries.order_total(since, until, channel=channel, store=store, at=at)

    return total


def service_levels(
    f: Filters, at: datetime, totals: slo.Totals | None = None
) -> list[slo.Objective]:
    """The period's SLO attainment and error budget per channel (``slo.py``)."""
    totals = totals or order_totals(at)
    return slo.service_levels(period_start(f, at), at, f.channel or None, f.store or None, totals)


def cards(f: Filters, at: datetime, totals: slo.Totals | None = None) -> list[Card]:
    """The headline figures of the window, each against the same length of time before."""
    totals = totals or order_totals(at)
    span = timedelta(days=f.days)
    # periods start on the hour: whole hour and day rollups, no raw rows to read
    since = period_start(f, at)
    prev = since - span
    ch, st = f.channel or None, f.store or None
    cur = totals(since, at, ch, st)
    old = totals(prev, since, ch, st)
    hops_now = queries.hop_counts(since, at, channel=ch, store=st, at=at)
    hops_then = queries.hop_counts(prev, since, channel=ch, store=st, at=at)
    backlog_now = queries.backlog(None, at, channel=ch, store=st, at=at)["total"]
    backlog_then = _backlog_then(since, f.channel, f.store)
    _, fix_now = queries.exceptions_resolution(since, at, channel=ch, store=st)
    _, fix_then = queries.exceptions_resolution(prev, since, channel=ch, store=st)

    def lag_card(key: str, title: str, question: str, c: Any, o: Any, deadline: str) -> Card:
        now_v, then_v = _p95(c), _p95(o)
        share = rate(c.within, c.count)
        return Card(
            key,
            title,
            question,
            figs.human_s(now_v),
            figs.human_s(then_v),
            _change(now_v, then_v),
            slo=share,
            slo_words=(
                f"{share:.1%} within {deadline} (target {SLO_TARGET:.0%})"
                if share is not None
                else "nothing measured yet"
            ),
            note=(
                f"slowest 5 % of {c.count:,}; typical {figs.human_s(c.quantiles((0.5,))[0])}"
                + (f"; {c.count - c.within:,} late" if key == "acceptance_to_posting" else "")
            ),
            testid=key,
            raw=now_v,
            raw_previous=then_v,
            unit="s",
        )

    # time to the ERP per channel: each against its own deadline (web 1 min, a POS batch
    # 1 h), so the figure and its "within" line speak of the same orders
    deadlines = posting_deadlines()
    channels = [f.channel] if f.channel else sorted(c for c in deadlines if c)
    posting_cards = []
    for channel in channels or [""]:
        if channel and not f.channel:
            c_now = totals(since, at, channel, st)
            c_then = totals(prev, since, channel, st)
        else:
            c_now, c_then = cur, old
        limit = deadlines.get(channel, deadlines.get(""))
        card = lag_card(
            "acceptance_to_posting",
            f"Time from order to ERP: {channel} orders" if channel else "Time from order to ERP",
            "How long until the ERP had the order",
            c_now.a2p,
            c_then.a2p,
            sla.human(limit) if limit else "the deadline",
        )
        if channel:
            card.key = f"acceptance_to_posting:{channel}"
            card.testid = f"acceptance_to_posting-{channel}"
        posting_cards.append(card)

    def orders(**extra: Any) -> str:
        return order_list.link(
            kind="order", since=since, until=at, channel=f.channel, store=f.store, **extra
        )

    for card in posting_cards:
        channel = card.key.partition(":")[2] or f.channel
        card.href = order_list.link(
            kind="order", since=since, until=at, channel=channel, store=f.store, condition="late"
        )
    dup_now = rate(hops_now.duplicates, hops_now.hops + hops_now.duplicates)
    dup_then = rate(hops_then.duplicates, hops_then.hops + hops_then.duplicates)
    exc_now = rate(cur.with_exception, cur.orders)
    exc_then = rate(old.with_exception, old.orders)
    return [
        Card(
            "orders",
            "Orders",
            "How many orders came in",
            f"{cur.orders:,}",
            f"{old.orders:,}",
            _change(cur.orders, old.orders),
            lower_is_better=False,
            note=f"{cur.inv_updates:,} stock updates too",
            testid="orders",
            href=orders(),
            raw=cur.orders,
            raw_previous=old.orders,
            unit="count",
        ),
        *posting_cards,
        lag_card(
            "fulfillment_propagation",
            "Shipment shown in Shopify",
            "How long until customers saw their shipment",
            cur.ful,
            old.ful,
            "15 min",
        ),
        lag_card(
            "inventory_sync_lag",
            "Stock update delay",
            "How long until a stock change reached the shop",
            cur.inv,
            old.inv,
            "5 min",
        ),
        Card(
            "exception_rate",
            "Orders with a problem",
            "Share of orders with a failed step or an exception",
            _pct(exc_now),
            _pct(exc_then),
            _change(exc_now, exc_then),
            note=f"{cur.with_exception:,} of {cur.orders:,} orders",
            testid="exception_rate",
            href=orders(condition="problem"),
            raw=exc_now,
            raw_previous=exc_then,
            unit="ratio",
        ),
        Card(
            "duplicate_rate",
            "Repeated messages",
            "Share of messages that arrived more than once",
            _pct(dup_now),
            _pct(dup_then),
            _change(dup_now, dup_then),
            note=f"{hops_now.duplicates:,} repeats; {cur.posted_twice:,} orders posted twice",
            testid="duplicate_rate",
            href=orders(condition="duplicate"),
            raw=dup_now,
            raw_previous=dup_then,
            unit="ratio",
        ),
        Card(
            "reconciliation_backlog",
            "Orders past their deadline",
            "Waiting right now for a step that is overdue",
            f"{backlog_now:,}",
            "" if backlog_then is None else f"{backlog_then:,}",
            _change(backlog_now, backlog_then),
            note="now; compared with the start of the period",
            testid="backlog",
            href=order_list.link(condition="stuck", channel=f.channel, store=f.store),
            raw=backlog_now,
            raw_previous=backlog_then,
            unit="count",
        ),
        Card(
            "resolution_time",
            "Time to fix",
            "From an exception opening to its resolution, on average",
            figs.human_s(fix_now),
            figs.human_s(fix_then),
            _change(fix_now, fix_then),
            note="exceptions opened in the period and resolved",
            testid="resolution",
            href=f"{reverse('dashboards:exceptions')}?state=resolved",
            raw=fix_now,
            raw_previous=fix_then,
            unit="s",
        ),
    ]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


@require_GET
@login_required
@memo.per_page
def page(request: HttpRequest) -> HttpResponse:
    """KPI cards and trend charts, filtered by window, channel and store."""
    f = Filters.from_params(request.GET)
    at = now()
    tr, range_error = range_or_default(request.GET, at=at, default=f"{f.days}d")
    builders = chart_builders(f, at)
    charts = []
    for key in CHART_KEYS:
        chart = builders[key]()
        chart.figure = figure_json(chart.figure, {"displayModeBar": False})
        charts.append(chart)
    channels, stores = series.dimension_values(90, at)
    totals = order_totals(at)
    return render(
        request,
        "dashboards/executive.html",
        {
            "f": f,
            "at": at,
            "tr": tr,
            "range_error": range_error,
            "windows": WINDOWS,
            "channels": channels,
            "stores": stores,
            "cards": cards(f, at, totals),
            "charts": charts,
            "slo_target": SLO_TARGET,
            "slo_budget": 1 - SLO_TARGET,
            "service_levels": service_levels(f, at, totals),
            "outcomes": business.outcomes(f, at, totals),
        },
    )


@require_GET
@login_required
@memo.per_page
def csv_download(request: HttpRequest, chart: str) -> HttpResponse:
    """The data behind one chart (or the cards: ``summary``), as CSV."""
    f = Filters.from_params(request.GET)
    at = now()
    if chart == "summary":
        # numbers only, their unit in a column of its own (count, s, ratio): a spreadsheet
        # reads them as numbers, where "1,928" and "14 min" were text
        totals = order_totals(at)
        shown: list[Card | business.Outcome] = [
            *cards(f, at, totals),
            *business.outcomes(f, at, totals),
        ]
        rows = [
            {
                "kpi": c.key,
                "title": c.title,
                "unit": c.unit,
                "value": c.raw,
                "previous_value": c.raw_previous,
                "change_ratio": c.change,
                "within_deadline_ratio": c.slo,
            }
            for c in shown
        ]
        columns = ("kpi", "title", "unit", "value", "previous_value", "change_ratio")
        body = csv_text((*columns, "within_deadline_ratio"), rows)
    elif chart == "slo":
        body = csv_text(slo.CSV_COLUMNS, (slo.csv_row(o) for o in service_levels(f, at)))
    else:
        builder = chart_builders(f, at).get(chart)
        if builder is None:
            raise Http404("no such chart")
        built = builder()
        body = csv_text(built.columns, built.rows)
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    scope = "-".join(p for p in (f.channel, f.store) if p) or "all"
    return attach(response, f"observatory-{chart}-{f.days}d-{scope}-{at:%Y%m%d}.csv")
